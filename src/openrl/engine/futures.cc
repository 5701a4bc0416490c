#include "openrl/engine/futures.h"

#include <utility>

#include "openrl/core/clock.h"
#include "openrl/core/ids.h"
#include "openrl/core/log.h"

namespace openrl::engine {
namespace {

using store::Blob;
using store::Row;
using store::Tx;

std::string Now() { return FormatIso8601Utc(SystemClock().Now()); }

Result<FutureRecord> RecordFromRow(const Row& row) {
  FutureRecord r;
  OPENRL_ASSIGN_OR_RETURN(r.id, row.Text("id"));
  OPENRL_ASSIGN_OR_RETURN(r.key_id, row.Text("key_id"));
  OPENRL_ASSIGN_OR_RETURN(r.kind, row.Text("kind"));
  OPENRL_ASSIGN_OR_RETURN(r.state, row.Text("state"));
  OPENRL_ASSIGN_OR_RETURN(r.run_id, row.OptionalText("run_id"));
  OPENRL_ASSIGN_OR_RETURN(r.seq_id, row.OptionalInt64("seq_id"));
  OPENRL_ASSIGN_OR_RETURN(r.request_hash, row.Text("request_hash"));
  OPENRL_ASSIGN_OR_RETURN(bool no_result, row.IsNull("result"));
  if (!no_result) {
    OPENRL_ASSIGN_OR_RETURN(r.result, row.Bytes("result"));
  }
  OPENRL_ASSIGN_OR_RETURN(auto format, row.OptionalText("result_format"));
  r.result_format = format.value_or("");
  OPENRL_ASSIGN_OR_RETURN(auto error, row.OptionalText("error"));
  r.error = error.value_or("");
  OPENRL_ASSIGN_OR_RETURN(auto category, row.OptionalText("error_category"));
  r.error_category = category.value_or("");
  return r;
}

constexpr const char* kSelect =
    "SELECT id, key_id, kind, state, run_id, seq_id, request_hash, result, result_format, error, "
    "error_category FROM futures ";

}  // namespace

FutureStore::FutureStore(store::MetadataStore& db, FutureOptions options)
    : db_(db), options_(options), timer_([this] { TimerLoop(); }), writer_([this] { WriterLoop(); }) {}

FutureStore::~FutureStore() {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    write_stopping_ = true;
  }
  write_cv_.notify_all();
  writer_.join();  // commits what is still queued
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  timer_.join();
}

void FutureStore::WriterLoop() {
  std::unique_lock<std::mutex> lock(write_mu_);
  while (true) {
    write_cv_.wait(lock, [&] { return !outcomes_.empty() || write_stopping_; });
    if (outcomes_.empty()) return;
    std::vector<Outcome> batch;
    batch.swap(outcomes_);
    std::function<void()> before = before_commit_;
    lock.unlock();
    if (before) before();
    std::string now = Now();
    Status s = db_.Transaction([&](Tx& tx) -> Status {
      for (const Outcome& o : batch) {
        if (o.state == "done") {
          OPENRL_RETURN_IF_ERROR(tx.Exec("UPDATE futures SET state = 'done', result = ?, result_format = ?, "
                                         "finished_at = ? WHERE id = ? AND state = 'pending'",
                                         {Blob{o.result}, o.format, now, o.id})
                                     .status());
        } else {
          OPENRL_RETURN_IF_ERROR(tx.Exec("UPDATE futures SET state = 'failed', error = ?, error_category = ?, "
                                         "finished_at = ? WHERE id = ? AND state = 'pending'",
                                         {o.error, o.category, now, o.id})
                                     .status());
        }
      }
      return Status::Ok();
    });
    if (!s.ok()) log::Write(log::Level::kError, "committing " + std::to_string(batch.size()) + " future results failed: " + s.message());
    for (const Outcome& o : batch) Notify(o.id);
    lock.lock();
    written_outcomes_ += static_cast<int64_t>(batch.size());
    written_cv_.notify_all();
  }
}

void FutureStore::SetBeforeCommit(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(write_mu_);
  before_commit_ = std::move(hook);
}

void FutureStore::Flush() {
  std::unique_lock<std::mutex> lock(write_mu_);
  int64_t target = queued_outcomes_;
  written_cv_.wait(lock, [&] { return written_outcomes_ >= target; });
}

Status FutureStore::RecoverAfterRestart() {
  return db_.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec("UPDATE futures SET state = 'failed', error_category = 'server', finished_at = ?, error = ? "
              "WHERE state = 'pending'",
              {Now(),
               "the server restarted before this request finished; the training run's unsaved state is "
               "gone: load its last checkpoint (load_state) and send the request again"})
        .status();
  });
}

Result<FutureStore::Created> FutureStore::Create(const std::string& kind, const std::string& key_id,
                                        const std::optional<std::string>& run_id, std::optional<int64_t> seq_id,
                                        const std::string& request_hash) {
  std::string id = NewId("fut");
  std::string existing;
  auto expires = SystemClock().Now() + options_.result_ttl;
  OPENRL_RETURN_IF_ERROR(db_.Transaction([&](Tx& tx) -> Status {
    if (run_id && seq_id) {
      OPENRL_ASSIGN_OR_RETURN(auto row, tx.QueryOne("SELECT id, request_hash FROM futures WHERE run_id = ? AND seq_id = ?",
                                                    {*run_id, *seq_id}));
      if (row) {
        OPENRL_ASSIGN_OR_RETURN(std::string hash, row->Text("request_hash"));
        if (hash != request_hash)
          return AlreadyExists("seq_id " + std::to_string(*seq_id) + " of model " + *run_id +
                               " was already used by a different request");
        OPENRL_ASSIGN_OR_RETURN(existing, row->Text("id"));
        return Status::Ok();
      }
    }
    store::Value run = run_id ? store::Value(*run_id) : store::Value();
    store::Value seq = seq_id ? store::Value(*seq_id) : store::Value();
    return tx
        .Exec("INSERT INTO futures (id, key_id, run_id, seq_id, kind, state, request_hash, created_at, expires_at) "
              "VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
              {id, key_id, run, seq, kind, request_hash, Now(), FormatIso8601Utc(expires)})
        .status();
  }));
  if (!existing.empty()) return Created{existing, false};
  return Created{id, true};
}

void FutureStore::Complete(const std::string& id, std::string result, std::string format) {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    outcomes_.push_back({id, "done", std::move(result), std::move(format), "", ""});
    ++queued_outcomes_;
  }
  write_cv_.notify_one();
}

void FutureStore::Fail(const std::string& id, const std::string& error, const std::string& category) {
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    outcomes_.push_back({id, "failed", "", "", error, category});
    ++queued_outcomes_;
  }
  write_cv_.notify_one();
}

Status FutureStore::Discard(const std::string& id) {
  return db_.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(int64_t n, tx.Exec("DELETE FROM futures WHERE id = ? AND state = 'pending'", {id}));
    if (n == 0) return FailedPrecondition("future " + id + " is not pending; it is kept");
    return Status::Ok();
  });
}

Result<FutureRecord> FutureStore::Get(const std::string& id) {
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(db_.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne(std::string(kSelect) + "WHERE id = ?", {id}));
    return Status::Ok();
  }));
  if (!row) return NotFound("future " + id + " is unknown or has expired");
  return RecordFromRow(*row);
}

void FutureStore::Await(const std::string& id, std::chrono::steady_clock::time_point deadline,
                        std::function<void(Result<FutureRecord>)> done) {
  // Register first, then read: a completion between the two is then never missed.
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiters_.emplace(id, Waiter{id, deadline, std::move(done)});
  }
  Result<FutureRecord> rec = Get(id);
  if (!rec.ok() || rec->finished()) Notify(id);
  cv_.notify_all();
}

void FutureStore::Notify(const std::string& id) {
  std::vector<Waiter> ready;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto [first, last] = waiters_.equal_range(id);
    for (auto it = first; it != last; ++it) ready.push_back(std::move(it->second));
    waiters_.erase(first, last);
  }
  if (ready.empty()) return;
  Result<FutureRecord> rec = Get(id);
  for (Waiter& w : ready) w.done(rec);
}

void FutureStore::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto last_sweep = std::chrono::steady_clock::now();
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(200));
    auto now = std::chrono::steady_clock::now();
    std::vector<Waiter> due;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline <= now || stopping_) {
        due.push_back(std::move(it->second));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    bool sweep = now - last_sweep > std::chrono::minutes(5);
    lock.unlock();
    for (Waiter& w : due) w.done(Get(w.id));
    if (sweep) {
      (void)SweepExpired();
      last_sweep = now;
    }
    lock.lock();
  }
}

Result<int64_t> FutureStore::SweepExpired() {
  int64_t n = 0;
  OPENRL_RETURN_IF_ERROR(db_.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(n, tx.Exec("DELETE FROM futures WHERE state <> 'pending' AND expires_at < ?", {Now()}));
    return Status::Ok();
  }));
  return n;
}

}  // namespace openrl::engine
