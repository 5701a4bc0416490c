// Versioned schema migrations for the metadata store, shared by every backend.
// The ordered list lives in migrations.cc: adding a table is one new entry at the end of
// kMigrations, {next_version, "name", R"sql(...)sql"}. Never edit or reorder a released entry.
// Each migration runs in its own transaction together with its row in `schema_migrations`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "openrl/core/clock.h"
#include "openrl/core/status.h"
#include "openrl/store/metadata_store.h"

namespace openrl::store {

struct Migration {
  int64_t version;  // 1, 2, 3, … without gaps
  const char* name;
  const char* sql;  // portable SQL (see metadata_store.h), may hold several statements
};

// The migrations this binary knows, in order.
std::span<const Migration> AllMigrations();
// Versions must be 1..N in order, names non-empty; violations are programmer errors (INTERNAL).
Status ValidateMigrations(std::span<const Migration> migrations);

struct SchemaState {
  int64_t current = 0;  // highest applied version (0 = empty database)
  int64_t latest = 0;   // highest version this binary knows
  std::vector<const Migration*> pending;
};

// Reads the state without changing anything. FAILED_PRECONDITION when the database holds a
// version this binary does not know (it was migrated by a newer openrl) or names differ.
Result<SchemaState> ReadSchemaState(MetadataStore& store, std::span<const Migration> migrations);
// Applies every pending migration in order, one transaction each; safe to run concurrently from
// several processes. Returns the versions it applied (empty when already current).
Result<std::vector<int64_t>> ApplyMigrations(MetadataStore& store, std::span<const Migration> migrations,
                                             Clock& clock = SystemClock());

}  // namespace openrl::store
