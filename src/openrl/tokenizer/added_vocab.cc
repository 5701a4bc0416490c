#include "openrl/tokenizer/added_vocab.h"

#include <utf8proc.h>

#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

// Rust regex's \w: alphanumeric, marks, connector punctuation.
bool IsWordChar(char32_t c) {
  if (IsAlphanumeric(c)) return true;
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC ||
         cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_PC || c == 0x200C || c == 0x200D;
}

char32_t LastChar(std::string_view s) {
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  char32_t cp;
  DecodeUtf8(s, i, &cp);
  return cp;
}

// Byte offset where the trailing whitespace of s[0, end) begins.
size_t TrailingSpaceStart(std::string_view s, size_t end) {
  while (end > 0) {
    size_t i = end - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    char32_t cp;
    DecodeUtf8(s, i, &cp);
    if (!IsWhitespace(cp)) break;
    end = i;
  }
  return end;
}

// Byte offset just past the leading whitespace of s[begin, ...).
size_t LeadingSpaceEnd(std::string_view s, size_t begin) {
  while (begin < s.size()) {
    char32_t cp;
    int n = DecodeUtf8(s, begin, &cp);
    if (!IsWhitespace(cp)) break;
    begin += n;
  }
  return begin;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<std::string> patterns,
                                     std::vector<const AddedToken*> tokens)
    : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (size_t t = 0; t < patterns.size(); ++t) {
    if (patterns[t].empty()) continue;
    int32_t node = 0;
    for (unsigned char c : patterns[t]) {
      auto it = nodes_[node].next.find(c);
      if (it == nodes_[node].next.end()) {
        nodes_[node].next.emplace(c, static_cast<int32_t>(nodes_.size()));
        node = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
      } else {
        node = it->second;
      }
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(t);
  }
}

std::pair<size_t, int32_t> AddedTokenMatcher::LongestAt(std::string_view text, size_t pos) const {
  std::pair<size_t, int32_t> best{0, -1};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = nodes_[node].next.find(static_cast<unsigned char>(text[i]));
    if (it == nodes_[node].next.end()) break;
    node = it->second;
    if (nodes_[node].token >= 0) best = {i + 1 - pos, nodes_[node].token};
  }
  return best;
}

void AddedTokenMatcher::Split(const Piece& piece, std::vector<Piece>& out) const {
  const std::string& s = piece.text;
  size_t start_offset = 0;
  auto emit = [&](size_t b, size_t e, int32_t id) {
    if (e <= b) return;
    out.push_back(Piece{s.substr(b, e - b), id, piece.at_start && b == 0});
  };
  size_t pos = 0;
  while (pos < s.size()) {
    auto [len, t] = LongestAt(s, pos);
    if (t < 0) {
      ++pos;
      while (pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;
    const AddedToken& tok = *tokens_[t];
    if (tok.single_word) {
      bool word_before = start > 0 && IsWordChar(LastChar(std::string_view(s).substr(0, start)));
      char32_t next_cp = 0;
      bool word_after = stop < s.size() && (DecodeUtf8(s, stop, &next_cp), IsWordChar(next_cp));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) start = std::max(TrailingSpaceStart(s, start), start_offset);
    if (tok.rstrip) stop = LeadingSpaceEnd(s, stop);
    if (start_offset < start) emit(start_offset, start, -1);
    emit(start, stop, tok.id);
    start_offset = std::max(start_offset, stop);
    pos = std::max(pos, stop);
  }
  if (start_offset < s.size()) emit(start_offset, s.size(), -1);
}

}  // namespace openrl::tokenizer
