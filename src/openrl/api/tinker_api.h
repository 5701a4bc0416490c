// The Tinker wire API under /api/v1, as the pinned `tinker` SDK speaks it (see
// docs/api/tinker.md). Handlers are thin: authenticate the X-API-Key, decode, check what can be
// checked at once (a refused training request still consumes its seq_id, so the run's later
// requests are not held back), create the durable future, hand the work to the scheduler.
#pragma once

#include <chrono>
#include <string>

#include "openrl/api/api_keys.h"
#include "openrl/engine/futures.h"
#include "openrl/engine/scheduler.h"
#include "openrl/http/server.h"

namespace openrl::api {

struct TinkerApiOptions {
  std::chrono::seconds session_timeout{30 * 60};  // without a heartbeat, a session expires
  std::chrono::milliseconds poll_wait{20000};     // retrieve_future long-poll (the SDK waits 45 s)
  float lora_alpha = 32.0f;                       // LoRA scale = alpha / rank
  // Download URLs (exports, archives) are signed with this key and live this long. The URL's
  // origin is `public_url` when set (a server behind a proxy), else the request's Host.
  std::string url_signing_key;
  std::chrono::seconds download_url_ttl{3600};
  std::string public_url;
};

class TinkerApi {
 public:
  TinkerApi(store::MetadataStore& db, engine::Scheduler& scheduler, engine::FutureStore& futures, KeyStore& keys,
            TinkerApiOptions options = {});
  void Install(http::Router& router);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace openrl::api
