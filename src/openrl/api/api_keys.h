// API keys: the identity behind every request of the training API. A key is shown once when it is
// created ("tml-" + 48 hex digits, the prefix the tinker SDK requires); the store keeps only its
// sha256. Each key carries limits: concurrent requests in flight and a token quota (0 = none).
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/store/metadata_store.h"

namespace openrl::api {

struct ApiKey {
  std::string id;  // "key_…", safe to log
  std::string name;
  std::string created_at;
  std::optional<std::string> revoked_at;
  int64_t max_concurrent_requests = 0;  // 0 = unlimited
  int64_t token_quota = 0;              // 0 = unlimited
  int64_t tokens_used = 0;
};

struct NewKey {
  ApiKey key;
  std::string secret;  // the "tml-…" string; never stored
};

class KeyStore {
 public:
  explicit KeyStore(store::MetadataStore& db) : db_(db) {}

  Result<NewKey> Create(const std::string& name, int64_t max_concurrent_requests, int64_t token_quota);
  // Adds a key whose secret the operator chose (e.g. from a secret manager); must start "tml-".
  Result<ApiKey> Import(const std::string& name, const std::string& secret, int64_t max_concurrent_requests,
                        int64_t token_quota);
  Result<std::vector<ApiKey>> List();
  Status Revoke(const std::string& id);

  // UNAUTHENTICATED for a missing, unknown or revoked key (the message never echoes the key).
  Result<ApiKey> Authenticate(const std::string& presented);
  // Adds `tokens` to the key's use; PERMISSION_DENIED (403, not retried; nothing charged) past its quota.
  Status ChargeTokens(const ApiKey& key, int64_t tokens);
  // Gives back a charge for work that was refused after it was charged (never below zero). Best
  // effort: the refusal stands either way, so a failure is logged, not returned.
  void RefundTokens(const std::string& key_id, int64_t tokens);

  // In-flight request slots per key: Acquire fails with RESOURCE_EXHAUSTED at the key's limit.
  Status AcquireSlot(const ApiKey& key);
  void ReleaseSlot(const std::string& key_id);

 private:
  store::MetadataStore& db_;
  std::mutex mu_;
  std::map<std::string, int64_t> in_flight_;
};

}  // namespace openrl::api
