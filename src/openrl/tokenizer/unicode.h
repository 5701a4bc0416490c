// UTF-8 helpers for the tokenizer: code point iteration, lossy conversion (the same
// "maximal subpart" replacement as Rust's String::from_utf8_lossy, which Hugging Face
// tokenizers uses), the GPT-2 byte-to-unicode table, and Unicode character classes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace openrl::tokenizer {

// Appends the UTF-8 encoding of code point `cp` to `out`.
void AppendUtf8(char32_t cp, std::string& out);

// Decodes the code point at `s[pos]` (assumed valid UTF-8); returns its byte length.
int DecodeUtf8(std::string_view s, size_t pos, char32_t* cp);

// Length of the valid UTF-8 sequence starting at s[pos], 0 if the bytes there are not a complete
// valid sequence (invalid, or truncated by the end of `s`).
int ValidUtf8SequenceLength(std::string_view s, size_t pos);

// Returns `bytes` with each maximal invalid subpart replaced by U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

bool IsValidUtf8(std::string_view s);

// Splits valid UTF-8 into code points.
std::vector<char32_t> ToCodePoints(std::string_view s);

// GPT-2's reversible mapping of the 256 byte values to printable code points.
const std::array<char32_t, 256>& ByteToUnicode();
// Inverse of ByteToUnicode; -1 for code points outside the table.
int UnicodeToByte(char32_t cp);
// Maps every byte of `s` through ByteToUnicode and returns the UTF-8 result.
std::string ByteLevelEncode(std::string_view s);

// Rust's char::is_whitespace (the Unicode White_Space property).
bool IsWhitespace(char32_t cp);
// Rust's char::is_alphanumeric (Unicode L* or N*).
bool IsAlphanumeric(char32_t cp);
// Rust's char::is_numeric (Unicode Nd, Nl, No).
bool IsNumeric(char32_t cp);
// Unicode punctuation (P*) or ASCII punctuation.
bool IsPunctuation(char32_t cp);

}  // namespace openrl::tokenizer
