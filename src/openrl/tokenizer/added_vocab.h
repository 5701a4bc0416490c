// Added tokens of tokenizer.json ("added_tokens"): matched in the text before the model runs,
// leftmost-longest like Hugging Face's Aho-Corasick matcher, honouring lstrip / rstrip /
// single_word and the normalized flag (normalized tokens are matched after normalization).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "openrl/tokenizer/components.h"

namespace openrl::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Finds added tokens in text: a byte trie over the token contents.
class AddedTokenMatcher {
 public:
  // `patterns[i]` is the text to look for; matches report `tokens[i]`.
  AddedTokenMatcher(std::vector<std::string> patterns, std::vector<const AddedToken*> tokens);
  // Splits `piece` (unresolved) into unresolved pieces and resolved added-token pieces.
  void Split(const Piece& piece, std::vector<Piece>& out) const;
  bool empty() const { return tokens_.empty(); }

 private:
  struct Node {
    std::unordered_map<unsigned char, int32_t> next;
    int32_t token = -1;  // index into tokens_ when a pattern ends here
  };
  // Longest pattern starting at `pos`: (length, token index) or (0, -1).
  std::pair<size_t, int32_t> LongestAt(std::string_view text, size_t pos) const;

  std::vector<Node> nodes_;
  std::vector<const AddedToken*> tokens_;
};

}  // namespace openrl::tokenizer
