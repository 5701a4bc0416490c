// Shared by tinker_api.cc (service, sessions, models, runs, checkpoints, futures),
// tinker_api_train.cc (forward_backward, optim_step, weights, sampling), tinker_api_export.cc
// (exports, downloads, TTL), tinker_api_custom_loss.cc (custom losses), tinker_api_account.cc
// (publishing, copies, retrieve_futures; the audit and usage queues) and tinker_api_sessions.cc
// (the key's own metadata, audit log, usage; session finish, search, project, trace).
#pragma once

#include "openrl/api/tinker_api.h"
#include "openrl/http/problem.h"

// In handlers returning http::Response: `decl = value of expr`, or return its problem response.
#define OPENRL_API_CONCAT_(a, b) a##b
#define OPENRL_API_CONCAT(a, b) OPENRL_API_CONCAT_(a, b)
#define OPENRL_ASSIGN_OR_RETURN_RESPONSE(decl, expr, req)                                                   \
  auto OPENRL_API_CONCAT(api_result_, __LINE__) = (expr);                                                  \
  if (!OPENRL_API_CONCAT(api_result_, __LINE__).ok())                                                      \
    return ::openrl::api::Problem(OPENRL_API_CONCAT(api_result_, __LINE__).status(), req);                 \
  decl = std::move(OPENRL_API_CONCAT(api_result_, __LINE__)).value()
#define OPENRL_RETURN_RESPONSE_IF_ERROR(expr, req)                      \
  do {                                                                  \
    ::openrl::Status api_status_ = (expr);                              \
    if (!api_status_.ok()) return ::openrl::api::Problem(api_status_, req); \
  } while (0)

namespace openrl::api {

http::Response Problem(const Status& s, const http::Request& req);

struct AccountState;  // tinker_api_account.cc: audit and usage queues, retrieve_futures waiters

using AuthedHandler = std::function<http::Response(const http::Request&, const ApiKey&)>;

struct TinkerApi::Impl {
  Impl(store::MetadataStore& db, engine::Scheduler& scheduler, engine::FutureStore& futures, KeyStore& keys,
       TinkerApiOptions options)
      : db(db), scheduler(scheduler), futures(futures), keys(keys), options(options) {}

  store::MetadataStore& db;
  engine::Scheduler& scheduler;
  engine::FutureStore& futures;
  KeyStore& keys;
  TinkerApiOptions options;

  // Authenticates, then runs `h`; a Status error or an exception becomes a problem response.
  http::Handler Authed(AuthedHandler h);
  Result<ApiKey> Authenticate(const http::Request& req);

  // The run if it exists and belongs to `key` (NOT_FOUND otherwise, never revealing others' runs).
  Result<engine::RunInfo> OwnedRun(const ApiKey& key, const std::string& model_id);
  // A sampling session made in one of this key's sessions; NOT_FOUND for any other.
  Result<engine::SamplingSessionInfo> OwnedSampler(const ApiKey& key, const std::string& sampler_id);
  Status CheckSession(const ApiKey& key, const std::string& session_id);
  // Records a sign of life of the key's session (heartbeat, finish); NOT_FOUND when unknown.
  Status TouchSession(const ApiKey& key, const std::string& session_id);

  // Creates the durable future and queues `work` for the run; returns {"request_id", "model_id"}.
  // `encode` turns the engine's output into the stored result (bytes, "json"|"proto"). `tokens` are
  // charged to the key's quota once, when the request is new and accepted: a retry of an accepted
  // request is not charged again, and a refusal gives the charge back.
  using Encoder = std::function<std::pair<std::string, std::string>(engine::Output&)>;
  http::Response SubmitRunWork(const http::Request& req, const ApiKey& key, const std::string& kind,
                               const std::string& run_id, int64_t seq_id, engine::Work work, Encoder encode,
                               int64_t tokens = 0);
  // A future finished at once (create_model, unload_model): {"request_id", "model_id"?}.
  Result<std::string> ImmediateFuture(const ApiKey& key, const std::string& kind, const Json& result);
  engine::Done Completion(const std::string& future_id, const std::string& key_id, Encoder encode);

  // tinker_api_train.cc
  void InstallTraining(http::Router& r, const std::shared_ptr<Impl>& self);
  // tinker_api_export.cc: save_weights_external, download URLs, archives, TTL
  void InstallExport(http::Router& r, const std::shared_ptr<Impl>& self);
  // An absolute URL for `path` that works without the API key until `expires` (Unix seconds).
  std::string SignedUrl(const http::Request& req, const std::string& path, int64_t expires) const;
  // PERMISSION_DENIED unless the request's expires/signature query fits its path and is current.
  Status VerifySigned(const http::Request& req) const;
  // A signed download's checkpoint ({id}/{kind}/{name} of the path) and its files, once the
  // signature is verified and the checkpoint still exists.
  Result<std::pair<engine::CheckpointInfo, std::vector<std::string>>> SignedCheckpoint(const http::Request& req) const;
  // tinker_api_custom_loss.cc: create_custom_loss; the stored loss a forward_backward of `run` names
  // by loss_id (INVALID_ARGUMENT unless this key made it in the run's session).
  void InstallCustomLoss(http::Router& r, const std::shared_ptr<Impl>& self);
  Result<std::shared_ptr<const engine::CustomLoss>> CustomLossFor(const ApiKey& key,
                                                                  const engine::RunInfo& run,
                                                                  const std::string& loss_id);

  // tinker_api_account.cc: publishing, copy_weights, join_sampling_session, retrieve_futures;
  // InstallAccount makes the account state, then installs these and tinker_api_sessions.cc's routes.
  void InstallAccount(http::Router& r, const std::shared_ptr<Impl>& self);
  void InstallSharing(http::Router& r, const std::shared_ptr<Impl>& self);  // publish, copies, polls
  // tinker_api_sessions.cc: the key's own metadata, audit log and usage; session search, projects
  // and traces.
  void InstallKeyAndUsage(http::Router& r, const std::shared_ptr<Impl>& self);  // key, audit, billing
  void InstallSessions(http::Router& r, const std::shared_ptr<Impl>& self);     // finish, search, project, trace
  std::shared_ptr<AccountState> account;  // made by InstallAccount
  // Commits the queued audit records and usage counts now, so a read of them sees everything.
  Status FlushAccount();
  // The checkpoint if this key may read it (sample from, load, copy): one of its own runs', or a
  // published one; NOT_FOUND otherwise, as if it did not exist.
  Result<engine::CheckpointInfo> ReadableCheckpoint(const ApiKey& key, const std::string& tinker_path);
  // Records an action of `key_id` in its audit log (and in `owner_key_id`'s, when it read their
  // published checkpoint). Committed before it returns, so the action's response follows its record
  // (on the engine thread only for saves and loads, which wait on the disk anyway).
  void Audit(const std::string& key_id, const std::string& event, Json details, const std::string& owner_key_id = "");
  // Counts work the engine completed, per UTC hour: "training" tokens (forward and
  // forward_backward), saved "checkpoint"s.
  void CountUsage(const std::string& key_id, const std::string& kind, const engine::RunInfo& run, int64_t quantity);
  // A completed sample request: prompt tokens prefilled (once per sample) and tokens generated.
  void CountSampleUsage(const std::string& key_id, const std::string& sampling_session_id,
                        const std::string& base_model, int64_t prefill_tokens, int64_t sampled_tokens);
  // retrieve_futures: reports this sample request (of its sampling session and clone, seq_id /
  // 1e9) to that clone's poller once it finishes.
  void TrackSample(const std::string& future_id, const std::string& sampling_session_id, int64_t seq_id);
};

http::Response JsonOk(const Json& j);
http::Response Problem(const Status& s, const http::Request& req);
std::string RequestHash(const http::Request& req);
// The request's seq_id (0 when none is given); INVALID_ARGUMENT when it is not an integer.
Result<int64_t> SeqId(const Json& body);
// The id of a session's training client number `model_seq_id`, as the SDK derives it.
std::string ModelIdFor(const std::string& session_id, int64_t model_seq_id);
// The error category the SDK shows: "user" for bad requests, "server" otherwise.
std::string ErrorCategory(const Status& s);
// A JSON object's values as strings (the SDK's dict[str, str] metadata); {} for a non-object.
Json StringMap(const Json& j);
// The current time, RFC 3339 UTC, as the store keeps it.
std::string NowIso();
// body[field] when it is a non-empty string; INVALID_ARGUMENT naming the field otherwise.
Result<std::string> NonEmptyStringField(const Json& body, const char* field);
// ttl_seconds of a request: absent/null → nullopt; otherwise 1 hour to 10 years (INVALID_ARGUMENT).
Result<std::optional<int64_t>> TtlField(const Json& body);

}  // namespace openrl::api
