// Byte-level BPE training for small from-scratch models: counts Llama-3-style pre-tokens,
// then repeatedly merges the most frequent adjacent pair (ties: lowest ids first), updating
// only the words that contain it.
#include <map>
#include <queue>
#include <set>
#include <unordered_map>

#include "openrl/core/json.h"
#include "openrl/tokenizer/components.h"
#include "openrl/tokenizer/regex.h"
#include "openrl/tokenizer/tokenizer.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

uint64_t Key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Word {
  std::vector<int32_t> syms;
  int64_t freq = 0;
};

// Text pieces of `line` outside any special token.
std::vector<std::string_view> OutsideSpecials(std::string_view line,
                                              const std::vector<std::string>& specials) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t best = std::string_view::npos, len = 0;
    for (const auto& s : specials) {
      size_t f = line.find(s, pos);
      if (f < best || (f == best && f != std::string_view::npos && s.size() > len)) best = f, len = s.size();
    }
    if (best == std::string_view::npos) { out.push_back(line.substr(pos)); break; }
    out.push_back(line.substr(pos, best - pos));
    pos = best + len;
  }
  return out;
}

class Trainer {
 public:
  Trainer(std::vector<std::string>& id_to_token) : tokens_(id_to_token) {}

  void AddWords(const std::unordered_map<std::string, int64_t>& counts, int32_t byte_base) {
    for (const auto& [w, c] : counts) {
      Word word;
      word.freq = c;
      for (unsigned char b : w) word.syms.push_back(byte_base + b);
      words_.push_back(std::move(word));
    }
    for (size_t i = 0; i < words_.size(); ++i) Count(i, +1);
    for (const auto& [k, c] : pair_counts_) heap_.push({c, k});
  }

  // Performs merges until `target` tokens exist or no pair occurs twice.
  void Run(size_t target, std::vector<std::pair<int32_t, int32_t>>& merges,
           std::unordered_map<std::string, int32_t>& vocab) {
    while (tokens_.size() < target && !heap_.empty()) {
      auto [count, key] = heap_.top();
      heap_.pop();
      auto it = pair_counts_.find(key);
      if (it == pair_counts_.end() || it->second != count) continue;  // stale entry
      if (count < 2) break;
      int32_t a = static_cast<int32_t>(key >> 32), b = static_cast<int32_t>(key & 0xFFFFFFFF);
      std::string merged = tokens_[a] + tokens_[b];
      int32_t id;
      auto vit = vocab.find(merged);
      if (vit != vocab.end()) {
        id = vit->second;
      } else {
        id = static_cast<int32_t>(tokens_.size());
        tokens_.push_back(merged);
        vocab.emplace(merged, id);
      }
      merges.emplace_back(a, b);
      std::set<size_t> affected = where_[key];
      for (size_t w : affected) Apply(w, a, b, id);
    }
  }

 private:
  struct HeapEntry {
    int64_t count;
    uint64_t key;
    bool operator<(const HeapEntry& o) const {  // max count first, then smallest pair
      return count != o.count ? count < o.count : key > o.key;
    }
  };

  void Count(size_t w, int sign) {
    const Word& word = words_[w];
    for (size_t i = 0; i + 1 < word.syms.size(); ++i) {
      uint64_t k = Key(word.syms[i], word.syms[i + 1]);
      pair_counts_[k] += sign * word.freq;
      if (sign > 0) where_[k].insert(w);
    }
  }

  void Apply(size_t w, int32_t a, int32_t b, int32_t id) {
    Word& word = words_[w];
    Count(w, -1);
    std::vector<uint64_t> old_keys;
    for (size_t i = 0; i + 1 < word.syms.size(); ++i) old_keys.push_back(Key(word.syms[i], word.syms[i + 1]));
    std::vector<int32_t> out;
    for (size_t i = 0; i < word.syms.size(); ++i) {
      if (i + 1 < word.syms.size() && word.syms[i] == a && word.syms[i + 1] == b) {
        out.push_back(id);
        ++i;
      } else {
        out.push_back(word.syms[i]);
      }
    }
    word.syms = std::move(out);
    for (uint64_t k : old_keys) where_[k].erase(w);
    Count(w, +1);
    std::set<uint64_t> touched(old_keys.begin(), old_keys.end());
    for (size_t i = 0; i + 1 < word.syms.size(); ++i) touched.insert(Key(word.syms[i], word.syms[i + 1]));
    for (uint64_t k : touched) {
      auto it = pair_counts_.find(k);
      if (it == pair_counts_.end()) continue;
      if (it->second <= 0) pair_counts_.erase(it);
      else heap_.push({it->second, k});
    }
  }

  std::vector<std::string>& tokens_;
  std::vector<Word> words_;
  std::unordered_map<uint64_t, int64_t> pair_counts_;
  std::unordered_map<uint64_t, std::set<size_t>> where_;
  std::priority_queue<HeapEntry> heap_;
};

Json TrainedJson(const std::vector<std::string>& tokens, size_t num_special,
                 const std::vector<std::pair<int32_t, int32_t>>& merges) {
  Json added = Json::array();
  for (size_t i = 0; i < num_special; ++i)
    added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  Json vocab = Json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  Json merge_list = Json::array();
  for (auto [a, b] : merges) merge_list.push_back(Json::array({tokens[a], tokens[b]}));
  Json post = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
               {"use_regex", false}};
  if (num_special > 0) {
    const std::string& bos = tokens[0];
    Json sp = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
    post = {{"type", "TemplateProcessing"},
            {"single", {sp, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair", {sp, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                      {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens", {{bos, {{"id", bos}, {"ids", {0}}, {"tokens", {bos}}}}}}};
  }
  return {
      {"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", std::string(kLlama3Pattern)}}},
           {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
           {"use_regex", false}}}}}},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                   {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
        {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merge_list}}}};
}

}  // namespace

Result<std::string> TrainByteLevelBpe(const std::vector<std::string>& corpus, int vocab_size,
                                      const std::vector<std::string>& special_tokens) {
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> tokens;
  for (size_t i = 0; i < special_tokens.size(); ++i) {
    const auto& s = special_tokens[i];
    if (s.empty() || !IsValidUtf8(s))
      return InvalidArgument("special_tokens[" + std::to_string(i) + "]: must be non-empty UTF-8");
    if (!vocab.emplace(s, static_cast<int32_t>(tokens.size())).second)
      return InvalidArgument("special_tokens[" + std::to_string(i) + "]: duplicate '" + s + "'");
    tokens.push_back(s);
  }
  size_t min_size = special_tokens.size() + 256;
  if (vocab_size < 0 || static_cast<size_t>(vocab_size) < min_size)
    return InvalidArgument("vocab_size " + std::to_string(vocab_size) + " is below the " +
                           std::to_string(min_size) + " needed for the specials and 256 bytes");
  auto byte_base = static_cast<int32_t>(tokens.size());
  for (char32_t cp : ByteToUnicode()) {
    std::string t;
    AppendUtf8(cp, t);
    if (!vocab.emplace(t, static_cast<int32_t>(tokens.size())).second)
      return InvalidArgument("special token '" + t + "' collides with a byte-level token");
    tokens.push_back(t);
  }
  OPENRL_ASSIGN_OR_RETURN(auto re, Regex::Compile(kLlama3Pattern));
  std::unordered_map<std::string, int64_t> counts;  // raw-byte pre-tokens
  for (const auto& raw_line : corpus) {
    std::string line = IsValidUtf8(raw_line) ? raw_line : Utf8Lossy(raw_line);
    for (std::string_view part : OutsideSpecials(line, special_tokens))
      for (auto [s, e] : SplitSpans(part, *re, SplitBehavior::kIsolated, false)) ++counts[std::string(part.substr(s, e - s))];
  }
  Trainer trainer(tokens);
  trainer.AddWords(counts, byte_base);
  std::vector<std::pair<int32_t, int32_t>> merges;
  trainer.Run(static_cast<size_t>(vocab_size), merges, vocab);
  return TrainedJson(tokens, special_tokens.size(), merges).dump();
}

}  // namespace openrl::tokenizer
