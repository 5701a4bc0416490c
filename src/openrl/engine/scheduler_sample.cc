// Sampling work of the scheduler: sampling sessions (a base model, optionally with saved adapter
// weights) and one batched generation per clock cycle over every queued sample request.
#include <algorithm>
#include <random>

#include "openrl/core/ids.h"
#include "openrl/core/metrics.h"
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
    sampler->client = p.run_id;
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
  if (sampler->client.empty()) sampler->client = sampler->info.id;
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
  OPENRL_ASSIGN_OR_RETURN(TinkerPath p, ParseTinkerPath(*path));
  sampler->client = p.run_id;
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto [it, inserted] = impl_->samplers.emplace(id, std::move(sampler));
  return it->second->info;
}

int64_t Scheduler::Impl::AdmitSamples(std::vector<std::pair<SampleWork, Done>>& batch) {
  int64_t failed = 0;
  // Newcomers grouped by the weights they run on: a base (with per-row adapters) or a
  // full-weights snapshot; each group joins that model's running generation in one prefill.
  struct Newcomer {
    std::shared_ptr<PendingSample> pending;
    std::vector<SampleRequest> rows;  // one per sample
  };
  struct ModelGroup {
    const tokenizer::Tokenizer* tokenizer = nullptr;  // for stop strings
    std::vector<Newcomer> newcomers;
    CacheDemand demand;               // of every newcomer, for the cache budget
    bool deferring = false;           // a request waits for room: the later ones wait behind it
  };
  std::map<const model::Transformer*, ModelGroup> by_model;
  std::vector<std::pair<SampleWork, Done>> deferred;
  std::random_device rd;
  for (auto& [w, done] : batch) {
    SamplerState* sampler = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = samplers.find(w.sampling_session_id);
      if (it != samplers.end()) sampler = it->second.get();
    }
    Status valid = sampler ? w.params.Validate(sampler->base->info.vocab_size)
                           : NotFound("sampling session '" + w.sampling_session_id + "' is unknown");
    if (!valid.ok()) {
      done(valid);
      ++failed;
      continue;
    }
    uint64_t seed = w.params.seed ? *w.params.seed : (static_cast<uint64_t>(rd()) << 32 | rd());
    const model::Transformer* weights = sampler->weights ? sampler->weights.get() : sampler->base->model.model.get();
    // The prompt is scored once, in the first sample's prefill.
    SamplingParams unscored = w.params;
    unscored.prompt_logprobs = false;
    unscored.prompt_top_logprobs = 0;
    unscored.prompt_logprobs_last_n = 0;
    unscored.prompt_target_ids.clear();
    unscored.prompt_alt_tokens = 0;
    std::vector<SampleRequest> rows;
    for (int64_t s = 0; s < w.num_samples; ++s) {
      SampleRequest r;
      r.prompt = w.prompt;
      r.params = s == 0 ? w.params : unscored;
      r.params.seed = seed + static_cast<uint64_t>(s) * 0x9E3779B97F4A7C15ull;
      r.adapter = sampler->adapter.get();
      rows.push_back(std::move(r));
    }
    ModelGroup& group = by_model[weights];
    // The KV cache budget: a request that would take this model's cache past it waits (queued
    // again, in order) while rows are decoding or others join now; alone, it always fits (checked
    // on submission).
    auto running = generations.find(weights);
    const GenerationBatch* batch = running != generations.end() ? running->second.batch.get() : nullptr;
    CacheDemand after = group.demand;
    after.Add(w.num_samples, static_cast<int64_t>(w.prompt.size()), w.params.max_tokens);
    auto bytes = [&] { return batch ? batch->CacheBytesAfter(after) : GenerationBatch(*weights).CacheBytesAfter(after); };
    if (group.demand.rows > 0 || (batch && !batch->empty())) {
      if (group.deferring || bytes() > options.max_kv_cache_bytes) {
        group.deferring = true;
        deferred.emplace_back(std::move(w), std::move(done));
        continue;
      }
    }
    auto pending = std::make_shared<PendingSample>();
    pending->cancel_id = w.cancel_id;
    pending->done = std::move(done);
    pending->adapter = sampler->adapter;
    pending->weights = sampler->weights;
    pending->out.sequences.resize(static_cast<size_t>(w.num_samples));
    pending->remaining = w.num_samples;
    group.demand = after;
    group.tokenizer = sampler->base->tokenizer.get();
    group.newcomers.push_back(Newcomer{pending, std::move(rows)});
  }
  if (!deferred.empty()) {
    static auto& deferrals = metrics::DefaultRegistry()
                                 .Counter("openrl_engine_sample_deferrals_total",
                                          "Times a sample request waited for room in the KV cache budget")
                                 .Get();
    deferrals.Inc(static_cast<double>(deferred.size()));
    std::lock_guard<std::mutex> lock(mu);
    sample_queue.insert(sample_queue.begin(), std::make_move_iterator(deferred.begin()),
                        std::make_move_iterator(deferred.end()));
  }
  for (auto& [weights, group] : by_model) {
    ActiveGeneration& gen = generations[weights];
    if (!gen.batch) gen.batch = std::make_unique<GenerationBatch>(*weights, group.tokenizer);
    auto join = [&](std::vector<Newcomer*> group) -> Status {
      std::vector<SampleRequest> rows;
      for (Newcomer* n : group) rows.insert(rows.end(), n->rows.begin(), n->rows.end());
      OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> tickets, gen.batch->Add(rows));
      size_t t = 0;
      for (Newcomer* n : group)
        for (size_t s = 0; s < n->rows.size(); ++s) gen.owners[tickets[t++]] = {n->pending, static_cast<int64_t>(s)};
      return Status::Ok();
    };
    std::vector<Newcomer*> all;
    for (auto& n : group.newcomers) all.push_back(&n);
    if (join(all).ok()) continue;
    // One bad request must not fail the others: join one by one, failing only those refused.
    for (Newcomer* n : all) {
      Status s = join({n});
      if (!s.ok()) {
        n->pending->done(s);
        ++failed;
      }
    }
  }
  return failed;
}

int64_t Scheduler::Impl::StepGenerations() {
  int64_t completed = 0;
  for (auto it = generations.begin(); it != generations.end();) {
    ActiveGeneration& gen = it->second;
    Result<std::vector<std::pair<int64_t, SampleResult>>> done = gen.batch->Step();
    if (!done.ok()) {
      completed += FailGeneration(gen, done.status());
      it = generations.erase(it);
      continue;
    }
    for (auto& [ticket, res] : *done) {
      auto owner = gen.owners.find(ticket);
      auto [pending, sample] = owner->second;
      gen.owners.erase(owner);
      if (sample == 0) {
        pending->out.prompt_logprobs = std::move(res.prompt_logprobs);
        pending->out.prompt_top_logprobs = std::move(res.prompt_top_logprobs);
        pending->out.prompt_target_logprobs = std::move(res.prompt_target_logprobs);
        pending->out.prompt_alt_tokens = std::move(res.prompt_alt_tokens);
      }
      pending->out.sequences[static_cast<size_t>(sample)] = std::move(res);
      if (--pending->remaining == 0) {
        pending->done(Output(std::move(pending->out)));
        ++completed;
      }
    }
    it = gen.batch->empty() ? generations.erase(it) : std::next(it);
  }
  return completed;
}

int64_t Scheduler::Impl::DropCancelled() {
  std::set<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(mu);
    ids.swap(cancel_requests);
  }
  if (ids.empty()) return 0;
  int64_t n = 0;
  for (auto it = generations.begin(); it != generations.end();) {
    ActiveGeneration& gen = it->second;
    std::vector<int64_t> tickets;
    std::vector<std::shared_ptr<PendingSample>> hit;
    for (auto& [ticket, owner] : gen.owners) {
      if (owner.first->cancel_id.empty() || !ids.count(owner.first->cancel_id)) continue;
      tickets.push_back(ticket);
      if (std::find(hit.begin(), hit.end(), owner.first) == hit.end()) hit.push_back(owner.first);
    }
    if (tickets.empty()) {
      ++it;
      continue;
    }
    for (int64_t t : tickets) gen.owners.erase(t);
    Status removed = gen.batch->Remove(tickets);
    for (auto& p : hit) {
      p->done(Status(ErrorCode::kCancelled, "sample request " + p->cancel_id + " was cancelled by its client"));
      ++n;
    }
    if (!removed.ok()) {
      n += FailGeneration(gen, removed);
      it = generations.erase(it);
      continue;
    }
    it = gen.batch->empty() ? generations.erase(it) : std::next(it);
  }
  return n;
}

int64_t Scheduler::Impl::GenerationRows() const {
  int64_t rows = 0;
  for (const auto& [model, gen] : generations) rows += gen.batch->rows();
  return rows;
}

int64_t Scheduler::Impl::FailGeneration(ActiveGeneration& gen, const Status& why) {
  std::set<PendingSample*> failed;
  for (auto& [ticket, owner] : gen.owners)
    if (failed.insert(owner.first.get()).second) owner.first->done(why);
  gen.owners.clear();
  return static_cast<int64_t>(failed.size());
}

}  // namespace openrl::engine
