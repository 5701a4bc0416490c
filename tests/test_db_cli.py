"""`openrl db migrate|status`: drives the real binary and inspects the file with Python's sqlite3."""
import json
import sqlite3
import subprocess


def run(binary, *args):
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


def test_migrate_creates_wal_database_and_is_idempotent(openrl_bin, tmp_path):
    db = tmp_path / "nested" / "openrl.db"
    first = run(openrl_bin, "db", "migrate", "--db", str(db), "--json")
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["previous_version"] == 0
    assert out["version"] >= 1
    assert [m["name"] for m in out["applied"]][0] == "settings"

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [r[0] for r in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, out["version"] + 1))
    con.close()

    again = run(openrl_bin, "db", "migrate", "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert "already up to date" in again.stdout

    status = run(openrl_bin, "db", "status", "--db", str(db), "--json")
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert st["up_to_date"] is True and st["pending"] == [] and st["version"] == out["version"]


def test_status_of_missing_database_fails_without_creating_it(openrl_bin, tmp_path):
    db = tmp_path / "absent.db"
    proc = run(openrl_bin, "db", "status", "--db", str(db))
    assert proc.returncode != 0
    assert str(db) in proc.stderr
    assert not db.exists()


def test_newer_database_is_refused(openrl_bin, tmp_path):
    db = tmp_path / "newer.db"
    assert run(openrl_bin, "db", "migrate", "--db", str(db)).returncode == 0
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'x')")
    con.commit()
    con.close()
    for cmd in ("status", "migrate"):
        proc = run(openrl_bin, "db", cmd, "--db", str(db))
        assert proc.returncode == 1
        assert "schema version 999 is newer" in proc.stderr
        assert str(db) in proc.stderr


def test_corrupt_file_is_a_clear_error(openrl_bin, tmp_path):
    db = tmp_path / "garbage.db"
    db.write_bytes(b"definitely not sqlite" * 500)
    proc = run(openrl_bin, "db", "status", "--db", str(db))
    assert proc.returncode == 1
    assert "DATA_LOSS" in proc.stderr and "not a database" in proc.stderr and str(db) in proc.stderr


def test_help_lists_subcommands(openrl_bin):
    proc = run(openrl_bin, "db", "--help")
    assert proc.returncode == 0
    assert "migrate" in proc.stdout and "status" in proc.stdout
