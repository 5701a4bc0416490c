#include "openrl/store/sqlite_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace openrl::store {
namespace {

std::string FreshDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/openrl_store_test_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

const Migration kTestMigrations[] = {
    {1, "settings", "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);"},
    {2, "things", R"sql(
       CREATE TABLE parents (id TEXT PRIMARY KEY);
       CREATE TABLE things (id INTEGER PRIMARY KEY, parent TEXT REFERENCES parents(id),
                            i INTEGER, r REAL, t TEXT, b BLOB);
     )sql"},
    {3, "counters", "CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);"
                    "INSERT INTO counters (name, n) VALUES ('c', 0);"},
};

std::unique_ptr<SqliteStore> MustOpen(const std::string& path, SqliteOptions opt = {}) {
  if (opt.migrations.data() == AllMigrations().data()) opt.migrations = kTestMigrations;
  Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(path, opt);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

Result<int64_t> Count(MetadataStore& store, const std::string& sql) {
  int64_t n = -1;
  Status st = store.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::vector<Row> rows, tx.Query(sql));
    if (rows.size() != 1) return Internal("expected one row from " + sql);
    OPENRL_ASSIGN_OR_RETURN(n, rows[0].Int64(rows[0].name(0)));
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return n;
}

TEST(SqliteStore, DefaultMigrationsCreateSettings) {
  std::string path = FreshDir("default") + "/sub/dir/openrl.db";  // parent dirs are created
  Result<std::unique_ptr<SqliteStore>> store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Result<SchemaState> state = ReadSchemaState(**store, AllMigrations());
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->current, static_cast<int64_t>(AllMigrations().size()));
  EXPECT_TRUE(state->pending.empty());
  EXPECT_TRUE((*store)->Transaction([](Tx& tx) {
    return tx.Exec("INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)", {"k", "v", "2026-11-27T00:00:00Z"})
        .status();
  }).ok());
}

TEST(SqliteStore, MigrationsAppliedOnceAndIdempotentOnReopen) {
  std::string path = FreshDir("idempotent") + "/m.db";
  {
    SqliteOptions two;
    two.migrations = std::span<const Migration>(kTestMigrations, 2);
    auto store = MustOpen(path, two);
    ASSERT_TRUE(store);
    EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM schema_migrations"), 2);
  }
  auto store = MustOpen(path);  // the third migration is pending and applied now
  ASSERT_TRUE(store);
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM schema_migrations"), 3);
  Result<std::vector<int64_t>> again = ApplyMigrations(*store, kTestMigrations);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  store.reset();
  store = MustOpen(path);
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM schema_migrations"), 3);
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM counters"), 1);  // migration 3's INSERT ran once
}

TEST(SqliteStore, NewerDatabaseIsRefused) {
  std::string path = FreshDir("newer") + "/n.db";
  ASSERT_TRUE(MustOpen(path));
  SqliteOptions old;
  old.migrations = std::span<const Migration>(kTestMigrations, 1);
  for (bool migrate : {true, false}) {
    old.migrate = migrate;
    Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(path, old);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kFailedPrecondition);
    EXPECT_NE(r.status().message().find(path), std::string::npos);
    EXPECT_NE(r.status().message().find("schema version 3 is newer"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("latest 1"), std::string::npos);
  }
}

TEST(SqliteStore, RenamedMigrationIsRefused) {
  std::string path = FreshDir("renamed") + "/r.db";
  ASSERT_TRUE(MustOpen(path, {.migrations = std::span<const Migration>(kTestMigrations, 1)}));
  const Migration other[] = {{1, "not_settings", "SELECT 1;"}};
  SqliteOptions opt;
  opt.migrations = other;
  Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(path, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("recorded as 'settings'"), std::string::npos) << r.status().message();
}

TEST(SqliteStore, BrokenMigrationRollsBackAndNamesStep) {
  std::string path = FreshDir("broken") + "/b.db";
  const Migration broken[] = {
      {1, "ok", "CREATE TABLE a (x INTEGER);"},
      {2, "half", "CREATE TABLE b (x INTEGER); CREATE TABLE oops (;"},
  };
  SqliteOptions opt;
  opt.migrations = broken;
  Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(path, opt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("migration 2 'half'"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  opt.migrations = std::span<const Migration>(broken, 1);
  auto store = MustOpen(path, opt);
  ASSERT_TRUE(store);
  Status st = store->Read([](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(bool b_exists, tx.TableExists("b"));
    OPENRL_ASSIGN_OR_RETURN(bool a_exists, tx.TableExists("a"));
    EXPECT_FALSE(b_exists);  // migration 2 left nothing behind
    EXPECT_TRUE(a_exists);
    return Status::Ok();
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST(SqliteStore, BadMigrationListIsAnInternalError) {
  const Migration gap[] = {{1, "a", "SELECT 1;"}, {3, "c", "SELECT 1;"}};
  SqliteOptions opt;
  opt.migrations = gap;
  Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(FreshDir("gap") + "/g.db", opt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInternal);
  EXPECT_TRUE(ValidateMigrations(AllMigrations()).ok());
}

TEST(SqliteStore, WalModeForeignKeysAndSynchronousAreOn) {
  std::string path = FreshDir("wal") + "/w.db";
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  Status st = store->Read([](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::optional<Row> mode, tx.QueryOne("PRAGMA journal_mode"));
    EXPECT_EQ(*mode->Text("journal_mode"), "wal");
    return Status::Ok();
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  st = store->Transaction([](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::optional<Row> sync, tx.QueryOne("PRAGMA synchronous"));
    EXPECT_EQ(*sync->Int64("synchronous"), 2);  // FULL
    return Status::Ok();
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(std::filesystem::exists(path + "-wal"));
  st = store->Transaction([](Tx& tx) {
    return tx.Exec("INSERT INTO things (id, parent) VALUES (1, 'no-such-parent')").status();
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("FOREIGN KEY"), std::string::npos) << st.message();
}

TEST(SqliteStore, TypedBindingRoundTrip) {
  auto store = MustOpen(FreshDir("types") + "/t.db");
  ASSERT_TRUE(store);
  const std::string blob("\x00\x01\xff zero", 8);
  Status st = store->Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<Statement> ins,
                            tx.Prepare("INSERT INTO things (id, i, r, t, b) VALUES (?, ?, ?, ?, ?)"));
    EXPECT_EQ(ins->ParameterCount(), 5);
    OPENRL_RETURN_IF_ERROR(ins->BindInt64(1, 1));
    OPENRL_RETURN_IF_ERROR(ins->BindInt64(2, INT64_MIN));
    OPENRL_RETURN_IF_ERROR(ins->BindDouble(3, 2.5));
    OPENRL_RETURN_IF_ERROR(ins->BindText(4, "héllo"));
    OPENRL_RETURN_IF_ERROR(ins->BindBlob(5, blob));
    OPENRL_ASSIGN_OR_RETURN(bool row, ins->Step());
    EXPECT_FALSE(row);
    EXPECT_EQ(ins->ChangedRows(), 1);
    OPENRL_RETURN_IF_ERROR(ins->Reset());
    OPENRL_RETURN_IF_ERROR(ins->BindAll({2, nullptr, nullptr, nullptr, nullptr}));
    OPENRL_ASSIGN_OR_RETURN(row, ins->Step());
    return Status::Ok();
  });
  ASSERT_TRUE(st.ok()) << st.ToString();
  st = store->Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::vector<Row> rows, tx.Query("SELECT id, i, r, t, b FROM things ORDER BY id"));
    EXPECT_EQ(rows.size(), 2u);
    EXPECT_EQ(*rows[0].Int64("i"), INT64_MIN);
    EXPECT_DOUBLE_EQ(*rows[0].Double("r"), 2.5);
    EXPECT_EQ(*rows[0].Text("t"), "héllo");
    EXPECT_EQ(*rows[0].Bytes("b"), blob);
    EXPECT_TRUE(*rows[1].IsNull("t"));
    EXPECT_EQ(*rows[1].OptionalInt64("i"), std::nullopt);
    EXPECT_EQ(*rows[0].OptionalText("t"), "héllo");
    Result<std::string> wrong = rows[0].Text("i");
    EXPECT_FALSE(wrong.ok());
    EXPECT_NE(wrong.status().message().find("column 'i': expected TEXT, got INTEGER"), std::string::npos);
    EXPECT_FALSE(rows[0].Int64("nope").ok());
    OPENRL_ASSIGN_OR_RETURN(std::optional<Row> none, tx.QueryOne("SELECT id FROM things WHERE id = ?", {99}));
    EXPECT_FALSE(none.has_value());
    return Status::Ok();
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST(SqliteStore, SqlErrorsNamePathAndStatement) {
  std::string path = FreshDir("sqlerr") + "/e.db";
  auto store = MustOpen(path);
  ASSERT_TRUE(store);
  Status st = store->Transaction([](Tx& tx) { return tx.Exec("SELECT * FROM missing_table").status(); });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("db " + path + ": prepare `SELECT * FROM missing_table`"), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("no such table"), std::string::npos);
  st = store->Transaction([](Tx& tx) { return tx.Exec("SELECT ?, ?", {1}).status(); });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(st.message().find("2 parameters, 1 values"), std::string::npos) << st.message();
  st = store->Transaction([](Tx& tx) { return tx.Exec("SELECT 1; SELECT 2").status(); });
  EXPECT_NE(st.message().find("more than one statement"), std::string::npos);
  st = store->Transaction([](Tx& tx) -> Status {
    OPENRL_RETURN_IF_ERROR(tx.Exec("INSERT INTO parents (id) VALUES ('p')").status());
    return tx.Exec("INSERT INTO parents (id) VALUES ('p')").status();
  });
  EXPECT_EQ(st.code(), ErrorCode::kAlreadyExists);
  EXPECT_NE(st.message().find("step `INSERT INTO parents"), std::string::npos) << st.message();
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM parents"), 0);  // the whole transaction rolled back
}

TEST(SqliteStore, TransactionRollsBackOnErrorStatusAndException) {
  auto store = MustOpen(FreshDir("rollback") + "/r.db");
  ASSERT_TRUE(store);
  Status st = store->Transaction([](Tx& tx) -> Status {
    OPENRL_RETURN_IF_ERROR(tx.Exec("INSERT INTO parents (id) VALUES ('a')").status());
    return NotFound("run run_123 not found");
  });
  EXPECT_EQ(st.code(), ErrorCode::kNotFound);
  EXPECT_EQ(st.message(), "run run_123 not found");  // returned unchanged
  st = store->Transaction([](Tx& tx) -> Status {
    (void)tx.Exec("INSERT INTO parents (id) VALUES ('b')");
    throw std::runtime_error("boom");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("boom"), std::string::npos);
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM parents"), 0);
  EXPECT_TRUE(store->Transaction([](Tx& tx) { return tx.Exec("INSERT INTO parents (id) VALUES ('c')").status(); }).ok());
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM parents"), 1);
}

TEST(SqliteStore, NestedTransactionIsAnErrorNotADeadlock) {
  auto store = MustOpen(FreshDir("nested") + "/n.db");
  ASSERT_TRUE(store);
  Status inner;
  Status outer = store->Transaction([&](Tx&) -> Status {
    inner = store->Transaction([](Tx&) { return Status::Ok(); });
    return Status::Ok();
  });
  EXPECT_TRUE(outer.ok());
  EXPECT_EQ(inner.code(), ErrorCode::kFailedPrecondition);
}

TEST(SqliteStore, ReadTransactionsCannotWrite) {
  auto store = MustOpen(FreshDir("readonly") + "/ro.db");
  ASSERT_TRUE(store);
  Status st = store->Read([](Tx& tx) {
    EXPECT_TRUE(tx.read_only());
    return tx.Exec("INSERT INTO parents (id) VALUES ('x')").status();
  });
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(*Count(*store, "SELECT COUNT(*) FROM parents"), 0);
}

TEST(SqliteStore, ConcurrentWritersAndReaders) {
  std::string path = FreshDir("concurrent") + "/c.db";
  auto a = MustOpen(path);
  auto b = MustOpen(path);  // a second store on the same file stands in for a second process
  ASSERT_TRUE(a && b);
  constexpr int kWriters = 4, kIncrements = 15;
  std::atomic<bool> writing{true};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    MetadataStore* s = w % 2 ? b.get() : a.get();
    threads.emplace_back([s, &failures] {
      for (int i = 0; i < kIncrements; ++i) {
        Status st = s->Transaction([](Tx& tx) -> Status {
          OPENRL_ASSIGN_OR_RETURN(std::optional<Row> row, tx.QueryOne("SELECT n FROM counters WHERE name = 'c'"));
          if (!row) return NotFound("counter row missing");
          OPENRL_ASSIGN_OR_RETURN(int64_t n, row->Int64("n"));
          return tx.Exec("UPDATE counters SET n = ? WHERE name = 'c'", {n + 1}).status();
        });
        if (!st.ok()) failures.fetch_add(1);
      }
    });
  }
  std::atomic<int64_t> reads{0};
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, s = r ? b.get() : a.get()] {
      int64_t last = 0;
      while (writing.load()) {
        Result<int64_t> n = Count(*s, "SELECT n FROM counters WHERE name = 'c'");
        if (!n.ok() || *n < last) failures.fetch_add(1);  // never an error, never backwards
        if (n.ok()) last = *n;
        reads.fetch_add(1);
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  writing.store(false);
  for (size_t i = kWriters; i < threads.size(); ++i) threads[i].join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(*Count(*a, "SELECT n FROM counters WHERE name = 'c'"), kWriters * kIncrements);
}

TEST(SqliteStore, DurableAcrossCloseAndReopen) {
  std::string path = FreshDir("durable") + "/d.db";
  {
    auto store = MustOpen(path);
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Transaction([](Tx& tx) {
      return tx.Exec("INSERT INTO settings (key, value, updated_at) VALUES ('model', 'qwen3', 'now')").status();
    }).ok());
  }
  auto store = MustOpen(path, SqliteOptions{.create_if_missing = false, .migrate = false});
  ASSERT_TRUE(store);
  Status st = store->Read([](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::optional<Row> row, tx.QueryOne("SELECT value FROM settings WHERE key = ?", {"model"}));
    if (!row) return NotFound("setting 'model' lost after reopen");
    EXPECT_EQ(*row->Text("value"), "qwen3");
    return Status::Ok();
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST(SqliteStore, MissingFileWithoutCreateIsNotFound) {
  std::string path = FreshDir("missing") + "/absent.db";
  Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(path, {.create_if_missing = false});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(r.status().message().find(path), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(SqliteStore::Open(":memory:").ok());
}

TEST(SqliteStore, CorruptFileIsAClearErrorNotACrash) {
  std::string dir = FreshDir("corrupt");
  std::string garbage = dir + "/garbage.db";
  std::ofstream(garbage) << std::string(8192, 'x');
  Result<std::unique_ptr<SqliteStore>> r = SqliteStore::Open(garbage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kDataLoss);
  EXPECT_NE(r.status().message().find(garbage), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("not a database"), std::string::npos) << r.status().message();

  // A real database whose pages were overwritten after the header.
  std::string damaged = dir + "/damaged.db";
  {
    auto store = MustOpen(damaged);
    ASSERT_TRUE(store);
  }
  std::filesystem::remove(damaged + "-wal");
  std::filesystem::remove(damaged + "-shm");
  auto size = std::filesystem::file_size(damaged);
  ASSERT_GT(size, 4096u);
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    std::string junk(static_cast<size_t>(size) - 100, '\xA5');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  r = SqliteStore::Open(damaged, {.migrations = kTestMigrations});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find(damaged), std::string::npos);
}

}  // namespace
}  // namespace openrl::store
