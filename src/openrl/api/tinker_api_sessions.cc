// The calling key's own routes of the Tinker API: its metadata and self-deletion, the JWT exchange
// we do not offer, its audit log, usage as the engine counted it (billing), and its sessions:
// finish, search, project, trace export. Audit records and usage counts are queued by
// tinker_api_account.cc; these routes flush the queue before they read.
#include <sys/stat.h>

#include <set>
#include <sstream>

#include "openrl/api/tinker_api_internal.h"
#include "openrl/core/clock.h"

namespace openrl::api {

using store::Row;
using store::Tx;

namespace {

constexpr std::chrono::seconds kMaxUsageWindow{14 * 24 * 3600};
constexpr const char* kDefaultProject = "default";  // where a schema needs a project and none was set

std::string OwnerUrn(const std::string& key_id) { return "openrl:key:" + key_id; }

int64_t UnixMicros(Clock::WallTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

// The SDK's key_id is an integer: the first 13 hex digits of our "key_<32 hex>" id (below 2^53).
int64_t KeyNumber(const std::string& key_id) {
  std::string hex = key_id.substr(key_id.find('_') + 1, 13);
  char* end = nullptr;
  long long n = std::strtoll(hex.c_str(), &end, 16);
  return end != nullptr && *end == '\0' ? n : 0;
}

}  // namespace

// ---- routes: the key, its audit log and usage -------------------------------------------------

namespace {

// A UTC-hour-aligned RFC 3339 query parameter (billing windows).
Result<Clock::WallTime> HourParam(const http::Request& req, const char* name) {
  std::optional<std::string> v = req.Query(name);
  if (!v) return InvalidArgument(std::string("query parameter '") + name + "' is missing (an RFC 3339 time)");
  Result<Clock::WallTime> t = ParseIso8601(*v);
  if (!t.ok()) return InvalidArgument(std::string("query parameter '") + name + "': " + t.status().message());
  if (std::chrono::floor<std::chrono::hours>(*t) != *t)
    return InvalidArgument(std::string("query parameter '") + name +
                           "' must be on a UTC hour boundary, got " + *v);
  return *t;
}

Json UsageEventInfo(const std::string& kind, int64_t quantity) {
  if (kind == "checkpoint") return {{"type", kind}, {"count", quantity}};
  Json info = {{"type", kind}, {"token_count", quantity}};
  if (kind == "sampling_prefill") info["cached"] = false;  // no prefix cache: every prompt token is prefilled
  return info;
}

// On-disk bytes of checkpoint directories, each file counted once among them (a copy shares its
// source's files).
int64_t DiskBytes(const std::vector<engine::CheckpointInfo>& ckpts) {
  std::set<std::pair<dev_t, ino_t>> seen;
  int64_t n = 0;
  for (const auto& c : ckpts) {
    Result<std::vector<std::string>> files = c.Files();
    if (!files.ok()) continue;
    for (const std::string& f : *files) {
      struct stat st {};
      if (::stat((c.path + "/" + f).c_str(), &st) == 0 && seen.insert({st.st_dev, st.st_ino}).second)
        n += st.st_size;
    }
  }
  return n;
}

}  // namespace

void TinkerApi::Impl::InstallKeyAndUsage(http::Router& r, const std::shared_ptr<Impl>& self) {
  // `tinker auth login` checks a key with GET; `tinker auth logout` deletes it with DELETE (only
  // the key that asks; effective on its next request).
  r.Get("/api/v1/auth/apikey/me", self->Authed([](const http::Request&, const ApiKey& key) {
    return JsonOk({{"key_id", KeyNumber(key.id)},
                   {"name", key.name},
                   {"note", "OpenRL API key " + key.id + ", created " + key.created_at},
                   {"details",
                    {{"org_details", {{"name", "OpenRL (self-hosted)"}}}, {"user_details", {{"email", ""}}}}},
                   {"id", key.id},
                   {"created_at", key.created_at},
                   {"max_concurrent_requests", key.max_concurrent_requests},
                   {"token_quota", key.token_quota},
                   {"tokens_used", key.tokens_used}});
  }));
  r.Delete("/api/v1/auth/apikey/me", self->Authed([self](const http::Request& req, const ApiKey& key) {
    self->Audit(key.id, "api_key_delete", {{"key_id", key.id}, {"name", key.name}});
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->FlushAccount(), req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->keys.Revoke(key.id), req);
    return http::Response::Text(204, "");
  }));
  r.Post("/api/v1/auth/token", self->Authed([](const http::Request& req, const ApiKey&) {
    return Problem(Unimplemented("this server does not exchange API keys for JWTs (its client config says "
                                 "pjwt_auth_enabled: false); send the API key itself in X-API-Key"),
                   req);
  }));

  // AdminClient.get_audit_log: the key's actions (and others' reads and copies of its published
  // checkpoints) on one UTC day, in order.
  r.Get("/api/v1/audit", self->Authed([self](const http::Request& req, const ApiKey& key) {
    std::string type = req.Query("event_type").value_or("all");
    static const std::set<std::string> kTypes = {"all", "checkpoints", "projects", "teams", "organizations"};
    if (!kTypes.count(type))
      return Problem(
          InvalidArgument("query parameter 'event_type' must be one of all, checkpoints, projects, teams, "
                          "organizations; got '" +
                          type + "'"),
          req);
    std::string day = req.Query("day").value_or(NowIso().substr(0, 10));
    Result<Clock::WallTime> start = ParseIso8601(day + "T00:00:00Z");
    if (day.size() != 10 || !start.ok())
      return Problem(InvalidArgument("query parameter 'day' must be a date YYYY-MM-DD, got '" + day + "'"),
                     req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->FlushAccount(), req);
    Json entries = Json::array();
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Read([&](Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(auto rows,
                              tx.Query("SELECT key_id, at, event, details FROM audit_log WHERE (key_id = ? "
                                       "OR owner_key_id = ?) AND at >= ? AND at < ? AND (? = 'all' OR "
                                       "category = ?) ORDER BY at, seq",
                                       {key.id, key.id, FormatIso8601Utc(*start),
                                        FormatIso8601Utc(*start + std::chrono::hours(24)), type, type}));
      for (const Row& row : rows) {
        OPENRL_ASSIGN_OR_RETURN(std::string actor, row.Text("key_id"));
        OPENRL_ASSIGN_OR_RETURN(std::string at, row.Text("at"));
        OPENRL_ASSIGN_OR_RETURN(std::string event, row.Text("event"));
        OPENRL_ASSIGN_OR_RETURN(std::string text, row.Text("details"));
        Json details = Json::parse(text, nullptr, false);
        if (!details.is_object()) details = Json::object();
        details["actor"] = OwnerUrn(actor);
        Json e = {{"timestamp", at}, {"event", event}, {"event_details", details}};
        for (const char* f :
             {"model_id", "tinker_path", "purpose"})  // the deprecated copies of checkpoint events
          if (event.rfind("checkpoint_", 0) == 0 && details.contains(f)) e[f] = details[f];
        entries.push_back(std::move(e));
      }
      return Status::Ok();
    }),
                                    req);
    return JsonOk({{"entries", entries}});
  }));

  // AdminClient.get_billing_usage / `tinker billing usage`: what the engine counted for this key,
  // per UTC hour. A self-hosted server has no prices: costs and rates are null.
  r.Get("/api/v1/billing/usage/events", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Clock::WallTime from, HourParam(req, "starting_on"), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Clock::WallTime to, HourParam(req, "ending_before"), req);
    if (to <= from) return Problem(InvalidArgument("'ending_before' must be after 'starting_on'"), req);
    if (to - from > kMaxUsageWindow)
      return Problem(InvalidArgument("'ending_before' must be at most 14 days after 'starting_on'"), req);
    if (from > SystemClock().Now())
      return Problem(InvalidArgument("'starting_on' must not be in the future"), req);
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->FlushAccount(), req);
    Json data = Json::array();
    Json sessions = Json::object();
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Read([&](Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(
          auto rows, tx.Query("SELECT u.bucket_start, u.kind, u.base_model, u.session_id, u.quantity, "
                              "s.project_id, s.user_metadata FROM usage_hours u LEFT JOIN "
                              "api_sessions s ON s.id = u.session_id WHERE u.key_id = ? AND "
                              "u.bucket_start >= ? AND u.bucket_start < ? "
                              "ORDER BY u.bucket_start, u.quantity DESC",
                              {key.id, FormatIso8601Utc(from), FormatIso8601Utc(to)}));
      for (const Row& row : rows) {
        OPENRL_ASSIGN_OR_RETURN(std::string bucket, row.Text("bucket_start"));
        OPENRL_ASSIGN_OR_RETURN(std::string kind, row.Text("kind"));
        OPENRL_ASSIGN_OR_RETURN(std::string base, row.Text("base_model"));
        OPENRL_ASSIGN_OR_RETURN(std::string session, row.Text("session_id"));
        OPENRL_ASSIGN_OR_RETURN(int64_t quantity, row.Int64("quantity"));
        OPENRL_ASSIGN_OR_RETURN(std::optional<std::string> project, row.OptionalText("project_id"));
        OPENRL_ASSIGN_OR_RETURN(std::optional<std::string> meta, row.OptionalText("user_metadata"));
        OPENRL_ASSIGN_OR_RETURN(Clock::WallTime start, ParseIso8601(bucket));
        data.push_back({{"bucket_start", bucket},
                        {"bucket_end", FormatIso8601Utc(start + std::chrono::hours(1))},
                        {"base_model", base},
                        {"user_id", OwnerUrn(key.id)},
                        {"user_name", key.name},
                        {"session_id", session.empty() ? Json() : Json(session)},
                        {"project_id", project ? Json(*project) : Json()},
                        {"estimated_cost_usd", nullptr},
                        {"effective_rate_usd_per_million_tokens", nullptr},
                        {"effective_rate_usd_per_gigabyte_month", nullptr},
                        {"event_info", UsageEventInfo(kind, quantity)}});
        if (!session.empty()) {
          Json m = meta ? Json::parse(*meta, nullptr, false) : Json();
          sessions[session] = {{"user_metadata", m.is_object() ? StringMap(m) : Json()}};
        }
      }
      return Status::Ok();
    }),
                                    req);
    return JsonOk({{"data", data}, {"sessions", sessions}, {"cost_data_through", nullptr}});
  }));

  // AdminClient.get_current_checkpoint_storage_usage: the key's live checkpoints by project, in
  // bytes on disk (within a project, files a copy shares with its source count once).
  r.Get("/api/v1/billing/usage/checkpoints/current",
        self->Authed([self](const http::Request& req, const ApiKey& key) {
          std::optional<std::string> only = req.Query("project_id");
          std::map<std::string, std::optional<std::string>> project_of;  // session → project
          OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Read([&](Tx& tx) -> Status {
            OPENRL_ASSIGN_OR_RETURN(
                auto rows, tx.Query("SELECT id, project_id FROM api_sessions WHERE key_id = ?", {key.id}));
            for (const Row& row : rows) {
              OPENRL_ASSIGN_OR_RETURN(std::string id, row.Text("id"));
              OPENRL_ASSIGN_OR_RETURN(project_of[id], row.OptionalText("project_id"));
            }
            return Status::Ok();
          }),
                                          req);
          std::map<std::optional<std::string>, std::vector<engine::CheckpointInfo>> groups;
          for (const engine::RunInfo& run : self->scheduler.Runs(key.id)) {
            std::optional<std::string> project = project_of[run.session_id];
            if (only && project != *only) continue;
            OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto ckpts, self->scheduler.Checkpoints(run.id), req);
            auto& g = groups[project];
            g.insert(g.end(), ckpts.begin(), ckpts.end());
          }
          Json data = Json::array();
          for (const auto& [project, ckpts] : groups) {
            if (ckpts.empty()) continue;
            int64_t bytes = DiskBytes(ckpts);
            data.push_back({{"project_id", project ? Json(*project) : Json()},
                            {"org_user_urn", OwnerUrn(key.id)},
                            {"user_email", nullptr},
                            {"user_name", key.name},
                            {"checkpoint_count", ckpts.size()},
                            {"size_bytes", bytes},
                            {"size_gigabytes", static_cast<double>(bytes) / 1e9},
                            {"estimated_monthly_cost_usd", nullptr}});
          }
          return JsonOk({{"effective_rate_usd_per_gigabyte_month", nullptr}, {"data", data}});
        }));
}

// ---- routes: sessions ------------------------------------------------------------------------

namespace {

struct SessionRow {
  std::string id, created_at, project, last_heartbeat;
  Clock::WallTime created;
  std::optional<std::string> display_name;
  Json user_metadata, finish;  // finish: {"reason": {"type"}, "detail"} or null
  int64_t checkpoints = 0, checkpoint_bytes = 0;
};

Result<std::vector<SessionRow>> KeySessions(store::MetadataStore& db, const std::string& key_id) {
  std::vector<SessionRow> out;
  std::string now = NowIso();
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(
        auto rows,
        tx.Query(
            "SELECT s.id, s.created_at, s.project_id, s.display_name, s.user_metadata, s.last_heartbeat_at, "
            "s.finish_reason, COUNT(c.name) AS n, COALESCE(SUM(c.size_bytes), 0) AS bytes FROM api_sessions "
            "s "
            "LEFT JOIN training_runs t ON t.session_id = s.id LEFT JOIN checkpoints c ON c.run_id = t.id AND "
            "(c.expires_at IS NULL OR c.expires_at > ?) WHERE s.key_id = ? GROUP BY s.id "
            "ORDER BY s.created_at DESC, s.id DESC",
            {now, key_id}));
    for (const Row& row : rows) {
      SessionRow r;
      OPENRL_ASSIGN_OR_RETURN(r.id, row.Text("id"));
      OPENRL_ASSIGN_OR_RETURN(r.created_at, row.Text("created_at"));
      OPENRL_ASSIGN_OR_RETURN(r.created, ParseIso8601(r.created_at));
      OPENRL_ASSIGN_OR_RETURN(auto project, row.OptionalText("project_id"));
      r.project = project.value_or(kDefaultProject);
      OPENRL_ASSIGN_OR_RETURN(r.display_name, row.OptionalText("display_name"));
      OPENRL_ASSIGN_OR_RETURN(std::string meta, row.Text("user_metadata"));
      r.user_metadata = Json::parse(meta, nullptr, false);
      OPENRL_ASSIGN_OR_RETURN(r.last_heartbeat, row.Text("last_heartbeat_at"));
      OPENRL_ASSIGN_OR_RETURN(auto finish, row.OptionalText("finish_reason"));
      r.finish = finish ? Json::parse(*finish, nullptr, false) : Json();
      OPENRL_ASSIGN_OR_RETURN(r.checkpoints, row.Int64("n"));
      OPENRL_ASSIGN_OR_RETURN(r.checkpoint_bytes, row.Int64("bytes"));
      out.push_back(std::move(r));
    }
    return Status::Ok();
  }));
  return out;
}

// The SDK's SessionStatus: client_finished (its ServiceClient closed it), active (heartbeats
// within the session timeout), or null. Sessions here are never failed or cancelled.
Json SessionStatus(const SessionRow& s, std::chrono::seconds timeout) {
  if (s.finish.is_object())
    return {{"type", "client_finished"},
            {"reason", s.finish.value("reason", Json::object())},
            {"detail", s.finish.value("detail", Json())}};
  Result<Clock::WallTime> last = ParseIso8601(s.last_heartbeat);
  if (last.ok() && SystemClock().Now() - *last <= timeout) return {{"type", "active"}};
  return nullptr;
}

bool ContainsWords(const std::string& text, const std::string& words) {
  auto lower = [](std::string x) {
    for (char& c : x) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return x;
  };
  std::string hay = lower(text);
  std::istringstream in(lower(words));
  for (std::string w; in >> w;)
    if (hay.find(w) == std::string::npos) return false;
  return true;
}

// SessionSearchRequest's filters (owner: a key sees only its own sessions, whichever it asks for).
Result<bool> SearchMatches(const Json& q, const SessionRow& s, const Json& status, const std::string& urn) {
  const Json owner = q.value("owner", Json::object());
  if (owner.value("type", std::string("own")) == "user") {
    const Json urns = owner.value("owner_urns", Json::array());
    if (std::find(urns.begin(), urns.end(), Json(urn)) == urns.end()) return false;
  }
  bool by_id = q.value("session_id", Json()).is_string();
  bool by_name = q.value("display_name", Json()).is_string();
  if (by_id || by_name) {
    bool id_hit = by_id && q["session_id"] == s.id;
    bool name_hit =
        by_name && s.display_name && ContainsWords(*s.display_name, q["display_name"].get<std::string>());
    if (!id_hit && !name_hit) return false;
  }
  const Json projects = q.value("project_ids", Json());
  if (projects.is_array() && std::find(projects.begin(), projects.end(), Json(s.project)) == projects.end())
    return false;
  Json meta = StringMap(s.user_metadata);
  const Json wanted = q.value("user_metadata", Json::object());
  if (!wanted.is_object()) return InvalidArgument("field 'user_metadata' must be an object of strings");
  for (auto& [k, v] : wanted.items())
    if (!meta.contains(k) || meta[k] != v) return false;
  const Json statuses = q.value("statuses", Json());
  if (statuses.is_array()) {
    bool any = false;
    for (const Json& want : statuses) {
      if (!want.is_object() || status.is_null() || want.value("type", std::string()) != status["type"])
        continue;
      const Json reasons = want.value("reasons", Json());
      any =
          any || !reasons.is_array() ||
          std::find(reasons.begin(), reasons.end(), status["reason"].value("type", Json())) != reasons.end();
    }
    if (!any) return false;
  }
  return true;
}

Result<Json> SearchSessions(const Json& q, const std::vector<SessionRow>& rows, std::chrono::seconds timeout,
                            const std::string& urn) {
  if (!q.is_object()) return InvalidArgument("the request body must be a SessionSearchRequest object");
  const Json limit = q.value("limit", Json(50));
  if (!limit.is_number_integer() || limit.get<int64_t>() < 1 || limit.get<int64_t>() > 200)
    return InvalidArgument("field 'limit' must be an integer from 1 to 200");
  std::optional<std::pair<Clock::WallTime, std::string>> after;
  if (q.value("cursor", Json()).is_object()) {
    const Json& c = q["cursor"];
    Result<Clock::WallTime> t = ParseIso8601(c.value("last_created_at", std::string()));
    if (!t.ok() || !c.value("last_session_id", Json()).is_string())
      return InvalidArgument("field 'cursor' must be a next_cursor of an earlier page");
    after = std::make_pair(*t, c["last_session_id"].get<std::string>());
  }
  Json page = Json::array();
  Json next = nullptr;
  for (const SessionRow& s : rows) {  // newest first
    if (after && !(s.created < after->first || (s.created == after->first && s.id < after->second))) continue;
    Json status = SessionStatus(s, timeout);
    OPENRL_ASSIGN_OR_RETURN(bool hit, SearchMatches(q, s, status, urn));
    if (!hit) continue;
    if (static_cast<int64_t>(page.size()) == limit.get<int64_t>()) {
      const Json& last = page.back();
      next = {{"last_created_at", last["created_at"]}, {"last_session_id", last["session_id"]}};
      break;
    }
    page.push_back({{"session_id", s.id},
                    {"created_at", s.created_at},
                    {"owner", urn},
                    {"project_id", s.project},
                    {"status", status},
                    {"checkpoints_count", s.checkpoints},
                    {"display_name", s.display_name ? Json(*s.display_name) : Json()},
                    {"user_metadata", s.user_metadata.is_object() ? StringMap(s.user_metadata) : Json()},
                    {"checkpoint_storage_bytes", s.checkpoint_bytes}});
  }
  return Json{{"sessions", page}, {"next_cursor", next}};
}

// A Chrome JSON trace (which ui.perfetto.dev opens) of the session's requests: one track per
// training run and per sampling session, one slice per request from acceptance to completion.
Result<std::string> SessionTrace(store::MetadataStore& db, const std::string& session_id) {
  Json events = Json::array();
  std::map<std::string, int64_t> tracks;
  auto add = [&](const Row& row, const std::string& track, const char* cat) -> Status {
    OPENRL_ASSIGN_OR_RETURN(std::string id, row.Text("id"));
    OPENRL_ASSIGN_OR_RETURN(std::string kind, row.Text("kind"));
    OPENRL_ASSIGN_OR_RETURN(std::string state, row.Text("state"));
    OPENRL_ASSIGN_OR_RETURN(std::string created, row.Text("created_at"));
    OPENRL_ASSIGN_OR_RETURN(std::optional<std::string> finished, row.OptionalText("finished_at"));
    OPENRL_ASSIGN_OR_RETURN(Clock::WallTime t0, ParseIso8601(created));
    Clock::WallTime t1 = SystemClock().Now();
    if (finished) {
      OPENRL_ASSIGN_OR_RETURN(t1, ParseIso8601(*finished));
    }
    auto [it, fresh] = tracks.emplace(track, static_cast<int64_t>(tracks.size()) + 1);
    if (fresh)
      events.push_back({{"ph", "M"},
                        {"name", "thread_name"},
                        {"pid", 1},
                        {"tid", it->second},
                        {"args", {{"name", track}}}});
    events.push_back({{"ph", "X"},
                      {"name", kind},
                      {"cat", cat},
                      {"pid", 1},
                      {"tid", it->second},
                      {"ts", UnixMicros(t0)},
                      {"dur", std::max<int64_t>(0, UnixMicros(t1) - UnixMicros(t0))},
                      {"args", {{"request_id", id}, {"state", state}}}});
    return Status::Ok();
  };
  OPENRL_RETURN_IF_ERROR(db.Read([&](Tx& tx) -> Status {
    OPENRL_ASSIGN_OR_RETURN(auto train,
                            tx.Query("SELECT f.id, f.kind, f.state, f.created_at, f.finished_at, f.run_id "
                                     "FROM futures f JOIN training_runs t ON t.id = f.run_id WHERE "
                                     "t.session_id = ? ORDER BY f.created_at, f.id",
                                     {session_id}));
    for (const Row& row : train) {
      OPENRL_ASSIGN_OR_RETURN(std::string run, row.Text("run_id"));
      OPENRL_RETURN_IF_ERROR(add(row, "training run " + run, "training"));
    }
    OPENRL_ASSIGN_OR_RETURN(auto samples,
                            tx.Query("SELECT f.id, f.kind, f.state, f.created_at, f.finished_at, "
                                     "r.sampling_session_id FROM sample_requests r JOIN futures f ON "
                                     "f.id = r.future_id JOIN sampling_sessions s ON s.id = "
                                     "r.sampling_session_id WHERE s.session_id = ? "
                                     "ORDER BY f.created_at, f.id",
                                     {session_id}));
    for (const Row& row : samples) {
      OPENRL_ASSIGN_OR_RETURN(std::string sampler, row.Text("sampling_session_id"));
      OPENRL_RETURN_IF_ERROR(add(row, "sampling session " + sampler, "sampling"));
    }
    return Status::Ok();
  }));
  events.push_back(
      {{"ph", "M"}, {"name", "process_name"}, {"pid", 1}, {"args", {{"name", "session " + session_id}}}});
  return Json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump();
}

}  // namespace

void TinkerApi::Impl::InstallSessions(http::Router& r, const std::shared_ptr<Impl>& self) {
  // ServiceClient.close(): {"reason": {"type": "success"|"errored"|"interrupted"}, "detail"}; the
  // first reason stays (session search reports it).
  r.Post("/api/v1/sessions/{id}/finish", self->Authed([self](const http::Request& req, const ApiKey& key) {
    std::string id = req.PathParam("id");
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->TouchSession(key, id), req);
    Result<Json> body = req.JsonBody();
    if (body.ok() && body->is_object() && body->value("reason", Json()).is_object()) {
      Json finish = {{"reason", (*body)["reason"]}, {"detail", body->value("detail", Json())}};
      OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Transaction([&](Tx& tx) -> Status {
        return tx
            .Exec(
                "UPDATE api_sessions SET finish_reason = ? WHERE id = ? AND key_id = ? AND finish_reason IS "
                "NULL",
                {finish.dump(), id, key.id})
            .status();
      }),
                                      req);
    }
    return JsonOk(Json::object());
  }));
  // RestClient.search_sessions (experimental): the key's sessions, newest first, filtered, paged.
  r.Post("/api/v1/sessions/search", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::vector<SessionRow> rows, KeySessions(self->db, key.id), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(
        Json page, SearchSessions(body, rows, self->options.session_timeout, OwnerUrn(key.id)), req);
    return JsonOk(page);
  }));
  // RestClient.assign_session_project: moves a session (its runs and samplers with it).
  r.Put("/api/v1/sessions/{id}/project", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string project, NonEmptyStringField(body, "project_id"), req);
    std::string id = req.PathParam("id");
    int64_t n = 0;
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Transaction([&](Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(n, tx.Exec("UPDATE api_sessions SET project_id = ? WHERE id = ? AND key_id = ?",
                                         {project, id, key.id}));
      return Status::Ok();
    }),
                                    req);
    if (n == 0) return Problem(NotFound("session '" + id + "' is unknown"), req);
    self->Audit(key.id, "session_project_set", {{"session_id", id}, {"project_id", project}});
    return http::Response::Text(204, "");
  }));
  // RestClient.export_session_trace / `tinker session export-trace`: built when downloaded, so it
  // is ready at once; the URL is signed like other downloads.
  r.Get(
      "/api/v1/sessions/{id}/trace_export", self->Authed([self](const http::Request& req, const ApiKey& key) {
        std::string id = req.PathParam("id");
        std::optional<Row> row;
        OPENRL_RETURN_RESPONSE_IF_ERROR(self->db.Read([&](Tx& tx) -> Status {
          OPENRL_ASSIGN_OR_RETURN(
              row, tx.QueryOne("SELECT id FROM api_sessions WHERE id = ? AND key_id = ?", {id, key.id}));
          return Status::Ok();
        }),
                                        req);
        if (!row) return Problem(NotFound("session '" + id + "' is unknown"), req);
        int64_t expires = UnixMicros(SystemClock().Now()) / 1000000 + self->options.download_url_ttl.count();
        return JsonOk({{"status", "ready"}, {"url", self->SignedUrl(req, "/api/v1/traces/" + id, expires)}});
      }));
  r.Get("/api/v1/traces/{id}", [self](const http::Request& req) {
    OPENRL_RETURN_RESPONSE_IF_ERROR(self->VerifySigned(req), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::string trace, SessionTrace(self->db, req.PathParam("id")), req);
    http::Response res = http::Response::Text(200, std::move(trace), "application/json");
    res.headers.Set("Content-Disposition", "attachment; filename=\"" + req.PathParam("id") + ".pftrace\"");
    return res;
  });
}

}  // namespace openrl::api
