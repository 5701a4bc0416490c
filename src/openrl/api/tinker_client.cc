#include "openrl/api/tinker_client.h"

#include <chrono>
#include <cstring>
#include <thread>

#include "openrl/core/fs.h"
#include "openrl/engine/scheduler.h"

#include "tinker_public.pb.h"

namespace openrl::api {
namespace {

namespace pb = tinker_public;

Json ModelInput(const std::vector<int32_t>& tokens) {
  return {{"chunks", Json::array({{{"type", "encoded_text"}, {"tokens", tokens}}})}};
}

template <typename T>
std::vector<T> Unpack(const std::string& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

}  // namespace

TinkerClient::TinkerClient(std::string host, uint16_t port, std::string api_key)
    : http_(std::move(host), port, {std::chrono::milliseconds(120000)}), api_key_(std::move(api_key)) {}

Result<Json> TinkerClient::PostJson(const std::string& path, const Json& body) {
  http::Headers h;
  h.Set("X-API-Key", api_key_);
  OPENRL_ASSIGN_OR_RETURN(http::ClientResponse r, http_.Post(path, body.dump(), h));
  if (r.status != 200) {
    auto j = r.JsonBody();
    std::string detail = j.ok() && j->contains("detail") ? (*j)["detail"].get<std::string>() : r.body;
    return Status(r.status == 429 ? ErrorCode::kResourceExhausted : ErrorCode::kInvalidArgument,
                  path + ": HTTP " + std::to_string(r.status) + ": " + detail);
  }
  return r.JsonBody();
}

Result<std::pair<std::string, std::string>> TinkerClient::Await(const std::string& request_id) {
  http::Headers h;
  h.Set("X-API-Key", api_key_);
  h.Set("Accept", "application/x-protobuf, application/json");
  std::string body = Json{{"request_id", request_id}}.dump();
  while (true) {
    OPENRL_ASSIGN_OR_RETURN(http::ClientResponse r, http_.Post("/api/v1/retrieve_future", body, h));
    if (r.status == 408) continue;  // still running: poll again
    if (r.status != 200) return Internal("retrieve_future " + request_id + ": HTTP " + std::to_string(r.status) + ": " + r.body);
    std::string type(r.headers.GetOr("Content-Type", ""));
    if (type.find("json") != std::string::npos) {
      OPENRL_ASSIGN_OR_RETURN(Json j, r.JsonBody());
      if (j.contains("error")) return FailedPrecondition("request " + request_id + " failed: " + j["error"].get<std::string>());
    }
    return std::make_pair(type, r.body);
  }
}

Result<std::string> TinkerClient::AwaitJsonField(const Json& accepted, const std::string& field) {
  OPENRL_ASSIGN_OR_RETURN(auto res, Await(accepted.at("request_id").get<std::string>()));
  OPENRL_ASSIGN_OR_RETURN(Json j, ParseJson(res.second, "future result"));
  if (!j.contains(field) || !j[field].is_string()) return Internal("future result has no '" + field + "'");
  return j[field].get<std::string>();
}

Status TinkerClient::CreateSession() {
  OPENRL_ASSIGN_OR_RETURN(Json j, PostJson("/api/v1/create_session", {{"tags", Json::array()},
                                                                       {"user_metadata", Json::object()},
                                                                       {"sdk_version", "openrl-cpp"},
                                                                       {"type", "create_session"}}));
  session_id_ = j.at("session_id").get<std::string>();
  return Status::Ok();
}

Result<std::string> TinkerClient::CreateLoraRun(const std::string& base_model, int64_t rank, uint64_t seed) {
  OPENRL_ASSIGN_OR_RETURN(Json j, PostJson("/api/v1/create_model",
                                           {{"session_id", session_id_},
                                            {"model_seq_id", model_seq_++},
                                            {"base_model", base_model},
                                            {"lora_config", {{"rank", rank}, {"seed", seed}}},
                                            {"type", "create_model"}}));
  return AwaitJsonField(j, "model_id");
}

Result<ClientForwardBackward> TinkerClient::ForwardBackward(const std::string& model_id,
                                                            const std::vector<ClientDatum>& data,
                                                            const std::string& loss_fn, bool forward_only) {
  Json items = Json::array();
  for (const ClientDatum& d : data) {
    Json inputs = {{"target_tokens", {{"data", d.targets}, {"dtype", "int64"}}}};
    for (const auto& [name, v] : d.float_inputs) inputs[name] = {{"data", v}, {"dtype", "float32"}};
    items.push_back({{"model_input", ModelInput(d.tokens)}, {"loss_fn_inputs", inputs}});
  }
  Json body = {{"model_id", model_id},
               {"seq_id", NextSeq(model_id)},
               {"forward_backward_input", {{"data", items}, {"loss_fn", loss_fn}, {"forward_only", forward_only}}}};
  OPENRL_ASSIGN_OR_RETURN(Json accepted, PostJson("/api/v1/forward_backward", body));
  OPENRL_ASSIGN_OR_RETURN(auto res, Await(accepted.at("request_id").get<std::string>()));
  pb::ForwardBackwardOutput out;
  if (!out.ParseFromString(res.second)) return Internal("forward_backward result is not protobuf");
  ClientForwardBackward r;
  for (const auto& [k, v] : out.metrics()) r.metrics[k] = v;
  for (const pb::ArrayRecord& rec : out.loss_fn_outputs()) {
    auto it = rec.fields().find("logprobs");
    if (it == rec.fields().end()) continue;
    std::vector<int64_t> offsets = Unpack<int64_t>(it->second.offsets());
    std::vector<float> all = Unpack<float>(it->second.data());
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      r.logprobs.emplace_back(all.begin() + offsets[i] / 4, all.begin() + offsets[i + 1] / 4);
  }
  return r;
}

Result<Json> TinkerClient::OptimStep(const std::string& model_id, double learning_rate) {
  OPENRL_ASSIGN_OR_RETURN(Json accepted, PostJson("/api/v1/optim_step",
                                                  {{"model_id", model_id},
                                                   {"seq_id", NextSeq(model_id)},
                                                   {"adam_params", {{"learning_rate", learning_rate},
                                                                    {"beta1", 0.9},
                                                                    {"beta2", 0.95},
                                                                    {"eps", 1e-8}}},
                                                   {"type", "optim_step"}}));
  OPENRL_ASSIGN_OR_RETURN(auto res, Await(accepted.at("request_id").get<std::string>()));
  return ParseJson(res.second, "optim_step result");
}

Result<std::string> TinkerClient::SamplerForCurrentWeights(const std::string& model_id) {
  OPENRL_ASSIGN_OR_RETURN(Json accepted, PostJson("/api/v1/save_weights_for_sampler",
                                                  {{"model_id", model_id},
                                                   {"seq_id", NextSeq(model_id)},
                                                   {"sampling_session_seq_id", sampler_seq_++},
                                                   {"type", "save_weights_for_sampler"}}));
  return AwaitJsonField(accepted, "sampling_session_id");
}

Result<std::string> TinkerClient::SamplerForBase(const std::string& base_model) {
  OPENRL_ASSIGN_OR_RETURN(Json j, PostJson("/api/v1/create_sampling_session",
                                           {{"session_id", session_id_},
                                            {"sampling_session_seq_id", sampler_seq_++},
                                            {"base_model", base_model},
                                            {"type", "create_sampling_session"}}));
  return j.at("sampling_session_id").get<std::string>();
}

Result<std::string> TinkerClient::SubmitSample(const std::string& sampling_session_id,
                                               const std::vector<int32_t>& prompt, int64_t num_samples,
                                               const ClientSamplingParams& params) {
  Json sp = {{"max_tokens", params.max_tokens}, {"temperature", params.temperature}};
  if (!params.stop_tokens.empty()) sp["stop"] = params.stop_tokens;
  if (params.seed) sp["seed"] = *params.seed;
  OPENRL_ASSIGN_OR_RETURN(Json accepted, PostJson("/api/v1/asample", {{"sampling_session_id", sampling_session_id},
                                                                      {"num_samples", num_samples},
                                                                      {"prompt", ModelInput(prompt)},
                                                                      {"sampling_params", sp},
                                                                      {"type", "sample"}}));
  return accepted.at("request_id").get<std::string>();
}

Result<std::vector<ClientSample>> TinkerClient::AwaitSample(const std::string& request_id) {
  OPENRL_ASSIGN_OR_RETURN(auto res, Await(request_id));
  pb::SampleResponse out;
  if (!out.ParseFromString(res.second)) return Internal("sample result is not protobuf");
  std::vector<ClientSample> samples;
  for (const pb::SampledSequence& s : out.sequences())
    samples.push_back({Unpack<int32_t>(s.tokens()), Unpack<float>(s.logprobs()), s.stop_reason() == pb::STOP_REASON_STOP});
  return samples;
}

Result<std::vector<ClientSample>> TinkerClient::Sample(const std::string& sampling_session_id,
                                                       const std::vector<int32_t>& prompt, int64_t num_samples,
                                                       const ClientSamplingParams& params) {
  OPENRL_ASSIGN_OR_RETURN(std::string id, SubmitSample(sampling_session_id, prompt, num_samples, params));
  return AwaitSample(id);
}

Result<std::vector<std::vector<ClientSample>>> TinkerClient::SampleMany(const std::string& sampling_session_id,
                                                                        const std::vector<std::vector<int32_t>>& prompts,
                                                                        int64_t num_samples,
                                                                        const ClientSamplingParams& params) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    ClientSamplingParams p = params;
    if (p.seed) *p.seed += i;
    OPENRL_ASSIGN_OR_RETURN(std::string id, SubmitSample(sampling_session_id, prompts[i], num_samples, p));
    ids.push_back(std::move(id));
  }
  std::vector<std::vector<ClientSample>> out;
  for (const std::string& id : ids) {
    OPENRL_ASSIGN_OR_RETURN(auto samples, AwaitSample(id));
    out.push_back(std::move(samples));
  }
  return out;
}

Result<std::string> TinkerClient::SaveWeights(const std::string& type, const std::string& model_id,
                                              const std::string& name) {
  OPENRL_ASSIGN_OR_RETURN(Json accepted, PostJson("/api/v1/" + type, {{"model_id", model_id},
                                                                     {"seq_id", NextSeq(model_id)},
                                                                     {"path", name},
                                                                     {"type", type}}));
  return AwaitJsonField(accepted, "path");
}

Result<std::string> TinkerClient::SaveState(const std::string& model_id, const std::string& name) {
  return SaveWeights("save_weights", model_id, name);
}

Result<std::string> TinkerClient::ExportWeights(const std::string& model_id, const std::string& name) {
  return SaveWeights("save_weights_external", model_id, name);
}

Result<std::vector<std::string>> TinkerClient::DownloadExport(const std::string& tinker_path, const std::string& out_dir) {
  OPENRL_ASSIGN_OR_RETURN(engine::TinkerPath p, engine::ParseTinkerPath(tinker_path));
  http::Headers h;
  h.Set("X-API-Key", api_key_);
  std::string target = "/api/v1/training_runs/" + p.run_id + "/checkpoints/" + engine::CheckpointKindSegment(p.kind) +
                       "/" + p.name + "/external_weights_urls";
  OPENRL_ASSIGN_OR_RETURN(http::ClientResponse r, http_.Get(target, h));
  if (r.status != 200) return InvalidArgument(target + ": HTTP " + std::to_string(r.status) + ": " + r.body);
  OPENRL_ASSIGN_OR_RETURN(Json j, r.JsonBody());
  OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(out_dir));
  std::vector<std::string> names;
  for (auto& [name, url] : j.at("urls").items()) {
    // The URL is absolute; this client is bound to the server, so only its path and query are sent.
    std::string u = url.get<std::string>();
    size_t start = u.find("://");
    start = start == std::string::npos ? 0 : u.find('/', start + 3);
    if (name.empty() || name.front() == '/' || ("/" + name + "/").find("/../") != std::string::npos)
      return InvalidArgument("the server named an unsafe file '" + name + "'");
    OPENRL_ASSIGN_OR_RETURN(http::ClientResponse file, http_.Get(u.substr(start)));
    if (file.status != 200) return Internal("downloading " + name + ": HTTP " + std::to_string(file.status));
    OPENRL_RETURN_IF_ERROR(fs::WriteFileAtomic(out_dir + "/" + name, file.body));
    names.push_back(name);
  }
  return names;
}

}  // namespace openrl::api
