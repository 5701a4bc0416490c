// Tokenizer: loads a Hugging Face tokenizer.json (plus optional tokenizer_config.json) and
// encodes/decodes exactly like the `tokenizers` library for byte-level BPE (Llama 3, Qwen 3)
// and byte-fallback BPE (Gemma 3, SentencePiece-style). IncrementalDecoder turns a stream of
// ids into text pieces that are always complete UTF-8 and concatenate to Decode(all ids).
// TrainByteLevelBpe learns a small byte-level BPE tokenizer and returns its tokenizer.json.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "openrl/core/status.h"

namespace openrl::tokenizer {

class BpeModel;
class Normalizer;
class PreTokenizer;
class PostProcessor;
class Decoder;
class AddedTokenMatcher;
struct AddedToken;

class Tokenizer {
 public:
  // `source` names the text in errors, e.g. "tokenizer.json: model.merges[12]: ...".
  static Result<std::unique_ptr<Tokenizer>> FromJsonText(std::string_view text,
                                                         std::string_view source);
  // Reads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (bos/eos/pad tokens,
  // add_bos_token, model_max_length).
  static Result<std::unique_ptr<Tokenizer>> FromDirectory(const std::string& dir);
  ~Tokenizer();

  // Same ids as tokenizers.Tokenizer.encode(text, add_special_tokens=...).ids. Invalid UTF-8
  // in `text` is first replaced by U+FFFD. Thread-safe.
  std::vector<int32_t> Encode(std::string_view text, bool add_special_tokens = true) const;
  // Same text as tokenizers.Tokenizer.decode(ids, skip_special_tokens=...); unknown ids are
  // skipped.
  std::string Decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Distinct tokens of the model vocabulary and the added tokens (HF get_vocab_size(True)).
  int64_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  std::optional<std::string> IdToToken(int32_t id) const;
  std::optional<int32_t> bos_token_id() const { return bos_id_; }
  std::optional<int32_t> eos_token_id() const { return eos_id_; }
  std::optional<int32_t> pad_token_id() const { return pad_id_; }
  // tokenizer_config.json's add_bos_token (informational: Encode follows tokenizer.json's
  // post-processor, as the tokenizers library does).
  std::optional<bool> add_bos_token() const { return add_bos_token_; }
  std::optional<int64_t> model_max_length() const { return model_max_length_; }
  // True for added tokens flagged "special" (skipped by Decode(..., true)).
  bool IsSpecial(int32_t id) const;
  // The text of every added token flagged "special" (e.g. "<|im_end|>", "<end_of_turn>").
  const std::vector<std::string>& SpecialTokens() const { return special_tokens_; }

 private:
  friend class IncrementalDecoder;
  Tokenizer();
  Status Load(std::string_view text, std::string_view source);
  Status LoadAddedTokens(const void* json, std::string_view source);
  Status LoadConfig(const std::string& path);
  // Token string of `id` for decoding; nullptr when unknown or skipped.
  const std::string* DecodableToken(int32_t id, bool skip_special_tokens) const;
  std::string DecodeTokens(std::vector<std::string> tokens, bool at_start) const;

  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<std::unique_ptr<AddedToken>> added_;
  std::vector<std::string> special_tokens_;  // the contents of the special ones among added_, in order
  std::unordered_map<int32_t, const AddedToken*> added_by_id_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::unique_ptr<AddedTokenMatcher> raw_matcher_;         // normalized == false
  std::unique_ptr<AddedTokenMatcher> normalized_matcher_;  // normalized == true
  std::optional<int32_t> bos_id_, eos_id_, pad_id_;
  std::optional<bool> add_bos_token_;
  std::optional<int64_t> model_max_length_;
};

// Streaming detokenizer: Push one id at a time; each call returns the text that became final
// (possibly empty, never a broken UTF-8 sequence); Finish returns the rest. The concatenation
// of all returned pieces equals tokenizer.Decode(all ids, skip_special_tokens).
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens = false);
  std::string Push(int32_t id);
  std::string Finish();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool emitted_any_ = false;
  std::vector<std::string> window_;
};

// Learns a byte-level BPE (Llama 3 pre-tokenizer regex, GPT-2 byte alphabet) of `vocab_size`
// tokens, special tokens included (they take ids 0..n-1; the first is added as BOS by a
// TemplateProcessing post-processor). Returns the complete tokenizer.json text.
Result<std::string> TrainByteLevelBpe(const std::vector<std::string>& corpus, int vocab_size,
                                      const std::vector<std::string>& special_tokens);

}  // namespace openrl::tokenizer
