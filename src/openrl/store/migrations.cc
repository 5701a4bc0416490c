#include "openrl/store/migrations.h"

#include <algorithm>
#include <map>

namespace openrl::store {
namespace {

// The schema, in order. Append only: {next version, "short_name", R"sql(...)sql"}.
constexpr Migration kMigrations[] = {
    {1, "settings", R"sql(
      CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    )sql"},
    {2, "tinker_api", R"sql(
      CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        max_concurrent_requests INTEGER NOT NULL,
        token_quota INTEGER NOT NULL,
        tokens_used INTEGER NOT NULL
      );
      CREATE TABLE base_models (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        added_at TEXT NOT NULL
      );
      CREATE TABLE api_sessions (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        tags TEXT NOT NULL,
        user_metadata TEXT NOT NULL,
        sdk_version TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_heartbeat_at TEXT NOT NULL
      );
      CREATE TABLE training_runs (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        key_id TEXT NOT NULL,
        base_model TEXT NOT NULL,
        lora_rank INTEGER NOT NULL,
        lora_config TEXT NOT NULL,
        user_metadata TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at TEXT NOT NULL,
        last_request_at TEXT NOT NULL
      );
      CREATE TABLE futures (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        run_id TEXT,
        seq_id INTEGER,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        result BLOB,
        result_format TEXT,
        error TEXT,
        error_category TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        expires_at TEXT NOT NULL
      );
      CREATE UNIQUE INDEX futures_run_seq ON futures (run_id, seq_id)
        WHERE run_id IS NOT NULL AND seq_id IS NOT NULL;
      CREATE INDEX futures_state ON futures (state);
      CREATE TABLE checkpoints (
        run_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        user_metadata TEXT NOT NULL,
        PRIMARY KEY (run_id, kind, name)
      );
      CREATE TABLE sampling_sessions (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        base_model TEXT NOT NULL,
        model_path TEXT,
        created_at TEXT NOT NULL
      );
    )sql"},
};

constexpr const char* kCreateMigrationsTable = R"sql(
  CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
  );
)sql";

// version → name of every applied migration (empty when the table does not exist yet).
Result<std::map<int64_t, std::string>> AppliedMigrations(Tx& tx) {
  std::map<int64_t, std::string> applied;
  OPENRL_ASSIGN_OR_RETURN(bool exists, tx.TableExists("schema_migrations"));
  if (!exists) return applied;
  OPENRL_ASSIGN_OR_RETURN(std::vector<Row> rows, tx.Query("SELECT version, name FROM schema_migrations ORDER BY version"));
  for (const Row& row : rows) {
    OPENRL_ASSIGN_OR_RETURN(int64_t version, row.Int64("version"));
    OPENRL_ASSIGN_OR_RETURN(std::string name, row.Text("name"));
    applied[version] = std::move(name);
  }
  return applied;
}

Result<SchemaState> Compare(const std::map<int64_t, std::string>& applied, std::span<const Migration> migrations,
                            const std::string& where) {
  SchemaState state;
  state.latest = migrations.empty() ? 0 : migrations.back().version;
  state.current = applied.empty() ? 0 : applied.rbegin()->first;
  if (state.current > state.latest)
    return FailedPrecondition(where + ": schema version " + std::to_string(state.current) +
                              " is newer than this openrl binary knows (latest " + std::to_string(state.latest) +
                              "); use a newer openrl, or restore a backup made for this version");
  for (const Migration& m : migrations) {
    auto it = applied.find(m.version);
    if (it == applied.end()) {
      state.pending.push_back(&m);
    } else if (it->second != m.name) {
      return FailedPrecondition(where + ": migration " + std::to_string(m.version) + " is recorded as '" + it->second +
                                "' but this openrl binary calls it '" + m.name +
                                "'; the database was created by a different build");
    }
  }
  return state;
}

}  // namespace

std::span<const Migration> AllMigrations() { return kMigrations; }

Status ValidateMigrations(std::span<const Migration> migrations) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    if (m.version != static_cast<int64_t>(i) + 1)
      return Internal("migration list: entry " + std::to_string(i) + " has version " + std::to_string(m.version) +
                      ", expected " + std::to_string(i + 1));
    if (m.name == nullptr || *m.name == '\0' || m.sql == nullptr)
      return Internal("migration list: version " + std::to_string(m.version) + " needs a name and SQL");
  }
  return Status::Ok();
}

Result<SchemaState> ReadSchemaState(MetadataStore& store, std::span<const Migration> migrations) {
  OPENRL_RETURN_IF_ERROR(ValidateMigrations(migrations));
  std::map<int64_t, std::string> applied;
  OPENRL_RETURN_IF_ERROR(store.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(applied, AppliedMigrations(tx));
    return Status::Ok();
  }));
  return Compare(applied, migrations, "db " + store.location());
}

Result<std::vector<int64_t>> ApplyMigrations(MetadataStore& store, std::span<const Migration> migrations,
                                             Clock& clock) {
  OPENRL_RETURN_IF_ERROR(ValidateMigrations(migrations));
  const std::string where = "db " + store.location();
  OPENRL_RETURN_IF_ERROR(store.Transaction([&](Tx& tx) -> Status {
    OPENRL_RETURN_IF_ERROR(tx.ExecScript(kCreateMigrationsTable));
    OPENRL_ASSIGN_OR_RETURN(auto applied, AppliedMigrations(tx));
    return Compare(applied, migrations, where).status();  // refuse a newer database before touching it
  }));
  std::vector<int64_t> done;
  for (const Migration& m : migrations) {
    // Re-read inside each transaction: another process may have migrated meanwhile.
    Status st = store.Transaction([&](Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(auto applied, AppliedMigrations(tx));
      OPENRL_ASSIGN_OR_RETURN(SchemaState state, Compare(applied, migrations, where));
      if (std::find(state.pending.begin(), state.pending.end(), &m) == state.pending.end()) return Status::Ok();
      Status ran = tx.ExecScript(m.sql);
      if (!ran.ok()) return ran.WithContext("migration " + std::to_string(m.version) + " '" + m.name + "'");
      OPENRL_RETURN_IF_ERROR(tx.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                                     {m.version, m.name, FormatIso8601Utc(clock.Now())})
                                 .status());
      done.push_back(m.version);
      return Status::Ok();
    });
    OPENRL_RETURN_IF_ERROR(st);
  }
  return done;
}

}  // namespace openrl::store
