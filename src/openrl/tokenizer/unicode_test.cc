#include "openrl/tokenizer/unicode.h"

#include <gtest/gtest.h>

#include <set>

namespace openrl::tokenizer {
namespace {

TEST(ByteToUnicode, MatchesGpt2Table) {
  const auto& t = ByteToUnicode();
  EXPECT_EQ(t['A'], U'A');
  EXPECT_EQ(t['!'], U'!');
  EXPECT_EQ(t[' '], U'\u0120');   // Ġ
  EXPECT_EQ(t['\n'], U'\u010A');  // Ċ
  EXPECT_EQ(t[0], U'\u0100');
  EXPECT_EQ(t[0xAD], U'\u0143');  // soft hyphen is remapped
  EXPECT_EQ(t[0xFF], U'\u00FF');
  std::set<char32_t> seen(t.begin(), t.end());
  EXPECT_EQ(seen.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(UnicodeToByte(t[b]), b);
  EXPECT_EQ(UnicodeToByte(U'\u2581'), -1);
  EXPECT_EQ(ByteLevelEncode("a b\n"), "a\xC4\xA0" "b\xC4\x8A");
}

TEST(Utf8Lossy, ReplacesMaximalSubparts) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Utf8Lossy("abc"), "abc");
  EXPECT_EQ(Utf8Lossy("\xE4\xB8\xAD"), "\xE4\xB8\xAD");
  EXPECT_EQ(Utf8Lossy("\xE4\xB8"), fffd);                   // truncated: one replacement
  EXPECT_EQ(Utf8Lossy("\xE4\xB8x"), fffd + "x");
  EXPECT_EQ(Utf8Lossy("\xFF\xFE"), fffd + fffd);
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate: each byte
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98" "a"), fffd + "a");
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), fffd + fffd);             // overlong
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));             // above U+10FFFF
}

TEST(CharClasses, FollowUnicode) {
  EXPECT_TRUE(IsWhitespace(U'\u3000'));
  EXPECT_FALSE(IsWhitespace(U'\u200B'));
  EXPECT_TRUE(IsNumeric(U'\u0663'));   // Arabic-Indic three
  EXPECT_TRUE(IsNumeric(U'\u2460'));   // circled one (No)
  EXPECT_TRUE(IsAlphanumeric(U'\u4E2D'));
  EXPECT_TRUE(IsPunctuation(U'\u3002'));
  EXPECT_TRUE(IsPunctuation(U'$'));    // ASCII punctuation though Unicode Sc
  EXPECT_FALSE(IsPunctuation(U'a'));
}

}  // namespace
}  // namespace openrl::tokenizer
