#include "openrl/store/sqlite_store.h"

#include <sqlite3.h>

#include <cctype>
#include <exception>
#include <filesystem>

#include "openrl/core/fs.h"

namespace openrl::store {
namespace {

std::string ShortSql(std::string_view sql) {
  size_t b = sql.find_first_not_of(" \t\r\n");
  sql = b == std::string_view::npos ? std::string_view() : sql.substr(b);
  std::string s(sql.substr(0, 120));
  for (char& c : s) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  return sql.size() > 120 ? s + "…" : s;
}

// Maps an SQLite result code to the OpenRL error that tells the caller what to do.
Status SqliteError(sqlite3* db, int rc, const std::string& path, std::string_view step) {
  std::string msg = "db " + path + ": " + std::string(step) + ": " +
                    (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) return AlreadyExists(std::move(msg));
      return FailedPrecondition(std::move(msg));
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Unavailable(std::move(msg));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return DataLoss(std::move(msg));
    case SQLITE_FULL: return ResourceExhausted(std::move(msg));
    case SQLITE_READONLY: return FailedPrecondition(std::move(msg));
    case SQLITE_CANTOPEN: return NotFound(std::move(msg));
    case SQLITE_PERM:
    case SQLITE_AUTH: return PermissionDenied(std::move(msg));
    default: return Internal(std::move(msg));
  }
}

Status ExecSimple(sqlite3* db, std::string_view sql, const std::string& path) {
  std::string s(sql);
  int rc = sqlite3_exec(db, s.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, sqlite3_extended_errcode(db), path, "`" + ShortSql(sql) + "`");
  return Status::Ok();
}

// Runs a PRAGMA that returns one value and returns it as text.
Result<std::string> PragmaValue(sqlite3* db, const std::string& pragma, const std::string& path) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, pragma.c_str(), -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, sqlite3_extended_errcode(db), path, pragma);
  rc = sqlite3_step(stmt);
  std::string value;
  if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0)) value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqliteError(db, sqlite3_extended_errcode(db), path, pragma);
  return value;
}

class SqliteStatement final : public Statement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* stmt, std::string sql, const std::string& path)
      : db_(db), stmt_(stmt), sql_(std::move(sql)), path_(path) {}
  ~SqliteStatement() override { sqlite3_finalize(stmt_); }

  Status Bind(int index, const Value& v) override {
    int rc = SQLITE_OK;
    switch (v.type()) {
      case Value::Type::kNull: rc = sqlite3_bind_null(stmt_, index); break;
      case Value::Type::kInt64: rc = sqlite3_bind_int64(stmt_, index, v.int64()); break;
      case Value::Type::kDouble: rc = sqlite3_bind_double(stmt_, index, v.real()); break;
      case Value::Type::kText:
        rc = sqlite3_bind_text64(stmt_, index, v.text().data(), v.text().size(), SQLITE_TRANSIENT, SQLITE_UTF8);
        break;
      case Value::Type::kBlob:
        rc = sqlite3_bind_blob64(stmt_, index, v.blob().data(), v.blob().size(), SQLITE_TRANSIENT);
        break;
    }
    if (rc != SQLITE_OK) return Error(rc, "bind parameter " + std::to_string(index));
    return Status::Ok();
  }

  int ParameterCount() const override { return sqlite3_bind_parameter_count(stmt_); }

  Result<bool> Step() override {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) {
      changes_ = sqlite3_changes64(db_);
      return false;
    }
    return Error(sqlite3_extended_errcode(db_), "step");
  }

  Row ReadRow() const override {
    const int n = sqlite3_column_count(stmt_);
    if (!names_) {
      auto names = std::make_shared<std::vector<std::string>>();
      for (int i = 0; i < n; ++i) names->emplace_back(sqlite3_column_name(stmt_, i));
      names_ = std::move(names);
    }
    std::vector<Value> values;
    values.reserve(n);
    for (int i = 0; i < n; ++i) values.push_back(Column(i));
    return Row(names_, std::move(values));
  }

  int64_t ChangedRows() const override { return changes_; }

  Status Reset() override {
    sqlite3_reset(stmt_);  // returns the last step's error, already reported by Step
    sqlite3_clear_bindings(stmt_);
    changes_ = 0;
    return Status::Ok();
  }

 private:
  Value Column(int i) const {
    switch (sqlite3_column_type(stmt_, i)) {
      case SQLITE_INTEGER: return Value(static_cast<int64_t>(sqlite3_column_int64(stmt_, i)));
      case SQLITE_FLOAT: return Value(sqlite3_column_double(stmt_, i));
      case SQLITE_TEXT: {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
        return Value(std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i))));
      }
      case SQLITE_BLOB: {
        const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, i));
        size_t len = static_cast<size_t>(sqlite3_column_bytes(stmt_, i));
        return Value(Blob{p ? std::string(p, len) : std::string()});
      }
      default: return Value();
    }
  }

  Status Error(int rc, std::string_view what) const {
    return SqliteError(db_, rc, path_, std::string(what) + " `" + ShortSql(sql_) + "`");
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  std::string sql_;
  const std::string& path_;
  int64_t changes_ = 0;
  mutable std::shared_ptr<const std::vector<std::string>> names_;
};

class SqliteTx final : public Tx {
 public:
  SqliteTx(sqlite3* db, const std::string& path, bool read_only) : db_(db), path_(path), read_only_(read_only) {}

  Result<std::unique_ptr<Statement>> Prepare(std::string_view sql) override {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, &tail);
    if (rc != SQLITE_OK) return SqliteError(db_, sqlite3_extended_errcode(db_), path_, "prepare `" + ShortSql(sql) + "`");
    if (!stmt) return InvalidArgument("db " + path_ + ": prepare: empty SQL statement");
    std::string_view rest = tail ? sql.substr(static_cast<size_t>(tail - sql.data())) : std::string_view();
    if (rest.find_first_not_of(" \t\r\n;") != std::string_view::npos) {
      sqlite3_finalize(stmt);
      return InvalidArgument("db " + path_ + ": prepare `" + ShortSql(sql) +
                             "`: more than one statement (use ExecScript for scripts)");
    }
    return std::unique_ptr<Statement>(std::make_unique<SqliteStatement>(db_, stmt, std::string(sql), path_));
  }

  Status ExecScript(std::string_view sql) override { return ExecSimple(db_, sql, path_); }

  Result<bool> TableExists(std::string_view table) override {
    OPENRL_ASSIGN_OR_RETURN(std::optional<Row> row,
                            QueryOne("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", {table}));
    return row.has_value();
  }

  bool read_only() const override { return read_only_; }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool read_only_;
};

// The store whose write transaction this thread is inside, to refuse nested Transaction calls
// (they would deadlock on the writer mutex).
thread_local const SqliteStore* t_in_write_tx = nullptr;

}  // namespace

SqliteStore::SqliteStore(std::string path, SqliteOptions options) : path_(std::move(path)), options_(options) {}

SqliteStore::~SqliteStore() {
  for (sqlite3* db : idle_readers_) sqlite3_close_v2(db);
  if (writer_) sqlite3_close_v2(writer_);
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path, const SqliteOptions& options) {
  OPENRL_RETURN_IF_ERROR(ValidateMigrations(options.migrations));
  if (path.empty() || path == ":memory:" || path.starts_with("file:"))
    return InvalidArgument("db '" + path + "': expected a file path (WAL mode needs a real file)");
  if (!fs::Exists(path)) {
    if (!options.create_if_missing)
      return NotFound("db " + path + ": no such database file (create it with `openrl db migrate --db " + path + "`)");
    std::string parent = std::filesystem::path(path).parent_path().string();
    if (!parent.empty()) OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(parent).WithContext("db " + path));
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, options));
  OPENRL_RETURN_IF_ERROR(store->OpenWriter());
  if (options.migrate) {
    OPENRL_RETURN_IF_ERROR(ApplyMigrations(*store, options.migrations).status());
  } else {
    OPENRL_RETURN_IF_ERROR(ReadSchemaState(*store, options.migrations).status());
  }
  return store;
}

Status SqliteStore::OpenWriter() {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (options_.create_if_missing ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path_.c_str(), &writer_, flags, nullptr);
  if (rc != SQLITE_OK) return SqliteError(writer_, rc, path_, "open");
  sqlite3_extended_result_codes(writer_, 1);
  sqlite3_busy_timeout(writer_, options_.busy_timeout_ms);
  OPENRL_ASSIGN_OR_RETURN(std::string mode, PragmaValue(writer_, "PRAGMA journal_mode=WAL", path_));
  if (mode != "wal")
    return FailedPrecondition("db " + path_ + ": PRAGMA journal_mode=WAL: the database stays in '" + mode +
                              "' mode (is the file on a filesystem without shared memory support?)");
  OPENRL_RETURN_IF_ERROR(ExecSimple(writer_, "PRAGMA synchronous=FULL", path_));
  OPENRL_RETURN_IF_ERROR(ExecSimple(writer_, "PRAGMA foreign_keys=ON", path_));
  OPENRL_ASSIGN_OR_RETURN(std::string fk, PragmaValue(writer_, "PRAGMA foreign_keys", path_));
  if (fk != "1") return FailedPrecondition("db " + path_ + ": this SQLite build cannot enforce foreign keys");
  return Status::Ok();
}

Result<sqlite3*> SqliteStore::OpenReader() {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status st = SqliteError(db, rc, path_, "open reader");
    sqlite3_close_v2(db);
    return st;
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, options_.busy_timeout_ms);
  Status st = ExecSimple(db, "PRAGMA query_only=ON", path_);
  if (!st.ok()) {
    sqlite3_close_v2(db);
    return st;
  }
  return db;
}

Result<sqlite3*> SqliteStore::AcquireReader() {
  {
    std::lock_guard<std::mutex> lock(readers_mu_);
    if (!idle_readers_.empty()) {
      sqlite3* db = idle_readers_.back();
      idle_readers_.pop_back();
      return db;
    }
  }
  return OpenReader();
}

void SqliteStore::ReleaseReader(sqlite3* db) {
  std::lock_guard<std::mutex> lock(readers_mu_);
  if (idle_readers_.size() < options_.max_idle_readers) {
    idle_readers_.push_back(db);
  } else {
    sqlite3_close_v2(db);
  }
}

Status SqliteStore::RunTx(sqlite3* db, bool write, const std::function<Status(Tx&)>& fn) {
  OPENRL_RETURN_IF_ERROR(ExecSimple(db, write ? "BEGIN IMMEDIATE" : "BEGIN", path_));
  SqliteTx tx(db, path_, /*read_only=*/!write);
  Status st;
  try {
    st = fn(tx);
  } catch (const std::exception& e) {
    st = StatusFromException(e);  // a mistyped input field (INVALID_ARGUMENT) is the caller's error
    if (st.code() != ErrorCode::kInvalidArgument)
      st = StatusFromException(e, "db " + path_ + ": transaction callback threw");
  } catch (...) {
    st = Internal("db " + path_ + ": transaction callback threw a non-standard exception");
  }
  if (st.ok()) st = ExecSimple(db, "COMMIT", path_);
  // A failed statement may already have rolled the transaction back (SQLITE_FULL, IOERR, …).
  if (!sqlite3_get_autocommit(db)) (void)ExecSimple(db, "ROLLBACK", path_);
  return st;
}

Status SqliteStore::Transaction(const std::function<Status(Tx&)>& fn) {
  if (t_in_write_tx == this)
    return FailedPrecondition("db " + path_ + ": Transaction called inside another Transaction; pass the Tx down");
  std::lock_guard<std::mutex> lock(write_mu_);
  const SqliteStore* outer = t_in_write_tx;  // a transaction on another store may be open
  t_in_write_tx = this;
  Status st = RunTx(writer_, /*write=*/true, fn);
  t_in_write_tx = outer;
  return st;
}

Status SqliteStore::Read(const std::function<Status(Tx&)>& fn) {
  OPENRL_ASSIGN_OR_RETURN(sqlite3* db, AcquireReader());
  Status st = RunTx(db, /*write=*/false, fn);
  ReleaseReader(db);
  return st;
}

}  // namespace openrl::store
