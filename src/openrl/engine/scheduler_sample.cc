// Sampling work of the scheduler: sampling sessions (a base model, optionally with saved adapter
// weights) and one batched generation per clock cycle over every queued sample request.
#include <random>

#include "openrl/core/ids.h"
#include "openrl/engine/scheduler_internal.h"

namespace openrl::engine {

using store::Row;
using store::Tx;

Result<SamplingSessionInfo> Scheduler::CreateSamplingSession(const std::string& session_id,
                                                             const std::string& base_model,
                                                             const std::string& model_path) {
  auto sampler = std::make_unique<SamplerState>();
  std::string base_name = base_model;
  if (!model_path.empty()) {
    OPENRL_ASSIGN_OR_RETURN(TinkerPath p, ParseTinkerPath(model_path));
    OPENRL_ASSIGN_OR_RETURN(RunInfo run, Run(p.run_id));
    if (!base_name.empty() && base_name != run.base_model)
      return InvalidArgument("model_path " + model_path + " was trained on '" + run.base_model + "', not on '" +
                             base_name + "'");
    base_name = run.base_model;
  }
  if (base_name.empty()) return InvalidArgument("a sampling session needs base_model or model_path");
  OPENRL_ASSIGN_OR_RETURN(sampler->base, impl_->LoadBase(base_name));
  if (!model_path.empty()) {
    OPENRL_RETURN_IF_ERROR(impl_->LoadSamplerWeights(model_path, *sampler));
    sampler->info.model_path = model_path;
  }
  sampler->info.id = NewId("smp");
  sampler->info.base_model = base_name;
  OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec("INSERT INTO sampling_sessions (id, session_id, base_model, model_path, created_at) VALUES (?, ?, ?, ?, ?)",
              {sampler->info.id, session_id, base_name,
               model_path.empty() ? store::Value() : store::Value(model_path), NowIso()})
        .status();
  }));
  SamplingSessionInfo info = sampler->info;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->samplers[info.id] = std::move(sampler);
  return info;
}

Result<SamplingSessionInfo> Scheduler::SamplingSession(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->samplers.find(id);
    if (it != impl_->samplers.end()) return it->second->info;
  }
  // A session of an earlier process: sessions on saved weights (or the base) come back on demand.
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(impl_->db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne("SELECT * FROM sampling_sessions WHERE id = ?", {id}));
    return Status::Ok();
  }));
  if (!row) return NotFound("sampling session '" + id + "' is unknown");
  OPENRL_ASSIGN_OR_RETURN(std::string base, row->Text("base_model"));
  OPENRL_ASSIGN_OR_RETURN(auto path, row->OptionalText("model_path"));
  if (!path)
    return FailedPrecondition("sampling session '" + id +
                              "' held in-memory weights of a server process that has since restarted; save the "
                              "weights again and create a new sampling client");
  auto sampler = std::make_unique<SamplerState>();
  OPENRL_ASSIGN_OR_RETURN(sampler->base, impl_->LoadBase(base));
  OPENRL_RETURN_IF_ERROR(impl_->LoadSamplerWeights(*path, *sampler));
  sampler->info = {id, base, path};
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto [it, inserted] = impl_->samplers.emplace(id, std::move(sampler));
  return it->second->info;
}

void Scheduler::Impl::RunSamples(std::vector<std::pair<SampleWork, Done>>& batch) {
  // Rows of every request, grouped by base model; each request owns num_samples rows.
  struct Owner {
    size_t request;
    int64_t sample;
  };
  // Grouped by the weights they run on: a base (with per-row adapters) or a full-weights snapshot.
  struct Group {
    const model::Transformer* weights = nullptr;
    const tokenizer::Tokenizer* tokenizer = nullptr;
    std::vector<SampleRequest> requests;
    std::vector<Owner> owners;
  };
  std::map<const model::Transformer*, Group> by_base;
  std::vector<SampleOutput> outs(batch.size());
  std::vector<Status> errors(batch.size(), Status::Ok());
  std::random_device rd;
  for (size_t i = 0; i < batch.size(); ++i) {
    SampleWork& w = batch[i].first;
    SamplerState* sampler = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = samplers.find(w.sampling_session_id);
      if (it != samplers.end()) sampler = it->second.get();
    }
    if (!sampler) {
      errors[i] = NotFound("sampling session '" + w.sampling_session_id + "' is unknown");
      continue;
    }
    Status valid = w.params.Validate(sampler->base->info.vocab_size);
    if (!valid.ok()) {
      errors[i] = valid;
      continue;
    }
    outs[i].sequences.resize(static_cast<size_t>(w.num_samples));
    uint64_t seed = w.params.seed ? *w.params.seed : (static_cast<uint64_t>(rd()) << 32 | rd());
    const model::Transformer* weights = sampler->weights ? sampler->weights.get() : sampler->base->model.model.get();
    Group& group = by_base[weights];
    group.weights = weights;
    group.tokenizer = sampler->base->tokenizer.get();
    auto& requests = group.requests;
    auto& owners = group.owners;
    for (int64_t s = 0; s < w.num_samples; ++s) {
      SampleRequest r;
      r.prompt = w.prompt;
      r.params = w.params;
      r.params.seed = seed + static_cast<uint64_t>(s) * 0x9E3779B97F4A7C15ull;
      if (s > 0) {
        r.params.prompt_logprobs = false;
        r.params.prompt_top_logprobs = 0;
      }
      r.adapter = sampler->adapter.get();
      requests.push_back(std::move(r));
      owners.push_back({i, s});
    }
  }
  for (auto& [key, group] : by_base) {
    auto& requests = group.requests;
    auto& owners = group.owners;
    Result<std::vector<SampleResult>> results = Internal("not run");
    try {
      results = Generate(*group.weights, requests, group.tokenizer);
    } catch (const std::exception& e) {
      results = StatusFromException(e, "sampling");
    }
    for (size_t r = 0; r < owners.size(); ++r) {
      size_t i = owners[r].request;
      if (!results.ok()) {
        if (errors[i].ok()) errors[i] = results.status();
        continue;
      }
      SampleResult& res = (*results)[r];
      if (owners[r].sample == 0) {
        outs[i].prompt_logprobs = std::move(res.prompt_logprobs);
        outs[i].prompt_top_logprobs = std::move(res.prompt_top_logprobs);
      }
      outs[i].sequences[static_cast<size_t>(owners[r].sample)] = std::move(res);
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!errors[i].ok()) {
      batch[i].second(errors[i]);
    } else {
      batch[i].second(Output(std::move(outs[i])));
    }
  }
}

}  // namespace openrl::engine
