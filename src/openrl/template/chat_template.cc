#include "openrl/template/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace openrl::chat {

using tmpl::Value;

namespace {

const char* const kStandardTokens[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};

// A special token is a string or an AddedToken dict {"content": ...}.
std::optional<std::string> TokenText(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

Result<std::string> ReadText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path.string() + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// transformers: {"thinking": r, **message, "reasoning_content": r} when any reasoning field is set.
Value AliasReasoning(const Value& message) {
  static const char* const kFields[] = {"reasoning_content", "thinking", "reasoning"};
  const Value* reasoning = nullptr;
  for (const char* f : kFields) {
    const Value* v = message.dict().Find(std::string_view(f));
    if (v && !v->is_none()) { reasoning = v; break; }
  }
  if (!reasoning) return message;
  auto d = std::make_shared<tmpl::DictValue>();
  d->entries.emplace_back(Value("thinking"), *reasoning);
  for (const auto& [k, v] : message.dict().entries) d->Set(k, v);
  d->Set(Value("reasoning_content"), *reasoning);
  return Value(std::move(d));
}

}  // namespace

Result<ChatTemplate> ChatTemplate::FromTokenizerConfig(const Json& config, std::string_view source) {
  if (!config.is_object()) return InvalidArgument(std::string(source) + ": expected a JSON object");
  ChatTemplate ct;
  std::string where = std::string(source) + ": chat_template";
  if (config.contains("chat_template") && !config["chat_template"].is_null()) {
    const Json& t = config["chat_template"];
    if (t.is_string()) {
      OPENRL_ASSIGN_OR_RETURN(auto parsed, tmpl::Template::Parse(t.get<std::string>(), where));
      ct.templates_.emplace("default", std::move(parsed));
    } else if (t.is_array()) {
      for (size_t i = 0; i < t.size(); ++i) {
        const Json& e = t[i];
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !e.contains("template") || !e["template"].is_string()) {
          return InvalidArgument(where + "[" + std::to_string(i) + "]: expected {\"name\": string, \"template\": string}");
        }
        std::string name = e["name"].get<std::string>();
        OPENRL_ASSIGN_OR_RETURN(auto parsed, tmpl::Template::Parse(e["template"].get<std::string>(), where + "[" + name + "]"));
        ct.templates_.insert_or_assign(name, std::move(parsed));
      }
    } else {
      return InvalidArgument(where + ": must be a string or a list of {name, template}, got " + std::string(JsonTypeName(t)));
    }
  }
  for (const char* name : kStandardTokens) {
    if (config.contains(name)) {
      if (auto text = TokenText(config[name])) ct.special_tokens_[name] = *text;
    }
  }
  // Model-specific tokens: any other "*_token" string/AddedToken, and an extra_special_tokens dict.
  for (auto it = config.begin(); it != config.end(); ++it) {
    const std::string& k = it.key();
    if (k.size() > 6 && k.compare(k.size() - 6, 6, "_token") == 0 && !ct.special_tokens_.count(k)) {
      if (auto text = TokenText(it.value())) ct.special_tokens_[k] = *text;
    }
  }
  if (config.contains("extra_special_tokens") && config["extra_special_tokens"].is_object()) {
    for (auto it = config["extra_special_tokens"].begin(); it != config["extra_special_tokens"].end(); ++it) {
      if (auto text = TokenText(it.value())) ct.special_tokens_[it.key()] = *text;
    }
  }
  return ct;
}

Result<ChatTemplate> ChatTemplate::FromDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path root(dir);
  fs::path config_path = root / "tokenizer_config.json";
  Json config = Json::object();
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    OPENRL_ASSIGN_OR_RETURN(config, ReadJsonFile(config_path.string()));
  }
  OPENRL_ASSIGN_OR_RETURN(ChatTemplate ct, FromTokenizerConfig(config, config_path.string()));
  // Separate template files take priority over the config's entries.
  std::map<std::string, std::pair<std::string, std::string>> files;  // name -> (path, text)
  fs::path jinja = root / "chat_template.jinja";
  if (fs::exists(jinja, ec)) {
    OPENRL_ASSIGN_OR_RETURN(std::string text, ReadText(jinja));
    files["default"] = {jinja.string(), std::move(text)};
  }
  fs::path extra_dir = root / "additional_chat_templates";
  if (fs::is_directory(extra_dir, ec)) {
    for (const auto& entry : fs::directory_iterator(extra_dir, ec)) {
      if (entry.path().extension() != ".jinja") continue;
      OPENRL_ASSIGN_OR_RETURN(std::string text, ReadText(entry.path()));
      files[entry.path().stem().string()] = {entry.path().string(), std::move(text)};
    }
  }
  if (!files.empty()) {
    ct.templates_.clear();
    for (auto& [name, file] : files) {
      OPENRL_ASSIGN_OR_RETURN(auto parsed, tmpl::Template::Parse(file.second, file.first));
      ct.templates_.emplace(name, std::move(parsed));
    }
  }
  if (ct.templates_.empty()) {
    return NotFound(dir + ": no chat template (neither tokenizer_config.json \"chat_template\" nor chat_template.jinja)");
  }
  return ct;
}

Result<std::string> ChatTemplate::Render(const Json& messages, bool add_generation_prompt, const Json& tools,
                                         const Json& extra) const {
  return RenderValues(tmpl::FromJson(messages), add_generation_prompt, tmpl::FromJson(tools), tmpl::FromJson(extra));
}

Result<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                         const nlohmann::ordered_json& tools,
                                         const nlohmann::ordered_json& extra) const {
  return RenderValues(tmpl::FromJson(messages), add_generation_prompt, tmpl::FromJson(tools), tmpl::FromJson(extra));
}

Result<std::string> ChatTemplate::RenderValues(const Value& messages, bool add_generation_prompt, const Value& tools,
                                               const Value& extra) const {
  if (!messages.is_list()) return InvalidArgument("messages: expected a list of message objects");
  if (messages.list().items.empty()) {
    return InvalidArgument("messages: cannot apply chat template to an empty conversation");
  }
  if (!tools.is_none() && !tools.is_list()) return InvalidArgument("tools: expected a list of tool schemas or null");
  if (!extra.is_none() && !extra.is_mapping()) return InvalidArgument("extra template variables: expected an object");
  std::vector<Value> chat;
  for (size_t i = 0; i < messages.list().items.size(); ++i) {
    const Value& m = messages.list().items[i];
    if (!m.is_mapping()) return InvalidArgument("messages[" + std::to_string(i) + "]: expected an object, got " + m.TypeName());
    auto d = std::make_shared<tmpl::DictValue>();
    for (const auto& [k, v] : m.dict().entries) {
      if (!v.is_none()) d->entries.emplace_back(k, v);  // transformers drops None-valued keys
    }
    chat.push_back(AliasReasoning(Value(std::move(d))));
  }
  const tmpl::Template* t = nullptr;
  if (auto it = templates_.find("tool_use"); !tools.is_none() && it != templates_.end()) t = &it->second;
  else if (auto d = templates_.find("default"); d != templates_.end()) t = &d->second;
  if (!t) {
    std::string names;
    for (const auto& [n, _] : templates_) names += (names.empty() ? "" : ", ") + n;
    return InvalidArgument("this model has several chat templates and none is named 'default': " + names);
  }
  auto ctx = std::make_shared<tmpl::DictValue>();
  ctx->entries.emplace_back(Value("messages"), Value::MakeList(std::move(chat)));
  ctx->entries.emplace_back(Value("tools"), tools);
  ctx->entries.emplace_back(Value("documents"), Value(nullptr));
  ctx->entries.emplace_back(Value("add_generation_prompt"), Value(add_generation_prompt));
  for (const auto& [k, v] : special_tokens_) ctx->Set(Value(k), Value(v));
  if (extra.is_mapping()) {
    for (const auto& [k, v] : extra.dict().entries) ctx->Set(k, v);
  }
  return t->Render(Value(std::move(ctx)), limits_);
}

}  // namespace openrl::chat
