#include "openrl/api/api_keys.h"

#include "openrl/core/clock.h"
#include "openrl/core/crypto.h"
#include "openrl/core/ids.h"
#include "openrl/core/log.h"

namespace openrl::api {
namespace {

using store::Row;
using store::Tx;

Result<ApiKey> KeyFromRow(const Row& row) {
  ApiKey k;
  OPENRL_ASSIGN_OR_RETURN(k.id, row.Text("id"));
  OPENRL_ASSIGN_OR_RETURN(k.name, row.Text("name"));
  OPENRL_ASSIGN_OR_RETURN(k.created_at, row.Text("created_at"));
  OPENRL_ASSIGN_OR_RETURN(k.revoked_at, row.OptionalText("revoked_at"));
  OPENRL_ASSIGN_OR_RETURN(k.max_concurrent_requests, row.Int64("max_concurrent_requests"));
  OPENRL_ASSIGN_OR_RETURN(k.token_quota, row.Int64("token_quota"));
  OPENRL_ASSIGN_OR_RETURN(k.tokens_used, row.Int64("tokens_used"));
  return k;
}

Status CheckLimits(int64_t max_concurrent_requests, int64_t token_quota) {
  if (max_concurrent_requests < 0) return InvalidArgument("max concurrent requests must be >= 0 (0 = unlimited)");
  if (token_quota < 0) return InvalidArgument("token quota must be >= 0 (0 = unlimited)");
  return Status::Ok();
}

}  // namespace

Result<NewKey> KeyStore::Create(const std::string& name, int64_t max_concurrent_requests, int64_t token_quota) {
  OPENRL_ASSIGN_OR_RETURN(std::string random, crypto::RandomBytes(24));
  NewKey out;
  out.secret = "tml-" + crypto::HexEncode(random);
  OPENRL_ASSIGN_OR_RETURN(out.key, Import(name, out.secret, max_concurrent_requests, token_quota));
  return out;
}

Result<ApiKey> KeyStore::Import(const std::string& name, const std::string& secret, int64_t max_concurrent_requests,
                                int64_t token_quota) {
  OPENRL_RETURN_IF_ERROR(CheckLimits(max_concurrent_requests, token_quota));
  if (name.empty()) return InvalidArgument("a key needs a name (who or what uses it)");
  if (secret.rfind("tml-", 0) != 0 || secret.size() < 20)
    return InvalidArgument("an API key must start with 'tml-' (the tinker SDK refuses others) and be at least 20 "
                           "characters long");
  ApiKey k;
  k.id = NewId("key");
  k.name = name;
  k.created_at = FormatIso8601Utc(SystemClock().Now());
  k.max_concurrent_requests = max_concurrent_requests;
  k.token_quota = token_quota;
  std::string hash = crypto::Sha256Hex(secret);
  OPENRL_RETURN_IF_ERROR(db_.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto existing, tx.QueryOne("SELECT id FROM api_keys WHERE key_hash = ?", {hash}));
    if (existing) return AlreadyExists("this API key is already registered");
    return tx
        .Exec("INSERT INTO api_keys (id, name, key_hash, created_at, revoked_at, max_concurrent_requests, token_quota, "
              "tokens_used) VALUES (?, ?, ?, ?, NULL, ?, ?, 0)",
              {k.id, name, hash, k.created_at, max_concurrent_requests, token_quota})
        .status();
  }));
  return k;
}

Result<std::vector<ApiKey>> KeyStore::List() {
  std::vector<ApiKey> out;
  OPENRL_RETURN_IF_ERROR(db_.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT * FROM api_keys ORDER BY created_at"));
    for (const Row& r : rows) {
      OPENRL_ASSIGN_OR_RETURN(ApiKey k, KeyFromRow(r));
      out.push_back(std::move(k));
    }
    return Status::Ok();
  }));
  return out;
}

Status KeyStore::Revoke(const std::string& id) {
  return db_.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(int64_t n, tx.Exec("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                               {FormatIso8601Utc(SystemClock().Now()), id}));
    if (n == 0) return NotFound("no active API key with id " + id);
    return Status::Ok();
  });
}

Result<ApiKey> KeyStore::Authenticate(const std::string& presented) {
  if (presented.empty()) return Unauthenticated("missing API key: send it in the X-API-Key header");
  std::string hash = crypto::Sha256Hex(presented);
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(db_.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(row, tx.QueryOne("SELECT * FROM api_keys WHERE key_hash = ?", {hash}));
    return Status::Ok();
  }));
  if (!row) return Unauthenticated("unknown API key");
  OPENRL_ASSIGN_OR_RETURN(ApiKey k, KeyFromRow(*row));
  if (k.revoked_at) return Unauthenticated("API key " + k.id + " was revoked at " + *k.revoked_at);
  return k;
}

Status KeyStore::ChargeTokens(const ApiKey& key, int64_t tokens) {
  if (tokens <= 0) return Status::Ok();
  return db_.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(int64_t n, tx.Exec("UPDATE api_keys SET tokens_used = tokens_used + ? WHERE id = ? AND "
                                               "(token_quota = 0 OR tokens_used + ? <= token_quota)",
                                               {tokens, key.id, tokens}));
    if (n == 0)
      return PermissionDenied("API key " + key.id + " has used its token quota (" + std::to_string(key.token_quota) +
                               " tokens); ask an operator to raise it");
    return Status::Ok();
  });
}

void KeyStore::RefundTokens(const std::string& key_id, int64_t tokens) {
  if (tokens <= 0) return;
  Status s = db_.Transaction([&](Tx& tx) -> Status {
    return tx.Exec("UPDATE api_keys SET tokens_used = MAX(0, tokens_used - ?) WHERE id = ?", {tokens, key_id}).status();
  });
  if (!s.ok())  // (fmt-free: this library sees libtorch's bundled fmt headers)
    log::Write(log::Level::kWarn, "refunding " + std::to_string(tokens) + " tokens to key " + key_id + ": " + s.message());
}

Status KeyStore::AcquireSlot(const ApiKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t& n = in_flight_[key.id];
  if (key.max_concurrent_requests > 0 && n >= key.max_concurrent_requests)
    return ResourceExhausted("API key " + key.id + " has " + std::to_string(n) +
                             " requests in flight, its limit; retry when one finishes");
  ++n;
  return Status::Ok();
}

void KeyStore::ReleaseSlot(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_flight_.find(key_id);
  if (it != in_flight_.end() && it->second > 0) --it->second;
}

}  // namespace openrl::api
