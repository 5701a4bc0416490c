// `openrl keys create|list|revoke` (API keys of the training API) and `openrl models add|list`
// (base models the server offers, by name). Both act on the data directory `openrl serve` uses.
#include <cstdlib>
#include <iostream>

#include "openrl/api/api_keys.h"
#include "openrl/cli/command.h"
#include "openrl/cli/data_dir.h"
#include "openrl/cli/model_loading.h"
#include "openrl/core/fs.h"
#include "openrl/engine/scheduler.h"

namespace openrl::cli {

void AddDataDirOption(CLI::App* sub, std::string& data_dir) {
  sub->add_option("--data-dir", data_dir, "Server data directory (default: $OPENRL_DATA_DIR or ./var/openrl)");
}

std::string ResolveDataDir(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("OPENRL_DATA_DIR"); env && *env) return env;
  return "var/openrl";
}

Result<std::unique_ptr<store::SqliteStore>> OpenDataDb(const std::string& data_dir) {
  OPENRL_RETURN_IF_ERROR(fs::CreateDirectories(data_dir));
  return store::SqliteStore::Open(data_dir + "/openrl.db");
}

namespace {

Json KeyJson(const api::ApiKey& k) {
  Json j = {{"id", k.id},
            {"name", k.name},
            {"created_at", k.created_at},
            {"max_concurrent_requests", k.max_concurrent_requests},
            {"token_quota", k.token_quota},
            {"tokens_used", k.tokens_used}};
  j["revoked_at"] = k.revoked_at ? Json(*k.revoked_at) : Json();
  return j;
}

struct KeyFlags {
  std::string data_dir, name, id, secret;
  int64_t max_concurrent = 0, token_quota = 0;
};

int RunKeys(const std::string& action, const KeyFlags& f) {
  auto db = OpenDataDb(ResolveDataDir(f.data_dir));
  if (!db.ok()) return PrintError(db.status());
  api::KeyStore keys(**db);
  if (action == "create") {
    if (!f.secret.empty()) {
      auto k = keys.Import(f.name, f.secret, f.max_concurrent, f.token_quota);
      if (!k.ok()) return PrintError(k.status());
      std::cout << KeyJson(*k).dump() << "\n";
      return 0;
    }
    auto k = keys.Create(f.name, f.max_concurrent, f.token_quota);
    if (!k.ok()) return PrintError(k.status());
    Json j = KeyJson(k->key);
    j["key"] = k->secret;  // shown once; only its sha256 is stored
    std::cout << j.dump() << "\n";
    return 0;
  }
  if (action == "list") {
    auto list = keys.List();
    if (!list.ok()) return PrintError(list.status());
    for (const auto& k : *list) std::cout << KeyJson(k).dump() << "\n";
    return 0;
  }
  Status s = keys.Revoke(f.id);
  if (!s.ok()) return PrintError(s);
  std::cout << Json{{"revoked", f.id}}.dump() << "\n";
  return 0;
}

void InstallKeys(CLI::App& app) {
  auto* keys = app.add_subcommand("keys", "Manage API keys of the training API (stored hashed)");
  keys->require_subcommand(1);
  auto f = std::make_shared<KeyFlags>();
  auto* create = keys->add_subcommand("create", "Create a key; prints it once as JSON {\"key\": \"tml-…\", …}");
  AddDataDirOption(create, f->data_dir);
  create->add_option("--name", f->name, "Who or what uses the key")->required();
  create->add_option("--max-concurrent", f->max_concurrent, "Requests in flight at once (0: unlimited)");
  create->add_option("--token-quota", f->token_quota, "Tokens the key may process in all (0: unlimited)");
  create->add_option("--secret", f->secret, "Register this key (tml-…) instead of generating one");
  create->callback([f] { SetExitCode(RunKeys("create", *f)); });
  auto* list = keys->add_subcommand("list", "List keys as JSON lines (never the secrets)");
  AddDataDirOption(list, f->data_dir);
  list->callback([f] { SetExitCode(RunKeys("list", *f)); });
  auto* revoke = keys->add_subcommand("revoke", "Revoke a key by id");
  AddDataDirOption(revoke, f->data_dir);
  revoke->add_option("ID", f->id, "Key id (key_…)")->required();
  revoke->callback([f] { SetExitCode(RunKeys("revoke", *f)); });
}

}  // namespace

void InstallRegistryCommands(CLI::App* model) {
  struct Flags {
    std::string data_dir, dir, name;
  };
  auto f = std::make_shared<Flags>();
  auto* add = model->add_subcommand("add", "Register a base model for `openrl serve` under a name");
  add->add_option("MODEL", f->dir, "Hugging Face model directory or GGUF file")->required();
  add->add_option("--name", f->name, "Name clients use, e.g. Qwen/Qwen3-0.6B")->required();
  AddDataDirOption(add, f->data_dir);
  add->callback([f] {
    auto db = OpenDataDb(ResolveDataDir(f->data_dir));
    if (!db.ok()) return SetExitCode(PrintError(db.status()));
    engine::Scheduler scheduler(**db, {});
    Status s = scheduler.AddBaseModel(f->name, f->dir);
    if (!s.ok()) return SetExitCode(PrintError(s));
    std::cout << Json{{"name", f->name}, {"path", f->dir}}.dump() << "\n";
    SetExitCode(0);
  });
  auto* list = model->add_subcommand("list", "List the registered base models as JSON lines");
  AddDataDirOption(list, f->data_dir);
  list->callback([f] {
    auto db = OpenDataDb(ResolveDataDir(f->data_dir));
    if (!db.ok()) return SetExitCode(PrintError(db.status()));
    Status s = (*db)->Read([&](store::Tx& tx) -> Status {
      OPENRL_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT name, path, added_at FROM base_models ORDER BY name"));
      for (const auto& r : rows) {
        OPENRL_ASSIGN_OR_RETURN(std::string name, r.Text("name"));
        OPENRL_ASSIGN_OR_RETURN(std::string path, r.Text("path"));
        OPENRL_ASSIGN_OR_RETURN(std::string added, r.Text("added_at"));
        std::cout << Json{{"name", name}, {"path", path}, {"added_at", added}}.dump() << "\n";
      }
      return Status::Ok();
    });
    SetExitCode(s.ok() ? 0 : PrintError(s));
  });
}

}  // namespace openrl::cli

OPENRL_CLI_COMMAND("keys", openrl::cli::InstallKeys);
