// SqliteStore: the embedded MetadataStore backend (one file, WAL mode).
//
// Settings, and why:
//  * journal_mode=WAL: readers never block the writer nor each other.
//  * synchronous=FULL: a transaction that returned OK survives power loss. The metadata holds
//    approvals, audit events and registry entries that were acknowledged to a person or a client;
//    with NORMAL, WAL commits can be lost on power failure. Metadata writes are few and small, so
//    an fsync per commit is affordable.
//  * foreign_keys=ON, busy_timeout (default 5 s) so other processes' writers are waited for.
// Concurrency: one writer connection behind a mutex (Transaction uses BEGIN IMMEDIATE), plus a
// pool of read-only connections (query_only) handed out per Read call.
#pragma once

#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "openrl/store/metadata_store.h"
#include "openrl/store/migrations.h"

struct sqlite3;

namespace openrl::store {

struct SqliteOptions {
  int busy_timeout_ms = 5000;
  size_t max_idle_readers = 4;
  // When false, a missing file is NOT_FOUND instead of being created (with parent directories).
  bool create_if_missing = true;
  // When true, pending migrations are applied on open; otherwise the schema is only checked
  // (a database newer than this binary is refused either way).
  bool migrate = true;
  std::span<const Migration> migrations = AllMigrations();
};

class SqliteStore final : public MetadataStore {
 public:
  // Errors name the path and the step (open, PRAGMA, migration); a corrupt or non-SQLite file is
  // DATA_LOSS.
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path, const SqliteOptions& options = {});
  ~SqliteStore() override;

  Status Transaction(const std::function<Status(Tx&)>& fn) override;
  Status Read(const std::function<Status(Tx&)>& fn) override;
  const std::string& location() const override { return path_; }
  std::string_view backend() const override { return "sqlite"; }

 private:
  SqliteStore(std::string path, SqliteOptions options);
  Status OpenWriter();
  Result<sqlite3*> OpenReader();
  Result<sqlite3*> AcquireReader();
  void ReleaseReader(sqlite3* db);
  Status RunTx(sqlite3* db, bool write, const std::function<Status(Tx&)>& fn);

  const std::string path_;
  const SqliteOptions options_;
  std::mutex write_mu_;
  sqlite3* writer_ = nullptr;
  std::mutex readers_mu_;
  std::vector<sqlite3*> idle_readers_;
};

}  // namespace openrl::store
