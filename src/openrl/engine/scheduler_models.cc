// Base models of the scheduler (registered by name, loaded once, on first use) and the threads
// of tensor work in a serving process (the engine's, and the serial ones of request handlers).
#include <ATen/Parallel.h>

#include <filesystem>

#include "openrl/core/log.h"
#include "openrl/engine/scheduler_internal.h"
#include "openrl/model/gguf_import.h"

namespace openrl::engine {

namespace stdfs = std::filesystem;
using store::Tx;

Status Scheduler::AddBaseModel(const std::string& name, const std::string& path) {
  if (name.empty()) return InvalidArgument("base model name is empty");
  if (!stdfs::exists(path)) return NotFound("base model '" + name + "': " + path + " does not exist");
  std::string abs = stdfs::absolute(path).lexically_normal().string();
  OPENRL_RETURN_IF_ERROR(impl_->db.Transaction([&](Tx& tx) -> Status {
    return tx
        .Exec(
            "INSERT INTO base_models (name, path, added_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET path = excluded.path, added_at = excluded.added_at",
            {name, abs, NowIso()})
        .status();
  }));
  std::lock_guard<std::mutex> lock(impl_->models_mu);
  impl_->base_paths[name] = abs;
  return Status::Ok();
}

std::vector<BaseModelInfo> Scheduler::BaseModels() {
  std::vector<BaseModelInfo> out;
  std::vector<std::pair<std::string, std::string>> names;
  {
    std::lock_guard<std::mutex> lock(impl_->models_mu);
    names.assign(impl_->base_paths.begin(), impl_->base_paths.end());
  }
  for (auto& [name, path] : names) {
    auto info = BaseModel(name);
    if (info.ok()) out.push_back(*info);
  }
  return out;
}

Result<BaseModelInfo> Scheduler::BaseModel(const std::string& name) {
  OPENRL_ASSIGN_OR_RETURN(LoadedBase * base, impl_->LoadBase(name));
  return base->info;
}

Result<std::string> Scheduler::BaseModelDir(const std::string& name) {
  OPENRL_ASSIGN_OR_RETURN(LoadedBase * base, impl_->LoadBase(name));
  return base->dir;
}

void SetTensorThreadsOfThisThread(int threads) {
  at::internal::lazy_init_num_threads();  // this binary's flag (at::parallel_for in our kernels)
  (void)at::get_num_threads();            // libtorch's
  at::set_num_threads(threads);
}

void SerialTensorWorkOnThisThread() {
  thread_local bool serial = false;
  if (serial) return;
  SetTensorThreadsOfThisThread(1);
  serial = true;
}

Result<LoadedBase*> Scheduler::Impl::LoadBase(const std::string& name) {
  std::lock_guard<std::mutex> lock(models_mu);
  auto it = bases.find(name);
  if (it != bases.end()) return it->second.get();
  auto p = base_paths.find(name);
  if (p == base_paths.end()) {
    std::string known;
    for (auto& [n, _] : base_paths) known += (known.empty() ? "" : ", ") + n;
    return NotFound("base model '" + name +
                    "' is not served here (served: " + (known.empty() ? "none" : known) +
                    "); register it with `openrl models add DIR --name NAME`");
  }
  auto base = std::make_unique<LoadedBase>();
  base->dir = p->second;
  if (model::IsGgufFile(base->dir)) {
    OPENRL_ASSIGN_OR_RETURN(base->dir, model::ImportGgufCached(base->dir));
  }
  OPENRL_ASSIGN_OR_RETURN(base->model, OnOwnTensorThread(base->dir, [&] {
                            return model::LoadModelDir(base->dir, {options.dtype, options.device});
                          }));
  base->model.model->SetRequiresGrad(false);
  if (stdfs::exists(stdfs::path(base->dir) / "tokenizer.json")) {
    OPENRL_ASSIGN_OR_RETURN(base->tokenizer, tokenizer::Tokenizer::FromDirectory(base->dir));
  }
  base->eos_ids = model::StopTokenIds(base->model);
  base->info.name = name;
  base->info.path = p->second;
  base->info.max_context = base->model.config.max_position_embeddings;
  base->info.vocab_size = base->model.config.vocab_size;
  base->info.eos_ids = base->eos_ids;
  log::Write(log::Level::kInfo, "loaded base model '" + name + "' from " + base->dir);
  LoadedBase* raw = base.get();
  bases[name] = std::move(base);
  return raw;
}

}  // namespace openrl::engine
