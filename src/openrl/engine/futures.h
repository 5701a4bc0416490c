// Durable futures: every asynchronous request of the training API is a row in the metadata store
// (table `futures`) from the moment it is accepted until its result is retrieved or expires.
// Results are opaque bytes with a format ("json" or "proto") chosen by the API layer.
//
// Waiting is event-driven: Await registers a callback that fires once when the future finishes or
// its deadline passes (a long poll holds no thread). Results are committed by a writer thread in
// batches (one transaction, one fsync for every result that finished meanwhile), so the engine
// never waits on the disk; waiters are woken once their result is committed. After a restart,
// RecoverAfterRestart fails every future that was accepted but not finished, saying why.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/store/metadata_store.h"

namespace openrl::engine {

struct FutureRecord {
  std::string id;
  std::string key_id;
  std::string kind;            // "forward_backward", "optim_step", "sample", ...
  std::string state;           // "pending" | "done" | "failed"
  std::optional<std::string> run_id;
  std::optional<int64_t> seq_id;
  std::string request_hash;    // sha256 of the request, for idempotent retries
  std::string result;          // when done
  std::string result_format;   // "json" | "proto"
  std::string error;           // when failed
  std::string error_category;  // "user" | "server"
  bool finished() const { return state != "pending"; }
};

struct FutureOptions {
  std::chrono::seconds result_ttl{24 * 3600};  // an unretrieved result is kept this long
};

class FutureStore {
 public:
  FutureStore(store::MetadataStore& db, FutureOptions options = {});
  ~FutureStore();
  FutureStore(const FutureStore&) = delete;
  FutureStore& operator=(const FutureStore&) = delete;

  // Fails every pending future left by a previous process (their work was in memory).
  Status RecoverAfterRestart();

  // Inserts a pending future. With run_id and seq_id set, the pair is unique: a retry of the same
  // request (same hash) returns the existing id (created = false); a different request with a used
  // seq_id is ALREADY_EXISTS.
  struct Created {
    std::string id;
    bool created = true;
  };
  Result<Created> Create(const std::string& kind, const std::string& key_id,
                             const std::optional<std::string>& run_id, std::optional<int64_t> seq_id,
                             const std::string& request_hash);
  // Queue the outcome for the writer; a future already finished is left as it was.
  void Complete(const std::string& id, std::string result, std::string format);
  void Fail(const std::string& id, const std::string& error, const std::string& category);
  // Removes a pending future whose work never reached the engine (refused with a retryable 429 or
  // 503), so that the client's retry of the same request is accepted anew rather than handed this
  // one. Only for a future nobody was given: FAILED_PRECONDITION once it has an outcome.
  Status Discard(const std::string& id);
  // Blocks until every queued outcome is committed (tests, shutdown).
  void Flush();
  // Runs on the writer thread before each batch of outcomes is committed, so what the outcomes'
  // producers recorded before Complete/Fail (the API's usage counts) is durable before any client
  // can read those outcomes. Set once, before requests arrive.
  void SetBeforeCommit(std::function<void()> hook);

  Result<FutureRecord> Get(const std::string& id);
  // Calls `done` once: with the record as soon as it is finished, or with the still-pending
  // record at `deadline`. NOT_FOUND when the id is unknown (or expired).
  void Await(const std::string& id, std::chrono::steady_clock::time_point deadline,
             std::function<void(Result<FutureRecord>)> done);

  // Deletes finished futures past their expiry; returns how many.
  Result<int64_t> SweepExpired();

 private:
  struct Waiter {
    std::string id;
    std::chrono::steady_clock::time_point deadline;
    std::function<void(Result<FutureRecord>)> done;
  };
  struct Outcome {
    std::string id, state, result, format, error, category;
  };
  void Notify(const std::string& id);
  void TimerLoop();
  void WriterLoop();

  store::MetadataStore& db_;
  FutureOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::string, Waiter> waiters_;  // by future id
  bool stopping_ = false;
  std::thread timer_;
  std::mutex write_mu_;
  std::condition_variable write_cv_, written_cv_;
  std::vector<Outcome> outcomes_;
  int64_t queued_outcomes_ = 0, written_outcomes_ = 0;
  bool write_stopping_ = false;
  std::function<void()> before_commit_;
  std::thread writer_;
};

}  // namespace openrl::engine
