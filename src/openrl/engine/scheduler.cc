#include "openrl/engine/scheduler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <filesystem>
#include <thread>
#include <type_traits>
#include <utility>

#include "openrl/core/clock.h"
#include "openrl/core/fs.h"
#include "openrl/core/ids.h"
#include "openrl/core/log.h"
#include "openrl/core/metrics.h"
#include "openrl/engine/scheduler_internal.h"
#include "openrl/model/peft_io.h"

namespace openrl::engine {

namespace stdfs = std::filesystem;
using store::Row;
using store::Tx;

std::string NowIso() { return FormatIso8601Utc(SystemClock().Now()); }

namespace {

// Each checkpoint kind: its name in the store and the API, and its segment in tinker:// paths.
struct KindNames {
  CheckpointKind kind;
  const char* name;
  const char* segment;
};
constexpr KindNames kKinds[] = {{CheckpointKind::kTraining, "training", "weights"},
                                {CheckpointKind::kSampler, "sampler", "sampler_weights"},
                                {CheckpointKind::kExternal, "external", "external_weights"}};

const KindNames& Names(CheckpointKind kind) {
  for (const KindNames& k : kKinds)
    if (k.kind == kind) return k;
  return kKinds[0];
}

}  // namespace

std::string CheckpointKindSegment(CheckpointKind kind) { return Names(kind).segment; }
std::string CheckpointKindName(CheckpointKind kind) { return Names(kind).name; }

std::string CheckpointInfo::TinkerPath() const {
  std::string segment = "weights";
  for (const KindNames& k : kKinds)
    if (kind == k.name) segment = k.segment;
  return "tinker://" + run_id + "/" + segment + "/" + name;
}

Result<std::vector<std::string>> CheckpointInfo::Files() const {
  std::vector<std::string> files;
  std::error_code ec;
  for (auto it = stdfs::recursive_directory_iterator(path, ec); !ec && it != stdfs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(stdfs::relative(it->path(), path).generic_string());
  }
  if (ec) return Internal("could not list the files of checkpoint " + TinkerPath() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

Result<TinkerPath> ParseTinkerPath(const std::string& path) {
  constexpr std::string_view kPrefix = "tinker://";
  auto bad = [&](const std::string& why) {
    return InvalidArgument("path '" + path + "': " + why + " (expected tinker://<model_id>/weights/<name>, "
                           "tinker://<model_id>/sampler_weights/<name> or tinker://<model_id>/external_weights/<name>)");
  };
  if (path.rfind(kPrefix, 0) != 0) return bad("does not start with tinker://");
  std::string rest = path.substr(kPrefix.size());
  size_t a = rest.find('/');
  size_t b = a == std::string::npos ? a : rest.find('/', a + 1);
  if (b == std::string::npos) return bad("has too few segments");
  TinkerPath p;
  p.run_id = rest.substr(0, a);
  std::string kind = rest.substr(a + 1, b - a - 1);
  p.name = rest.substr(b + 1);
  const KindNames* found = nullptr;
  for (const KindNames& k : kKinds)
    if (kind == k.segment) found = &k;
  if (found == nullptr) return bad("unknown checkpoint kind '" + kind + "'");
  p.kind = found->kind;
  auto valid = [](const std::string& s) {
    if (s.empty() || s.size() > 128) return false;
    for (char c : s)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
    return s != "." && s != "..";
  };
  if (!valid(p.run_id)) return bad("the model id is not a valid id");
  if (!valid(p.name) || p.name.find(':') != std::string::npos)
    return bad("the checkpoint name must be 1-128 letters, digits, '-', '_' or '.'");
  return p;
}

std::unique_ptr<model::Transformer> CopyWeights(const model::Transformer& m, at::ScalarType dtype) {
  std::map<std::string, at::Tensor> weights;
  for (auto& [name, t] : m.NamedParameters()) weights[name] = t;
  auto copy = model::Transformer::Load(
      m.config(),
      [&](const std::string& name) -> Result<at::Tensor> {
        auto it = weights.find(name);
        if (it == weights.end()) return NotFound("weight " + name);
        return it->second.detach().to(dtype).clone();
      },
      dtype, m.device());
  return copy.ok() ? std::move(copy).value() : nullptr;
}

Scheduler::Scheduler(store::MetadataStore& db, SchedulerOptions options)
    : impl_(std::make_unique<Impl>(db, std::move(options))) {}

Scheduler::~Scheduler() { Stop(); }

namespace {

Result<RunInfo> RunInfoFromRow(const Row& row) {
  RunInfo r;
  OPENRL_ASSIGN_OR_RETURN(r.id, row.Text("id"));
  OPENRL_ASSIGN_OR_RETURN(r.session_id, row.Text("session_id"));
  OPENRL_ASSIGN_OR_RETURN(r.key_id, row.Text("key_id"));
  OPENRL_ASSIGN_OR_RETURN(r.base_model, row.Text("base_model"));
  OPENRL_ASSIGN_OR_RETURN(std::string lora, row.Text("lora_config"));
  OPENRL_ASSIGN_OR_RETURN(std::string meta, row.Text("user_metadata"));
  OPENRL_ASSIGN_OR_RETURN(r.created_at, row.Text("created_at"));
  OPENRL_ASSIGN_OR_RETURN(r.last_request_at, row.Text("last_request_at"));
  OPENRL_ASSIGN_OR_RETURN(std::string state, row.Text("state"));
  r.frozen = state == "frozen";
  Json lj = Json::parse(lora, nullptr, false);
  if (lj.is_discarded()) return DataLoss("training run " + r.id + ": lora_config is not JSON");
  if (lj.value("openrl_full_finetune", false)) {
    r.full_finetune = true;
    r.lora.rank = 0;
    r.lora.targets.clear();
    r.user_metadata = Json::parse(meta, nullptr, false);
    if (r.user_metadata.is_discarded()) r.user_metadata = Json::object();
    return r;
  }
  OPENRL_ASSIGN_OR_RETURN(r.lora, model::LoraConfigFromPeft(lj, "training run " + r.id));
  r.train_unembed = r.lora.targets.count(model::LinearKind::kLmHead) > 0;
  r.user_metadata = Json::parse(meta, nullptr, false);
  if (r.user_metadata.is_discarded()) r.user_metadata = Json::object();
  return r;
}

}  // namespace

Status Scheduler::Start() {
  std::vector<Row> rows;
  OPENRL_RETURN_IF_ERROR(impl_->db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto models, tx.Query("SELECT name, path FROM base_models"));
    std::lock_guard<std::mutex> lock(impl_->models_mu);
    for (const Row& m : models) {
      OPENRL_ASSIGN_OR_RETURN(std::string name, m.Text("name"));
      OPENRL_ASSIGN_OR_RETURN(std::string path, m.Text("path"));
      impl_->base_paths[name] = path;
    }
    OPENRL_ASSIGN_OR_RETURN(rows, tx.Query("SELECT * FROM training_runs"));
    return Status::Ok();
  }));
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const Row& row : rows) {
      OPENRL_ASSIGN_OR_RETURN(RunInfo info, RunInfoFromRow(row));
      auto run = std::make_unique<RunState>();
      info.live = false;  // its adapter lived in the previous process's memory...
      run->info = info;
      // ...unless it had been offloaded: that state is whole (nothing ran after it was written).
      run->offloaded = stdfs::exists(impl_->options.data_dir + "/offload/" + info.id + "/optimizer.safetensors");
      impl_->runs[info.id] = std::move(run);
    }
  }
  OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(impl_->options.data_dir + "/checkpoints"));
  OPENRL_ASSIGN_OR_RETURN(int64_t removed, impl_->ReconcileFiles());
  if (removed > 0)
    log::Write(log::Level::kInfo, "removed " + std::to_string(removed) +
                                      " files or directories that a crash had left in " +
                                      impl_->options.data_dir);
  impl_->sweep_ = [this] { return SweepExpiredCheckpoints(); };
  if (impl_->options.intra_op_threads <= 0) impl_->options.intra_op_threads = at::get_num_threads();
  impl_->engine = std::thread([this] {
    SetTensorThreadsOfThisThread(impl_->options.intra_op_threads);
    impl_->EngineLoop();
  });
  return Status::Ok();
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->engine.joinable()) impl_->engine.join();
  std::lock_guard<std::mutex> lock(impl_->mu);
  for (auto& [id, run] : impl_->runs) {
    for (auto& [seq, item] : run->queue) item.done(Unavailable("the server is shutting down"));
    for (auto& item : run->unnumbered) item.done(Unavailable("the server is shutting down"));
    run->queue.clear();
    run->unnumbered.clear();
  }
  for (auto& [work, done] : impl_->sample_queue) done(Unavailable("the server is shutting down"));
  impl_->sample_queue.clear();
}

Result<RunInfo> Scheduler::CreateRun(const std::string& run_id, const std::string& key_id,
                                     const std::string& session_id, const std::string& base_model,
                                     const model::LoraConfig& lora, bool train_unembed, uint64_t seed,
                                     const Json& user_metadata) {
  bool full = lora.rank == 0;
  if (!full) OPENRL_RETURN_IF_ERROR(lora.Validate());
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->runs.count(run_id)) return AlreadyExists("model_id '" + run_id + "' already exists");
  }
  OPENRL_ASSIGN_OR_RETURN(LoadedBase * base, impl_->LoadBase(base_model));
  auto run = std::make_unique<RunState>();
  run->info.id = run_id;
  run->info.key_id = key_id;
  run->info.session_id = session_id;
  run->info.base_model = base_model;
  run->info.lora = lora;
  run->info.train_unembed = full || train_unembed;
  run->info.full_finetune = full;
  run->info.live = true;
  run->info.user_metadata = user_metadata.is_object() ? user_metadata : Json::object();
  run->info.created_at = run->info.last_request_at = NowIso();
  run->base = base;
  std::string lora_json;
  if (full) {
    OPENRL_ASSIGN_OR_RETURN(
        run->own, impl_->OnOwnTensorThread(base_model, [&]() -> Result<std::unique_ptr<model::Transformer>> {
          auto copy = CopyWeights(*base->model.model, at::kFloat);
          if (!copy)
            return Internal("could not copy the weights of '" + base_model + "' for full fine-tuning");
          return copy;
        }));
    run->own->SetRequiresGrad(true);
    std::vector<at::Tensor> params;
    for (auto& [name, t] : run->own->NamedParameters()) params.push_back(t);
    run->optimizer = std::make_unique<AdamW>(std::move(params));
    lora_json = Json{{"openrl_full_finetune", true}}.dump();
  } else {
    run->adapter = model::LoraAdapter::Create(base->model.config, lora, at::kFloat, impl_->options.device, seed);
    run->adapter->SetRequiresGrad(true);
    run->optimizer = std::make_unique<AdamW>(run->adapter->Parameters());
    lora_json = model::LoraConfigToPeft(lora, base_model).dump();
  }
  OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec("INSERT INTO training_runs (id, session_id, key_id, base_model, lora_rank, lora_config, user_metadata, "
              "state, created_at, last_request_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?)",
              {run->info.id, session_id, key_id, base_model, lora.rank, lora_json, run->info.user_metadata.dump(),
               run->info.created_at, run->info.last_request_at})
        .status();
  }));
  RunInfo info = run->info;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->runs[info.id] = std::move(run);
  return info;
}

Result<RunInfo> Scheduler::CreateFrozenRun(const std::string& run_id, const std::string& key_id,
                                           const std::string& session_id, const RunInfo& like) {
  auto run = std::make_unique<RunState>();
  RunInfo& info = run->info;
  info.id = run_id;
  info.key_id = key_id;
  info.session_id = session_id;
  info.base_model = like.base_model;
  info.lora = like.lora;
  info.train_unembed = like.train_unembed;
  info.full_finetune = like.full_finetune;
  info.frozen = true;
  info.created_at = info.last_request_at = NowIso();
  std::string lora_json = like.full_finetune ? Json{{"openrl_full_finetune", true}}.dump()
                                             : model::LoraConfigToPeft(like.lora, like.base_model).dump();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->runs.count(run_id)) return AlreadyExists("model_id '" + run_id + "' already exists");
  }
  OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec("INSERT INTO training_runs (id, session_id, key_id, base_model, lora_rank, lora_config, user_metadata, "
              "state, created_at, last_request_at) VALUES (?, ?, ?, ?, ?, ?, '{}', 'frozen', ?, ?)",
              {run_id, session_id, key_id, info.base_model, info.lora.rank, lora_json, info.created_at,
               info.last_request_at})
        .status();
  }));
  RunInfo out = info;
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->runs[run_id] = std::move(run);
  return out;
}

Result<RunInfo> Scheduler::Run(const std::string& run_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->runs.find(run_id);
  if (it == impl_->runs.end()) return NotFound("model_id '" + run_id + "' is not a training run of this server");
  RunInfo info = it->second->info;
  info.live = it->second->resident() || it->second->offloaded;
  info.offloaded = it->second->offloaded;
  return info;
}

std::vector<RunInfo> Scheduler::Runs(const std::optional<std::string>& key_id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<RunInfo> out;
  for (auto& [id, run] : impl_->runs) {
    if (key_id && run->info.key_id != *key_id) continue;
    out.push_back(run->info);
    out.back().live = run->resident() || run->offloaded;
    out.back().offloaded = run->offloaded;
  }
  return out;
}

Status Scheduler::Submit(const std::string& run_id, int64_t seq_id, Work work, Done done) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping) return Unavailable("the server is shutting down");
    auto it = impl_->runs.find(run_id);
    if (it == impl_->runs.end()) return NotFound("model_id '" + run_id + "' is not a training run of this server");
    RunState& run = *it->second;
    if (run.info.frozen)  // INVALID_ARGUMENT (400): the SDK would retry a 409 for minutes
      return InvalidArgument("model " + run_id + " holds weights copied with copy_weights and cannot be trained, "
                             "saved or loaded into; create a training client from its checkpoint instead");
    if (impl_->queued >= impl_->options.max_queued_items)
      return ResourceExhausted("the engine queue is full (" + std::to_string(impl_->queued) + " requests)");
    if (seq_id <= 0) {
      run.unnumbered.push_back(QueuedItem{std::move(work), std::move(done)});
    } else if (seq_id < run.next_seq || run.queue.count(seq_id) || run.skipped.count(seq_id)) {
      return AlreadyExists("seq_id " + std::to_string(seq_id) + " of model " + run_id + " was already used");
    } else {
      run.queue.emplace(seq_id, QueuedItem{std::move(work), std::move(done)});
    }
    run.info.last_request_at = NowIso();
    impl_->SeenClient(run_id);
    ++impl_->queued;
  }
  impl_->cv.notify_all();
  return Status::Ok();
}

void Scheduler::Skip(const std::string& run_id, int64_t seq_id) {
  if (seq_id <= 0) return;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->runs.find(run_id);
    if (it == impl_->runs.end() || seq_id < it->second->next_seq) return;
    it->second->skipped.insert(seq_id);
  }
  impl_->cv.notify_all();
}

Status Scheduler::SubmitSample(SampleWork work, Done done) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopping) return Unavailable("the server is shutting down");
    if (impl_->queued >= impl_->options.max_queued_items)
      return ResourceExhausted("the engine queue is full (" + std::to_string(impl_->queued) + " requests)");
    auto sampler = impl_->samplers.find(work.sampling_session_id);
    if (sampler == impl_->samplers.end())
      return NotFound("sampling session '" + work.sampling_session_id + "' is unknown");
    const SamplerState& sm = *sampler->second;
    const model::Transformer& weights = sm.weights ? *sm.weights : *sm.base->model.model;
    CacheDemand alone;
    alone.Add(work.num_samples, static_cast<int64_t>(work.prompt.size()), work.params.max_tokens);
    int64_t bytes = GenerationBatch(weights).CacheBytesAfter(alone);
    if (bytes > impl_->options.max_kv_cache_bytes)
      return InvalidArgument("this request's KV cache would take " + std::to_string(bytes >> 20) + " MiB (num_samples " +
                             std::to_string(work.num_samples) + " x (prompt " + std::to_string(work.prompt.size()) +
                             " + max_tokens " + std::to_string(work.params.max_tokens) +
                             ") tokens); the server holds at most " +
                             std::to_string(impl_->options.max_kv_cache_bytes >> 20) +
                             " MiB of KV cache per model (--max-kv-cache-mb): lower num_samples or max_tokens");
    impl_->SeenClient(sm.client);
    impl_->sample_queue.emplace_back(std::move(work), std::move(done));
    ++impl_->queued;
  }
  impl_->cv.notify_all();
  return Status::Ok();
}

void Scheduler::CancelSample(const std::string& cancel_id) {
  if (cancel_id.empty()) return;
  std::optional<Done> done;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto& q = impl_->sample_queue;
    auto it = std::find_if(q.begin(), q.end(), [&](const auto& item) { return item.first.cancel_id == cancel_id; });
    if (it != q.end()) {
      done = std::move(it->second);
      q.erase(it);
      --impl_->queued;
    } else {
      impl_->cancel_requests.insert(cancel_id);  // running, or about to: the engine drops it between steps
    }
  }
  if (done) (*done)(Status(ErrorCode::kCancelled, "sample request " + cancel_id + " was cancelled by its client before it started"));
}

QueuedItem* Scheduler::Impl::ReadyItem(RunState& run) {
  if (!run.unnumbered.empty()) return &run.unnumbered.front();
  while (run.skipped.count(run.next_seq)) {
    run.skipped.erase(run.next_seq);
    ++run.next_seq;
  }
  auto it = run.queue.find(run.next_seq);
  return it == run.queue.end() ? nullptr : &it->second;
}

void Scheduler::Impl::SeenClient(const std::string& client) {
  auto now = std::chrono::steady_clock::now();
  client_seen[client] = now;
  if (client_seen.size() <= 256) return;  // a busy engine seldom runs AwaitingClient, which forgets too
  for (auto it = client_seen.begin(); it != client_seen.end();)
    it = now - it->second > options.client_active ? client_seen.erase(it) : std::next(it);
}

bool Scheduler::Impl::AwaitingClient() {
  auto now = std::chrono::steady_clock::now();
  std::set<std::string> queued_by;
  for (auto& [id, run] : runs)
    if (!run->queue.empty() || !run->unnumbered.empty()) queued_by.insert(id);
  for (auto& [work, done] : sample_queue) {
    auto it = samplers.find(work.sampling_session_id);
    if (it != samplers.end()) queued_by.insert(it->second->client);
  }
  bool awaiting = false;
  for (auto it = client_seen.begin(); it != client_seen.end();) {
    if (now - it->second > options.client_active) {
      it = client_seen.erase(it);
      continue;
    }
    awaiting = awaiting || !queued_by.count(it->first);
    ++it;
  }
  return awaiting;
}

namespace {

using ItemList = std::vector<std::pair<RunState*, QueuedItem*>>;

}  // namespace

// Called with `mu` held: retires executed items (each run moves to its next seq_id).
static void Retire(ItemList& items, int64_t& queued) {
  for (auto& [run, item] : items) {
    if (!run->unnumbered.empty() && item == &run->unnumbered.front()) {
      run->unnumbered.pop_front();
    } else {
      run->queue.erase(run->next_seq);
      ++run->next_seq;
    }
    --queued;
  }
  items.clear();
}

void Scheduler::Impl::EngineLoop() {
  metrics::Registry& reg = metrics::DefaultRegistry();
  auto& busy = reg.Counter("openrl_engine_busy_seconds_total", "Seconds the engine spent executing clock cycles").Get();
  auto& cycles = reg.Counter("openrl_engine_cycles_total", "Clock cycles executed").Get();
  auto& depth = reg.Gauge("openrl_engine_queued_requests", "Requests queued for the engine").Get();
  auto& decoding = reg.Gauge("openrl_engine_generation_rows", "Sample rows decoding in running generations").Get();
  // What this thread's tensor work runs on, as ATen reports it here (not the option asked for).
  reg.Gauge("openrl_engine_tensor_threads", "Threads of the engine's tensor work (ATen intra-op)")
      .Get()
      .Set(at::get_num_threads());
  auto& weight_bytes = reg.Gauge("openrl_model_weight_bytes",
                                 "Bytes of weights a served base model holds: its parameters, and the copies "
                                 "made for faster inference (fp32 on CPU: the decode steps' blocked weights)",
                                 {"model", "kind"});
  // After a cycle at most once a second (it walks every weight of every base), and whenever the
  // engine goes idle, so the gauge ends up current; skipped while a base model loads (that holds
  // models_mu for long).
  std::chrono::steady_clock::time_point weights_reported{};
  auto report_weights = [&](bool going_idle) {
    auto now = std::chrono::steady_clock::now();
    if (!going_idle && now - weights_reported < std::chrono::seconds(1)) return;
    std::unique_lock<std::mutex> g(models_mu, std::try_to_lock);
    if (!g.owns_lock()) return;
    weights_reported = now;
    for (const auto& [name, base] : bases) {
      model::Transformer::WeightMemory w = base->model.model->WeightBytes();
      weight_bytes.With({name, "parameters"}).Set(static_cast<double>(w.parameters));
      weight_bytes.With({name, "copies"}).Set(static_cast<double>(w.copies));
    }
  };
  auto& gather_waits =
      reg.Counter("openrl_engine_gather_waits_total",
                  "Cycles that waited (at most the gather window) for an active client's request")
          .Get();
  // Where the busy time goes, by kind of work (the sum over kinds is about the busy time).
  auto& work_seconds =
      reg.Counter("openrl_engine_work_seconds_total",
                  "Seconds the engine spent on each kind of work: forward_backward, forward, "
                  "optim_step, save, load, prefill (sample requests joining a generation), decode",
                  {"work"});
  auto timed = [&](const char* work, auto&& fn) {
    auto start = std::chrono::steady_clock::now();
    auto add = [&] {
      work_seconds.With({work}).Inc(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    };
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      add();
    } else {
      auto result = fn();
      add();
      return result;
    }
  };
  auto run_item = [&](RunState& run, QueuedItem& item) {
    Result<Output> out = Internal("unreachable");
    if (auto* w = std::get_if<OptimStepWork>(&item.work))
      out = timed("optim_step", [&] { return RunOptimStep(run, *w); });
    if (auto* w = std::get_if<SaveWork>(&item.work)) out = timed("save", [&] { return RunSave(run, *w); });
    if (auto* w = std::get_if<LoadWork>(&item.work)) out = timed("load", [&] { return RunLoad(run, *w); });
    item.done(std::move(out));
  };
  std::unique_lock<std::mutex> lock(mu);
  bool was_idle = true;
  while (true) {
    auto nothing_ready = [&] {
      if (!sample_queue.empty() || !generations.empty()) return false;
      for (auto& [id, run] : runs)
        if (ReadyItem(*run)) return false;
      return true;
    };
    if (nothing_ready()) {
      if (stopping) return;
      if (!was_idle) report_weights(/*going_idle=*/true);
      was_idle = true;
      if (cv.wait_for(lock, std::chrono::seconds(30)) == std::cv_status::timeout) {
        lock.unlock();
        Result<int64_t> swept = sweep_();  // checkpoints past their TTL, while the engine is idle
        if (!swept.ok()) log::Write(log::Level::kWarn, "checkpoint sweep failed: " + swept.status().message());
        lock.lock();
      }
      continue;
    }
    if (stopping) {  // Stop() fails what is still queued; generations in flight fail here
      int64_t failed = 0;
      for (auto& [model, gen] : generations) failed += FailGeneration(gen, Unavailable("the server is shutting down"));
      generations.clear();
      queued -= failed;
      return;
    }
    if (was_idle && options.gather_window.count() > 0 && AwaitingClient()) {
      // Work just arrived at an idle engine while another active client has none queued: give its
      // request a moment to arrive, so it shares the cycle instead of waiting a whole one. The
      // wait ends as soon as every active client has work queued.
      gather_waits.Inc();
      cv.wait_for(lock, options.gather_window, [&] { return stopping || !AwaitingClient(); });
    }
    was_idle = false;
    // Phase 1 of a clock cycle: the ready forward/backward of every run, packed.
    ItemList fwdbwd, fwd_only;
    for (auto& [id, run] : runs) {
      QueuedItem* item = ReadyItem(*run);
      if (!item) continue;
      if (auto* fb = std::get_if<ForwardBackwardWork>(&item->work))
        (fb->forward_only ? fwd_only : fwdbwd).emplace_back(run.get(), item);
    }
    lock.unlock();
    auto t0 = std::chrono::steady_clock::now();
    for (auto* list : {&fwdbwd, &fwd_only})
      for (auto& [run, item] : *list) (void)EnsureResident(*run);  // a failure shows when the item runs
    if (!fwdbwd.empty()) timed("forward_backward", [&] { RunForwardBackward(fwdbwd); });
    if (!fwd_only.empty()) timed("forward", [&] { RunForwardBackward(fwd_only); });
    lock.lock();
    Retire(fwdbwd, queued);
    Retire(fwd_only, queued);
    // Phase 2: each run's next item if it is not a forward/backward (typically the optimizer
    // step sent right behind it). Phase 3: queued sample requests join the running generations.
    ItemList others;
    for (auto& [id, run] : runs) {
      QueuedItem* item = ReadyItem(*run);
      if (item && !std::holds_alternative<ForwardBackwardWork>(item->work)) others.emplace_back(run.get(), item);
    }
    std::vector<std::pair<SampleWork, Done>> samples(std::make_move_iterator(sample_queue.begin()),
                                                     std::make_move_iterator(sample_queue.end()));
    sample_queue.clear();
    lock.unlock();
    for (auto& [run, item] : others) {
      (void)EnsureResident(*run);
      run_item(*run, *item);
    }
    int64_t samples_done = samples.empty() ? 0 : timed("prefill", [&] { return AdmitSamples(samples); });
    // Decode steps (continuous batching): requests that arrive meanwhile join between steps; the
    // cycle ends when the generations are done, or once training work is ready after a slice.
    auto decode_start = std::chrono::steady_clock::now();
    while (!generations.empty()) {
      samples_done += DropCancelled();
      decoding.Set(static_cast<double>(GenerationRows()));
      if (generations.empty()) break;
      samples_done += timed("decode", [&] { return StepGenerations(); });
      lock.lock();
      queued -= samples_done;
      samples_done = 0;
      bool training_ready = stopping;
      if (std::chrono::steady_clock::now() - decode_start >= options.decode_slice)
        for (auto& [id, run] : runs) training_ready = training_ready || ReadyItem(*run) != nullptr;
      std::vector<std::pair<SampleWork, Done>> newcomers(std::make_move_iterator(sample_queue.begin()),
                                                         std::make_move_iterator(sample_queue.end()));
      sample_queue.clear();
      lock.unlock();
      if (!newcomers.empty()) samples_done += timed("prefill", [&] { return AdmitSamples(newcomers); });
      if (training_ready) break;
    }
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    busy_seconds.store(busy_seconds.load() + dt);
    busy.Inc(dt);
    cycles.Inc();
    lock.lock();
    Retire(others, queued);
    queued -= samples_done;
    decoding.Set(static_cast<double>(GenerationRows()));
    depth.Set(static_cast<double>(queued));
    lock.unlock();
    report_weights(/*going_idle=*/false);
    EnforceMemoryBudget();
    lock.lock();
  }
}

std::pair<double, double> Scheduler::BusyTime() const {
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - impl_->started).count();
  return {impl_->busy_seconds.load(), wall};
}

}  // namespace openrl::engine
