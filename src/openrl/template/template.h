// Template: a compiled Jinja2 template (the subset Hugging Face chat templates use), rendered
// with Python-compatible semantics under the Environment transformers builds for chat templates
// (trim_blocks, lstrip_blocks, loopcontrols, sandboxed). Errors name the template source and the
// line/column; runaway templates stop at RenderLimits instead of hanging or crashing.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/template/interpreter.h"
#include "openrl/template/value.h"

namespace openrl::tmpl {

class Template {
 public:
  // `source` names the template in errors, e.g. "tokenizer_config.json: chat_template".
  static Result<Template> Parse(std::string_view text, std::string_view source);

  // `context` must be a dict (its entries become template variables).
  Result<std::string> Render(const Value& context, const RenderLimits& limits = {}) const;
  Result<std::string> Render(const Json& context, const RenderLimits& limits = {}) const;

  const std::string& source() const { return source_; }

 private:
  std::shared_ptr<const Body> body_;
  std::string source_;
};

}  // namespace openrl::tmpl
