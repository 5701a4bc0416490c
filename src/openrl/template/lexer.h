// Jinja2 lexer: splits template text into data and tag tokens, applying whitespace control
// ({%- -%} {{- -}} {#- -#}, `+` overrides) and the trim_blocks/lstrip_blocks settings
// that transformers uses for chat templates.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "openrl/core/status.h"

namespace openrl::tmpl {

enum class Tok : uint8_t { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  Tok type = Tok::kEof;
  std::string text;  // data, name, operator, or the unescaped string value
  int line = 1;
  int col = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Errors read "line L, column C: message".
Result<std::vector<Token>> Lex(std::string_view source, const LexOptions& options = {});

std::string LocationPrefix(int line, int col);

}  // namespace openrl::tmpl
