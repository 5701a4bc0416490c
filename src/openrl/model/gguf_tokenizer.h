// The tokenizer a GGUF file describes (tokenizer.ggml.* metadata: tokens, merges, token types,
// pre-tokenizer, special ids, chat template), rebuilt as Hugging Face tokenizer.json +
// tokenizer_config.json the way transformers does when it loads the same file
// (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), and the reverse for GGUF export.
//
// Supported: "gpt2" (byte-level BPE with the file's merges; SmolLM2, Llama 3, Qwen) and "llama"
// (SentencePiece BPE with byte fallback; Gemma spells multi-space tokens with real spaces and
// lists no merges, so they are recovered from the vocabulary in file order).
#pragma once

#include <optional>
#include <string>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/formats/gguf.h"

namespace openrl::model {

struct TokenizerFiles {
  Json tokenizer;         // tokenizer.json
  Json config;            // tokenizer_config.json
  std::string chat_template;  // chat_template.jinja; empty when the file has none
};

// `architecture` is general.architecture (the Gemma vocabulary needs its own treatment).
Result<TokenizerFiles> TokenizerFromGguf(const formats::gguf::Metadata& md,
                                         const std::string& architecture);

// Writes the tokenizer of the model directory `dir` (tokenizer.json, tokenizer_config.json,
// chat_template.jinja) as tokenizer.ggml.* metadata, for llama.cpp to load.
Status TokenizerToGguf(const std::string& dir, formats::gguf::Metadata& md);

}  // namespace openrl::model
