#include "openrl/cli/training_api.h"

#include "openrl/cli/data_dir.h"
#include "openrl/model/checkpoint.h"

namespace openrl::cli {

TrainingApi::~TrainingApi() {
  if (scheduler) scheduler->Stop();
}

Result<std::unique_ptr<TrainingApi>> StartTrainingApi(const TrainingApiOptions& o) {
  auto t = std::make_unique<TrainingApi>();
  std::string data_dir = ResolveDataDir(o.data_dir);
  if (o.session_timeout_seconds < 1) return InvalidArgument("--session-timeout must be at least 1 second");
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
  t->tinker = std::make_unique<api::TinkerApi>(*t->db, *t->scheduler, *t->futures, *t->keys, ao);
  return t;
}

}  // namespace openrl::cli
