// libFuzzer target: arbitrary bytes as tokenizer.json. Loading must fail cleanly or yield a
// tokenizer whose Encode/Decode/IncrementalDecoder survive a small hostile string.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "openrl/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tok = openrl::tokenizer::Tokenizer::FromJsonText(text, "fuzz.json");
  if (!tok.ok()) return 0;
  const auto& t = **tok;
  for (std::string_view s : {std::string_view("Hello, world! 12345 \xE4\xB8\xAD\xF0\x9F\x98\x80"),
                             std::string_view("a\xFF\n\n  b'S"), std::string_view("")}) {
    auto ids = t.Encode(s, true);
    (void)t.Decode(ids, false);
    openrl::tokenizer::IncrementalDecoder dec(t, true);
    for (int32_t id : ids) (void)dec.Push(id);
    (void)dec.Finish();
  }
  std::vector<int32_t> odd = {-1, 0, 1, 2, 255, 256, 1000000, 2147483647};
  (void)t.Decode(odd, true);
  return 0;
}
