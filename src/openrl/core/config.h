// The one config loader. Values merge in increasing precedence:
//   declared defaults < JSON config file < environment (OPENRL_<SECTION>_<KEY>) < flags (--set k=v)
// Every key is declared in a ConfigSchema (name "section.key", type, default, help); unknown keys
// in the file or flags are errors, and every error names where the bad value came from (file path
// and key, environment variable, or flag). Environment variables that match no declared key are
// ignored (other tools share the OPENRL_ prefix).
//
//   ConfigSchema schema;
//   schema.Add({"server.port", ConfigType::kInt, 8080, "TCP port to listen on"});
//   OPENRL_ASSIGN_OR_RETURN(Config cfg, Config::Load(schema, {.file = path, .flags = sets}));
//   OPENRL_ASSIGN_OR_RETURN(int64_t port, cfg.GetInt("server.port"));
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl {

enum class ConfigType { kString, kInt, kDouble, kBool };
std::string_view ConfigTypeName(ConfigType type);

struct ConfigKey {
  std::string name;       // "section.key": lowercase letters, digits, '_' and dots
  ConfigType type;
  Json default_value;     // null = no default (Get returns NOT_FOUND unless set)
  std::string help;
};

class ConfigSchema {
 public:
  // Declaring the same key twice, a malformed name or a default of the wrong type is an error.
  Status Add(ConfigKey key);
  const ConfigKey* Find(std::string_view name) const;
  const std::vector<ConfigKey>& keys() const { return keys_; }
  // "server.port" → "OPENRL_SERVER_PORT".
  static std::string EnvVarName(std::string_view key);
  // One line per key: name, type, default and help, for --help output.
  std::string HelpText() const;

 private:
  std::vector<ConfigKey> keys_;
};

struct ConfigSources {
  std::optional<std::string> file{};  // JSON file: nested objects ({"server": {"port": 1}}) or dotted keys
  std::vector<std::string> flags{};   // "section.key=value" strings from --set
  // Looks up an environment variable; defaults to getenv. Tests pass a map-backed lookup.
  std::function<std::optional<std::string>(const std::string&)> env{};
};

class Config {
 public:
  static Result<Config> Load(const ConfigSchema& schema, const ConfigSources& sources);

  Result<std::string> GetString(std::string_view key) const;
  Result<int64_t> GetInt(std::string_view key) const;
  Result<double> GetDouble(std::string_view key) const;
  Result<bool> GetBool(std::string_view key) const;
  // Where the effective value came from: "default", "file /etc/openrl.json", "env OPENRL_X_Y",
  // "flag --set x.y=…"; NOT_FOUND for unknown or unset keys.
  Result<std::string> SourceOf(std::string_view key) const;
  // {"server.port": {"value": 8080, "source": "default"}, …} for `openrl config show`-style output.
  Json Describe() const;

 private:
  struct Entry {
    Json value;
    std::string source;
  };
  Result<const Entry*> Lookup(std::string_view key, ConfigType want) const;

  std::map<std::string, Entry, std::less<>> values_;
  std::vector<ConfigKey> keys_;  // a copy, so a Config outlives the schema it was loaded with
};

}  // namespace openrl
