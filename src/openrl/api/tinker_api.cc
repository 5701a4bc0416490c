#include "openrl/api/tinker_api.h"

#include "openrl/api/tinker_api_internal.h"
#include "openrl/core/clock.h"
#include "openrl/core/crypto.h"
#include "openrl/core/ids.h"

namespace openrl::api {

using store::Row;
using store::Tx;

http::Response JsonOk(const Json& j) { return http::Response::JsonBody(200, j); }

http::Response Problem(const Status& s, const http::Request& req) {
  // The SDK retries every 5xx for minutes: something this server does not offer is the
  // caller's to change, so it is a 400 that fails at once.
  if (s.code() == ErrorCode::kUnimplemented) return http::ProblemResponse(400, "unsupported", s.message(), req.path);
  http::Response r = http::ProblemFromStatus(s, req.path);
  if (s.code() == ErrorCode::kResourceExhausted) r.headers.Set("Retry-After", "1");
  return r;
}

std::string RequestHash(const http::Request& req) { return crypto::Sha256Hex(req.path + "\n" + req.body); }

Result<int64_t> SeqId(const Json& body) {
  if (!body.contains("seq_id") || body["seq_id"].is_null()) return int64_t{0};
  if (!body["seq_id"].is_number_integer()) return InvalidArgument("field 'seq_id' must be an integer");
  return body["seq_id"].get<int64_t>();
}

std::string ModelIdFor(const std::string& session_id, int64_t model_seq_id) {
  return session_id + ":train:" + std::to_string(model_seq_id);
}

std::string ErrorCategory(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kNotFound:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kPermissionDenied:
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kResourceExhausted:
    case ErrorCode::kUnimplemented:
    case ErrorCode::kCancelled:
      return "user";
    default:
      return "server";
  }
}

TinkerApi::TinkerApi(store::MetadataStore& db, engine::Scheduler& scheduler, engine::FutureStore& futures,
                     KeyStore& keys, TinkerApiOptions options)
    : impl_(std::make_shared<Impl>(db, scheduler, futures, keys, options)) {
  // Without a configured key, download URLs are signed with one that lives as long as the process.
  if (impl_->options.url_signing_key.empty()) impl_->options.url_signing_key = crypto::RandomBytes(32).value();
}

Result<ApiKey> TinkerApi::Impl::Authenticate(const http::Request& req) {
  std::string key(req.headers.GetOr("X-API-Key", ""));
  if (key.empty()) {
    std::string auth(req.headers.GetOr("Authorization", ""));
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
  }
  return keys.Authenticate(key);
}

http::Handler TinkerApi::Impl::Authed(AuthedHandler h) {
  return [this, h = std::move(h)](const http::Request& req) -> http::Response {
    engine::SerialTensorWorkOnThisThread();  // handlers' tensor work is light; the engine's team stays alone
    Result<ApiKey> key = Authenticate(req);
    if (!key.ok()) return Problem(key.status(), req);
    try {
      return h(req, *key);
    } catch (const std::exception& e) {
      return Problem(StatusFromException(e, req.path), req);
    }
  };
}

Result<engine::RunInfo> TinkerApi::Impl::OwnedRun(const ApiKey& key, const std::string& model_id) {
  Result<engine::RunInfo> run = scheduler.Run(model_id);
  if (!run.ok() || run->key_id != key.id)
    return NotFound("model_id '" + model_id + "' is not a training run of this API key");
  return run;
}

Status TinkerApi::Impl::CheckSession(const ApiKey& key, const std::string& session_id) {
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne("SELECT key_id, last_heartbeat_at FROM api_sessions WHERE id = ?", {session_id}));
    return Status::Ok();
  }));
  if (!row) return InvalidArgument("session '" + session_id + "' is unknown; create a new ServiceClient");
  OPENRL_ASSIGN_OR_RETURN(std::string owner, row->Text("key_id"));
  if (owner != key.id) return InvalidArgument("session '" + session_id + "' is unknown; create a new ServiceClient");
  OPENRL_ASSIGN_OR_RETURN(std::string last, row->Text("last_heartbeat_at"));
  OPENRL_ASSIGN_OR_RETURN(auto when, ParseIso8601(last));
  if (SystemClock().Now() - when > options.session_timeout)
    return InvalidArgument("session '" + session_id + "' expired (no heartbeat since " + last +
                           "); create a new ServiceClient");
  return Status::Ok();
}

Result<engine::SamplingSessionInfo> TinkerApi::Impl::OwnedSampler(const ApiKey& key, const std::string& sampler_id) {
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne("SELECT a.key_id FROM sampling_sessions s JOIN api_sessions a "
                                             "ON a.id = s.session_id WHERE s.id = ?",
                                             {sampler_id}));
    return Status::Ok();
  }));
  Result<std::string> owner = row ? row->Text("key_id") : Result<std::string>(NotFound(""));
  if (!owner.ok() || *owner != key.id) return NotFound("sampling session '" + sampler_id + "' is unknown");
  return scheduler.SamplingSession(sampler_id);
}

Status TinkerApi::Impl::TouchSession(const ApiKey& key, const std::string& session_id) {
  int64_t n = 0;
  OPENRL_RETURN_IF_ERROR(db.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(n, tx.Exec("UPDATE api_sessions SET last_heartbeat_at = ? WHERE id = ? AND key_id = ?",
                                       {FormatIso8601Utc(SystemClock().Now()), session_id, key.id}));
    return Status::Ok();
  }));
  if (n == 0) return NotFound("session '" + session_id + "' is unknown");
  return Status::Ok();
}

engine::Done TinkerApi::Impl::Completion(const std::string& future_id, const std::string& key_id, Encoder encode) {
  return [this, future_id, key_id, encode = std::move(encode)](Result<engine::Output> out) {
    keys.ReleaseSlot(key_id);
    if (out.ok()) {
      try {
        auto [bytes, format] = encode(*out);
        futures.Complete(future_id, std::move(bytes), format);
      } catch (const std::exception& e) {
        futures.Fail(future_id, StatusFromException(e, "encoding the result").message(), "server");
      }
    } else {
      futures.Fail(future_id, out.status().message(), ErrorCategory(out.status()));
    }
  };
}

http::Response TinkerApi::Impl::SubmitRunWork(const http::Request& req, const ApiKey& key, const std::string& kind,
                                              const std::string& run_id, int64_t seq_id, engine::Work work,
                                              Encoder encode, int64_t tokens) {
  Status slot = keys.AcquireSlot(key);
  if (!slot.ok()) return Problem(slot, req);  // not consumed: the SDK retries the same seq_id
  Result<engine::FutureStore::Created> fut =
      futures.Create(kind, key.id, run_id, seq_id > 0 ? std::optional<int64_t>(seq_id) : std::nullopt, RequestHash(req));
  if (!fut.ok()) {
    keys.ReleaseSlot(key.id);
    Status s = fut.status().code() == ErrorCode::kAlreadyExists ? InvalidArgument(fut.status().message()) : fut.status();
    return Problem(s, req);
  }
  if (!fut->created) {  // a retry of a request already accepted (and charged)
    keys.ReleaseSlot(key.id);
    return JsonOk({{"request_id", fut->id}, {"model_id", run_id}});
  }
  Status charged = keys.ChargeTokens(key, tokens);
  if (!charged.ok()) {  // 403, which the SDK does not retry: the seq_id is spent, later ones go on
    keys.ReleaseSlot(key.id);
    futures.Fail(fut->id, charged.message(), ErrorCategory(charged));
    scheduler.Skip(run_id, seq_id);
    return Problem(charged, req);
  }
  Status s = scheduler.Submit(run_id, seq_id, std::move(work), Completion(fut->id, key.id, std::move(encode)));
  if (!s.ok()) {
    keys.ReleaseSlot(key.id);
    keys.RefundTokens(key.id, tokens);
    // Back-pressure (429) and shutdown (503) are retried by the SDK with the same seq_id: forget
    // the future so the retry is accepted anew instead of being handed this refusal.
    bool retryable = s.code() == ErrorCode::kResourceExhausted || s.code() == ErrorCode::kUnavailable;
    if (!retryable || !futures.Discard(fut->id).ok()) futures.Fail(fut->id, s.message(), ErrorCategory(s));
    return Problem(s, req);
  }
  return JsonOk({{"request_id", fut->id}, {"model_id", run_id}});
}

Result<std::string> TinkerApi::Impl::ImmediateFuture(const ApiKey& key, const std::string& kind, const Json& result) {
  OPENRL_ASSIGN_OR_RETURN(auto fut, futures.Create(kind, key.id, std::nullopt, std::nullopt, NewId("once")));
  futures.Complete(fut.id, result.dump(), "json");
  return fut.id;
}

Json StringMap(const Json& j) {
  Json out = Json::object();
  if (!j.is_object()) return out;
  for (auto& [k, v] : j.items()) out[k] = v.is_string() ? v.get<std::string>() : v.dump();
  return out;
}

namespace {

std::string Iso(const std::string& s) { return s; }

Json CheckpointJson(const engine::CheckpointInfo& c) {
  std::string tinker_path = c.TinkerPath();
  Json j = {{"checkpoint_id", tinker_path.substr(tinker_path.find('/', 9) + 1)},
            {"checkpoint_type", c.kind},
            {"time", Iso(c.created_at)},
            {"tinker_path", tinker_path},
            {"size_bytes", c.size_bytes},
            {"public", c.is_public},
            {"user_metadata", StringMap(c.user_metadata)}};
  j["expires_at"] = c.expires_at ? Json(*c.expires_at) : Json();
  return j;
}

// A run as the REST client's TrainingRun. `public_only`: as another key sees a run it may read
// through a published checkpoint (access_scope=accessible): only published checkpoints, no
// metadata of the owner's.
Json RunJson(engine::Scheduler& scheduler, const engine::RunInfo& r, bool public_only = false) {
  Json j = {{"training_run_id", r.id},
            {"base_model", r.base_model},
            {"model_owner", r.key_id},
            {"is_lora", !r.full_finetune},
            {"corrupted", false},
            {"lora_rank", r.full_finetune ? Json() : Json(r.lora.rank)},
            {"last_request_time", r.last_request_at},
            {"user_metadata", public_only ? Json::object() : StringMap(r.user_metadata)}};
  j["last_checkpoint"] = nullptr;
  j["last_sampler_checkpoint"] = nullptr;
  auto ckpts = scheduler.Checkpoints(r.id);
  if (ckpts.ok()) {
    for (const auto& c : *ckpts) {
      if (public_only && !c.is_public) continue;
      if (c.kind == "training") j["last_checkpoint"] = CheckpointJson(c);
      if (c.kind == "sampler") j["last_sampler_checkpoint"] = CheckpointJson(c);
    }
  }
  return j;
}

// A non-negative integer query parameter; INVALID_ARGUMENT naming it otherwise.
Result<int64_t> QueryInt(const http::Request& req, const char* name, int64_t fallback) {
  std::optional<std::string> v = req.Query(name);
  if (!v) return fallback;
  char* end = nullptr;
  long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || n < 0)
    return InvalidArgument(std::string("query parameter '") + name + "' must be a non-negative integer, got '" + *v + "'");
  return static_cast<int64_t>(n);
}

// A float rank is refused, not cut to an integer.
Result<model::LoraConfig> LoraFromRequest(const Json& lc, float alpha) {
  constexpr std::string_view kSrc = "lora_config";
  model::LoraConfig cfg;
  OPENRL_ASSIGN_OR_RETURN(int64_t rank, GetFieldOr<int64_t>(lc, "rank", 32, kSrc));
  OPENRL_ASSIGN_OR_RETURN(bool attn, GetFieldOr<bool>(lc, "train_attn", true, kSrc));
  OPENRL_ASSIGN_OR_RETURN(bool mlp, GetFieldOr<bool>(lc, "train_mlp", true, kSrc));
  OPENRL_ASSIGN_OR_RETURN(bool unembed, GetFieldOr<bool>(lc, "train_unembed", true, kSrc));
  cfg.rank = rank;
  cfg.alpha = alpha;
  cfg.targets.clear();
  if (attn)
    for (auto k : {model::LinearKind::kQ, model::LinearKind::kK, model::LinearKind::kV, model::LinearKind::kO})
      cfg.targets.insert(k);
  if (mlp)
    for (auto k : {model::LinearKind::kGate, model::LinearKind::kUp, model::LinearKind::kDown}) cfg.targets.insert(k);
  if (unembed) cfg.targets.insert(model::LinearKind::kLmHead);
  return cfg;
}

}  // namespace

void TinkerApi::Install(http::Router& r) {
  auto self = impl_;
  Impl& im = *impl_;
  r.Post("/api/v1/client/config", im.Authed([](const http::Request&, const ApiKey&) {
    return JsonOk({{"pjwt_auth_enabled", false},
                   {"credential_default_source", "api_key"},
                   {"parallel_fwdbwd_chunks", true},
                   {"proto_compress_fwdbwd", true},
                   // Served by tinker_api_account.cc: one long poll per sampling client for the
                   // completions of all its requests; server-allocated ids for unpickled clients.
                   {"sample_use_retrieve_futures", true},
                   {"sample_join_sampling_session", true},
                   {"create_model_via_load_weights", false},
                   {"custom_loss_server_side", true}});  // tinker_api_custom_loss.cc
  }));
  r.Post("/api/v1/client/dynamic_config", im.Authed([](const http::Request&, const ApiKey&) {
    // Sample requests can be cancelled (POST /cancel_future): the SDK does when their future is
    // cancelled or times out, and the engine drops their rows between decode steps.
    return JsonOk({{"refresh_interval_sec", 300}, {"sample_cancel_enabled", true}});
  }));
  r.Get("/api/v1/healthz", [](const http::Request&) { return JsonOk({{"status", "ok"}}); });
  r.Post("/api/v1/telemetry", im.Authed([](const http::Request&, const ApiKey&) {
    return JsonOk({{"status", "accepted"}});
  }));
  r.Get("/api/v1/get_server_capabilities", im.Authed([self](const http::Request&, const ApiKey&) {
    Json models = Json::array();
    for (const auto& m : self->scheduler.BaseModels())
      models.push_back({{"model_name", m.name}, {"max_context_length", m.max_context}, {"trainable", true},
                        {"sampleable", true}});
    return JsonOk({{"supported_models", models},
                   {"supported_loss_fns", {"cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo"}}});
  }));
  r.Post("/api/v1/create_session", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    std::string id = NewId("ses");
    std::string now = FormatIso8601Utc(SystemClock().Now());
    // Optional texts: null or absent is none; another type is refused, not read as none.
    std::map<std::string, store::Value> texts;
    for (const char* field : {"project_id", "display_name"}) {
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string v, GetFieldOr<std::string>(body, field, "", "request"),
                                       req);
      texts[field] = body.contains(field) && body[field].is_string() ? store::Value(v) : store::Value();
    }
    auto text_or_null = [&](const char* field) { return texts[field]; };
    Status s = self->db.Transaction([&](Tx& tx) -> Status {
      return tx
          .Exec("INSERT INTO api_sessions (id, key_id, tags, user_metadata, sdk_version, created_at, last_heartbeat_at, "
                "project_id, display_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {id, key.id, body.value("tags", Json::array()).dump(), body.value("user_metadata", Json::object()).dump(),
                 body.value("sdk_version", std::string()), now, now, text_or_null("project_id"),
                 text_or_null("display_name")})
          .status();
    });
    if (!s.ok()) return Problem(s, req);
    return JsonOk({{"type", "create_session"}, {"session_id", id}});
  }));
  r.Post("/api/v1/session_heartbeat", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->TouchSession(key, body.value("session_id", std::string())), req);
    return JsonOk({{"type", "session_heartbeat"}});
  }));
  r.Post("/api/v1/create_model", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    std::string session = body.value("session_id", std::string());
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->CheckSession(key, session), req);
    std::string base = body.value("base_model", std::string());
    if (base.empty()) return Problem(InvalidArgument("field 'base_model' is missing"), req);
    Json lc = body.value("lora_config", Json::object());
    if (lc.is_null()) lc = Json::object();
    Json oc = body.value("optimizer_config", Json::object());
    if (oc.is_object() && oc.contains("type") && oc["type"] != "adamw")
      return Problem(InvalidArgument("optimizer_config.type '" + oc["type"].dump() + "' is not supported (adamw only)"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(model::LoraConfig cfg, LoraFromRequest(lc, self->options.lora_alpha),
                                     req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(uint64_t seed, GetFieldOr<uint64_t>(lc, "seed", 0, "lora_config"), req);
    // The SDK derives model ids as "<session>:train:<model_seq_id>"; a retried create finds its run.
    std::string run_id = ModelIdFor(session, body.value("model_seq_id", int64_t{0}));
    auto run = self->scheduler.CreateRun(run_id, key.id, session, base, cfg,
                                         cfg.targets.count(model::LinearKind::kLmHead) > 0, seed,
                                         body.value("user_metadata", Json::object()));
    if (run.ok()) {
      self->Audit(key.id, "training_run_create",
                  {{"model_id", run->id}, {"base_model", base}, {"lora_rank", cfg.rank}});
    } else if (run.status().code() == ErrorCode::kAlreadyExists) {
      run = self->OwnedRun(key, run_id);
    }
    if (!run.ok()) return Problem(run.status(), req);
    auto fut = self->ImmediateFuture(key, "create_model", {{"model_id", run->id}, {"type", "create_model"}});
    if (!fut.ok()) return Problem(fut.status(), req);
    return JsonOk({{"request_id", *fut}, {"model_id", run->id}});
  }));
  r.Post("/api/v1/get_info", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, body.value("model_id", std::string())), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string dir, self->scheduler.BaseModelDir(run.base_model), req);
    return JsonOk({{"type", "get_info"},
                   {"model_id", run.id},
                   {"model_data", {{"arch", "transformer"}, {"model_name", run.base_model}, {"tokenizer_id", dir}}},
                   {"is_lora", !run.full_finetune},
                   {"lora_rank", run.full_finetune ? Json() : Json(run.lora.rank)},
                   {"model_name", run.base_model}});
  }));
  r.Post("/api/v1/unload_model", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, body.value("model_id", std::string())), req);
    auto fut = self->ImmediateFuture(key, "unload_model", {{"model_id", run.id}, {"type", "unload_model"}});
    if (!fut.ok()) return Problem(fut.status(), req);
    return JsonOk({{"request_id", *fut}, {"model_id", run.id}});
  }));
  r.Post("/api/v1/weights_info", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    std::string path = body.value("tinker_path", std::string());
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo c, self->ReadableCheckpoint(key, path), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->scheduler.Run(c.run_id), req);
    return JsonOk({{"base_model", run.base_model},
                   {"is_lora", !run.full_finetune},
                   {"lora_rank", run.full_finetune ? Json() : Json(run.lora.rank)}});
  }));
  r.Get("/api/v1/training_runs", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t limit, QueryInt(req, "limit", 20), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t offset, QueryInt(req, "offset", 0), req);
    auto runs = self->scheduler.Runs(key.id);
    Json list = Json::array();
    for (int64_t i = offset; i < static_cast<int64_t>(runs.size()) && i < offset + limit; ++i)
      list.push_back(RunJson(self->scheduler, runs[static_cast<size_t>(i)]));
    return JsonOk({{"training_runs", list},
                   {"cursor", {{"offset", offset}, {"limit", limit}, {"total_count", runs.size()}}}});
  }));
  // access_scope=owned (the default): the key's own runs. accessible: also another key's run that
  // has a published checkpoint, seen as RunJson's public_only view.
  r.Get("/api/v1/training_runs/{id}", im.Authed([self](const http::Request& req, const ApiKey& key) {
    std::string scope = req.Query("access_scope").value_or("owned");
    if (scope != "owned" && scope != "accessible")
      return Problem(InvalidArgument("query parameter 'access_scope' must be 'owned' or 'accessible', got '" + scope + "'"),
                     req);
    Result<engine::RunInfo> owned = self->OwnedRun(key, req.PathParam("id"));
    if (owned.ok()) return JsonOk(RunJson(self->scheduler, *owned));
    if (scope == "accessible") {
      Result<engine::RunInfo> run = self->scheduler.Run(req.PathParam("id"));
      Result<std::vector<engine::CheckpointInfo>> ckpts =
          run.ok() ? self->scheduler.Checkpoints(run->id) : Result<std::vector<engine::CheckpointInfo>>(run.status());
      if (ckpts.ok() && std::any_of(ckpts->begin(), ckpts->end(), [](const auto& c) { return c.is_public; }))
        return JsonOk(RunJson(self->scheduler, *run, /*public_only=*/true));
    }
    return Problem(owned.status(), req);
  }));
  auto list_checkpoints = im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, req.PathParam("id")), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto ckpts, self->scheduler.Checkpoints(run.id), req);
    Json list = Json::array();
    for (const auto& c : ckpts) list.push_back(CheckpointJson(c));
    return JsonOk({{"checkpoints", list}});
  });
  // RestClient.list_user_checkpoints: every checkpoint of the key's runs, newest first, paged.
  r.Get("/api/v1/checkpoints", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t limit, QueryInt(req, "limit", 100), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t offset, QueryInt(req, "offset", 0), req);
    std::vector<engine::CheckpointInfo> all;
    for (const engine::RunInfo& run : self->scheduler.Runs(key.id)) {
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto ckpts, self->scheduler.Checkpoints(run.id), req);
      all.insert(all.end(), ckpts.begin(), ckpts.end());
    }
    std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
      return a.created_at != b.created_at ? a.created_at > b.created_at : a.TinkerPath() < b.TinkerPath();
    });
    Json list = Json::array();
    for (int64_t i = offset; i < static_cast<int64_t>(all.size()) && i < offset + limit; ++i)
      list.push_back(CheckpointJson(all[static_cast<size_t>(i)]));
    return JsonOk({{"checkpoints", list},
                   {"cursor", {{"offset", offset}, {"limit", limit}, {"total_count", all.size()}}}});
  }));
  // RestClient.list_sessions / get_session: the key's sessions, newest first; one session's runs
  // and sampling sessions.
  r.Get("/api/v1/sessions", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t limit, QueryInt(req, "limit", 20), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t offset, QueryInt(req, "offset", 0), req);
    Json ids = Json::array();
    Status s = self->db.Read([&](Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM api_sessions WHERE key_id = ? "
                                                  "ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                                                  {key.id, limit, offset}));
      for (const Row& row : rows) {
        OPENRL_ASSIGN_OR_RETURN(std::string id, row.Text("id"));
        ids.push_back(id);
      }
      return Status::Ok();
    });
    if (!s.ok()) return Problem(s, req);
    return JsonOk({{"sessions", ids}});
  }));
  r.Get("/api/v1/sessions/{id}", im.Authed([self](const http::Request& req, const ApiKey& key) {
    std::string id = req.PathParam("id");
    std::optional<Row> session;
    Json samplers = Json::array();
    Status s = self->db.Read([&](Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(session, tx.QueryOne("SELECT user_metadata, display_name FROM api_sessions WHERE id = ? AND key_id = ?",
                                                   {id, key.id}));
      if (!session) return NotFound("session '" + id + "' is unknown");
      OPENRL_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM sampling_sessions WHERE session_id = ? "
                                                  "ORDER BY created_at, id", {id}));
      for (const Row& row : rows) {
        OPENRL_ASSIGN_OR_RETURN(std::string sid, row.Text("id"));
        samplers.push_back(sid);
      }
      return Status::Ok();
    });
    if (!s.ok()) return Problem(s, req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string meta_text, session->Text("user_metadata"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::optional<std::string> display_name, session->OptionalText("display_name"), req);
    Json meta = Json::parse(meta_text, nullptr, /*allow_exceptions=*/false);
    Json runs = Json::array();
    for (const engine::RunInfo& run : self->scheduler.Runs(key.id))
      if (run.session_id == id) runs.push_back(run.id);
    return JsonOk({{"training_run_ids", runs},
                   {"sampler_ids", samplers},
                   {"user_metadata", meta.is_object() ? StringMap(meta) : Json::object()},
                   {"display_name", display_name ? Json(*display_name) : Json()}});
  }));
  r.Get("/api/v1/training_runs/{id}/checkpoints", list_checkpoints);
  r.Get("/api/v1/models/{id}/checkpoints", list_checkpoints);
  r.Delete("/api/v1/training_runs/{id}/checkpoints/{kind}/{name}",
           im.Authed([self](const http::Request& req, const ApiKey& key) {
             OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, req.PathParam("id")), req);
             std::string path = "tinker://" + run.id + "/" + req.PathParam("kind") + "/" + req.PathParam("name");
             OPENRL_RETURN_RESPONSE_IF_ERROR(self->scheduler.DeleteCheckpoint(path), req);
             self->Audit(key.id, "checkpoint_delete", {{"tinker_path", path}, {"model_id", run.id}});
             return http::Response::Text(204, "");
           }));
  // The SDK's cancel of an abandoned sample request (its future cancelled or timed out): the
  // request leaves the engine and its future fails with CANCELLED. Only sample requests.
  r.Post("/api/v1/cancel_future", im.Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    std::string id = body.value("request_id", Json()).is_string() ? body["request_id"].get<std::string>() : "";
    if (id.empty()) return Problem(InvalidArgument("field 'request_id' is missing"), req);
    Result<engine::FutureRecord> rec = self->futures.Get(id);
    if (!rec.ok() || rec->key_id != key.id) return Problem(NotFound("future " + id + " is unknown or has expired"), req);
    if (rec->kind != "sample")
      return Problem(InvalidArgument("future " + id + " is a " + rec->kind + " request; only sample requests can be cancelled"), req);
    if (rec->state == "pending") self->scheduler.CancelSample(id);
    return JsonOk({{"request_id", id}, {"state", rec->state == "pending" ? "cancelling" : rec->state}});
  }));
  r.AddAsync("POST", "/api/v1/retrieve_future", [self](const http::Request& req, http::Responder respond) {
    Result<ApiKey> key = self->Authenticate(req);
    if (!key.ok()) return respond(Problem(key.status(), req));
    Result<Json> body = req.JsonBody();
    if (!body.ok()) return respond(Problem(body.status(), req));
    std::string id = body->value("request_id", std::string());
    std::string key_id = key->id;
    std::string path = req.path;
    auto deadline = std::chrono::steady_clock::now() + self->options.poll_wait;
    self->futures.Await(id, deadline, [respond, key_id, path, id](Result<engine::FutureRecord> rec) {
      if (!rec.ok() || rec->key_id != key_id) {
        return respond(http::ProblemFromStatus(NotFound("future " + id + " is unknown or has expired"), path));
      }
      if (rec->state == "pending") return respond(http::Response::JsonBody(408, {{"queue_state", "active"}}));
      if (rec->state == "failed")
        return respond(JsonOk({{"error", rec->error}, {"category", rec->error_category}}));
      if (rec->result_format == "proto") {
        return respond(http::Response::Text(200, rec->result, "application/x-protobuf"));
      }
      return respond(http::Response::Text(200, rec->result, "application/json"));
    });
  });
  im.InstallTraining(r, self);
  im.InstallExport(r, self);
  im.InstallAccount(r, self);
  im.InstallCustomLoss(r, self);
}

}  // namespace openrl::api
