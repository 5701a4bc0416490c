// Helpers shared by the builtin filters, tests, methods and globals (internal).
#pragma once

#include <optional>
#include <string>

#include "openrl/template/interpreter.h"

namespace openrl::tmpl {

// The argument at `index` (positional) or named `name` (keyword); nullptr if absent.
const Value* Arg(const CallArgs& args, size_t index, const char* name);
Result<int64_t> IntArg(const CallArgs& args, size_t index, const char* name, int64_t fallback);
Result<std::optional<std::string>> StrArg(const CallArgs& args, size_t index, const char* name);
bool BoolArg(const CallArgs& args, size_t index, const char* name, bool fallback);
// Python's printf-style `fmt % args`.
Result<std::string> PercentFormat(const std::string& fmt, const std::vector<Value>& args);
// Python str.format with positional/keyword fields ({} {0} {name}).
Result<std::string> BraceFormat(const std::string& fmt, const CallArgs& args);

}  // namespace openrl::tmpl
