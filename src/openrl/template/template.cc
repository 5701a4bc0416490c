#include "openrl/template/template.h"

#include "openrl/template/lexer.h"
#include "openrl/template/parser.h"

namespace openrl::tmpl {

Result<Template> Template::Parse(std::string_view text, std::string_view source) {
  Result<std::vector<Token>> tokens = Lex(text);
  if (!tokens.ok()) return tokens.status().WithContext(source);
  Result<Body> body = ParseTokens(std::move(*tokens));
  if (!body.ok()) return body.status().WithContext(source);
  Template t;
  t.body_ = std::make_shared<const Body>(std::move(*body));
  t.source_ = std::string(source);
  return t;
}

Result<std::string> Template::Render(const Value& context, const RenderLimits& limits) const {
  if (!context.is_mapping()) return InvalidArgument(source_ + ": render context must be a dict");
  Interpreter interp(limits, context.dict());
  Result<std::string> out = interp.Render(*body_);
  if (!out.ok()) return out.status().WithContext(source_);
  return out;
}

Result<std::string> Template::Render(const Json& context, const RenderLimits& limits) const {
  return Render(FromJson(context), limits);
}

}  // namespace openrl::tmpl
