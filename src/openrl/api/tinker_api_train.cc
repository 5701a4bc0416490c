// Training and sampling routes: forward_backward (protobuf or JSON), forward (JSON, older SDKs),
// optim_step, save_weights, save_weights_for_sampler, load_weights, sampling sessions, asample.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "openrl/api/tinker_api_internal.h"
#include "openrl/api/tinker_wire.h"
#include "openrl/core/ids.h"

namespace openrl::api {
namespace {

constexpr int64_t kMaxTopLogprobs = 1024;  // alternatives per position in a sample answer

// What can be checked before the work is queued: token ids, lengths, loss inputs (by running the
// loss once on zeros, which checks every shape, dtype and value).
Status CheckForwardBackward(const engine::ForwardBackwardWork& work, const engine::BaseModelInfo& base) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < work.data.size(); ++i) {
    const engine::TrainDatum& d = work.data[i];
    std::string where = "data[" + std::to_string(i) + "]";
    if (static_cast<int64_t>(d.tokens.size()) > base.max_context)
      return InvalidArgument(where + ": " + std::to_string(d.tokens.size()) + " tokens exceed the model's context of " +
                             std::to_string(base.max_context));
    for (size_t t = 0; t < d.tokens.size(); ++t) {
      if (d.tokens[t] < 0 || d.tokens[t] >= base.vocab_size)
        return InvalidArgument(where + ".model_input token " + std::to_string(t) + " is " + std::to_string(d.tokens[t]) +
                               ", outside the vocabulary [0, " + std::to_string(base.vocab_size) + ")");
    }
    const at::Tensor& targets = d.loss_inputs.at("target_tokens");
    if (targets.numel() > 0 && (targets.min().item<int64_t>() < 0 || targets.max().item<int64_t>() >= base.vocab_size))
      return InvalidArgument(where + ".loss_fn_inputs.target_tokens holds ids outside the vocabulary [0, " +
                             std::to_string(base.vocab_size) + ")");
    std::map<std::string, at::Tensor> inputs = d.loss_inputs;
    inputs.erase("target_tokens");
    at::Tensor zeros = at::zeros(targets.sizes(), at::kFloat);  // (T,), or (T, K) for K targets per position
    OPENRL_RETURN_IF_ERROR(engine::ComputeDatumLoss(work.loss, zeros, inputs, static_cast<int64_t>(i)).status());
  }
  return Status::Ok();
}

int64_t Tokens(const engine::ForwardBackwardWork& work) {
  int64_t n = 0;
  for (const auto& d : work.data) n += static_cast<int64_t>(d.tokens.size());
  return n;
}

Result<engine::SamplingParams> ParseSamplingParams(const Json& p, const engine::BaseModelInfo& base) {
  engine::SamplingParams out;
  if (!p.is_object()) return InvalidArgument("field 'sampling_params' must be an object");
  // A field of the wrong type is refused, not skipped: "temperature": "0" must not sample at 1.0.
  constexpr std::string_view kSrc = "sampling_params";
  OPENRL_ASSIGN_OR_RETURN(out.max_tokens, GetFieldOr<int64_t>(p, "max_tokens", out.max_tokens, kSrc));
  OPENRL_ASSIGN_OR_RETURN(out.temperature, GetFieldOr<double>(p, "temperature", out.temperature, kSrc));
  OPENRL_ASSIGN_OR_RETURN(out.top_p, GetFieldOr<double>(p, "top_p", out.top_p, kSrc));
  OPENRL_ASSIGN_OR_RETURN(int64_t top_k, GetFieldOr<int64_t>(p, "top_k", -1, kSrc));
  out.top_k = top_k < 0 ? 0 : top_k;  // -1 (the SDK's default) and any negative: no top-k
  if (p.contains("seed") && !p["seed"].is_null()) {
    OPENRL_ASSIGN_OR_RETURN(out.seed, GetField<uint64_t>(p, "seed", kSrc));
  }
  const Json stop = p.contains("stop") ? p["stop"] : Json();
  if (stop.is_null()) {
    out.stop_token_ids = base.eos_ids;
  } else if (stop.is_string()) {
    out.stop_strings.push_back(stop.get<std::string>());
  } else if (stop.is_array()) {
    for (const Json& s : stop) {
      if (s.is_string()) {
        out.stop_strings.push_back(s.get<std::string>());
      } else if (s.is_number_integer()) {
        out.stop_token_ids.push_back(s.get<int64_t>());
      } else {
        return InvalidArgument("sampling_params.stop must be a string, a list of strings or a list of token ids");
      }
    }
  } else {
    return InvalidArgument("sampling_params.stop must be a string, a list of strings or a list of token ids");
  }
  return out;
}

// A sample request's prompt scoring beyond prompt_logprobs (SDK 0.38): prompt_alt_tokens_k,
// prompt_logprobs_last_n and target_prompt_logprobs, into `work.params` (its prompt is decoded and
// checked). Returns the targets' layout, which the answer keeps (null when none were asked).
Result<std::shared_ptr<PromptTargets>> ParsePromptScoring(const Json& body, const engine::BaseModelInfo& base,
                                                          engine::SampleWork& work) {
  engine::SamplingParams& p = work.params;
  OPENRL_ASSIGN_OR_RETURN(p.prompt_alt_tokens,
                          GetFieldOr<int64_t>(body, "prompt_alt_tokens_k", 0, "request"));
  if (p.prompt_alt_tokens < 0 || p.prompt_alt_tokens > kMaxTopLogprobs)
    return InvalidArgument("field 'prompt_alt_tokens_k' must be in 0.." + std::to_string(kMaxTopLogprobs) +
                           ", got " + std::to_string(p.prompt_alt_tokens));
  const int64_t scored = static_cast<int64_t>(work.prompt.size()) - 1;  // positions after the first
  if (body.contains("prompt_logprobs_last_n") && !body["prompt_logprobs_last_n"].is_null()) {
    OPENRL_ASSIGN_OR_RETURN(p.prompt_logprobs_last_n,
                            GetFieldOr<int64_t>(body, "prompt_logprobs_last_n", 0, "request"));
    if (!p.prompt_logprobs)
      return InvalidArgument("field 'prompt_logprobs_last_n' needs prompt_logprobs: true");
    if (p.prompt_logprobs_last_n < 1 || p.prompt_logprobs_last_n > scored)
      return InvalidArgument("field 'prompt_logprobs_last_n' must be in 1..len(prompt) - 1 = " +
                             std::to_string(scored) + ", got " + std::to_string(p.prompt_logprobs_last_n));
  }
  if (!body.contains("target_prompt_logprobs") || body["target_prompt_logprobs"].is_null())
    return std::shared_ptr<PromptTargets>();
  OPENRL_ASSIGN_OR_RETURN(
      PromptTargets t, DecodePromptTargets(body["target_prompt_logprobs"], base.vocab_size, kMaxTopLogprobs,
                                           "target_prompt_logprobs"));
  if (t.rows != scored)
    return InvalidArgument("target_prompt_logprobs has " + std::to_string(t.rows) + " rows; a prompt of " +
                           std::to_string(scored + 1) + " tokens needs " + std::to_string(scored) +
                           " (row i scores prompt position i + 1)");
  p.prompt_target_ids = std::move(t.ids);
  t.ids.clear();
  return std::make_shared<PromptTargets>(std::move(t));
}

}  // namespace

void TinkerApi::Impl::InstallTraining(http::Router& r, const std::shared_ptr<Impl>& self) {
  r.Post("/api/v1/forward_backward", self->Authed([self](const http::Request& req, const ApiKey& key) {
      ForwardBackwardCall call;
      Status decoded = Status::Ok();
      std::string ct(req.headers.GetOr("Content-Type", ""));
      if (ct.find("protobuf") != std::string::npos) {
        decoded = DecodeForwardBackwardProto(req.body, call);
      } else {
        Result<Json> body = req.JsonBody();
        decoded = body.ok() ? DecodeForwardBackwardJson(*body, call) : body.status();
      }
      if (call.model_id.empty()) return Problem(decoded.ok() ? InvalidArgument("model_id is missing") : decoded, req);
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, call.model_id), req);
      auto refuse = [&](const Status& s) {
        self->scheduler.Skip(run.id, call.seq_id);
        return Problem(s, req);
      };
      if (!decoded.ok()) return refuse(decoded);
      if (!call.custom_loss_id.empty()) {  // loss_fn "custom": the loss create_custom_loss stored
        Result<std::shared_ptr<const engine::CustomLoss>> loss =
            self->CustomLossFor(key, run, call.custom_loss_id);
        if (!loss.ok()) return refuse(loss.status());
        call.work.loss.custom = *loss;
      }
      Result<engine::BaseModelInfo> base = self->scheduler.BaseModel(run.base_model);
      if (!base.ok()) return refuse(base.status());
      Status checked = CheckForwardBackward(call.work, *base);
      if (!checked.ok()) return refuse(checked);
      std::string kind = call.work.forward_only ? "forward" : "forward_backward";
      int64_t tokens = Tokens(call.work);
      return self->SubmitRunWork(req, key, kind, run.id, call.seq_id, std::move(call.work),
                                 [self, key_id = key.id, run, tokens](engine::Output& out) -> std::pair<std::string, std::string> {
                                   self->CountUsage(key_id, "training", run, tokens);
                                   // Protobuf, the only form SDKs from 0.25 on decode.
                                   return {EncodeForwardBackwardProto(std::get<engine::ForwardBackwardOutput>(out)),
                                           "proto"};
                                 },
                                 tokens);
  }));

  r.Post("/api/v1/optim_step", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, body.value("model_id", std::string())), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t seq, SeqId(body), req);
    Json p = body.contains("adam_params") ? body["adam_params"]
             : body.contains("optim_params") ? body["optim_params"]
                                             : body.value("optimizer_params", Json());
    engine::OptimStepWork work;
    Status s = Status::Ok();
    if (!p.is_object()) {
      s = InvalidArgument("field 'adam_params' is missing");
    } else if (p.contains("type") && p["type"] != "adam" && p["type"] != "adamw") {
      s = InvalidArgument("optimizer '" + p["type"].dump() + "' is not supported (AdamParams only)");
    } else {
      work.adam.lr = p.value("learning_rate", 1e-4);
      work.adam.beta1 = p.value("beta1", 0.9);
      work.adam.beta2 = p.value("beta2", 0.95);
      work.adam.eps = p.value("eps", 1e-12);
      work.adam.weight_decay = p.value("weight_decay", 0.0);
      work.adam.grad_clip_norm = p.value("grad_clip_norm", 0.0);
      s = work.adam.Validate();
    }
    if (!s.ok()) {
      self->scheduler.Skip(run.id, seq);
      return Problem(s, req);
    }
    return self->SubmitRunWork(req, key, "optim_step", run.id, seq, work, [](engine::Output& out) {
      auto& o = std::get<engine::OptimStepOutput>(out);
      Json metrics = Json::object();
      for (auto& [k, v] : o.metrics) metrics[k] = v;
      return std::pair<std::string, std::string>{Json{{"metrics", metrics}, {"type", "optim_step"}}.dump(), "json"};
    });
  }));

  auto save = [self](bool sampler) {
    return self->Authed([self, sampler](const http::Request& req, const ApiKey& key) {
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, body.value("model_id", std::string())), req);
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t seq, SeqId(body), req);
      engine::SaveWork work;
      work.kind = sampler ? engine::CheckpointKind::kSampler : engine::CheckpointKind::kTraining;
      // Null means "not given"; any other value of the wrong type is refused, never dropped (an
      // ignored "ttl_seconds": "3600" would have kept the checkpoint forever).
      Result<std::string> name = GetFieldOr<std::string>(body, "path", "", "request");
      Result<int64_t> ttl = GetFieldOr<int64_t>(body, "ttl_seconds", 0, "request");
      Result<Json> metadata = GetFieldOr<Json>(body, "user_metadata", Json::object(), "request");
      Status s = !name.ok() ? name.status() : !ttl.ok() ? ttl.status() : metadata.status();
      if (s.ok() && !metadata->is_object())
        s = InvalidArgument("request: field 'user_metadata' must be an object");
      if (s.ok()) {
        work.name = *name;
        if (*ttl != 0) work.ttl_seconds = *ttl;
        work.user_metadata = *metadata;
      }
      if (!s.ok()) {
        // refused below, before anything is queued
      } else if (!work.name.empty() &&
                 !engine::ParseTinkerPath("tinker://" + run.id + "/weights/" + work.name).ok()) {
        s = InvalidArgument("checkpoint name '" + work.name + "' must be 1-128 letters, digits, '-', '_' or '.'");
      } else if (!sampler && work.name.empty()) {
        work.name = NewId("state");
      } else if (!sampler && !body.value("overwrite", false)) {
        if (self->scheduler.Checkpoint("tinker://" + run.id + "/weights/" + work.name).ok())
          s = InvalidArgument("checkpoint '" + work.name + "' of model " + run.id +
                              " already exists; pass overwrite=True or choose another name");
      }
      if (!s.ok()) {
        self->scheduler.Skip(run.id, seq);
        return Problem(s, req);
      }
      std::string type = sampler ? "save_weights_for_sampler" : "save_weights";
      return self->SubmitRunWork(req, key, type, run.id, seq, work, [self, key_id = key.id, run, type](engine::Output& out) {
        auto& o = std::get<engine::SaveOutput>(out);
        if (!o.path.empty()) {  // a checkpoint was written (not an in-memory sampler snapshot)
          self->Audit(key_id, "checkpoint_create", {{"tinker_path", o.path}, {"model_id", run.id}});
          self->CountUsage(key_id, "checkpoint", run, 1);
        }
        Json j = {{"type", type}};
        j["path"] = o.path.empty() ? Json() : Json(o.path);
        if (!o.sampling_session_id.empty()) j["sampling_session_id"] = o.sampling_session_id;
        return std::pair<std::string, std::string>{j.dump(), "json"};
      });
    });
  };
  r.Post("/api/v1/save_weights", save(false));
  r.Post("/api/v1/save_weights_for_sampler", save(true));

  r.Post("/api/v1/load_weights", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    if (!body.value("model_id", Json()).is_string()) {
      // create_training_client_from_state*: a new run, configured like the checkpoint's, then loaded.
      OPENRL_RETURN_RESPONSE_IF_ERROR(self->CheckSession(key, body.value("session_id", std::string())), req);
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo src, self->ReadableCheckpoint(key, body.value("path", std::string())), req);
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo from, self->scheduler.Run(src.run_id), req);
      if (src.kind != "training")
        return Problem(InvalidArgument("a training client is created from a training checkpoint "
                                       "(tinker://<id>/weights/<name>), got " + src.TinkerPath()), req);
      std::string base = body.value("base_model", Json()).is_string() ? body["base_model"].get<std::string>() : from.base_model;
      std::string run_id = ModelIdFor(body.value("session_id", std::string()), body.value("model_seq_id", int64_t{0}));
      auto created = self->scheduler.CreateRun(run_id, key.id, body.value("session_id", std::string()), base, from.lora,
                                               from.train_unembed, 0, body.value("user_metadata", from.user_metadata));
      if (!created.ok() && created.status().code() != ErrorCode::kAlreadyExists) return Problem(created.status(), req);
      if (created.ok())
        self->Audit(key.id, "training_run_create",
                    {{"model_id", run_id}, {"base_model", base}, {"from_checkpoint", src.TinkerPath()}});
      body["model_id"] = run_id;
    }
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, body.value("model_id", std::string())), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t seq, SeqId(body), req);
    engine::LoadWork work;
    work.path = body.value("path", std::string());
    work.with_optimizer = body.value("optimizer", false);
    Result<engine::CheckpointInfo> ckpt = self->ReadableCheckpoint(key, work.path);
    if (!ckpt.ok()) {
      self->scheduler.Skip(run.id, seq);
      Status s = ckpt.status();
      return Problem(s.code() == ErrorCode::kNotFound ? InvalidArgument(s.message()) : s, req);
    }
    std::string model_id = run.id;
    Result<engine::RunInfo> owner = self->scheduler.Run(ckpt->run_id);
    std::string owner_key = owner.ok() ? owner->key_id : "";
    return self->SubmitRunWork(req, key, "load_weights", run.id, seq, work,
                               [self, key_id = key.id, owner_key, model_id](engine::Output& out) {
      auto& o = std::get<engine::LoadOutput>(out);
      self->Audit(key_id, "checkpoint_read", {{"tinker_path", o.path}, {"model_id", model_id}, {"purpose", "load_state"}},
                  owner_key);
      return std::pair<std::string, std::string>{
          Json{{"path", o.path}, {"model_id", model_id}, {"type", "load_weights"}}.dump(), "json"};
    });
  }));

  auto session_for = [self](const ApiKey& key, const Json& body) -> Result<engine::SamplingSessionInfo> {
    std::string model_path = body.value("model_path", Json()).is_string() ? body["model_path"].get<std::string>() : "";
    std::string base = body.value("base_model", Json()).is_string() ? body["base_model"].get<std::string>() : "";
    if (model_path.empty())
      return self->scheduler.CreateSamplingSession(body.value("session_id", std::string()), base, model_path);
    OPENRL_ASSIGN_OR_RETURN(engine::CheckpointInfo c, self->ReadableCheckpoint(key, model_path));
    OPENRL_ASSIGN_OR_RETURN(engine::RunInfo owner, self->scheduler.Run(c.run_id));
    OPENRL_ASSIGN_OR_RETURN(engine::SamplingSessionInfo s,
                            self->scheduler.CreateSamplingSession(body.value("session_id", std::string()), base, model_path));
    self->Audit(key.id, "checkpoint_read",
                {{"tinker_path", model_path}, {"model_id", c.run_id}, {"purpose", "sampling"}, {"sampler_id", s.id}},
                owner.key_id);
    return s;
  };
  r.Post("/api/v1/create_sampling_session", self->Authed([self, session_for](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->CheckSession(key, body.value("session_id", std::string())), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::SamplingSessionInfo s, session_for(key, body), req);
    return JsonOk({{"type", "create_sampling_session"}, {"sampling_session_id", s.id}});
  }));
  r.Get("/api/v1/samplers/{id}", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::SamplingSessionInfo s, self->OwnedSampler(key, req.PathParam("id")), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string dir, self->scheduler.BaseModelDir(s.base_model), req);
    // base_model is the local model directory, so SamplingClient.get_tokenizer() loads it offline.
    Json j = {{"sampler_id", s.id}, {"base_model", dir}};
    j["model_path"] = s.model_path ? Json(*s.model_path) : Json();
    return JsonOk(j);
  }));

  r.Post("/api/v1/asample", self->Authed([self, session_for](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    std::string session_id = body.value("sampling_session_id", Json()).is_string()
                                 ? body["sampling_session_id"].get<std::string>()
                                 : "";
    engine::SamplingSessionInfo session;
    if (session_id.empty()) {
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(session, session_for(key, body), req);
    } else {
      OPENRL_ASSIGN_OR_RETURN_RESPONSE(session, self->OwnedSampler(key, session_id), req);
    }
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::BaseModelInfo base, self->scheduler.BaseModel(session.base_model), req);
    engine::SampleWork work;
    work.sampling_session_id = session.id;
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.prompt, DecodeModelInput(body.value("prompt", Json()), "prompt"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.params, ParseSamplingParams(body.value("sampling_params", Json::object()), base), req);
    // Wrong types are refused (a 2.5 is not read as 2, a "true" not as false); null is the default.
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.num_samples, GetFieldOr<int64_t>(body, "num_samples", 1, "request"),
                                     req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.params.prompt_logprobs,
                                     GetFieldOr<bool>(body, "prompt_logprobs", false, "request"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.params.prompt_top_logprobs,
                                     GetFieldOr<int64_t>(body, "topk_prompt_logprobs", 0, "request"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.params.top_logprobs,
                                     GetFieldOr<int64_t>(body, "topk_sample_logprobs", 0, "request"), req);
    // Each alternative is a row of the answer: K past the vocabulary only repeats it, and a huge K
    // over a long prompt would be gigabytes (the same cap as a (T, K) sparse loss input's K).
    for (auto [f, k] :
         {std::pair<const char*, int64_t>{"topk_prompt_logprobs", work.params.prompt_top_logprobs},
          {"topk_sample_logprobs", work.params.top_logprobs}})
      if (k < 0 || k > kMaxTopLogprobs)
        return Problem(InvalidArgument(std::string("field '") + f + "' must be in 0.." +
                                       std::to_string(kMaxTopLogprobs) + ", got " + std::to_string(k)),
                       req);
    if (work.params.prompt_top_logprobs > 0) work.params.prompt_logprobs = true;
    if (work.num_samples < 1 || work.num_samples > 1024)
      return Problem(InvalidArgument("num_samples must be in 1..1024, got " + std::to_string(work.num_samples)), req);
    if (work.prompt.empty()) return Problem(InvalidArgument("prompt is empty"), req);
    for (size_t t = 0; t < work.prompt.size(); ++t)
      if (work.prompt[t] < 0 || work.prompt[t] >= base.vocab_size)
        return Problem(InvalidArgument("prompt token " + std::to_string(t) + " is " + std::to_string(work.prompt[t]) +
                                       ", outside the vocabulary [0, " + std::to_string(base.vocab_size) + ")"),
                       req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::shared_ptr<PromptTargets> targets,
                                     ParsePromptScoring(body, base, work), req);
    const int64_t alt_k = work.params.prompt_alt_tokens;
    if (static_cast<int64_t>(work.prompt.size()) + work.params.max_tokens > base.max_context)
      return Problem(InvalidArgument("prompt (" + std::to_string(work.prompt.size()) + " tokens) plus max_tokens (" +
                                     std::to_string(work.params.max_tokens) + ") exceed the model's context of " +
                                     std::to_string(base.max_context)),
                     req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(work.params.Validate(base.vocab_size), req);
    // Charged only once a slot is held (a 429 costs nothing), and given back if the engine refuses.
    int64_t charge = static_cast<int64_t>(work.prompt.size()) + work.num_samples * work.params.max_tokens;
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->keys.AcquireSlot(key), req);
    Status charged = self->keys.ChargeTokens(key, charge);
    if (!charged.ok()) {
      self->keys.ReleaseSlot(key.id);
      return Problem(charged, req);
    }
    auto refund = [&] {
      self->keys.ReleaseSlot(key.id);
      self->keys.RefundTokens(key.id, charge);
    };
    auto fut = self->futures.Create("sample", key.id, std::nullopt, std::nullopt, RequestHash(req));
    if (!fut.ok()) {
      refund();
      return Problem(fut.status(), req);
    }
    int64_t n = work.num_samples;
    int64_t prefill = static_cast<int64_t>(work.prompt.size()) * work.num_samples;  // each sample's row is prefilled
    work.cancel_id = fut->id;
    Status s = self->scheduler.SubmitSample(
        std::move(work),
        self->Completion(
            fut->id, key.id, [self, key_id = key.id, session, prefill, targets, alt_k](engine::Output& out) {
              auto& o = std::get<engine::SampleOutput>(out);
              int64_t sampled = 0;
              for (const auto& seq : o.sequences) sampled += static_cast<int64_t>(seq.tokens.size());
              self->CountSampleUsage(key_id, session.id, session.base_model, prefill, sampled);
              // Results are protobuf, the only form SDKs from 0.25 on decode.
              return std::pair<std::string, std::string>{EncodeSampleProto(o, targets.get(), alt_k), "proto"};
            }));
    if (!s.ok()) {
      refund();
      self->futures.Fail(fut->id, s.message(), ErrorCategory(s));
      return Problem(s, req);
    }
    self->TrackSample(fut->id, session.id, body.value("seq_id", Json()).is_number_integer() ? body["seq_id"].get<int64_t>() : 0);
    Json ids = Json::array();
    for (int64_t i = 0; i < n; ++i) ids.push_back(fut->id + "-" + std::to_string(i));
    return JsonOk({{"request_id", fut->id}, {"sample_sequence_ids", ids}});
  }));
}

}  // namespace openrl::api
