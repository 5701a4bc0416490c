// Getting weights out: save_weights_external (an export in PEFT or Hugging Face layout, optionally
// age-encrypted to the client's keys), signed download URLs for each of its files, a tar archive of
// any checkpoint behind a 302, and checkpoint TTLs. A download URL carries its own authority (an
// HMAC-SHA256 of its path and expiry under the server's signing key), so plain HTTP clients
// (urllib, curl) fetch it without the API key; it stops working when it expires or when the
// checkpoint is deleted or expires.
#include <archive.h>
#include <archive_entry.h>

#include <cstdio>
#include <ctime>
#include <filesystem>

#include "openrl/api/tinker_api_internal.h"
#include "openrl/core/age.h"
#include "openrl/core/clock.h"
#include "openrl/core/crypto.h"

namespace openrl::api {
namespace {

namespace stdfs = std::filesystem;

constexpr int64_t kMinTtlSeconds = 3600;                // as Tinker documents: 1 hour ...
constexpr int64_t kMaxTtlSeconds = 10LL * 365 * 86400;  // ... to 10 years
constexpr size_t kChunkBytes = 1 << 20;

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(SystemClock().Now().time_since_epoch()).count();
}

std::string HttpDate(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

Result<std::vector<crypto::AgeRecipient>> RecipientsField(const Json& body) {
  std::vector<crypto::AgeRecipient> out;
  if (!body.contains("age_encryption_recipients") || body["age_encryption_recipients"].is_null()) return out;
  const Json& list = body["age_encryption_recipients"];
  if (!list.is_array() || list.empty() || list.size() > 10)
    return InvalidArgument(
        "field 'age_encryption_recipients' must be a list of 1 to 10 recipients (age1... keys or "
        "ssh-ed25519 / ssh-rsa public keys), or null");
  for (size_t i = 0; i < list.size(); ++i) {
    std::string field = "age_encryption_recipients[" + std::to_string(i) + "]";
    if (!list[i].is_string()) return InvalidArgument("field '" + field + "' must be a string");
    Result<crypto::AgeRecipient> r = crypto::ParseAgeRecipient(list[i].get<std::string>());
    if (!r.ok()) return InvalidArgument("field '" + field + "': " + r.status().message());
    out.push_back(*r);
  }
  return out;
}

std::string TinkerPathOf(const http::Request& req) {
  return "tinker://" + req.PathParam("id") + "/" + req.PathParam("kind") + "/" + req.PathParam("name");
}

// Streams `path` in chunks; the client going away stops it.
void StreamFile(const std::string& path, const std::shared_ptr<http::StreamWriter>& w) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return w->Close();
  std::string buf(kChunkBytes, '\0');
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
    if (!w->Write(std::string_view(buf.data(), n))) break;
  }
  std::fclose(f);
  w->Close();
}

la_ssize_t ArchiveWrite(struct archive*, void* ctx, const void* data, size_t n) {
  auto* w = static_cast<http::StreamWriter*>(ctx);
  return w->Write(std::string_view(static_cast<const char*>(data), n)) ? static_cast<la_ssize_t>(n) : -1;
}

// A POSIX tar of `files` (relative to `dir`) under the folder `root`/, written as it is read.
void StreamTar(const std::string& dir, const std::vector<std::string>& files, const std::string& root,
               const std::shared_ptr<http::StreamWriter>& w) {
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open(a, w.get(), nullptr, ArchiveWrite, nullptr) != ARCHIVE_OK) {
    archive_write_free(a);
    return w->Close();
  }
  bool ok = true;
  std::string buf(kChunkBytes, '\0');
  for (const std::string& rel : files) {
    std::string full = dir + "/" + rel;
    std::error_code ec;
    auto size = stdfs::file_size(full, ec);
    std::FILE* f = ec ? nullptr : std::fopen(full.c_str(), "rb");
    if (f == nullptr) {
      ok = false;
      break;
    }
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, (root + "/" + rel).c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, static_cast<time_t>(UnixNow()), 0);
    ok = archive_write_header(a, e) == ARCHIVE_OK;
    size_t n = 0;
    while (ok && (n = std::fread(buf.data(), 1, buf.size(), f)) > 0)
      ok = archive_write_data(a, buf.data(), n) == static_cast<la_ssize_t>(n);
    std::fclose(f);
    archive_entry_free(e);
    if (!ok) break;
  }
  // On failure the tar is left without its end blocks, so a reader sees it as truncated.
  if (ok) archive_write_close(a);
  archive_write_free(a);
  w->Close();
}

}  // namespace

Result<std::optional<int64_t>> TtlField(const Json& body) {
  if (!body.contains("ttl_seconds") || body["ttl_seconds"].is_null()) return std::optional<int64_t>();
  const Json& v = body["ttl_seconds"];
  if (!v.is_number_integer() || v.get<int64_t>() < kMinTtlSeconds || v.get<int64_t>() > kMaxTtlSeconds)
    return InvalidArgument(
        "field 'ttl_seconds' must be an integer from 3600 (1 hour) to 315360000 (10 years), got " + v.dump());
  return std::optional<int64_t>(v.get<int64_t>());
}

std::string TinkerApi::Impl::SignedUrl(const http::Request& req, const std::string& path,
                                       int64_t expires) const {
  std::string base = options.public_url;
  if (base.empty()) base = "http://" + std::string(req.headers.GetOr("Host", "127.0.0.1"));
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string sig =
      crypto::HexEncode(crypto::HmacSha256(options.url_signing_key, path + "\n" + std::to_string(expires)));
  return base + path + "?expires=" + std::to_string(expires) + "&signature=" + sig;
}

Status TinkerApi::Impl::VerifySigned(const http::Request& req) const {
  std::string expires = req.Query("expires").value_or("");
  std::string sig = req.Query("signature").value_or("");
  std::string want =
      crypto::HexEncode(crypto::HmacSha256(options.url_signing_key, req.path + "\n" + expires));
  if (expires.empty() || sig.empty() || !crypto::ConstantTimeEquals(sig, want))
    return PermissionDenied("the download URL's signature is not valid; ask the API for a new URL");
  char* end = nullptr;
  long long when = std::strtoll(expires.c_str(), &end, 10);
  if (*end != '\0' || when < UnixNow())
    return PermissionDenied("the download URL has expired; ask the API for a new URL");
  return Status::Ok();
}

Result<std::pair<engine::CheckpointInfo, std::vector<std::string>>> TinkerApi::Impl::SignedCheckpoint(
    const http::Request& req) const {
  OPENRL_RETURN_IF_ERROR(VerifySigned(req));
  OPENRL_ASSIGN_OR_RETURN(engine::CheckpointInfo c, scheduler.Checkpoint(TinkerPathOf(req)));
  OPENRL_ASSIGN_OR_RETURN(std::vector<std::string> files, c.Files());
  return std::make_pair(std::move(c), std::move(files));
}

void TinkerApi::Impl::InstallExport(http::Router& r, const std::shared_ptr<Impl>& self) {
  r.Post("/api/v1/save_weights_external", self->Authed([self](const http::Request& req, const ApiKey& key) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run,
                                     self->OwnedRun(key, body.value("model_id", std::string())), req);
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(int64_t seq, SeqId(body), req);
    engine::SaveWork work;
    work.kind = engine::CheckpointKind::kExternal;
    Status s = Status::Ok();
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(work.name, GetFieldOr<std::string>(body, "path", "", "request"), req);
    std::string path = "tinker://" + run.id + "/external_weights/" + work.name;
    auto ttl = TtlField(body);
    auto recipients = RecipientsField(body);
    if (work.name.empty() || !engine::ParseTinkerPath(path).ok()) {
      s = InvalidArgument("field 'path' (the export's name) must be 1-128 letters, digits, '-', '_' or '.'");
    } else if (!ttl.ok()) {
      s = ttl.status();
    } else if (!recipients.ok()) {
      s = recipients.status();
    } else if (self->scheduler.Checkpoint(path).ok()) {
      s = InvalidArgument("external weights '" + work.name + "' of model " + run.id +
                          " already exist; choose another name");
    }
    if (!s.ok()) {
      self->scheduler.Skip(run.id, seq);
      return Problem(s, req);
    }
    work.ttl_seconds = *ttl;
    work.age_recipients = std::move(*recipients);
    return self->SubmitRunWork(req, key, "save_weights_external", run.id, seq, work,
                               [self, key_id = key.id, run](engine::Output& out) {
      auto& o = std::get<engine::SaveOutput>(out);
      self->Audit(key_id, "checkpoint_create", {{"tinker_path", o.path}, {"model_id", run.id}});
      self->CountUsage(key_id, "checkpoint", run, 1);
      Json j = {{"type", "save_weights_external"}, {"path", o.path}, {"size_bytes", o.size_bytes}};
      return std::pair<std::string, std::string>{j.dump(), "json"};
    });
  }));

  r.Get(
      "/api/v1/training_runs/{id}/checkpoints/{kind}/{name}/external_weights_urls",
      self->Authed([self](const http::Request& req, const ApiKey& key) {
        OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, req.PathParam("id")), req);
        if (req.PathParam("kind") != "external_weights")
          return Problem(InvalidArgument("only external weights (tinker://" + run.id +
                                         "/external_weights/<name>) have per-file download URLs; use the "
                                         "checkpoint's /archive for others"),
                         req);
        OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo c,
                                         self->scheduler.Checkpoint(TinkerPathOf(req)), req);
        OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::vector<std::string> files, c.Files(), req);
        int64_t expires = UnixNow() + self->options.download_url_ttl.count();
        Json urls = Json::object();
        std::string prefix = "/api/v1/files/" + c.run_id + "/external_weights/" + c.name + "/";
        for (const std::string& f : files) urls[f] = self->SignedUrl(req, prefix + f, expires);
        return JsonOk(
            {{"urls", urls}, {"expires", FormatIso8601Utc(Clock::WallTime(std::chrono::seconds(expires)))}});
      }));

  r.Put("/api/v1/training_runs/{id}/checkpoints/{kind}/{name}/ttl",
        self->Authed([self](const http::Request& req, const ApiKey& key) {
          OPENRL_ASSIGN_OR_RETURN_RESPONSE(Json body, req.JsonBody(), req);
          OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, req.PathParam("id")),
                                           req);
          (void)run;
          OPENRL_ASSIGN_OR_RETURN_RESPONSE(std::optional<int64_t> ttl, TtlField(body), req);
          OPENRL_RETURN_RESPONSE_IF_ERROR(self->scheduler.SetCheckpointTtl(TinkerPathOf(req), ttl), req);
          return http::Response::Text(204, "");
        }));

  // Older SDKs' get_checkpoint_archive_url: a 302 to a signed URL of the tar, with Expires.
  r.Get("/api/v1/training_runs/{id}/checkpoints/{kind}/{name}/archive",
        self->Authed([self](const http::Request& req, const ApiKey& key) {
          OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::RunInfo run, self->OwnedRun(key, req.PathParam("id")),
                                           req);
          OPENRL_ASSIGN_OR_RETURN_RESPONSE(engine::CheckpointInfo c,
                                           self->scheduler.Checkpoint(TinkerPathOf(req)), req);
          int64_t expires = UnixNow() + self->options.download_url_ttl.count();
          std::string url = self->SignedUrl(
              req, "/api/v1/archives/" + run.id + "/" + req.PathParam("kind") + "/" + c.name, expires);
          http::Response res = JsonOk(
              {{"url", url}, {"expires", FormatIso8601Utc(Clock::WallTime(std::chrono::seconds(expires)))}});
          res.status = 302;
          res.headers.Set("Location", url);
          res.headers.Set("Expires", HttpDate(expires));
          return res;
        }));

  // Signed downloads: no API key, the URL is the credential.
  r.Get("/api/v1/files/{id}/{kind}/{name}/{file...}", [self](const http::Request& req) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto found, self->SignedCheckpoint(req), req);
    auto& [c, files] = found;
    std::string file = req.PathParam("file");
    if (std::find(files.begin(), files.end(), file) == files.end())
      return Problem(NotFound("checkpoint " + c.TinkerPath() + " has no file '" + file + "'"), req);
    http::Response res;
    res.headers.Set("Content-Type", "application/octet-stream");
    res.stream = [path = c.path + "/" + file](std::shared_ptr<http::StreamWriter> w) { StreamFile(path, w); };
    return res;
  });
  r.Get("/api/v1/archives/{id}/{kind}/{name}", [self](const http::Request& req) {
    OPENRL_ASSIGN_OR_RETURN_RESPONSE(auto found, self->SignedCheckpoint(req), req);
    auto& [c, files] = found;
    // The optimizer state is the server's own format and only load_state reads it.
    std::erase(files, std::string("optimizer.safetensors"));
    http::Response res;
    res.headers.Set("Content-Type", "application/x-tar");
    res.headers.Set("Content-Disposition", "attachment; filename=\"" + c.name + ".tar\"");
    res.stream = [dir = c.path, files, root = c.name](std::shared_ptr<http::StreamWriter> w) {
      StreamTar(dir, files, root, w);
    };
    return res;
  });
}

}  // namespace openrl::api
