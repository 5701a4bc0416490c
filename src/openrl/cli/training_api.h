// The training API's server-side state — metadata store, durable futures, engine scheduler, API
// keys and the Tinker routes — assembled once for `openrl serve` and for the quickstart's
// in-process server.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "openrl/api/api_keys.h"
#include "openrl/api/tinker_api.h"
#include "openrl/core/fs.h"
#include "openrl/engine/futures.h"
#include "openrl/engine/scheduler.h"
#include "openrl/store/sqlite_store.h"

namespace openrl::cli {

struct TrainingApiOptions {
  std::string data_dir;                  // "" → $OPENRL_DATA_DIR or ./var/openrl
  std::vector<std::string> base_models;  // NAME=PATH, registered at start
  std::string dtype = "float32";
  std::string device = "cpu";  // "cuda", "cuda:1": where the engine keeps weights and state
  std::string api_key;  // a tml-… key registered at start if new (e.g. from a secret store)
  int64_t max_tokens_per_pass = 16384;
  int64_t session_timeout_seconds = 1800;
  int64_t max_resident_runs = 64;  // beyond: least recently used run states offloaded to disk
  int64_t max_kv_cache_mb = 8192;  // keys and values of one model's running generations
  int engine_threads = 0;          // the engine's tensor threads; 0: ATen's default
  std::string public_url;                // origin of signed download URLs ("" → the request's Host)
  int64_t download_url_ttl_seconds = 3600;
};

struct TrainingApi {
  // <data>/serve.lock, held while the API runs: one process at a time serves a data directory
  // (a second would fail the first's futures as a restart's and delete its half-written saves).
  std::unique_ptr<fs::FileLock> data_lock;
  std::unique_ptr<store::SqliteStore> db;
  std::unique_ptr<engine::FutureStore> futures;
  std::unique_ptr<engine::Scheduler> scheduler;
  std::unique_ptr<api::KeyStore> keys;
  std::unique_ptr<api::TinkerApi> tinker;
  ~TrainingApi();  // stops the engine before the stores it uses go away
};

// Opens the data directory (failing pending futures of a previous process; FAILED_PRECONDITION
// when another process serves it), registers the base
// models, starts the engine thread. Download URLs are signed with <data>/secrets/url_signing.key
// (made on first start, mode 0600), so URLs handed out stay valid across restarts.
Result<std::unique_ptr<TrainingApi>> StartTrainingApi(const TrainingApiOptions& o);

}  // namespace openrl::cli
