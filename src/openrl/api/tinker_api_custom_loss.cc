// Server-side custom losses (SDK 0.38): POST /create_custom_loss validates a traced loss
// (engine/custom_loss.h) and stores it durably, scoped to its API key and session; a
// forward_backward with loss_fn "custom" and loss_fn_config {"loss_id"} then runs it on the
// engine, packed with other runs' work like a built-in loss. The graph is stored and run as data;
// nothing in it is ever executed as code.
#include <mutex>

#include "openrl/api/tinker_api_internal.h"
#include "openrl/core/clock.h"
#include "openrl/core/crypto.h"
#include "openrl/core/ids.h"
#include "openrl/engine/custom_loss.h"

namespace openrl::api {
namespace {

using store::Row;
using store::Tx;

// Parsed losses by id: a stored loss never changes, so each is parsed once (a bounded cache).
class ParsedLosses {
 public:
  std::shared_ptr<const engine::CustomLoss> Get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = losses_.find(id);
    return it == losses_.end() ? nullptr : it->second;
  }
  void Put(const std::string& id, std::shared_ptr<const engine::CustomLoss> loss) {
    std::lock_guard<std::mutex> lock(mu_);
    if (losses_.size() >= 1024) losses_.clear();
    losses_[id] = std::move(loss);
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const engine::CustomLoss>> losses_;
};

ParsedLosses& Cache() {
  static auto* cache = new ParsedLosses;
  return *cache;
}

// The loss id for (session, custom_loss_seq_id): the stored one when the SDK retries the same
// request, a new one otherwise; a different loss under a used seq_id is refused.
Result<std::string> StoreLoss(store::MetadataStore& db, const ApiKey& key, const std::string& session,
                              int64_t seq, const Json& body) {
  const std::string hash = crypto::Sha256Hex(
      Json{{"name", body["name"]}, {"inputs", body["inputs"]}, {"graph", body["graph"]}}.dump());
  std::string id;
  OPENRL_RETURN_IF_ERROR(db.Transaction([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::optional<Row> row, tx.QueryOne("SELECT id, request_hash FROM custom_losses "
                                                                "WHERE session_id = ? AND seq_id = ?",
                                                                {session, seq}));
    if (row) {
      OPENRL_ASSIGN_OR_RETURN(std::string stored, row->Text("request_hash"));
      if (stored != hash)
        return InvalidArgument("custom_loss_seq_id " + std::to_string(seq) + " of session " + session +
                               " already names another custom loss");
      OPENRL_ASSIGN_OR_RETURN(id, row->Text("id"));
      return Status::Ok();
    }
    id = NewId("loss");
    return tx
        .Exec(
            "INSERT INTO custom_losses (id, key_id, session_id, seq_id, name, inputs, graph, request_hash, "
            "created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            {id, key.id, session, seq, body["name"].get<std::string>(), body["inputs"].dump(),
             body["graph"].dump(), hash, FormatIso8601Utc(SystemClock().Now())})
        .status();
  }));
  return id;
}

}  // namespace

void TinkerApi::Impl::InstallCustomLoss(http::Router& r, const std::shared_ptr<Impl>& self) {
  // {session_id, custom_loss_seq_id, name, inputs: [{name, rank}], graph: {format, nodes}} →
  // a future of {"loss_id", "type": "create_custom_loss"}; a bad graph is a 400 naming the node.
  r.Post("/api/v1/create_custom_loss", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    if (!body.is_object()) return Problem(InvalidArgument("request body must be a JSON object"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string session, NonEmptyStringField(body, "session_id"), req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->CheckSession(key, session), req);
    if (!body.contains("custom_loss_seq_id") || !body["custom_loss_seq_id"].is_number_integer() ||
        body["custom_loss_seq_id"].get<int64_t>() < 0)
      return Problem(InvalidArgument("field 'custom_loss_seq_id' must be a non-negative integer"), req);
    const int64_t seq = body["custom_loss_seq_id"].get<int64_t>();
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string name, NonEmptyStringField(body, "name"), req);
    if (body.contains("type") && body["type"] != "create_custom_loss")
      return Problem(InvalidArgument("field 'type' must be \"create_custom_loss\""), req);
    if (!body.contains("inputs")) return Problem(InvalidArgument("field 'inputs' is missing"), req);
    if (!body.contains("graph")) return Problem(InvalidArgument("field 'graph' is missing"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto loss,
                                     engine::CustomLoss::Parse(name, body["inputs"], body["graph"]), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string id, StoreLoss(self->db, key, session, seq, body), req);
    Cache().Put(id, loss);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(
        std::string fut,
        self->ImmediateFuture(key, "create_custom_loss", {{"loss_id", id}, {"type", "create_custom_loss"}}),
        req);
    return JsonOk({{"request_id", fut}});
  }));
}

Result<std::shared_ptr<const engine::CustomLoss>> TinkerApi::Impl::CustomLossFor(const ApiKey& key,
                                                                                 const engine::RunInfo& run,
                                                                                 const std::string& loss_id) {
  std::optional<Row> row;
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(
        row, tx.QueryOne("SELECT key_id, session_id, name, inputs, graph FROM custom_losses WHERE id = ?",
                         {loss_id}));
    return Status::Ok();
  }));
  // Another key's loss, or one of another session, reads as unknown: a loss belongs to the
  // ServiceClient session that created it, as the SDK's LossHandle does.
  const Status unknown =
      InvalidArgument("loss_fn_config.loss_id '" + loss_id + "' is not a custom loss of model " + run.id +
                      "'s session; create it with ServiceClient.create_custom_loss");
  if (!row) return unknown;
  OPENRL_ASSIGN_OR_RETURN(std::string owner, row->Text("key_id"));
  OPENRL_ASSIGN_OR_RETURN(std::string session, row->Text("session_id"));
  if (owner != key.id || session != run.session_id) return unknown;
  if (auto cached = Cache().Get(loss_id)) return cached;
  OPENRL_ASSIGN_OR_RETURN(std::string name, row->Text("name"));
  OPENRL_ASSIGN_OR_RETURN(std::string inputs, row->Text("inputs"));
  OPENRL_ASSIGN_OR_RETURN(std::string graph, row->Text("graph"));
  OPENRL_ASSIGN_OR_RETURN(Json inputs_json, ParseJson(inputs, "custom_losses.inputs"));
  OPENRL_ASSIGN_OR_RETURN(Json graph_json, ParseJson(graph, "custom_losses.graph"));
  OPENRL_ASSIGN_OR_RETURN(auto loss, engine::CustomLoss::Parse(name, inputs_json, graph_json));
  Cache().Put(loss_id, loss);
  return loss;
}

}  // namespace openrl::api
