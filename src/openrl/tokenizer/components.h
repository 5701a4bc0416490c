// Internal building blocks of a tokenizer.json pipeline: normalizers, pre-tokenizers,
// post-processors and decoders, each built from its JSON section by a factory that returns
// INVALID_ARGUMENT naming the file, the field path and any unknown "type".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/tokenizer/json_ctx.h"

namespace openrl::tokenizer {

// A piece of the input on its way through the pipeline. `id` >= 0 marks a piece already
// resolved to an added token, which later stages leave alone. `at_start` is true for the piece
// that begins at offset 0 of the original input (Metaspace's prepend_scheme "first").
struct Piece {
  std::string text;
  int32_t id = -1;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string Normalize(std::string_view text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits one unresolved piece into sub-pieces appended to `out` (empty ones are dropped).
  virtual void Split(const Piece& piece, std::vector<Piece>& out) const = 0;
  // Applies Split to every unresolved piece.
  void Apply(std::vector<Piece>& pieces) const;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual void Process(std::vector<int32_t>& ids, bool add_special_tokens) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Where a chain of tokens sits in the whole sequence. An IncrementalDecoder decodes windows of
  // tokens: `at_start` says tokens[0] is the first token of the sequence (Metaspace and a Strip
  // after Fuse act only there); `fused` says an earlier decoder already joined the window.
  struct State {
    bool at_start = true;
    bool fused = false;
  };
  // Hugging Face's decode_chain: rewrites the token strings.
  virtual void DecodeChain(std::vector<std::string>& tokens, State state) const = 0;
  // True for decoders whose output is a single joined string (Fuse, ByteLevel).
  virtual bool Fuses() const { return false; }
  // True when a trailing `token` cannot be decoded yet (a byte-fallback <0xNN> run may go on).
  virtual bool HoldsToken(std::string_view token) const { return false; }
};

// Factories: `j` is the section's JSON, `ctx` its path. A null section yields nullptr.
Result<std::unique_ptr<Normalizer>> MakeNormalizer(const Json& j, const JsonCtx& ctx);
Result<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const Json& j, const JsonCtx& ctx);
Result<std::unique_ptr<Decoder>> MakeDecoder(const Json& j, const JsonCtx& ctx);
Result<std::unique_ptr<PostProcessor>> MakePostProcessor(const Json& j, const JsonCtx& ctx);

// Splitting by a pattern, shared by Split pre-tokenizers and Replace normalizers/decoders.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class Regex;
// A "pattern" object of tokenizer.json: {"String": "..."} or {"Regex": "..."}.
Result<std::unique_ptr<Regex>> MakePattern(const Json& j, const JsonCtx& ctx);
// Spans of `text` kept by splitting on `re` with `behavior` (invert flips what counts as a match).
std::vector<std::pair<size_t, size_t>> SplitSpans(std::string_view text, const Regex& re,
                                                  SplitBehavior behavior, bool invert);
// Replaces every match of `re` in `text` with `content`.
std::string ReplaceAll(std::string_view text, const Regex& re, std::string_view content);

}  // namespace openrl::tokenizer
