// Training work of the scheduler: packed forward/backward passes over many runs, optimizer steps,
// and checkpoints (save/load, listing, TTL, delete).
#include <ATen/ATen.h>
#include <fcntl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "openrl/core/clock.h"
#include "openrl/core/fs.h"
#include "openrl/core/ids.h"
#include "openrl/core/log.h"
#include "openrl/core/metrics.h"
#include "openrl/engine/forward.h"
#include "openrl/engine/scheduler_internal.h"
#include "openrl/formats/safetensors.h"
#include "openrl/model/peft_io.h"

namespace openrl::engine {

namespace stdfs = std::filesystem;
using store::Row;
using store::Tx;

namespace {

struct PackedRow {
  size_t item;   // index into the batch
  size_t datum;  // index into the item's data
  int64_t tokens;
};

// Runs rows [first, last) of `rows` as one pass and accumulates per-item results.
Status RunPass(const std::vector<std::pair<RunState*, QueuedItem*>>& batch, const std::vector<PackedRow>& rows,
               size_t first, size_t last, bool train, std::vector<ForwardBackwardOutput>& outs,
               std::vector<Status>& errors) {
  const RunState& first_run = *batch[rows[first].item].first;
  const LoadedBase& base = *first_run.base;
  const model::Transformer& weights = first_run.model();  // the base, or a full fine-tuning run's own
  std::vector<std::vector<int32_t>> inputs;
  std::vector<at::Tensor> targets;  // (T,), or (T, K): K targets per position
  std::map<const model::LoraAdapter*, std::vector<int64_t>> rows_of;
  for (size_t r = first; r < last; ++r) {
    auto& [run, item] = batch[rows[r].item];
    const TrainDatum& d = std::get<ForwardBackwardWork>(item->work).data[rows[r].datum];
    inputs.push_back(d.tokens);
    targets.push_back(d.loss_inputs.at("target_tokens").to(at::kLong));
    if (run->adapter) rows_of[run->adapter.get()].push_back(static_cast<int64_t>(r - first));
  }
  OPENRL_ASSIGN_OR_RETURN(TokenBatch tb, MakeBatch(inputs, targets, base.model.config));
  static auto& runs_per_pass = metrics::DefaultRegistry()
                                   .Histogram("openrl_engine_runs_per_pass",
                                              "Training runs packed into one forward/backward pass", {},
                                              {1, 2, 3, 4, 8, 16, 32})
                                   .Get();
  runs_per_pass.Observe(static_cast<double>(rows_of.size()));
  model::LoraBatch lora;
  for (auto& [adapter, idx] : rows_of) {
    lora.groups.push_back({adapter, at::tensor(idx, at::kLong).to(weights.device())});
  }
  at::AutoGradMode grad_mode(train);
  at::Tensor logprobs = TargetLogprobs(weights, tb, lora.groups.empty() ? nullptr : &lora);
  std::vector<at::Tensor> losses;
  for (size_t r = first; r < last; ++r) {
    size_t i = rows[r].item;
    if (!errors[i].ok()) continue;
    const auto& work = std::get<ForwardBackwardWork>(batch[i].second->work);
    const TrainDatum& d = work.data[rows[r].datum];
    std::map<std::string, at::Tensor> inputs_no_targets = d.loss_inputs;
    inputs_no_targets.erase("target_tokens");
    at::Tensor lp = logprobs[static_cast<int64_t>(r - first)].narrow(0, 0, rows[r].tokens);
    if (lp.dim() == 2) {  // the pass has rows with several targets per position: this row's columns
      const at::Tensor& t = targets[r - first];
      lp = t.dim() == 2 ? lp.narrow(1, 0, t.size(1)) : lp.select(1, 0);
    }
    Result<DatumLoss> dl = ComputeDatumLoss(work.loss, lp, inputs_no_targets, static_cast<int64_t>(rows[r].datum));
    if (!dl.ok()) {
      errors[i] = dl.status();
      continue;
    }
    ForwardBackwardOutput& out = outs[i];
    // Outputs leave the device here: the encoders read host memory.
    std::vector<std::pair<std::string, at::Tensor>> fields = {{"logprobs", lp.detach().to(at::kCPU, at::kFloat).clone()}};
    for (auto& [name, t] : dl->outputs) fields.emplace_back(name, t.to(at::kCPU));
    out.outputs[rows[r].datum] = std::move(fields);
    out.metrics["loss:sum"] += dl->loss.item<double>();
    // A custom loss's own metrics, summed over datums (":mean" ones are divided once the request is done).
    for (const auto& [key, value] : dl->metrics) out.metrics[key] += value;
    if (train) losses.push_back(dl->loss);
  }
  if (train && !losses.empty()) {
    at::Tensor total = at::stack(losses).sum();
    if (total.requires_grad()) total.backward();
  }
  return Status::Ok();
}

}  // namespace

void Scheduler::Impl::RunForwardBackward(std::vector<std::pair<RunState*, QueuedItem*>>& batch) {
  std::vector<ForwardBackwardOutput> outs(batch.size());
  std::vector<Status> errors(batch.size(), Status::Ok());
  // Rows grouped by the weights they run on — a base model (shared by its LoRA runs) or a full
  // fine-tuning run's own — then cut into passes by tokens.
  std::map<const void*, std::vector<PackedRow>> by_base;
  bool train = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& [run, item] = batch[i];
    const auto& work = std::get<ForwardBackwardWork>(item->work);
    train = !work.forward_only;
    if (!run->resident()) {
      errors[i] = FailedPrecondition("model " + run->info.id +
                                     " lost its unsaved state when the server restarted; load_state from one of "
                                     "its checkpoints first");
      continue;
    }
    outs[i].outputs.resize(work.data.size());
    outs[i].metrics["loss:sum"] = 0;
    for (size_t d = 0; d < work.data.size(); ++d)
      by_base[run->own ? static_cast<const void*>(run) : static_cast<const void*>(run->base)].push_back(
          {i, d, static_cast<int64_t>(work.data[d].tokens.size())});
  }
  for (auto& [base, rows] : by_base) {
    size_t first = 0;
    while (first < rows.size()) {
      size_t last = first;
      int64_t tokens = 0, longest = 0;
      while (last < rows.size()) {
        int64_t longer = std::max(longest, rows[last].tokens);
        if (last > first && longer * static_cast<int64_t>(last - first + 1) > options.max_tokens_per_pass) break;
        longest = longer;
        tokens += rows[last].tokens;
        ++last;
      }
      Status s = Status::Ok();
      try {
        s = RunPass(batch, rows, first, last, train, outs, errors);
      } catch (const std::exception& e) {
        s = StatusFromException(e, "forward/backward pass");
      }
      if (!s.ok()) {
        for (size_t r = first; r < last; ++r)
          if (errors[rows[r].item].ok()) errors[rows[r].item] = s;
      }
      first = last;
    }
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!errors[i].ok()) {
      batch[i].second->done(errors[i]);
    } else {
      const size_t datums = std::get<ForwardBackwardWork>(batch[i].second->work).data.size();
      for (auto& [key, value] : outs[i].metrics)
        if (key.ends_with(":mean")) value /= static_cast<double>(datums);
      batch[i].second->done(Output(std::move(outs[i])));
    }
  }
}

Result<Output> Scheduler::Impl::RunOptimStep(RunState& run, const OptimStepWork& work) {
  if (!run.resident())
    return FailedPrecondition("model " + run.info.id + " lost its unsaved state when the server restarted; "
                              "load_state from one of its checkpoints first");
  OPENRL_RETURN_IF_ERROR(work.adam.Validate());
  if (!run.optimizer->HasGradients())
    return FailedPrecondition("optim_step on model " + run.info.id +
                              " before any forward_backward: there are no gradients to apply");
  OPENRL_ASSIGN_OR_RETURN(StepStats stats, run.optimizer->Step(work.adam));
  OptimStepOutput out;
  out.metrics["grad_norm"] = stats.grad_norm;
  out.metrics["step"] = static_cast<double>(stats.step);
  out.metrics["clipped"] = stats.clipped ? 1.0 : 0.0;
  return Output(std::move(out));
}

namespace {

int64_t TreeSize(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : stdfs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  return n;
}

Result<CheckpointInfo> CheckpointFromRow(const Row& row) {
  CheckpointInfo c;
  OPENRL_ASSIGN_OR_RETURN(c.run_id, row.Text("run_id"));
  OPENRL_ASSIGN_OR_RETURN(c.kind, row.Text("kind"));
  OPENRL_ASSIGN_OR_RETURN(c.name, row.Text("name"));
  OPENRL_ASSIGN_OR_RETURN(c.path, row.Text("path"));
  OPENRL_ASSIGN_OR_RETURN(c.size_bytes, row.Int64("size_bytes"));
  OPENRL_ASSIGN_OR_RETURN(c.created_at, row.Text("created_at"));
  OPENRL_ASSIGN_OR_RETURN(c.expires_at, row.OptionalText("expires_at"));
  OPENRL_ASSIGN_OR_RETURN(std::string meta, row.Text("user_metadata"));
  OPENRL_ASSIGN_OR_RETURN(int64_t is_public, row.Int64("public"));
  c.is_public = is_public != 0;
  c.user_metadata = Json::parse(meta, nullptr, false);
  if (c.user_metadata.is_discarded()) c.user_metadata = Json::object();
  return c;
}

// The recorded checkpoint at `p`; NOT_FOUND (quoting the path) when there is none.
Result<CheckpointInfo> FindCheckpoint(store::MetadataStore& db, const TinkerPath& p) {
  std::string kind = CheckpointKindName(p.kind);
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    // An expired checkpoint is gone at once for clients; the sweep deletes its files later.
    OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne("SELECT * FROM checkpoints WHERE run_id = ? AND kind = ? AND name = ? AND "
                                             "(expires_at IS NULL OR expires_at > ?)",
                                             {p.run_id, kind, p.name, NowIso()}));
    return Status::Ok();
  }));
  std::string path = "tinker://" + p.run_id + "/" + CheckpointKindSegment(p.kind) + "/" + p.name;
  if (!row) return NotFound("checkpoint " + path + " does not exist (or has expired)");
  return CheckpointFromRow(*row);
}

}  // namespace

Result<Output> Scheduler::Impl::RunSave(RunState& run, const SaveWork& work) {
  if (!run.resident())
    return FailedPrecondition("model " + run.info.id + " has no weights in memory (the server restarted); "
                              "load_state first");
  if (work.kind == CheckpointKind::kSampler && work.name.empty()) {
    // An unnamed snapshot for a sampling client: kept in memory, not written to disk. Full
    // fine-tuning snapshots every weight (in the base's dtype), LoRA its adapter.
    auto sampler = std::make_unique<SamplerState>();
    sampler->info.id = NewId("smp");
    sampler->info.base_model = run.info.base_model;
    sampler->base = run.base;
    sampler->client = run.info.id;
    if (run.own) {
      sampler->weights = std::shared_ptr<const model::Transformer>(CopyWeights(*run.own, run.base->model.model->dtype()));
      if (!sampler->weights) return Internal("could not snapshot the weights of " + run.info.id);
    } else {
      auto copy = model::LoraAdapter::Create(run.base->model.config, run.adapter->config(), at::kFloat, options.device, 0);
      auto src = run.adapter->Parameters();
      auto dst = copy->Parameters();
      {
        at::NoGradGuard no_grad;
        for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
      }
      copy->SetRequiresGrad(false);
      sampler->adapter = std::shared_ptr<const model::LoraAdapter>(std::move(copy));
    }
    SaveOutput out;
    out.sampling_session_id = sampler->info.id;
    OPENRL_RETURN_IF_ERROR(db.Transaction([&](Tx& tx) -> Status {
      return tx
          .Exec("INSERT INTO sampling_sessions (id, session_id, base_model, model_path, created_at) "
                "VALUES (?, ?, ?, NULL, ?)",
                {sampler->info.id, run.info.session_id, run.info.base_model, NowIso()})
          .status();
    }));
    std::lock_guard<std::mutex> lock(mu);
    samplers[sampler->info.id] = std::move(sampler);
    return Output(std::move(out));
  }
  std::string name = work.name.empty() ? NewId("ckpt") : work.name;
  // The name must make a valid tinker:// path.
  OPENRL_RETURN_IF_ERROR(
      ParseTinkerPath("tinker://" + run.info.id + "/" + CheckpointKindSegment(work.kind) + "/" + name).status());
  std::string kind = CheckpointKindName(work.kind);
  std::string dir = options.data_dir + "/checkpoints/" + run.info.id + "/" + CheckpointKindSegment(work.kind) + "/" + name;
  // Written in full beside its place, then swapped in: a checkpoint saved again under its name is
  // never missing, even if the process dies mid-save (Start() clears what such a death leaves).
  OPENRL_ASSIGN_OR_RETURN(std::string tmp, fs::StagingPath(dir));
  OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(tmp));
  Status s = WriteCheckpointFiles(run, work, tmp);
  if (s.ok()) s = fs::SyncTree(tmp);
  if (s.ok()) s = fs::PublishDirectory(tmp, dir);
  if (!s.ok()) {
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
    return s;
  }
  std::optional<std::string> expires;
  if (work.ttl_seconds && *work.ttl_seconds > 0)
    expires = FormatIso8601Utc(SystemClock().Now() + std::chrono::seconds(*work.ttl_seconds));
  // Overwriting a published checkpoint makes it private: its new weights are not what was published.
  OPENRL_RETURN_IF_ERROR(db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec("INSERT INTO checkpoints (run_id, kind, name, path, size_bytes, created_at, expires_at, user_metadata) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, kind, name) DO UPDATE SET path = excluded.path, "
              "size_bytes = excluded.size_bytes, created_at = excluded.created_at, expires_at = excluded.expires_at, "
              "user_metadata = excluded.user_metadata, public = 0",
              {run.info.id, kind, name, dir, TreeSize(dir), NowIso(),
               expires ? store::Value(*expires) : store::Value(), work.user_metadata.dump()})
        .status();
  }));
  SaveOutput out;
  out.path = "tinker://" + run.info.id + "/" + CheckpointKindSegment(work.kind) + "/" + name;
  out.size_bytes = TreeSize(dir);
  return Output(std::move(out));
}

Status Scheduler::Impl::WriteCheckpointFiles(RunState& run, const SaveWork& work, const std::string& dir) {
  std::string kind = CheckpointKindName(work.kind);
  Status s = Status::Ok();
  if (run.own) {
    model::SaveOptions so;
    so.dtype = at::kFloat;
    so.tokenizer_from = run.base->dir;
    so.generation_config = run.base->model.generation_config;
    s = model::SaveModelDir(*run.own, dir, so);
  } else {
    s = model::SavePeftAdapter(*run.adapter, dir, run.info.base_model);
  }
  OPENRL_RETURN_IF_ERROR(s);
  if (work.kind == CheckpointKind::kTraining)
    OPENRL_RETURN_IF_ERROR(model::WriteTensors(run.optimizer->StateTensors(), dir + "/optimizer.safetensors", {}));
  if (work.kind == CheckpointKind::kExternal) {
    // An export holds only what another tool loads; encrypted, no plaintext copy stays on disk.
    if (work.age_recipients.empty()) return Status::Ok();
    std::vector<std::string> files;
    for (const auto& e : stdfs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path().string());
    for (const std::string& f : files) {
      OPENRL_RETURN_IF_ERROR(crypto::AgeEncryptFile(f, f + ".age", work.age_recipients));
      std::error_code ec;
      stdfs::remove(f, ec);
      if (ec) return Internal("could not remove " + f + " after encrypting it: " + ec.message());
    }
    return Status::Ok();
  }
  Json meta = {{"model_id", run.info.id}, {"base_model", run.info.base_model}, {"kind", kind},
               {"lora_rank", run.info.lora.rank}, {"train_unembed", run.info.train_unembed},
               {"full_finetune", run.info.full_finetune},
               {"optimizer_steps", run.optimizer->steps()}, {"created_at", NowIso()}};
  return fs::WriteFileAtomic(dir + "/openrl_checkpoint.json", meta.dump(2) + "\n");
}

namespace {

// AdamW over `params`, with the moments saved in `dir`/optimizer.safetensors (fresh when `dir` is "").
Result<std::unique_ptr<AdamW>> RestoredOptimizer(std::vector<at::Tensor> params, const std::string& dir) {
  auto optimizer = std::make_unique<AdamW>(std::move(params));
  if (!dir.empty()) {
    OPENRL_ASSIGN_OR_RETURN(auto state, model::ReadTensors(dir + "/optimizer.safetensors"));
    OPENRL_RETURN_IF_ERROR(optimizer->LoadState(state));
  }
  return optimizer;
}

bool SameTargets(const model::LoraConfig& a, const model::LoraConfig& b) {
  return a.rank == b.rank && a.targets == b.targets;
}

}  // namespace

Result<Output> Scheduler::Impl::RunLoad(RunState& run, const LoadWork& work) {
  OPENRL_ASSIGN_OR_RETURN(TinkerPath p, ParseTinkerPath(work.path));
  if (p.kind != CheckpointKind::kTraining)
    return InvalidArgument("load_state needs a training checkpoint (tinker://<id>/weights/<name>), got " + work.path);
  OPENRL_ASSIGN_OR_RETURN(CheckpointInfo ckpt, FindCheckpoint(db, p));
  if (run.base == nullptr) {
    OPENRL_ASSIGN_OR_RETURN(run.base, LoadBase(run.info.base_model));
  }
  if (run.info.full_finetune) {
    OPENRL_ASSIGN_OR_RETURN(model::ModelDir loaded, model::LoadModelDir(ckpt.path, {at::kFloat, options.device}));
    if (loaded.model->ExpectedTensors() != run.base->model.model->ExpectedTensors())
      return InvalidArgument("checkpoint " + work.path + " is not a full copy of '" + run.info.base_model + "'");
    std::unique_ptr<model::Transformer> own = std::move(loaded.model);
    own->SetRequiresGrad(true);
    std::vector<at::Tensor> params;
    for (auto& [name, t] : own->NamedParameters()) params.push_back(t);
    OPENRL_ASSIGN_OR_RETURN(auto optimizer, RestoredOptimizer(std::move(params), work.with_optimizer ? ckpt.path : ""));
    std::lock_guard<std::mutex> lock(mu);
    run.own = std::move(own);
    run.optimizer = std::move(optimizer);
    return Output(LoadOutput{work.path});
  }
  OPENRL_ASSIGN_OR_RETURN(auto adapter, model::LoadPeftAdapter(ckpt.path, run.base->model.config, at::kFloat, options.device));
  if (!SameTargets(adapter->config(), run.info.lora))
    return InvalidArgument("checkpoint " + work.path + " has LoRA rank " + std::to_string(adapter->config().rank) +
                           " or targets that differ from model " + run.info.id + " (rank " +
                           std::to_string(run.info.lora.rank) + ")");
  adapter->SetRequiresGrad(true);
  OPENRL_ASSIGN_OR_RETURN(auto optimizer, RestoredOptimizer(adapter->Parameters(), work.with_optimizer ? ckpt.path : ""));
  std::lock_guard<std::mutex> lock(mu);
  run.adapter = std::move(adapter);
  run.optimizer = std::move(optimizer);
  return Output(LoadOutput{work.path});
}

Status Scheduler::Impl::EnsureResident(RunState& run) {
  run.last_used = std::chrono::steady_clock::now();
  if (!run.offloaded) return Status::Ok();
  if (run.base == nullptr) {
    OPENRL_ASSIGN_OR_RETURN(run.base, LoadBase(run.info.base_model));
  }
  std::string dir = options.data_dir + "/offload/" + run.info.id;
  OPENRL_ASSIGN_OR_RETURN(auto adapter, model::LoadPeftAdapter(dir, run.base->model.config, at::kFloat, options.device));
  adapter->SetRequiresGrad(true);
  OPENRL_ASSIGN_OR_RETURN(auto optimizer, RestoredOptimizer(adapter->Parameters(), dir));
  {
    std::lock_guard<std::mutex> lock(mu);
    run.adapter = std::move(adapter);
    run.optimizer = std::move(optimizer);
    run.offloaded = false;
  }
  std::error_code ec;
  stdfs::remove_all(dir, ec);
  return Status::Ok();
}

void Scheduler::Impl::EnforceMemoryBudget() {
  std::vector<RunState*> resident;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [id, run] : runs)
      if (run->adapter) resident.push_back(run.get());  // full fine-tuning runs stay in memory
    if (static_cast<int64_t>(resident.size()) <= options.max_resident_runs) return;
    std::sort(resident.begin(), resident.end(),
              [](const RunState* a, const RunState* b) { return a->last_used < b->last_used; });
  }
  static auto& offloads =
      metrics::DefaultRegistry().Counter("openrl_engine_offloads_total", "Run states moved to disk to stay in budget").Get();
  int64_t excess = static_cast<int64_t>(resident.size()) - options.max_resident_runs;
  for (RunState* run : resident) {
    if (excess <= 0) break;
    // Gradients accumulated for a coming optim_step are not offloaded: such a run stays.
    if (run->optimizer->HasGradients()) continue;
    std::string dir = options.data_dir + "/offload/" + run->info.id;
    std::error_code ec;
    Result<std::string> staged = fs::StagingPath(dir);
    Status s = staged.status();
    std::string tmp = staged.ok() ? *staged : dir + ".partial";
    if (s.ok()) s = fs::CreateDirectories(tmp);
    if (s.ok()) s = model::SavePeftAdapter(*run->adapter, tmp, run->info.base_model);
    if (s.ok()) s = model::WriteTensors(run->optimizer->StateTensors(), tmp + "/optimizer.safetensors", {});
    // The only copy of the run's state from here on: synced before it counts (Start() trusts it).
    if (s.ok()) s = fs::SyncTree(tmp);
    if (s.ok()) s = fs::PublishDirectory(tmp, dir);
    if (!s.ok()) {
      log::Write(log::Level::kWarn, "could not offload run " + run->info.id + ": " + s.message());
      stdfs::remove_all(tmp, ec);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu);
    run->adapter.reset();
    run->optimizer.reset();
    run->offloaded = true;
    offloads.Inc();
    --excess;
  }
}

Status Scheduler::Impl::LoadSamplerWeights(const std::string& path, SamplerState& sampler) {
  OPENRL_ASSIGN_OR_RETURN(TinkerPath p, ParseTinkerPath(path));
  if (p.kind == CheckpointKind::kExternal)
    return InvalidArgument("model_path " + path + " is an export (external_weights); sample from the run's "
                           "sampler_weights or weights checkpoints");
  OPENRL_ASSIGN_OR_RETURN(CheckpointInfo ckpt, FindCheckpoint(db, p));
  if (stdfs::exists(ckpt.path + "/config.json")) {  // full fine-tuning: every weight
    OPENRL_ASSIGN_OR_RETURN(
        model::ModelDir loaded, OnOwnTensorThread(ckpt.path, [&] {
          return model::LoadModelDir(ckpt.path, {sampler.base->model.model->dtype(), options.device});
        }));
    loaded.model->SetRequiresGrad(false);
    sampler.weights = std::shared_ptr<const model::Transformer>(std::move(loaded.model));
    return Status::Ok();
  }
  OPENRL_ASSIGN_OR_RETURN(auto adapter, model::LoadPeftAdapter(ckpt.path, sampler.base->model.config, at::kFloat, options.device));
  adapter->SetRequiresGrad(false);
  sampler.adapter = std::shared_ptr<const model::LoraAdapter>(std::move(adapter));
  return Status::Ok();
}

Result<std::vector<CheckpointInfo>> Scheduler::Checkpoints(const std::string& run_id) {
  std::vector<CheckpointInfo> out;
  OPENRL_RETURN_IF_ERROR(impl_->db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT * FROM checkpoints WHERE run_id = ? AND (expires_at IS NULL OR "
                                                "expires_at > ?) ORDER BY created_at",
                                                {run_id, NowIso()}));
    for (const Row& r : rows) {
      OPENRL_ASSIGN_OR_RETURN(CheckpointInfo c, CheckpointFromRow(r));
      out.push_back(std::move(c));
    }
    return Status::Ok();
  }));
  return out;
}

Result<CheckpointInfo> Scheduler::Checkpoint(const std::string& tinker_path) {
  OPENRL_ASSIGN_OR_RETURN(TinkerPath p, ParseTinkerPath(tinker_path));
  return FindCheckpoint(impl_->db, p);
}

Status Scheduler::SetCheckpointTtl(const std::string& tinker_path, std::optional<int64_t> ttl_seconds) {
  OPENRL_ASSIGN_OR_RETURN(CheckpointInfo c, Checkpoint(tinker_path));
  store::Value expires;
  if (ttl_seconds) expires = FormatIso8601Utc(SystemClock().Now() + std::chrono::seconds(*ttl_seconds));
  return impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx.Exec("UPDATE checkpoints SET expires_at = ? WHERE run_id = ? AND kind = ? AND name = ?",
                   {expires, c.run_id, c.kind, c.name})
        .status();
  });
}

Status Scheduler::SetCheckpointPublic(const std::string& tinker_path, bool is_public) {
  OPENRL_ASSIGN_OR_RETURN(CheckpointInfo c, Checkpoint(tinker_path));
  return impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx.Exec("UPDATE checkpoints SET public = ? WHERE run_id = ? AND kind = ? AND name = ?",
                   {is_public ? 1 : 0, c.run_id, c.kind, c.name})
        .status();
  });
}

Result<CheckpointInfo> Scheduler::CopyCheckpoint(const std::string& source_path, const std::string& dest_run_id,
                                                 std::optional<int64_t> ttl_seconds) {
  OPENRL_ASSIGN_OR_RETURN(TinkerPath p, ParseTinkerPath(source_path));
  OPENRL_ASSIGN_OR_RETURN(CheckpointInfo src, FindCheckpoint(impl_->db, p));
  OPENRL_ASSIGN_OR_RETURN(std::vector<std::string> files, src.Files());
  std::string segment = CheckpointKindSegment(p.kind);
  OPENRL_ASSIGN_OR_RETURN(TinkerPath dest, ParseTinkerPath("tinker://" + dest_run_id + "/" + segment + "/" + src.name));
  std::string dir = impl_->options.data_dir + "/checkpoints/" + dest_run_id + "/" + segment + "/" + src.name;
  // A live checkpoint of that name stays. An expired one whose files the sweep has not reached yet,
  // or files that a crash left without their row, are replaced.
  Result<CheckpointInfo> existing = FindCheckpoint(impl_->db, dest);
  if (existing.ok())
    return AlreadyExists("checkpoint tinker://" + dest_run_id + "/" + segment + "/" + src.name +
                         " already exists");
  if (existing.status().code() != ErrorCode::kNotFound) return existing.status();
  OPENRL_ASSIGN_OR_RETURN(std::string tmp, fs::StagingPath(dir));
  auto fail = [&](const std::string& why) {
    std::error_code ec;
    stdfs::remove_all(tmp, ec);
    return Internal("copying " + source_path + " into " + dir + ": " + why);
  };
  for (const std::string& f : files) {
    stdfs::path to = stdfs::path(tmp) / f;
    std::error_code ec;
    stdfs::create_directories(to.parent_path(), ec);
    if (!ec) stdfs::create_hard_link(stdfs::path(src.path) / f, to, ec);
    if (ec) {  // another filesystem, or links not allowed: copy the bytes
      ec.clear();
      stdfs::copy_file(stdfs::path(src.path) / f, to, ec);
    }
    if (ec) return fail(f + ": " + ec.message());
  }
  if (files.empty()) OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(tmp));
  Status published = fs::SyncTree(tmp);
  if (published.ok()) published = fs::PublishDirectory(tmp, dir);
  if (!published.ok()) return fail(published.message());
  store::Value expires;
  if (ttl_seconds) expires = FormatIso8601Utc(SystemClock().Now() + std::chrono::seconds(*ttl_seconds));
  OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
    OPENRL_RETURN_IF_ERROR(tx.Exec("DELETE FROM checkpoints WHERE run_id = ? AND kind = ? AND name = ? AND "
                                   "expires_at IS NOT NULL AND expires_at <= ?",
                                   {dest_run_id, src.kind, src.name, NowIso()})
                               .status());
    return tx
        .Exec("INSERT INTO checkpoints (run_id, kind, name, path, size_bytes, created_at, expires_at, user_metadata) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              {dest_run_id, src.kind, src.name, dir, src.size_bytes, NowIso(), expires, src.user_metadata.dump()})
        .status();
  }));
  return FindCheckpoint(impl_->db, dest);
}

Status Scheduler::DeleteCheckpoint(const std::string& tinker_path) {
  OPENRL_ASSIGN_OR_RETURN(CheckpointInfo c, Checkpoint(tinker_path));
  OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx.Exec("DELETE FROM checkpoints WHERE run_id = ? AND kind = ? AND name = ?", {c.run_id, c.kind, c.name})
        .status();
  }));
  std::error_code ec;
  stdfs::remove_all(c.path, ec);
  return Status::Ok();
}

Result<int64_t> Scheduler::Impl::ReconcileFiles() {
  std::vector<CheckpointInfo> rows;
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto all, tx.Query("SELECT * FROM checkpoints"));
    for (const Row& r : all) {
      OPENRL_ASSIGN_OR_RETURN(CheckpointInfo c, CheckpointFromRow(r));
      rows.push_back(std::move(c));
    }
    return Status::Ok();
  }));
  std::set<std::string> named;  // tinker:// paths of the recorded checkpoints
  for (const CheckpointInfo& c : rows) {
    named.insert(c.TinkerPath());
    std::error_code ec;
    if (stdfs::exists(c.path, ec) || ec) continue;
    Result<bool> restored = fs::RecoverInterruptedPublish(c.path);
    if (!restored.ok())
      log::Write(log::Level::kWarn, "checkpoint " + c.TinkerPath() + ": " + restored.status().message());
    else if (*restored)
      log::Write(log::Level::kWarn, "checkpoint " + c.TinkerPath() +
                                        ": a save of it was interrupted; its previous "
                                        "files are back in " +
                                        c.path);
    else
      log::Write(log::Level::kWarn,
                 "checkpoint " + c.TinkerPath() + ": its files are missing from " + c.path);
  }
  std::set<std::string> segments;
  for (CheckpointKind k : {CheckpointKind::kTraining, CheckpointKind::kSampler, CheckpointKind::kExternal})
    segments.insert(CheckpointKindSegment(k));
  // Listed first, removed after: checkpoints/<model>/<kind>/<name>, only at that depth and under
  // a known kind; offload/<model>.partial-*, an offload that died before it was complete.
  auto entries = [](const stdfs::path& dir) {
    std::vector<stdfs::directory_entry> out;
    std::error_code ec;
    for (stdfs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) out.push_back(*it);
    return out;
  };
  auto is_dir = [](const stdfs::directory_entry& e) {
    std::error_code ec;
    return e.is_directory(ec);
  };
  std::vector<std::pair<stdfs::path, std::string>> victims;
  for (const auto& model : entries(stdfs::path(options.data_dir) / "checkpoints")) {
    if (!is_dir(model)) continue;
    for (const auto& kind : entries(model.path())) {
      std::string segment = kind.path().filename().string();
      if (!is_dir(kind) || segments.count(segment) == 0) continue;
      for (const auto& entry : entries(kind.path())) {
        std::string path = "tinker://" + model.path().filename().string() + "/" + segment + "/" +
                           entry.path().filename().string();
        if (named.count(path) == 0)
          victims.emplace_back(entry.path(), "no checkpoint names it: left by an interrupted save or delete");
      }
    }
  }
  for (const auto& entry : entries(stdfs::path(options.data_dir) / "offload"))
    if (entry.path().filename().string().find(".partial") != std::string::npos)
      victims.emplace_back(entry.path(), "an offload interrupted before it was complete");
  int64_t removed = 0;
  for (const auto& [path, why] : victims) {
    std::error_code ec;
    stdfs::remove_all(path, ec);
    if (ec) {
      log::Write(log::Level::kWarn, "could not remove " + path.string() + " (" + why + "): " + ec.message());
      continue;
    }
    log::Write(log::Level::kInfo, "removed " + path.string() + " (" + why + ")");
    ++removed;
  }
  return removed;
}

Result<int64_t> Scheduler::SweepExpiredCheckpoints() {
  std::vector<CheckpointInfo> expired;
  OPENRL_RETURN_IF_ERROR(impl_->db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT * FROM checkpoints WHERE expires_at IS NOT NULL AND expires_at < ?",
                                                {NowIso()}));
    for (const Row& r : rows) {
      OPENRL_ASSIGN_OR_RETURN(CheckpointInfo c, CheckpointFromRow(r));
      expired.push_back(std::move(c));
    }
    return Status::Ok();
  }));
  for (const CheckpointInfo& c : expired) {
    OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
      return tx.Exec("DELETE FROM checkpoints WHERE run_id = ? AND kind = ? AND name = ?", {c.run_id, c.kind, c.name})
          .status();
    }));
    std::error_code ec;
    stdfs::remove_all(c.path, ec);
  }
  return static_cast<int64_t>(expired.size());
}

}  // namespace openrl::engine
