// ChatTemplate: renders a conversation with a model's Hugging Face chat template, matching
// transformers' `apply_chat_template(..., tokenize=False)`: the same Jinja environment and
// globals, special tokens from tokenizer_config.json as variables, None-valued message keys
// dropped, reasoning fields aliased (reasoning_content/thinking/reasoning), and the
// "tool_use"/"default" choice among named templates.
//
// Key order matters for `tojson` output: pass nlohmann::ordered_json to keep the caller's
// order (openrl::Json sorts object keys).
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/template/template.h"

namespace openrl::chat {

class ChatTemplate {
 public:
  // From tokenizer_config.json content: "chat_template" is a string or a list of
  // {"name", "template"}; special tokens are strings or AddedToken dicts.
  static Result<ChatTemplate> FromTokenizerConfig(const Json& config, std::string_view source);
  // Reads DIR/tokenizer_config.json; DIR/chat_template.jinja and DIR/additional_chat_templates/*.jinja
  // take priority over the config's template, as in transformers.
  static Result<ChatTemplate> FromDirectory(const std::string& dir);

  // messages: list of {role, content, tool_calls?, ...}; tools: list of tool schemas or null;
  // extra: further template variables (e.g. enable_thinking). raise_exception() in the
  // template gives INVALID_ARGUMENT carrying the template's message.
  Result<std::string> Render(const Json& messages, bool add_generation_prompt, const Json& tools = nullptr,
                             const Json& extra = Json::object()) const;
  Result<std::string> Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                             const nlohmann::ordered_json& tools,
                             const nlohmann::ordered_json& extra) const;

  void set_limits(const tmpl::RenderLimits& limits) { limits_ = limits; }
  const std::map<std::string, std::string>& special_tokens() const { return special_tokens_; }

 private:
  Result<std::string> RenderValues(const tmpl::Value& messages, bool add_generation_prompt,
                                   const tmpl::Value& tools, const tmpl::Value& extra) const;

  std::map<std::string, tmpl::Template> templates_;  // "default" when there is one template
  std::map<std::string, std::string> special_tokens_;
  tmpl::RenderLimits limits_{.max_output_bytes = size_t{16} << 20};
};

}  // namespace openrl::chat
