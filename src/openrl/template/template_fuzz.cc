// libFuzzer target: arbitrary bytes as a Jinja template, parsed and rendered against a small
// chat-like context under tight limits. Must never crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "openrl/template/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openrl;
  static const Json kContext = Json::parse(R"({
    "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "héllo <b>"},
                 {"role": "assistant", "content": "<think>r</think>a",
                  "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
                  {"role": "tool", "content": "42"}],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "n": 3, "f": 0.5
  })");
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto t = tmpl::Template::Parse(text, "fuzz");
  if (!t.ok()) return 0;
  tmpl::RenderLimits limits;
  limits.max_output_bytes = 1 << 16;
  limits.max_steps = 200000;
  limits.max_call_depth = 32;
  limits.max_range = 10000;
  (void)t->Render(kContext, limits);
  return 0;
}
