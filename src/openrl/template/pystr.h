// Python str semantics over UTF-8 std::string: code-point length/indexing, Python's notion of
// whitespace (str.isspace), strip/split, and case mapping via utf8proc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace openrl::tmpl::pystr {

// Decodes UTF-8 into code points (invalid bytes become U+FFFD).
std::vector<char32_t> Decode(std::string_view s);
void AppendUtf8(std::string& out, char32_t cp);
std::string Encode(const std::vector<char32_t>& cps);
size_t Length(std::string_view s);

bool IsSpace(char32_t cp);
// str.strip/lstrip/rstrip; chars == nullopt means whitespace.
std::string Strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
// str.split(sep, maxsplit); sep == nullopt splits on runs of whitespace.
std::vector<std::string> Split(std::string_view s, const std::optional<std::string>& sep,
                               int64_t maxsplit);
std::vector<std::string> RSplit(std::string_view s, const std::optional<std::string>& sep,
                                int64_t maxsplit);
std::string Replace(std::string_view s, std::string_view from, std::string_view to, int64_t count);

std::string Upper(std::string_view s);
std::string Lower(std::string_view s);
std::string Title(std::string_view s);       // str.title()
std::string Capitalize(std::string_view s);  // str.capitalize()

// Python repr() of a string: quotes and escapes as CPython prints them.
std::string Repr(std::string_view s);

}  // namespace openrl::tmpl::pystr
