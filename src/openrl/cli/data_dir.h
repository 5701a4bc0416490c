// Where `openrl serve` and the commands that manage its state (keys, models add) keep data:
// --data-dir, else $OPENRL_DATA_DIR, else ./var/openrl. The metadata database is
// <data-dir>/openrl.db; checkpoints live under <data-dir>/checkpoints.
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "openrl/core/status.h"
#include "openrl/store/sqlite_store.h"

namespace openrl::cli {

void AddDataDirOption(CLI::App* sub, std::string& data_dir);
std::string ResolveDataDir(const std::string& flag);
// Creates the directory if needed and opens (migrating) its database.
Result<std::unique_ptr<store::SqliteStore>> OpenDataDb(const std::string& data_dir);

}  // namespace openrl::cli
