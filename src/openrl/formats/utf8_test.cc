#include "openrl/formats/utf8.h"

#include <gtest/gtest.h>

#include <string>

namespace openrl::formats {
namespace {

int64_t Find(const std::string& s) {
  return FindInvalidUtf8({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

TEST(Utf8, AcceptsValidText) {
  EXPECT_EQ(Find(""), -1);
  EXPECT_EQ(Find("model.layers.0"), -1);
  EXPECT_EQ(Find("ünïcode ✓ \xF0\x9F\x98\x80"), -1);  // 2-, 3- and 4-byte sequences
  EXPECT_EQ(Find("\xF4\x8F\xBF\xBF"), -1);             // U+10FFFF
}

TEST(Utf8, FindsTheFirstBadByte) {
  EXPECT_EQ(Find("ab\x80"), 2);              // stray continuation byte
  EXPECT_EQ(Find("a\xC0\x80"), 1);           // overlong NUL
  EXPECT_EQ(Find("\xE0\x80\xAF"), 0);        // overlong '/'
  EXPECT_EQ(Find("x\xED\xA0\x80"), 1);       // UTF-16 surrogate
  EXPECT_EQ(Find("\xF4\x90\x80\x80"), 0);    // above U+10FFFF
  EXPECT_EQ(Find("ok\xE2\x82"), 2);          // truncated sequence
  EXPECT_EQ(Find("\xFF"), 0);
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));
}

}  // namespace
}  // namespace openrl::formats
