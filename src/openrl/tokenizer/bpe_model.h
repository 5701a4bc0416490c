// The BPE model of tokenizer.json: vocabulary, ranked merges, byte-level and byte-fallback
// (SentencePiece-style <0xNN>) variants, unk fusing and ignore_merges. Tokenize() is
// thread-safe; results for short words are cached behind a mutex.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/tokenizer/json_ctx.h"

namespace openrl::tokenizer {

class BpeModel {
 public:
  // `j` is the "model" section; errors name ctx's file and path (e.g. model.merges[12]).
  static Result<std::unique_ptr<BpeModel>> FromJson(const Json& j, const JsonCtx& ctx);

  // Appends the ids of one pre-tokenized word.
  void Tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  const std::string* IdToToken(int32_t id) const;
  size_t vocab_size() const { return vocab_.size(); }
  const std::unordered_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct MergeTarget {
    int32_t rank;
    int32_t id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  Status LoadVocab(const Json& j, const JsonCtx& ctx);
  Status LoadMerges(const Json& j, const JsonCtx& ctx);
  void InitialSymbols(std::string_view word, std::vector<int32_t>& ids,
                      std::vector<uint32_t>& lens) const;
  void MergeWord(std::vector<int32_t>& ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::unordered_map<int32_t, std::string> vocab_r_;
  std::unordered_map<uint64_t, MergeTarget> merges_;
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t byte_ids_[256];

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace openrl::tokenizer
