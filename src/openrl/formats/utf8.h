// UTF-8 validation shared by the safetensors reader and writer (internal to formats).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace openrl::formats {

// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points
// above U+10FFFF included), or -1 when `bytes` is valid UTF-8.
int64_t FindInvalidUtf8(std::span<const uint8_t> bytes);

inline bool IsValidUtf8(std::string_view s) {
  return FindInvalidUtf8({reinterpret_cast<const uint8_t*>(s.data()), s.size()}) < 0;
}

}  // namespace openrl::formats
