// Jinja2 parser: turns lexer tokens into a statement tree. Supports if/elif/else, for (with
// else, inline if filter, tuple targets), set (expression, block, namespace attribute), macro,
// call, filter, with, break/continue, generation; errors name line and column.
#pragma once

#include <vector>

#include "openrl/core/status.h"
#include "openrl/template/ast.h"
#include "openrl/template/lexer.h"

namespace openrl::tmpl {

Result<Body> ParseTokens(std::vector<Token> tokens);

}  // namespace openrl::tmpl
