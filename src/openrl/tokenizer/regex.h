// A compiled PCRE2 regular expression (UTF + Unicode properties, JIT when available) used by
// the Split / Replace pieces of tokenizer.json. Matching is thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "openrl/core/status.h"

namespace openrl::tokenizer {

class Regex {
 public:
  // Errors name the pattern and the offset PCRE2 complains about.
  static Result<std::unique_ptr<Regex>> Compile(std::string_view pattern);
  // A regex matching `literal` exactly.
  static std::string Escape(std::string_view literal);
  ~Regex();

  // All non-overlapping matches, left to right, as [start, end) byte offsets. `text` must be
  // valid UTF-8. An empty match advances the search by one character.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  Regex() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace openrl::tokenizer
