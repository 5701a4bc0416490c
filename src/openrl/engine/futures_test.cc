#include "openrl/engine/futures.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "openrl/store/sqlite_store.h"

namespace openrl::engine {
namespace {

std::unique_ptr<store::SqliteStore> FreshDb(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/futures_test_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto db = store::SqliteStore::Open(dir + "/f.db");
  EXPECT_TRUE(db.ok()) << db.status().message();
  return std::move(db).value();
}

TEST(FutureStore, CompletesAndWakesWaiters) {
  auto db = FreshDb("complete");
  FutureStore futures(*db);
  auto f = futures.Create("optim_step", "key_a", std::string("run1"), 1, "h1");
  ASSERT_TRUE(f.ok() && f->created);
  std::promise<FutureRecord> got;
  futures.Await(f->id, std::chrono::steady_clock::now() + std::chrono::seconds(30),
                [&](Result<FutureRecord> r) { got.set_value(*r); });
  futures.Complete(f->id, "{\"metrics\":{}}", "json");
  auto fut = got.get_future();
  ASSERT_EQ(fut.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  FutureRecord rec = fut.get();
  EXPECT_EQ(rec.state, "done");
  EXPECT_EQ(rec.result, "{\"metrics\":{}}");
  EXPECT_EQ(rec.result_format, "json");
  // Completing twice changes nothing.
  futures.Fail(f->id, "late", "server");
  futures.Flush();
  EXPECT_EQ(futures.Get(f->id)->state, "done");
}

// The hook (the API commits its usage counts there) runs on the writer before the outcome it
// precedes is committed: the future is still pending when it runs, and done after.
TEST(FutureStore, BeforeCommitRunsBeforeTheOutcomeIsCommitted) {
  auto db = FreshDb("before_commit");
  FutureStore futures(*db);
  auto f = futures.Create("forward", "key_a", std::string("run1"), 1, "h1");
  ASSERT_TRUE(f.ok());
  std::vector<std::string> seen;
  futures.SetBeforeCommit([&] { seen.push_back(futures.Get(f->id)->state); });
  futures.Complete(f->id, "r", "json");
  futures.Flush();
  EXPECT_EQ(seen, std::vector<std::string>{"pending"});
  EXPECT_EQ(futures.Get(f->id)->state, "done");
}

TEST(FutureStore, SameSeqIdIsIdempotentOnlyForTheSameRequest) {
  auto db = FreshDb("idempotent");
  FutureStore futures(*db);
  auto a = futures.Create("forward_backward", "key_a", std::string("run1"), 3, "hash-x");
  auto b = futures.Create("forward_backward", "key_a", std::string("run1"), 3, "hash-x");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->id, b->id);
  EXPECT_FALSE(b->created);
  auto c = futures.Create("forward_backward", "key_a", std::string("run1"), 3, "hash-y");
  EXPECT_EQ(c.status().code(), ErrorCode::kAlreadyExists);
  auto other_run = futures.Create("forward_backward", "key_a", std::string("run2"), 3, "hash-y");
  EXPECT_TRUE(other_run.ok() && other_run->created);
}

TEST(FutureStore, DiscardForgetsOnlyAPendingFutureSoARetryIsAcceptedAnew) {
  auto db = FreshDb("discard");
  FutureStore futures(*db);
  auto refused = futures.Create("forward_backward", "key_a", std::string("run1"), 4, "hash-x");
  ASSERT_TRUE(refused.ok() && refused->created);
  ASSERT_TRUE(futures.Discard(refused->id).ok());
  EXPECT_EQ(futures.Get(refused->id).status().code(), ErrorCode::kNotFound);
  // The same request again (the SDK's retry after a 429) is a new future, not the refused one.
  auto retry = futures.Create("forward_backward", "key_a", std::string("run1"), 4, "hash-x");
  ASSERT_TRUE(retry.ok());
  EXPECT_TRUE(retry->created);
  EXPECT_NE(retry->id, refused->id);
  // A future with an outcome is kept.
  futures.Complete(retry->id, "{}", "json");
  futures.Flush();
  EXPECT_EQ(futures.Discard(retry->id).code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(futures.Get(retry->id)->state, "done");
}

TEST(FutureStore, PendingWaitTimesOutAndUnknownIdIsNotFound) {
  auto db = FreshDb("timeout");
  FutureStore futures(*db);
  auto f = futures.Create("sample", "key_a", std::nullopt, std::nullopt, "h");
  std::promise<Result<FutureRecord>> got;
  auto start = std::chrono::steady_clock::now();
  futures.Await(f->id, start + std::chrono::milliseconds(300), [&](Result<FutureRecord> r) { got.set_value(r); });
  auto r = got.get_future().get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, "pending");
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(250));
  std::promise<Result<FutureRecord>> missing;
  futures.Await("fut_nope", start, [&](Result<FutureRecord> r) { missing.set_value(r); });
  EXPECT_EQ(missing.get_future().get().status().code(), ErrorCode::kNotFound);
}

TEST(FutureStore, RestartFailsWhatWasPendingAndKeepsResults) {
  std::string dir = ::testing::TempDir() + "/futures_test_restart";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string done_id, pending_id;
  {
    auto db = store::SqliteStore::Open(dir + "/f.db");
    ASSERT_TRUE(db.ok());
    FutureStore futures(**db);
    done_id = futures.Create("save_weights", "k", std::string("r"), 1, "a")->id;
    pending_id = futures.Create("forward_backward", "k", std::string("r"), 2, "b")->id;
    futures.Complete(done_id, "{\"path\":\"tinker://r/weights/x\"}", "json");
  }
  auto db = store::SqliteStore::Open(dir + "/f.db");
  ASSERT_TRUE(db.ok());
  FutureStore futures(**db);
  ASSERT_TRUE(futures.RecoverAfterRestart().ok());
  EXPECT_EQ(futures.Get(done_id)->state, "done");
  EXPECT_EQ(futures.Get(done_id)->result, "{\"path\":\"tinker://r/weights/x\"}");
  auto failed = futures.Get(pending_id);
  EXPECT_EQ(failed->state, "failed");
  EXPECT_EQ(failed->error_category, "server");
  EXPECT_NE(failed->error.find("restarted"), std::string::npos);
}

}  // namespace
}  // namespace openrl::engine
