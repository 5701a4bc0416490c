"""Our age encryption (src/openrl/core/age.cc) against the real peer: pyrage (the Rust rage crate).

The C++ side runs as the core gtest `AgeVectors.WriteForPeer`, which encrypts files to recipients
that pyrage generated here and to SSH keys that ssh-keygen made here (ed25519, rsa 2048 and 3072);
pyrage must decrypt every one, with each identity or SSH private key alone, and must refuse any
tampered or truncated copy.
"""
import os
import subprocess

import pyrage
import pytest
from pyrage import ssh, x25519

from conftest import BUILD

SIZES = [0, 1, 65535, 65536, 65537, 200000]
CHUNK = 64 * 1024


def ssh_key(directory, kind, bits=None):
    """(authorized_keys line, pyrage identity) of a fresh key made by ssh-keygen."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"id_{kind}{bits or ''}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *(["-b", str(bits)] if bits else []), "-N", "", "-C",
                    f"{kind} test key", "-f", str(path)], check=True, capture_output=True, timeout=120)
    return path.with_suffix(".pub").read_text().strip(), ssh.Identity.from_buffer(path.read_bytes())


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    binary = BUILD / "src" / "openrl" / "core" / "openrl_core_tests"
    assert binary.exists(), f"{binary} missing: build the openrl_core_tests target"
    out = tmp_path_factory.mktemp("age")
    identities = [x25519.Identity.generate() for _ in range(2)]
    recipients = [str(i.to_public()) for i in identities]
    # SSH keys too, as the tinker SDK allows them for exports: age's ssh-ed25519 and ssh-rsa stanzas.
    for kind, bits in [("ed25519", None), ("rsa", 2048), ("rsa", 3072)]:
        line, identity = ssh_key(out, kind, bits)
        recipients.append(line)
        identities.append(identity)
    env = dict(os.environ, OPENRL_AGE_VECTORS_DIR=str(out), OPENRL_AGE_RECIPIENTS=",".join(recipients))
    proc = subprocess.run([str(binary), "--gtest_filter=AgeVectors.WriteForPeer"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A skipped gtest also exits 0: insist that it ran.
    assert "[  PASSED  ] 1 test" in proc.stdout and "SKIPPED" not in proc.stdout, proc.stdout
    return out, identities


@pytest.mark.parametrize("size", SIZES)
def test_each_recipient_decrypts_alone(vectors, size):
    out, identities = vectors
    plain = (out / f"{size}.plain").read_bytes()
    sealed = (out / f"{size}.age").read_bytes()
    assert len(plain) == size
    assert len(identities) == 5  # 2 X25519, ssh-ed25519, ssh-rsa 2048 and 3072
    for identity in identities:
        assert pyrage.decrypt(sealed, [identity]) == plain
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(sealed, [x25519.Identity.generate()])
    if size == 1:  # an SSH key that is not a recipient, of each kind, finds no stanza of its own
        for kind, bits in [("ed25519", None), ("rsa", 2048)]:
            _, stranger = ssh_key(out / f"stranger-{size}", kind, bits)
            with pytest.raises(pyrage.DecryptError):
                pyrage.decrypt(sealed, [stranger])


def test_our_identity_encoding_matches_pyrage(vectors):
    out, _ = vectors
    identity = x25519.Identity.from_str((out / "generated.identity").read_text())
    assert str(identity.to_public()) == (out / "generated.recipient").read_text()
    assert pyrage.decrypt((out / "generated.age").read_bytes(), [identity]) == b"from our own identity"


def header_end(sealed: bytes) -> int:
    mac = sealed.index(b"\n--- ")
    return sealed.index(b"\n", mac + 1) + 1


def tampered_copies(sealed: bytes):
    """(what, bytes): one flipped byte in each part of the file, and truncations."""
    end = header_end(sealed)
    second_line = sealed.index(b"\n") + 1 + 12  # inside the first stanza's ephemeral share
    body = sealed.index(b"\n", second_line) + 5  # inside the first stanza's wrapped file key
    last_chunk = (len(sealed) - end - 16) % (CHUNK + 16) or CHUNK + 16
    for what, pos in [("version line", 3), ("stanza share", second_line), ("stanza body", body),
                      ("header MAC", end - 5), ("payload nonce", end + 3),
                      ("first chunk", end + 16 + 10), ("last tag", len(sealed) - 1)]:
        flipped = bytearray(sealed)
        flipped[pos] ^= 0x01
        yield what, bytes(flipped)
    yield "final chunk dropped", sealed[:-last_chunk]
    yield "last byte dropped", sealed[:-1]
    yield "byte appended", sealed + b"\x00"


@pytest.mark.parametrize("size", [1, 200000])
def test_tampering_is_detected(vectors, size):
    out, identities = vectors
    sealed = (out / f"{size}.age").read_bytes()
    assert pyrage.decrypt(sealed, identities[:1]) == (out / f"{size}.plain").read_bytes()
    for what, bad in tampered_copies(sealed):
        with pytest.raises(pyrage.DecryptError):
            pyrage.decrypt(bad, identities[:1])
            pytest.fail(f"{what}: pyrage accepted a tampered file")
