// `openrl db migrate|status --db PATH`: create/upgrade the metadata database and report its
// schema version. Human-readable output by default, one JSON object with --json.
#include <algorithm>
#include <iostream>
#include <memory>

#include "openrl/cli/command.h"
#include "openrl/store/migrations.h"
#include "openrl/store/sqlite_store.h"

namespace openrl::cli {
namespace {

using store::SchemaState;
using store::SqliteOptions;
using store::SqliteStore;

Json PendingJson(const SchemaState& state) {
  Json pending = Json::array();
  for (const store::Migration* m : state.pending) pending.push_back({{"version", m->version}, {"name", m->name}});
  return pending;
}

Result<Json> Migrate(const std::string& path) {
  SqliteOptions opt;
  opt.migrate = false;  // applied below, so the output can list what ran
  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> db, SqliteStore::Open(path, opt));
  OPENRL_ASSIGN_OR_RETURN(SchemaState before, store::ReadSchemaState(*db, store::AllMigrations()));
  OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> applied, store::ApplyMigrations(*db, store::AllMigrations()));
  OPENRL_ASSIGN_OR_RETURN(SchemaState after, store::ReadSchemaState(*db, store::AllMigrations()));
  Json ran = Json::array();
  for (const store::Migration* m : before.pending) {
    if (std::find(applied.begin(), applied.end(), m->version) != applied.end())
      ran.push_back({{"version", m->version}, {"name", m->name}});
  }
  return Json{{"db", path}, {"previous_version", before.current}, {"version", after.current}, {"applied", ran}};
}

Result<Json> StatusOf(const std::string& path) {
  SqliteOptions opt;
  opt.migrate = false;
  opt.create_if_missing = false;
  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> db, SqliteStore::Open(path, opt));
  OPENRL_ASSIGN_OR_RETURN(SchemaState state, store::ReadSchemaState(*db, store::AllMigrations()));
  return Json{{"db", path},
              {"backend", std::string(db->backend())},
              {"version", state.current},
              {"latest", state.latest},
              {"up_to_date", state.pending.empty()},
              {"pending", PendingJson(state)}};
}

void PrintMigrate(const Json& r) {
  std::cout << "db " << r["db"].get<std::string>() << ": schema version " << r["version"];
  if (r["applied"].empty()) {
    std::cout << " (already up to date)\n";
    return;
  }
  std::cout << " (was " << r["previous_version"] << "; applied";
  for (const Json& m : r["applied"]) std::cout << " " << m["version"] << ":" << m["name"].get<std::string>();
  std::cout << ")\n";
}

void PrintStatus(const Json& r) {
  std::cout << "db " << r["db"].get<std::string>() << " (" << r["backend"].get<std::string>() << "): schema version "
            << r["version"] << " of " << r["latest"];
  if (r["up_to_date"].get<bool>()) {
    std::cout << ", up to date\n";
    return;
  }
  std::cout << ", pending:";
  for (const Json& m : r["pending"]) std::cout << " " << m["version"] << ":" << m["name"].get<std::string>();
  std::cout << " (run `openrl db migrate --db " << r["db"].get<std::string>() << "`)\n";
}

void AddCommand(CLI::App* db, const char* name, const char* help, Result<Json> (*run)(const std::string&),
                void (*print)(const Json&)) {
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* sub = db->add_subcommand(name, help);
  sub->add_option("--db", *path, "SQLite database file")->required();
  sub->add_flag("--json", *json, "print one JSON object instead of text");
  sub->callback([=] {
    Result<Json> r = run(*path);
    if (!r.ok()) return SetExitCode(PrintError(r.status()));
    if (*json) {
      std::cout << r->dump() << "\n";
    } else {
      print(*r);
    }
    SetExitCode(0);
  });
}

void Install(CLI::App& app) {
  auto* db = app.add_subcommand("db", "Manage the metadata database (schema migrations)");
  db->require_subcommand(1);
  AddCommand(db, "migrate", "Create the database if needed and apply pending migrations; prints the version",
             Migrate, PrintMigrate);
  AddCommand(db, "status", "Show the schema version and pending migrations (changes nothing)", StatusOf,
             PrintStatus);
}

}  // namespace
}  // namespace openrl::cli

OPENRL_CLI_COMMAND("db", openrl::cli::Install);
