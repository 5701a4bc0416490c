#include "openrl/cli/training_api.h"

#include <filesystem>

#include "openrl/cli/data_dir.h"
#include "openrl/core/crypto.h"
#include "openrl/core/fs.h"
#include "openrl/model/checkpoint.h"

namespace openrl::cli {
namespace {

// 32 random bytes kept in `<data_dir>/secrets/url_signing.key`, readable by the owner only.
Result<std::string> UrlSigningKey(const std::string& data_dir) {
  namespace stdfs = std::filesystem;
  std::string dir = data_dir + "/secrets";
  std::string path = dir + "/url_signing.key";
  if (fs::Exists(path)) {
    OPENRL_ASSIGN_OR_RETURN(std::string key, fs::ReadFile(path));
    if (key.size() != 32) return InvalidArgument(path + ": expected 32 bytes, found " + std::to_string(key.size()));
    return key;
  }
  OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(dir));
  std::error_code ec;
  stdfs::permissions(dir, stdfs::perms::owner_all, stdfs::perm_options::replace, ec);
  OPENRL_ASSIGN_OR_RETURN(std::string key, crypto::RandomBytes(32));
  OPENRL_RETURN_IF_ERROR(fs::WriteFileAtomic(path, key));
  stdfs::permissions(path, stdfs::perms::owner_read | stdfs::perms::owner_write, stdfs::perm_options::replace, ec);
  if (ec) return Internal("could not restrict the permissions of " + path + ": " + ec.message());
  return key;
}

}  // namespace

TrainingApi::~TrainingApi() {
  if (scheduler) scheduler->Stop();
}

Result<std::unique_ptr<TrainingApi>> StartTrainingApi(const TrainingApiOptions& o) {
  auto t = std::make_unique<TrainingApi>();
  std::string data_dir = ResolveDataDir(o.data_dir);
  if (o.session_timeout_seconds < 1) return InvalidArgument("--session-timeout must be at least 1 second");
  OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(data_dir));
  Result<fs::FileLock> lock = fs::FileLock::Acquire(data_dir + "/serve.lock");
  if (!lock.ok()) {
    if (lock.status().code() != ErrorCode::kFailedPrecondition) return lock.status();
    return FailedPrecondition("data directory " + data_dir + " is in use: " + lock.status().message() +
                              "; stop that server or give this one another --data-dir");
  }
  t->data_lock = std::make_unique<fs::FileLock>(std::move(*lock));
  OPENRL_ASSIGN_OR_RETURN(t->db, OpenDataDb(data_dir));
  t->futures = std::make_unique<engine::FutureStore>(*t->db);
  OPENRL_RETURN_IF_ERROR(t->futures->RecoverAfterRestart());
  engine::SchedulerOptions so;
  so.data_dir = data_dir;
  OPENRL_ASSIGN_OR_RETURN(so.dtype, model::ParseDtype(o.dtype));
  OPENRL_ASSIGN_OR_RETURN(so.device, model::ParseDevice(o.device));
  so.max_tokens_per_pass = o.max_tokens_per_pass;
  if (o.max_resident_runs < 1) return InvalidArgument("--max-resident-runs must be at least 1");
  so.max_resident_runs = o.max_resident_runs;
  if (o.max_kv_cache_mb < 1) return InvalidArgument("--max-kv-cache-mb must be at least 1");
  so.max_kv_cache_bytes = o.max_kv_cache_mb << 20;
  if (o.engine_threads < 0) return InvalidArgument("--engine-threads must be >= 0 (0: ATen's default)");
  so.intra_op_threads = o.engine_threads;
  t->scheduler = std::make_unique<engine::Scheduler>(*t->db, so);
  for (const std::string& spec : o.base_models) {
    size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0)
      return InvalidArgument("--base-model '" + spec + "': expected NAME=PATH (a model directory or GGUF file)");
    OPENRL_RETURN_IF_ERROR(t->scheduler->AddBaseModel(spec.substr(0, eq), spec.substr(eq + 1)));
  }
  OPENRL_RETURN_IF_ERROR(t->scheduler->Start());
  t->keys = std::make_unique<api::KeyStore>(*t->db);
  if (!o.api_key.empty() && !t->keys->Authenticate(o.api_key).ok()) {
    OPENRL_RETURN_IF_ERROR(t->keys->Import("serve --api-key", o.api_key, 0, 0).status());
  }
  api::TinkerApiOptions ao;
  ao.session_timeout = std::chrono::seconds(o.session_timeout_seconds);
  if (o.download_url_ttl_seconds < 1) return InvalidArgument("--download-url-ttl must be at least 1 second");
  ao.download_url_ttl = std::chrono::seconds(o.download_url_ttl_seconds);
  ao.public_url = o.public_url;
  OPENRL_ASSIGN_OR_RETURN(ao.url_signing_key, UrlSigningKey(data_dir));
  t->tinker = std::make_unique<api::TinkerApi>(*t->db, *t->scheduler, *t->futures, *t->keys, ao);
  return t;
}

}  // namespace openrl::cli
