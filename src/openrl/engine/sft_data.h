// Supervised examples: the tokens of one training row and the weight of each token in the loss,
// built from one JSON line in any of the dataset formats `openrl train` reads:
//
//   {"tokens": [ids], "weights"?: [w]}   explicit; weights default to 1 on every token
//   {"text": "..."}                       BOS (if the tokenizer adds one) + text + EOS, all trained
//                                         (EOS: SupervisedFormat::eos_id, unless the text ends with it)
//   {"prompt": "...", "completion": "..."}
//                                         prompt (with BOS), completion + EOS; only the completion
//                                         and EOS are trained
//   {"prompt": [messages], "completion": [messages], "tools"?: [...]}
//                                         conversational prompt-completion: the prompt rendered
//                                         with the generation prompt, then the rest; only the rest
//                                         is trained
//   {"messages": [messages], "tools"?: [...], "chat_template_kwargs"?: {...}}
//                                         a conversation; TrainOn picks what is trained: every
//                                         assistant turn (default), the last one, or everything
//
// The keys above name the format; a line with keys of two formats is refused, other keys (ids,
// sources, …) are ignored. Text is tokenized piece by piece at the boundaries of trained spans, so a
// completion is tokenized as a model would produce it after its prompt.
//
// Which characters of a rendered conversation belong to assistant turn i: the turn starts where the
// conversation before it, rendered with the generation prompt, ends (when that is a prefix of the
// whole rendering; else where its content starts) and ends just after the first special token
// after its content (<|im_end|>, <|eot_id|>, <end_of_turn>: the model learns to stop; the newline
// or header after it belongs to the next prompt). The content is located by rendering the whole
// conversation with it replaced by two different one-character markers, which also works for
// templates that render earlier turns differently once later ones follow (Qwen 3 drops their
// reasoning) or that always end with a generation header (Llama 3). A turn that cannot be located
// is an error naming the message.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/template/chat_template.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::engine {

enum class TrainOn { kAssistant, kLastAssistant, kAll };

// "assistant", "last-assistant" or "all".
Result<TrainOn> ParseTrainOn(const std::string& name);

struct SupervisedExample {
  std::vector<int32_t> tokens;
  std::vector<float> weights;  // one per token; weights[0] is never used (no prefix to predict it from)
  // A packed row (PackExamples): the lengths of the examples laid end to end in it; empty: one.
  std::vector<int64_t> segments;
};

struct SupervisedFormat {
  const tokenizer::Tokenizer* tokenizer = nullptr;    // needed by every format but "tokens"
  const chat::ChatTemplate* chat_template = nullptr;  // needed by the conversational ones
  int64_t vocab_size = 0;
  // Appended after {"text"} and {"prompt","completion"} text unless it already ends with that token's
  // text (as TRL does); -1 = none.
  int32_t eos_id = -1;
  TrainOn train_on = TrainOn::kAssistant;
  // Longest example in tokens (0 = no limit): a longer one is refused, or with `truncate` cut to
  // its first max_length tokens (as TRL does), and refused if nothing trained is left.
  int64_t max_length = 0;
  bool truncate = false;
};

// A rendered conversation and the [begin, end) character ranges that are trained.
struct RenderedSpans {
  std::string text;
  std::vector<std::pair<size_t, size_t>> spans;  // sorted, disjoint
};

// Renders `messages` (with `tools`, may be null, and `extra` template variables such as
// enable_thinking) and finds the characters of its assistant turns (TrainOn::kAll: the whole text).
// `special_tokens`: the tokenizer's special tokens, among which is the end-of-turn token.
Result<RenderedSpans> RenderAssistantSpans(
    const chat::ChatTemplate& tmpl, const nlohmann::ordered_json& messages,
    const nlohmann::ordered_json& tools, TrainOn train_on, std::span<const std::string> special_tokens,
    const nlohmann::ordered_json& extra = nlohmann::ordered_json::object());

// One JSON line (parsed keeping key order). Errors name the field; the caller adds file and line.
Result<SupervisedExample> ParseSupervisedExample(const nlohmann::ordered_json& line,
                                                 const SupervisedFormat& fmt);

// A JSONL file of such lines (blank lines skipped), in file order. Lines are parsed on `threads`
// threads (0: one per core). An error names "path:line" of the first bad line in the file.
Result<std::vector<SupervisedExample>> ReadSupervisedJsonl(const std::string& path,
                                                           const SupervisedFormat& fmt, size_t threads = 0);

// Packs examples into rows of at most `capacity` tokens by best fit decreasing, TRL's
// pack_dataset(strategy="bfd") over the whole dataset (TRL packs each map batch of 1000 rows on its
// own, so beyond 1000 examples its rows differ): longest first (ties in file order), each example
// goes into the row whose free room fits it most tightly (of equal rooms, the one that got it
// first), else opens a row. Rows come in the order they were opened; a row's examples in the order
// they joined it, each first token weighing 0 (it is not predicted from the example before it). An
// example longer than `capacity` is an error naming its index.
Result<std::vector<SupervisedExample>> PackExamples(std::vector<SupervisedExample> examples,
                                                    int64_t capacity);

}  // namespace openrl::engine
