// Pattern matching and split behaviours, mirroring Hugging Face's NormalizedString::split.
#include <algorithm>
#include <functional>

#include "openrl/tokenizer/components.h"
#include "openrl/tokenizer/regex.h"
#include "openrl/tokenizer/unicode.h"
#include "openrl/tokenizer/split_internal.h"

namespace openrl::tokenizer {

Result<std::unique_ptr<Regex>> MakePattern(const Json& j, const JsonCtx& ctx) {
  if (!j.is_object()) return ctx.Error("expected {\"String\": ...} or {\"Regex\": ...}");
  if (j.contains("String")) {
    OPENRL_ASSIGN_OR_RETURN(std::string s, ctx.ReqString(j, "String"));
    return Regex::Compile(Regex::Escape(s));
  }
  if (j.contains("Regex")) {
    OPENRL_ASSIGN_OR_RETURN(std::string s, ctx.ReqString(j, "Regex"));
    auto re = Regex::Compile(s);
    if (!re.ok()) return ctx.Field("Regex").Error(re.status().message());
    return re;
  }
  return ctx.Error("expected {\"String\": ...} or {\"Regex\": ...}");
}

MatchList RegexMatches(std::string_view text, const Regex& re) {
  MatchList out;
  if (text.empty()) return {{0, 0, false}};
  size_t prev = 0;
  for (auto [s, e] : re.FindAll(text)) {
    if (prev != s) out.push_back({prev, s, false});
    out.push_back({s, e, true});
    prev = e;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
  return out;
}

MatchList CharMatches(std::string_view text, const std::function<bool(char32_t)>& pred) {
  if (text.empty()) return {{0, 0, false}};
  MatchList out;
  size_t last = 0, i = 0;
  while (i < text.size()) {
    char32_t cp;
    int n = DecodeUtf8(text, i, &cp);
    if (pred(cp)) {
      if (last < i) out.push_back({last, i, false});
      out.push_back({i, i + n, true});
      last = i + n;
    }
    i += n;
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
  return out;
}

std::vector<std::pair<size_t, size_t>> ApplyBehavior(MatchList m, SplitBehavior behavior,
                                                     bool invert) {
  if (invert)
    for (auto& x : m) x.is_match = !x.is_match;
  std::vector<std::pair<size_t, size_t>> out;  // kept spans
  bool prev_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& x : m) out.emplace_back(x.start, x.end);
      break;
    case SplitBehavior::kRemoved:
      for (auto& x : m)
        if (!x.is_match) out.emplace_back(x.start, x.end);
      break;
    case SplitBehavior::kContiguous:
      for (auto& x : m) {
        if (x.is_match == prev_match && !out.empty()) out.back().second = x.end;
        else out.emplace_back(x.start, x.end);
        prev_match = x.is_match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (auto& x : m) {
        if (x.is_match && !prev_match && !out.empty()) out.back().second = x.end;
        else out.emplace_back(x.start, x.end);
        prev_match = x.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = m.rbegin(); it != m.rend(); ++it) {
        if (it->is_match && !prev_match && !out.empty()) out.back().first = it->start;
        else out.emplace_back(it->start, it->end);
        prev_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  return out;
}

std::vector<std::pair<size_t, size_t>> SplitSpans(std::string_view text, const Regex& re,
                                                  SplitBehavior behavior, bool invert) {
  return ApplyBehavior(RegexMatches(text, re), behavior, invert);
}

std::string ReplaceAll(std::string_view text, const Regex& re, std::string_view content) {
  std::string out;
  size_t prev = 0;
  for (auto [s, e] : re.FindAll(text)) {
    out.append(text.substr(prev, s - prev));
    out.append(content);
    prev = e;
  }
  out.append(text.substr(prev));
  return out;
}

void PushSpans(const Piece& piece, const std::vector<std::pair<size_t, size_t>>& spans,
               std::vector<Piece>& out) {
  for (auto [s, e] : spans) {
    if (e <= s) continue;
    out.push_back(Piece{piece.text.substr(s, e - s), -1, piece.at_start && s == 0});
  }
}

void PreTokenizer::Apply(std::vector<Piece>& pieces) const {
  std::vector<Piece> out;
  out.reserve(pieces.size() * 2);
  for (auto& p : pieces) {
    if (p.id >= 0) out.push_back(std::move(p));
    else Split(p, out);
  }
  pieces = std::move(out);
}

}  // namespace openrl::tokenizer
