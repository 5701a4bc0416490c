#include "openrl/core/config.h"

#include <charconv>
#include <cmath>
#include <cctype>
#include <cstdlib>

namespace openrl {
namespace {

bool ValidKeyName(std::string_view name) {
  if (name.empty() || name.front() == '.' || name.back() == '.') return false;
  if (name.find('.') == std::string_view::npos || name.find("..") != std::string_view::npos) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) return false;
  }
  return true;
}

bool JsonMatches(const Json& v, ConfigType type) {
  switch (type) {
    case ConfigType::kString: return v.is_string();
    case ConfigType::kInt: return v.is_number_integer();
    case ConfigType::kDouble: return v.is_number();
    case ConfigType::kBool: return v.is_boolean();
  }
  return false;
}

// Parses the text of an env var or flag as `type`; the error says what was expected.
Result<Json> ParseText(const std::string& text, ConfigType type) {
  auto bad = [&](std::string_view what) {
    return InvalidArgument("'" + text + "' is not " + std::string(what));
  };
  switch (type) {
    case ConfigType::kString: return Json(text);
    case ConfigType::kInt: {
      int64_t v = 0;
      const char* end = text.data() + text.size();
      auto [p, ec] = std::from_chars(text.data(), end, v);
      if (text.empty() || ec != std::errc() || p != end) return bad("an integer");
      return Json(v);
    }
    case ConfigType::kDouble: {
      char* endp = nullptr;
      double v = std::strtod(text.c_str(), &endp);
      if (text.empty() || endp != text.c_str() + text.size() || !std::isfinite(v)) return bad("a finite number");
      return Json(v);
    }
    case ConfigType::kBool: {
      std::string t = text;
      for (char& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (t == "true" || t == "1" || t == "yes" || t == "on") return Json(true);
      if (t == "false" || t == "0" || t == "no" || t == "off") return Json(false);
      return bad("a boolean (true/false, 1/0, yes/no, on/off)");
    }
  }
  return Internal("unknown config type");
}

// Flattens nested objects into dotted keys: {"a": {"b": 1}} → {"a.b": 1}.
void Flatten(const Json& obj, const std::string& prefix, std::vector<std::pair<std::string, Json>>* out) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    std::string key = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it.value().is_object()) {
      Flatten(it.value(), key, out);
    } else {
      out->emplace_back(std::move(key), it.value());
    }
  }
}

}  // namespace

std::string_view ConfigTypeName(ConfigType type) {
  switch (type) {
    case ConfigType::kString: return "string";
    case ConfigType::kInt: return "int";
    case ConfigType::kDouble: return "double";
    case ConfigType::kBool: return "bool";
  }
  return "?";
}

Status ConfigSchema::Add(ConfigKey key) {
  if (!ValidKeyName(key.name))
    return InvalidArgument("config key '" + key.name + "' must be section.key in lowercase letters, digits and '_'");
  if (Find(key.name)) return AlreadyExists("config key '" + key.name + "' declared twice");
  if (!key.default_value.is_null() && !JsonMatches(key.default_value, key.type))
    return InvalidArgument("config key '" + key.name + "': default " + key.default_value.dump() + " is not " +
                           std::string(ConfigTypeName(key.type)));
  keys_.push_back(std::move(key));
  return Status::Ok();
}

const ConfigKey* ConfigSchema::Find(std::string_view name) const {
  for (const ConfigKey& k : keys_) {
    if (k.name == name) return &k;
  }
  return nullptr;
}

std::string ConfigSchema::EnvVarName(std::string_view key) {
  std::string out = "OPENRL_";
  for (char c : key) out.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

std::string ConfigSchema::HelpText() const {
  std::string out;
  for (const ConfigKey& k : keys_) {
    out += "  " + k.name + " (" + std::string(ConfigTypeName(k.type)) + ", default " +
           (k.default_value.is_null() ? std::string("unset") : k.default_value.dump()) + ", env " + EnvVarName(k.name) +
           ")\n      " + k.help + "\n";
  }
  return out;
}

Result<Config> Config::Load(const ConfigSchema& schema, const ConfigSources& sources) {
  Config cfg;
  cfg.keys_ = schema.keys();
  for (const ConfigKey& k : schema.keys()) {
    if (!k.default_value.is_null()) cfg.values_[k.name] = Entry{k.default_value, "default"};
  }
  if (sources.file) {
    const std::string where = "config file " + *sources.file;
    OPENRL_ASSIGN_OR_RETURN(Json doc, ReadJsonFile(*sources.file));
    if (!doc.is_object()) return InvalidArgument(where + ": top level must be a JSON object");
    std::vector<std::pair<std::string, Json>> flat;
    Flatten(doc, "", &flat);
    for (auto& [name, value] : flat) {
      const ConfigKey* k = schema.Find(name);
      if (!k) return InvalidArgument(where + ": unknown key '" + name + "'");
      if (!JsonMatches(value, k->type))
        return InvalidArgument(where + ": key '" + name + "' must be " + std::string(ConfigTypeName(k->type)) +
                               ", got " + std::string(JsonTypeName(value)));
      cfg.values_[name] = Entry{std::move(value), where};
    }
  }
  auto env = sources.env ? sources.env : [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  for (const ConfigKey& k : schema.keys()) {
    const std::string var = ConfigSchema::EnvVarName(k.name);
    std::optional<std::string> text = env(var);
    if (!text) continue;
    Result<Json> v = ParseText(*text, k.type);
    if (!v.ok()) return v.status().WithContext("environment variable " + var + " (config key " + k.name + ")");
    cfg.values_[k.name] = Entry{std::move(v).value(), "env " + var};
  }
  for (const std::string& flag : sources.flags) {
    const std::string where = "flag --set " + flag;
    size_t eq = flag.find('=');
    if (eq == std::string::npos || eq == 0) return InvalidArgument(where + ": expected section.key=value");
    std::string name = flag.substr(0, eq);
    const ConfigKey* k = schema.Find(name);
    if (!k) return InvalidArgument(where + ": unknown key '" + name + "'");
    Result<Json> v = ParseText(flag.substr(eq + 1), k->type);
    if (!v.ok()) return v.status().WithContext(where);
    cfg.values_[name] = Entry{std::move(v).value(), where};
  }
  return cfg;
}

Result<const Config::Entry*> Config::Lookup(std::string_view key, ConfigType want) const {
  const ConfigKey* decl = nullptr;
  for (const ConfigKey& k : keys_) {
    if (k.name == key) decl = &k;
  }
  if (!decl) return NotFound("config key '" + std::string(key) + "' is not declared");
  if (decl->type != want)
    return InvalidArgument("config key '" + std::string(key) + "' is " + std::string(ConfigTypeName(decl->type)) +
                           ", read as " + std::string(ConfigTypeName(want)));
  auto it = values_.find(key);
  if (it == values_.end())
    return NotFound("config key '" + std::string(key) + "' is not set (no default; set it in the config file, " +
                    ConfigSchema::EnvVarName(key) + " or --set " + std::string(key) + "=…)");
  return &it->second;
}

Result<std::string> Config::GetString(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Entry* e, Lookup(key, ConfigType::kString));
  return e->value.get<std::string>();
}

Result<int64_t> Config::GetInt(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Entry* e, Lookup(key, ConfigType::kInt));
  return e->value.get<int64_t>();
}

Result<double> Config::GetDouble(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Entry* e, Lookup(key, ConfigType::kDouble));
  return e->value.get<double>();
}

Result<bool> Config::GetBool(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Entry* e, Lookup(key, ConfigType::kBool));
  return e->value.get<bool>();
}

Result<std::string> Config::SourceOf(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return NotFound("config key '" + std::string(key) + "' is not set");
  return it->second.source;
}

Json Config::Describe() const {
  Json out = Json::object();
  for (const auto& [name, e] : values_) out[name] = {{"value", e.value}, {"source", e.source}};
  return out;
}

}  // namespace openrl
