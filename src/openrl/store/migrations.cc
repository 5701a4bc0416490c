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
    {3, "tinker_account", R"sql(
      -- Publishing (other keys may read a public checkpoint), sessions' projects, names and finish
      -- reasons, clones of a sampling session (join_sampling_session).
      ALTER TABLE checkpoints ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE api_sessions ADD COLUMN project_id TEXT;
      ALTER TABLE api_sessions ADD COLUMN display_name TEXT;
      ALTER TABLE api_sessions ADD COLUMN finish_reason TEXT;
      ALTER TABLE sampling_sessions ADD COLUMN clients INTEGER NOT NULL DEFAULT 0;
      -- What each key did (and what others did with its published checkpoints), in order.
      CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        owner_key_id TEXT,
        at TEXT NOT NULL,
        event TEXT NOT NULL,
        category TEXT NOT NULL,
        details TEXT NOT NULL
      );
      CREATE INDEX audit_log_key ON audit_log (key_id, at);
      CREATE INDEX audit_log_owner ON audit_log (owner_key_id, at);
      -- Work the engine completed, per key and UTC hour.
      CREATE TABLE usage_hours (
        key_id TEXT NOT NULL,
        bucket_start TEXT NOT NULL,
        kind TEXT NOT NULL,
        base_model TEXT NOT NULL,
        session_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (key_id, bucket_start, kind, base_model, session_id)
      );
      -- Sample requests by sampling session and clone, for retrieve_futures; `cursor` is set once
      -- a poll has reported the request finished.
      CREATE TABLE sample_requests (
        future_id TEXT PRIMARY KEY,
        sampling_session_id TEXT NOT NULL,
        clone_id INTEGER NOT NULL,
        cursor INTEGER,
        created_at TEXT NOT NULL
      );
      CREATE INDEX sample_requests_target ON sample_requests (sampling_session_id, clone_id, cursor);
      -- Responses of requests made idempotent by X-Idempotency-Key (copy_weights).
      CREATE TABLE idempotent_requests (
        key_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (key_id, idempotency_key)
      );
    )sql"},
    {4, "custom_losses", R"sql(
      -- Custom losses made by create_custom_loss (SDK 0.38): the validated graph as JSON, owned by
      -- its key and session; (session_id, seq_id) makes the SDK's retries idempotent.
      CREATE TABLE custom_losses (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        seq_id INTEGER NOT NULL,
        name TEXT NOT NULL,
        inputs TEXT NOT NULL,
        graph TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (session_id, seq_id)
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
