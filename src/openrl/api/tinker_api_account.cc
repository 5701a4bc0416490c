// Sharing routes of the Tinker API and the state behind the account routes: publishing checkpoints
// (other keys may then sample from, load or copy them), copy_weights, join_sampling_session,
// retrieve_futures (one long poll per sampling client for the completions of all its requests), and
// the hooks the other route files call to audit, count usage and track sample requests. The key's
// own routes, audit log, usage and sessions are in tinker_api_sessions.cc.
//
// Audit records are committed before the action they record is answered: Audit() commits the
// queue at once, so a crash right after a response never loses its record. Usage counts, which
// the engine thread adds as every request completes, are queued in memory (the engine never waits
// on the disk for them) and committed by the futures' writer just before it commits the results
// they were counted for, so a result a client has read never lacks its usage after a crash; this
// file's thread also commits them once a second, and before any read of them.
#include <condition_variable>
#include <thread>

#include "openrl/api/tinker_api_internal.h"
#include "openrl/core/clock.h"
#include "openrl/core/ids.h"
#include "openrl/core/log.h"

namespace openrl::api {

using store::Row;
using store::Tx;

std::string NowIso() { return FormatIso8601Utc(SystemClock().Now()); }

Result<std::string> NonEmptyStringField(const Json& body, const char* field) {
  if (!body.is_object() || !body.contains(field) || !body[field].is_string() ||
      body[field].get<std::string>().empty())
    return InvalidArgument(std::string("field '") + field + "' is missing (a non-empty string)");
  return body[field].get<std::string>();
}

namespace {

constexpr int64_t kCloneBlock = 1'000'000'000;  // the SDK numbers clone c's samples c·1e9 + n
constexpr std::chrono::seconds kMaxPoll{25};    // retrieve_futures long poll (the SDK waits 45 s)

std::string PollTarget(const std::string& sampler, int64_t clone) {
  return sampler + "/" + std::to_string(clone);
}

std::string HourOf(Clock::WallTime t) { return FormatIso8601Utc(std::chrono::floor<std::chrono::hours>(t)); }

std::string AuditCategory(const std::string& event) {
  if (event.rfind("checkpoint_", 0) == 0) return "checkpoints";
  if (event.rfind("session_project", 0) == 0) return "projects";
  if (event.rfind("api_key_", 0) == 0) return "organizations";
  return "training_runs";
}

}  // namespace

// ---- the queues and the poll waiters -------------------------------------------------------

struct AccountState {
  struct AuditRecord {
    std::string key_id, owner_key_id, at, event;
    Json details;
  };
  struct UsageKey {
    std::string key_id, bucket, kind, base_model, session_id, sampling_session_id;
    auto operator<=>(const UsageKey&) const = default;
  };
  struct Waiter {
    std::chrono::steady_clock::time_point deadline;
    std::function<void(bool timed_out)> fire;
    bool woken = false;
  };

  explicit AccountState(store::MetadataStore& db) : db(db), thread([this] { Loop(); }) {}
  ~AccountState() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    cv.notify_all();
    thread.join();  // answers the polls still waiting and commits what is queued
  }

  void Queue(AuditRecord r) {
    std::lock_guard<std::mutex> lock(mu);
    r.at = NowIso();  // taken under the lock, so the log's order is the order of the calls
    audit.push_back(std::move(r));
  }
  void Count(UsageKey k, int64_t n) {
    if (n <= 0) return;
    std::lock_guard<std::mutex> lock(mu);
    usage[std::move(k)] += n;
  }
  Status Flush();

  // Poll waiters. A poll reads Generation() before it looks for completions; WaitForChange then
  // parks it unless something was woken since (it polls again at once), so no wake is lost.
  uint64_t Generation() {
    std::lock_guard<std::mutex> lock(mu);
    return generation;
  }
  void WaitForChange(const std::string& target, uint64_t seen, std::chrono::steady_clock::time_point deadline,
                     std::function<void(bool)> fire) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!stopping && generation == seen) {
        waiters.emplace(target, Waiter{deadline, std::move(fire)});
        return;
      }
    }
    fire(stopping);
  }
  void Wake(const std::string& target) {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++generation;
      auto [first, last] = waiters.equal_range(target);
      for (auto it = first; it != last; ++it) it->second.woken = true;
    }
    cv.notify_all();
  }

  store::MetadataStore& db;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<AuditRecord> audit;
  std::map<UsageKey, int64_t> usage;
  uint64_t generation = 0;
  std::multimap<std::string, Waiter> waiters;  // by poll target
  bool stopping = false;
  std::mutex flush_mu;  // one flush at a time keeps the audit log in call order
  std::thread thread;

 private:
  void Loop();
  Status Prune();
};

Status AccountState::Flush() {
  std::lock_guard<std::mutex> one(flush_mu);
  std::vector<AuditRecord> a;
  std::map<UsageKey, int64_t> u;
  {
    std::lock_guard<std::mutex> lock(mu);
    a.swap(audit);
    u.swap(usage);
  }
  if (a.empty() && u.empty()) return Status::Ok();
  Status s = db.Transaction([&](Tx& tx) -> Status {
    for (const AuditRecord& r : a) {
      OPENRL_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO audit_log (key_id, owner_key_id, at, event, category, details) VALUES (?, ?, "
                  "?, ?, ?, ?)",
                  {r.key_id,
                   r.owner_key_id.empty() || r.owner_key_id == r.key_id ? store::Value() : r.owner_key_id,
                   r.at, r.event, AuditCategory(r.event), r.details.dump()})
              .status());
    }
    for (const auto& [k, n] : u) {
      std::string session = k.session_id;
      if (session.empty() && !k.sampling_session_id.empty()) {  // a sampling session's ServiceClient session
        OPENRL_ASSIGN_OR_RETURN(auto row, tx.QueryOne("SELECT session_id FROM sampling_sessions WHERE id = ?",
                                                      {k.sampling_session_id}));
        if (row) {
          OPENRL_ASSIGN_OR_RETURN(session, row->Text("session_id"));
        }
      }
      OPENRL_RETURN_IF_ERROR(
          tx.Exec(
                "INSERT INTO usage_hours (key_id, bucket_start, kind, base_model, session_id, quantity) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, bucket_start, kind, base_model, session_id) "
                "DO UPDATE SET quantity = quantity + excluded.quantity",
                {k.key_id, k.bucket, k.kind, k.base_model, session, n})
              .status());
    }
    return Status::Ok();
  });
  if (!s.ok()) {  // kept for the next flush
    std::lock_guard<std::mutex> lock(mu);
    audit.insert(audit.begin(), a.begin(), a.end());
    for (const auto& [k, n] : u) usage[k] += n;
  }
  return s;
}

Status AccountState::Prune() {
  // Sample requests whose futures were swept (24 h after they finished) have nothing left to report.
  return db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec("DELETE FROM sample_requests WHERE NOT EXISTS (SELECT 1 FROM futures f WHERE f.id = future_id)")
        .status();
  });
}

void AccountState::Loop() {
  auto last_flush = std::chrono::steady_clock::now();
  auto last_prune = last_flush;
  std::unique_lock<std::mutex> lock(mu);
  while (true) {
    cv.wait_for(lock, std::chrono::milliseconds(200));
    auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<Waiter, bool>> due;  // (waiter, timed out)
    for (auto it = waiters.begin(); it != waiters.end();) {
      bool timed_out = stopping || it->second.deadline <= now;
      if (timed_out || it->second.woken) {
        due.emplace_back(std::move(it->second), timed_out);
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
    bool stop = stopping;
    lock.unlock();
    if (stop || now - last_flush >= std::chrono::seconds(1)) {
      Status s = Flush();
      if (!s.ok()) log::Write(log::Level::kWarn, "committing audit records and usage failed: " + s.message());
      last_flush = now;
    }
    for (auto& [w, timed_out] : due) w.fire(timed_out);
    if (now - last_prune >= std::chrono::minutes(10)) {
      Status s = Prune();
      if (!s.ok()) log::Write(log::Level::kWarn, "pruning sample requests failed: " + s.message());
      last_prune = now;
    }
    lock.lock();
    if (stop && waiters.empty()) return;
  }
}

// ---- hooks the other route files call --------------------------------------------------------

Result<engine::CheckpointInfo> TinkerApi::Impl::ReadableCheckpoint(const ApiKey& key,
                                                                   const std::string& tinker_path) {
  OPENRL_ASSIGN_OR_RETURN(engine::CheckpointInfo c, scheduler.Checkpoint(tinker_path));
  if (c.is_public || OwnedRun(key, c.run_id).ok()) return c;
  return NotFound("checkpoint " + c.TinkerPath() + " does not exist (or has expired)");
}

void TinkerApi::Impl::Audit(const std::string& key_id, const std::string& event, Json details,
                            const std::string& owner_key_id) {
  if (!account) return;
  account->Queue({key_id, owner_key_id, "", event, std::move(details)});
  // Committed now, with what was queued before it (the log stays in call order). On failure the
  // records stay queued and the account thread retries them every second.
  Status s = account->Flush();
  if (!s.ok())
    log::Write(log::Level::kWarn,
               "committing the audit record '" + event + "' failed (retried): " + s.message());
}

void TinkerApi::Impl::CountUsage(const std::string& key_id, const std::string& kind,
                                 const engine::RunInfo& run, int64_t quantity) {
  if (account)
    account->Count({key_id, HourOf(SystemClock().Now()), kind, run.base_model, run.session_id, ""}, quantity);
}

void TinkerApi::Impl::CountSampleUsage(const std::string& key_id, const std::string& sampling_session_id,
                                       const std::string& base_model, int64_t prefill_tokens,
                                       int64_t sampled_tokens) {
  if (!account) return;
  std::string hour = HourOf(SystemClock().Now());
  account->Count({key_id, hour, "sampling_prefill", base_model, "", sampling_session_id}, prefill_tokens);
  account->Count({key_id, hour, "sampling_sample", base_model, "", sampling_session_id}, sampled_tokens);
}

Status TinkerApi::Impl::FlushAccount() { return account->Flush(); }

namespace {

// Wakes the poll target once the future's outcome is committed (FutureStore::Await fires then).
void WakeWhenFinished(engine::FutureStore& futures, const std::string& id, std::weak_ptr<AccountState> state,
                      const std::string& target) {
  futures.Await(id, std::chrono::steady_clock::now() + std::chrono::hours(1),
                [&futures, id, state, target](Result<engine::FutureRecord> rec) {
                  std::shared_ptr<AccountState> s = state.lock();
                  if (!s) return;
                  if (rec.ok() && !rec->finished()) return WakeWhenFinished(futures, id, state, target);
                  s->Wake(target);
                });
}

}  // namespace

void TinkerApi::Impl::TrackSample(const std::string& future_id, const std::string& sampling_session_id,
                                  int64_t seq_id) {
  if (!account) return;
  int64_t clone = seq_id > 0 ? seq_id / kCloneBlock : 0;
  Status s = db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec(
            "INSERT INTO sample_requests (future_id, sampling_session_id, clone_id, cursor, created_at) "
            "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (future_id) DO NOTHING",
            {future_id, sampling_session_id, clone, NowIso()})
        .status();
  });
  if (!s.ok())
    log::Write(log::Level::kWarn, "recording sample request " + future_id + " failed: " + s.message());
  WakeWhenFinished(futures, future_id, account, PollTarget(sampling_session_id, clone));
}

// ---- retrieve_futures ------------------------------------------------------------------------

namespace {

struct Poll {
  std::string key_id, sampler;
  int64_t clone = 0, prev_cursor = 0;
  std::chrono::steady_clock::time_point deadline;
  std::string path;
  http::Responder respond;
};

// Gives the target's newly finished requests cursors (in the order they finished), then returns
// those after prev_cursor: {"completions": [...], "cursor"}.
Result<Json> PollCompletions(store::MetadataStore& db, const Poll& p) {
  Json completions = Json::array();
  int64_t cursor = p.prev_cursor;
  OPENRL_RETURN_IF_ERROR(db.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto fresh,
                            tx.Query("SELECT r.future_id FROM sample_requests r LEFT JOIN futures f ON "
                                     "f.id = r.future_id WHERE r.sampling_session_id = ? AND r.clone_id = ? "
                                     "AND r.cursor IS NULL AND (f.id IS NULL OR f.state <> 'pending') "
                                     "ORDER BY f.finished_at, r.future_id",
                                     {p.sampler, p.clone}));
    if (!fresh.empty()) {
      OPENRL_ASSIGN_OR_RETURN(
          auto row, tx.QueryOne("SELECT value FROM settings WHERE key = 'retrieve_futures.cursor'"));
      int64_t next = 0;
      if (row) {
        OPENRL_ASSIGN_OR_RETURN(std::string v, row->Text("value"));
        next = std::strtoll(v.c_str(), nullptr, 10);
      }
      for (const Row& r : fresh) {
        OPENRL_ASSIGN_OR_RETURN(std::string id, r.Text("future_id"));
        OPENRL_RETURN_IF_ERROR(
            tx.Exec("UPDATE sample_requests SET cursor = ? WHERE future_id = ?", {++next, id}).status());
      }
      OPENRL_RETURN_IF_ERROR(
          tx.Exec("INSERT INTO settings (key, value, updated_at) VALUES ('retrieve_futures.cursor', "
                  "?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                  "updated_at = excluded.updated_at",
                  {std::to_string(next), NowIso()})
              .status());
    }
    OPENRL_ASSIGN_OR_RETURN(auto rows,
                            tx.Query("SELECT r.future_id, r.cursor, f.state, length(f.result) AS size "
                                     "FROM sample_requests r LEFT JOIN futures f ON f.id = r.future_id "
                                     "WHERE r.sampling_session_id = ? AND r.clone_id = ? AND r.cursor > ? "
                                     "ORDER BY r.cursor",
                                     {p.sampler, p.clone, p.prev_cursor}));
    for (const Row& r : rows) {
      OPENRL_ASSIGN_OR_RETURN(std::string id, r.Text("future_id"));
      OPENRL_ASSIGN_OR_RETURN(cursor, r.Int64("cursor"));
      OPENRL_ASSIGN_OR_RETURN(std::optional<std::string> state, r.OptionalText("state"));
      OPENRL_ASSIGN_OR_RETURN(std::optional<int64_t> size, r.OptionalInt64("size"));
      if (state == "done") {
        completions.push_back({{"state", "finished"},
                               {"request_id", id},
                               {"response_payload_uncompressed_size", size ? Json(*size) : Json()}});
      } else {  // failed, or swept already
        completions.push_back({{"state", "failed"}, {"request_id", id}});
      }
    }
    return Status::Ok();
  }));
  return Json{{"completions", completions}, {"cursor", std::max(cursor, p.prev_cursor)}};
}

// Answers at once when something finished (or the poll may not wait); otherwise parks until the
// target is woken or the deadline passes.
void RunPoll(AccountState* state, std::shared_ptr<Poll> p, bool timed_out) {
  try {  // runs on this file's thread too, where nothing may escape
    uint64_t seen = state->Generation();
    Result<Json> out = PollCompletions(state->db, *p);
    if (!out.ok()) return p->respond(http::ProblemFromStatus(out.status(), p->path));
    if (!(*out)["completions"].empty() || timed_out || std::chrono::steady_clock::now() >= p->deadline)
      return p->respond(JsonOk(*out));
    state->WaitForChange(PollTarget(p->sampler, p->clone), seen, p->deadline,
                         [state, p](bool t) { RunPoll(state, p, t); });
  } catch (const std::exception& e) {
    p->respond(http::ProblemFromStatus(StatusFromException(e, "retrieve_futures"), p->path));
  }
}

Result<std::shared_ptr<Poll>> ParsePoll(const Json& body, const ApiKey& key) {
  if (!body.is_object()) return InvalidArgument("the request body must be a FuturesRetrieveRequest object");
  auto p = std::make_shared<Poll>();
  p->key_id = key.id;
  const Json target = body.value("target", Json());
  if (!target.is_object()) return InvalidArgument("field 'target' is missing (a sampling session target)");
  if (target.value("type", std::string("sampling_session")) != "sampling_session")
    return InvalidArgument("target.type must be 'sampling_session'");
  OPENRL_ASSIGN_OR_RETURN(p->sampler, NonEmptyStringField(target, "sampling_session_id"));
  const Json clone = target.value("cloned_sampler_id", Json(0));
  const Json prev = body.value("prev_cursor", Json(0));
  if (!clone.is_number_integer() || clone.get<int64_t>() < 0)
    return InvalidArgument("target.cloned_sampler_id must be a non-negative integer");
  if (!prev.is_number_integer() || prev.get<int64_t>() < 0)
    return InvalidArgument("field 'prev_cursor' must be a non-negative integer");
  p->clone = clone.get<int64_t>();
  p->prev_cursor = prev.get<int64_t>();
  std::chrono::milliseconds wait = kMaxPoll;
  const Json timeout = body.value("timeout", Json());
  if (timeout.is_number()) {
    if (timeout.get<double>() < 0) return InvalidArgument("field 'timeout' must be >= 0 seconds");
    wait = std::min<std::chrono::milliseconds>(
        wait, std::chrono::milliseconds(static_cast<int64_t>(timeout.get<double>() * 1000)));
  } else if (!timeout.is_null()) {
    return InvalidArgument("field 'timeout' must be a number of seconds or null");
  }
  p->deadline = std::chrono::steady_clock::now() + wait;
  // Acknowledged results could go now; they are kept the usual 24 h (session traces show them).
  const Json retrieved = body.value("retrieved_request_ids", Json::array());
  if (!retrieved.is_array() ||
      !std::all_of(retrieved.begin(), retrieved.end(), [](const Json& id) { return id.is_string(); }))
    return InvalidArgument("field 'retrieved_request_ids' must be a list of request ids");
  return p;
}

}  // namespace

// ---- routes: sharing --------------------------------------------------------------------------

void TinkerApi::Impl::InstallSharing(http::Router& r, const std::shared_ptr<Impl>& self) {
  // RestClient.publish_/unpublish_checkpoint_from_tinker_path: the run's owner only. Asking for
  // the state it is in already succeeds without a change: Tinker documents a 409 there, but the
  // SDK retries a 409 for five minutes, so a retried publish whose first answer was lost would hang.
  auto publish = [self](bool make_public) {
    return self->Authed([self, make_public](const http::Request& req, const ApiKey& key) {
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, req.PathParam("id")), req);
      std::string path = "tinker://" + run.id + "/" + req.PathParam("kind") + "/" + req.PathParam("name");
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo c, self->scheduler.Checkpoint(path), req);
      if (c.kind == "external")
        return Problem(
            InvalidArgument("exports (external_weights) cannot be published; publish the run's weights "
                            "or sampler_weights checkpoint"),
            req);
      if (c.is_public == make_public) return http::Response::Text(204, "");
      OPENRL_RETURN_RESPONSE_IF_ERROR(self->scheduler.SetCheckpointPublic(path, make_public), req);
      self->Audit(key.id, make_public ? "checkpoint_publish" : "checkpoint_unpublish",
                  {{"tinker_path", path}, {"model_id", run.id}});
      return http::Response::Text(204, "");
    });
  };
  r.Post("/api/v1/training_runs/{id}/checkpoints/{kind}/{name}/publish", publish(true));
  r.Delete("/api/v1/training_runs/{id}/checkpoints/{kind}/{name}/publish", publish(false));

  // copy_weights' destination: the caller's session and training-client slot, or a new session in
  // `destination_project_id` (slot 0). Returns (session id, run id).
  auto copy_destination = [self](const http::Request& req, const ApiKey& key,
                                 const Json& body) -> Result<std::pair<std::string, std::string>> {
    if (body.value("session_id", Json()).is_string()) {
      std::string session = body["session_id"].get<std::string>();
      OPENRL_RETURN_IF_ERROR(self->CheckSession(key, session));
      if (!body.value("model_seq_id", Json()).is_number_integer())
        return InvalidArgument(
            "field 'model_seq_id' is missing (the training client slot that holds the copy)");
      return std::make_pair(session, ModelIdFor(session, body["model_seq_id"].get<int64_t>()));
    }
    Result<std::string> project = NonEmptyStringField(body, "destination_project_id");
    if (!project.ok())
      return InvalidArgument(
          "give field 'destination_project_id', or 'session_id' and 'model_seq_id': where the copy goes");
    std::string session = NewId("ses");
    std::string now = NowIso();
    OPENRL_RETURN_IF_ERROR(self->db.Transaction([&](Tx& tx) -> Status {
      return tx
          .Exec(
              "INSERT INTO api_sessions (id, key_id, tags, user_metadata, sdk_version, created_at, "
              "last_heartbeat_at, "
              "project_id) VALUES (?, ?, '[]', '{}', ?, ?, ?, ?)",
              {session, key.id, std::string(req.headers.GetOr("X-Sdk-Version", "")), now, now, *project})
          .status();
    }));
    return std::make_pair(session, ModelIdFor(session, 0));
  };
  // RestClient/ServiceClient.copy_weights: a new run that cannot be trained holds a copy of the
  // checkpoint (its files shared, not duplicated). X-Idempotency-Key makes a retry return the
  // first copy instead of making another.
  r.Post("/api/v1/copy_weights", self->Authed([self, copy_destination](const http::Request& req,
                                                                       const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    std::string idem(req.headers.GetOr("X-Idempotency-Key", ""));
    std::string hash = RequestHash(req);
    if (!idem.empty()) {
      std::optional<Row> row;
      OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Read([&](Tx& tx) -> Status {
        OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne("SELECT request_hash, response FROM idempotent_requests "
                                                 "WHERE key_id = ? AND idempotency_key = ?",
                                                 {key.id, idem}));
        return Status::Ok();
      }),
                                      req);
      if (row) {
        OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string first_hash, row->Text("request_hash"), req);
        OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string response, row->Text("response"), req);
        if (first_hash != hash)
          return Problem(InvalidArgument("X-Idempotency-Key '" + idem + "' was used for a different request"),
                         req);
        return http::Response::Text(200, response, "application/json");
      }
    }
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string source, NonEmptyStringField(body, "source_path"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::optional<int64_t> ttl, TtlField(body), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo src, self->ReadableCheckpoint(key, source), req);
    if (src.kind == "external")
      return Problem(InvalidArgument("source_path " + source +
                                     " is an export (external_weights); copy the run's "
                                     "weights or sampler_weights"),
                     req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo from, self->scheduler.Run(src.run_id), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto dest, copy_destination(req, key, body), req);
    Result<engine::RunInfo> run = self->scheduler.CreateFrozenRun(dest.second, key.id, dest.first, from);
    if (!run.ok() &&
        run.status().code() == ErrorCode::kAlreadyExists)  // a 409 the SDK would retry for minutes
      return Problem(
          InvalidArgument("model_seq_id " + body.value("model_seq_id", Json()).dump() + " of session " +
                          dest.first + " already holds a training run; use another"),
          req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(run.status(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo copy,
                                     self->scheduler.CopyCheckpoint(source, dest.second, ttl), req);
    self->Audit(
        key.id, "checkpoint_copy",
        {{"tinker_path", copy.TinkerPath()}, {"source_path", src.TinkerPath()}, {"model_id", copy.run_id}},
        from.key_id);
    std::string response = Json{{"tinker_path", copy.TinkerPath()}}.dump();
    if (!idem.empty()) {
      Status s = self->db.Transaction([&](Tx& tx) -> Status {
        return tx
            .Exec(
                "INSERT INTO idempotent_requests (key_id, idempotency_key, request_hash, response, "
                "created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                {key.id, idem, hash, response, NowIso()})
            .status();
      });
      if (!s.ok())
        log::Write(log::Level::kWarn, "recording copy_weights idempotency key failed: " + s.message());
    }
    return http::Response::Text(200, response, "application/json");
  }));

  // An unpickled SamplingClient's clone id, unique in its sampling session (the original is 0).
  r.Post("/api/v1/join_sampling_session", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string sampler, NonEmptyStringField(body, "sampling_session_id"),
                                     req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->OwnedSampler(key, sampler).status(), req);
    int64_t counter = 0;
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Transaction([&](Tx& tx) -> Status {
      OPENRL_RETURN_IF_ERROR(
          tx.Exec("UPDATE sampling_sessions SET clients = clients + 1 WHERE id = ?", {sampler}).status());
      OPENRL_ASSIGN_OR_RETURN(auto row,
                              tx.QueryOne("SELECT clients FROM sampling_sessions WHERE id = ?", {sampler}));
      if (!row) return NotFound("sampling session '" + sampler + "' is unknown");
      OPENRL_ASSIGN_OR_RETURN(counter, row->Int64("clients"));
      return Status::Ok();
    }),
                                    req);
    return JsonOk({{"type", "join_sampling_session"}, {"client_counter", counter}});
  }));

  // One long poll per (sampling session, clone) for the completions of all its sample requests;
  // the SDK then fetches each result with retrieve_future.
  r.AddAsync("POST", "/api/v1/retrieve_futures", [self](const http::Request& req, http::Responder respond) {
    Result<ApiKey> key = self->Authenticate(req);
    if (!key.ok()) return respond(Problem(key.status(), req));
    Result<Json> body = req.JsonBody();
    if (!body.ok()) return respond(Problem(body.status(), req));
    Result<std::shared_ptr<Poll>> poll = ParsePoll(*body, *key);
    if (!poll.ok()) return respond(Problem(poll.status(), req));
    Status own = self->OwnedSampler(*key, (*poll)->sampler).status();
    if (!own.ok()) return respond(Problem(own, req));
    (*poll)->path = req.path;
    (*poll)->respond = std::move(respond);
    RunPoll(self->account.get(), *poll, false);
  });
}

void TinkerApi::Impl::InstallAccount(http::Router& r, const std::shared_ptr<Impl>& self) {
  account = std::make_shared<AccountState>(db);
  // The usage an outcome's producer counted is committed before the outcome itself, so a result a
  // client has read is never missing from its usage after a crash.
  futures.SetBeforeCommit([state = std::weak_ptr<AccountState>(account)] {
    if (std::shared_ptr<AccountState> s = state.lock()) {
      Status st = s->Flush();
      if (!st.ok())
        log::Write(log::Level::kWarn,
                   "committing usage before future results failed (retried): " + st.message());
    }
  });
  InstallSharing(r, self);
  InstallKeyAndUsage(r, self);
  InstallSessions(r, self);
}

}  // namespace openrl::api
