#include <gtest/gtest.h>

#include "openrl/core/json.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::tokenizer {
namespace {

const std::vector<std::string> kCorpus = {
    "the quick brown fox jumps over the lazy dog", "the dog sleeps; the fox runs",
    "numbers 123 4567 and more numbers 123", "\xE4\xB8\xAD\xE6\x96\x87 \xE4\xB8\xAD\xE6\x96\x87",
    "<s>special inside<e> text the the the"};

TEST(TrainByteLevelBpe, ProducesALoadableTokenizer) {
  auto json = TrainByteLevelBpe(kCorpus, 300, {"<s>", "<e>"});
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  auto t = Tokenizer::FromJsonText(*json, "trained tokenizer.json");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  const Tokenizer& tok = **t;
  EXPECT_LE(tok.vocab_size(), 300);
  EXPECT_GT(tok.vocab_size(), 258);  // some merges were learned
  EXPECT_EQ(tok.TokenToId("<s>"), 0);
  EXPECT_EQ(tok.TokenToId("<e>"), 1);
  EXPECT_EQ(tok.bos_token_id(), 0);
  EXPECT_TRUE(tok.IsSpecial(1));
  // Frequent words become single tokens; specials are never split; text round-trips.
  EXPECT_EQ(tok.Encode("the", false).size(), 1u);
  auto ids = tok.Encode("the fox<e>", true);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  for (const std::string& s : kCorpus) EXPECT_EQ(tok.Decode(tok.Encode(s, false)), s);
  EXPECT_EQ(tok.Decode(tok.Encode("unseen \xF0\x9F\x98\x80 text", false)),
            "unseen \xF0\x9F\x98\x80 text");
  // Deterministic: the same corpus trains the same tokenizer.
  EXPECT_EQ(*TrainByteLevelBpe(kCorpus, 300, {"<s>", "<e>"}), *json);
}

TEST(TrainByteLevelBpe, RejectsBadArguments) {
  auto small = TrainByteLevelBpe(kCorpus, 100, {"<s>"});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("vocab_size 100"), std::string::npos);
  auto dup = TrainByteLevelBpe(kCorpus, 400, {"<s>", "<s>"});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("special_tokens[1]"), std::string::npos);
}

}  // namespace
}  // namespace openrl::tokenizer
