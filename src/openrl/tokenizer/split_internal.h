// Internal: match lists and split helpers shared by pre_tokenizers.cc and split.cc.
#pragma once

#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "openrl/tokenizer/components.h"

namespace openrl::tokenizer {

struct Match {
  size_t start, end;
  bool is_match;
};
using MatchList = std::vector<Match>;

// The text covered by alternating unmatched/matched spans (HF Pattern::find_matches).
MatchList RegexMatches(std::string_view text, const Regex& re);
// Each character satisfying `pred` is its own match.
MatchList CharMatches(std::string_view text, const std::function<bool(char32_t)>& pred);
std::vector<std::pair<size_t, size_t>> ApplyBehavior(MatchList m, SplitBehavior behavior,
                                                     bool invert);
// Appends the non-empty spans of `piece` to `out` as unresolved pieces.
void PushSpans(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& spans,
               std::vector<Piece>& out);

}  // namespace openrl::tokenizer
