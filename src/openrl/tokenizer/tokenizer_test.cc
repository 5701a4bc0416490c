#include "openrl/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "openrl/core/json.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

// A byte-level BPE over the 256 GPT-2 byte symbols plus the given merges.
Json ByteLevelJson(const std::vector<std::pair<std::string, std::string>>& merges) {
  Json vocab = Json::object();
  int id = 0;
  for (char32_t cp : ByteToUnicode()) {
    std::string s;
    AppendUtf8(cp, s);
    vocab[s] = id++;
  }
  Json m = Json::array();
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = id++;
    m.push_back(a + " " + b);
  }
  return {{"added_tokens", Json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
}

std::unique_ptr<Tokenizer> Load(const Json& j) {
  auto t = Tokenizer::FromJsonText(j.dump(), "tokenizer.json");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? std::move(t).value() : nullptr;
}

std::vector<std::string> Tokens(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.IdToToken(id).value_or("?"));
  return out;
}

using Strs = std::vector<std::string>;

TEST(Bpe, AppliesMergesByRank) {
  auto t = Load(ByteLevelJson({{"b", "c"}, {"a", "b"}, {"a", "bc"}}));
  ASSERT_TRUE(t);
  EXPECT_EQ(Tokens(*t, t->Encode("abc")), Strs({"abc"}));   // b c first, then a bc
  EXPECT_EQ(Tokens(*t, t->Encode("abd")), Strs({"ab", "d"}));
  EXPECT_EQ(Tokens(*t, t->Encode("a bc")), Strs({"a", "\xC4\xA0", "bc"}));  // Ġ b is no merge
  EXPECT_EQ(t->Decode(t->Encode("a bc, d\n")), "a bc, d\n");
}

TEST(Bpe, AcceptsMergePairsAndIgnoreMerges) {
  Json j = ByteLevelJson({{"a", "b"}});
  j["model"]["merges"] = Json::array({Json::array({"a", "b"})});
  j["model"]["vocab"]["abc"] = 9999;
  auto t = Load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(Tokens(*t, t->Encode("abc")), Strs({"ab", "c"}));
  j["model"]["ignore_merges"] = true;  // whole word in the vocabulary wins
  auto t2 = Load(j);
  ASSERT_TRUE(t2);
  EXPECT_EQ(t2->Encode("abc"), std::vector<int32_t>({9999}));
}

Json ByteFallbackJson() {
  Json vocab = {{"<unk>", 0}, {"<s>", 1}, {"\xE2\x96\x81", 2}, {"h", 3}, {"i", 4}, {"hi", 5},
                {"\xE2\x96\x81hi", 6}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 10 + b;
  }
  Json special = {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}};
  return {{"added_tokens", Json::array({special})},
          {"normalizer", {{"type", "Sequence"}, {"normalizers", Json::array({
              {{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}}},
          {"pre_tokenizer", nullptr},
          {"post_processor", {{"type", "TemplateProcessing"},
              {"single", Json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
              {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder", {{"type", "Sequence"}, {"decoders", Json::array({
              {{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array({"h i", "\xE2\x96\x81 hi"})},
                     {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", true}}}};
}

TEST(Bpe, ByteFallbackAndTemplate) {
  auto t = Load(ByteFallbackJson());
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hi"), std::vector<int32_t>({1, 6}));
  EXPECT_EQ(t->Encode("hi", false), std::vector<int32_t>({6}));
  // "é" = C3 A9 has no piece: it falls back to its bytes.
  EXPECT_EQ(t->Encode("hi\xC3\xA9", false), std::vector<int32_t>({6, 10 + 0xC3, 10 + 0xA9}));
  EXPECT_EQ(t->Decode(t->Encode("hi hi\xC3\xA9")), "<s> hi hi\xC3\xA9");  // Strip: text start only
  EXPECT_EQ(t->Decode(t->Encode("hi hi\xC3\xA9"), true), "hi hi\xC3\xA9");
  EXPECT_EQ(t->bos_token_id(), 1);
  // A broken byte run decodes to one U+FFFD per byte.
  std::vector<int32_t> broken = {6, 10 + 0xE4, 10 + 0xB8, 5};
  EXPECT_EQ(t->Decode(broken), "hi\xEF\xBF\xBD\xEF\xBF\xBDhi");
}

TEST(Bpe, FusesUnknownsWithoutFallback) {
  Json j = ByteFallbackJson();
  j["model"]["byte_fallback"] = false;
  auto t = Load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Encode("hi\xC3\xA9\xC3\xA9h", false), std::vector<int32_t>({6, 0, 3}));
}

TEST(AddedTokens, HonourStripAndSingleWord) {
  Json j = ByteLevelJson({});
  j["added_tokens"] = Json::array({
      {{"id", 300}, {"content", "<L>"}, {"lstrip", true}, {"special", true}, {"normalized", false}},
      {{"id", 301}, {"content", "<R>"}, {"rstrip", true}, {"special", false}, {"normalized", false}},
      {{"id", 302}, {"content", "cat"}, {"single_word", true}, {"normalized", false}},
      {{"id", 303}, {"content", "<LONG>"}, {"special", true}, {"normalized", false}},
      {{"id", 304}, {"content", "<LONG"}, {"special", true}, {"normalized", false}}});
  auto t = Load(j);
  ASSERT_TRUE(t);
  EXPECT_EQ(Tokens(*t, t->Encode("a  <L>b")), Strs({"a", "<L>", "b"}));
  EXPECT_EQ(Tokens(*t, t->Encode("a<R>  b")), Strs({"a", "<R>", "b"}));
  EXPECT_EQ(Tokens(*t, t->Encode("a cat")), Strs({"a", "\xC4\xA0", "cat"}));
  EXPECT_EQ(Tokens(*t, t->Encode("concat")).back(), "t");  // inside a word: not matched
  EXPECT_EQ(t->Encode("<LONG>x")[0], 303);                   // longest match wins
  EXPECT_TRUE(t->IsSpecial(300));
  EXPECT_FALSE(t->IsSpecial(301));
  EXPECT_EQ(t->Decode(t->Encode("x<L>y<R>z"), true), "xy<R>z");
  EXPECT_EQ(t->vocab_size(), 256 + 5);
}

TEST(Errors, NameFileAndField) {
  auto check = [](const Json& j, const std::string& want) {
    auto t = Tokenizer::FromJsonText(j.dump(), "tokenizer.json");
    ASSERT_FALSE(t.ok()) << want;
    EXPECT_EQ(t.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find(want), std::string::npos) << t.status().message();
  };
  auto bad = Tokenizer::FromJsonText("{\"model\": ", "dir/tokenizer.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("dir/tokenizer.json"), std::string::npos);

  Json j = ByteLevelJson({{"a", "b"}});
  j["model"]["type"] = "Unigram";
  check(j, "tokenizer.json: model.type: unsupported model type 'Unigram'");
  j = ByteLevelJson({{"a", "b"}, {"a", "b"}});
  j["model"]["merges"][1] = "a zz";
  check(j, "tokenizer.json: model.merges[1]: token 'zz' is not in the vocabulary");
  j["model"]["merges"][1] = 5;
  check(j, "tokenizer.json: model.merges[1]: expected string or pair");
  j = ByteLevelJson({});
  j["model"]["vocab"]["x"] = "seven";
  check(j, "model.vocab.x: expected a non-negative integer id");
  j = ByteLevelJson({});
  j["normalizer"] = {{"type", "Precompiled"}};
  check(j, "normalizer.type: unsupported normalizer type 'Precompiled'");
  j = ByteLevelJson({});
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", Json::array({{{"type", "Digits"}}, {{"type", "Nope"}}})}};
  check(j, "pre_tokenizer.pretokenizers[1].type: unsupported pre-tokenizer type 'Nope'");
  j = ByteLevelJson({});
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}};
  check(j, "pre_tokenizer.pattern.Regex: invalid regex");
  j = ByteLevelJson({});
  j["added_tokens"] = Json::array({{{"id", "x"}, {"content", "a"}}});
  check(j, "added_tokens[0].id: expected integer");
  j = ByteLevelJson({});
  j["decoder"] = {{"type", "CTC"}};
  check(j, "decoder.type: unsupported decoder type 'CTC'");
  check(Json::array(), "tokenizer.json: <root>: expected an object");
}

TEST(Encode, InvalidUtf8InputIsReplaced) {
  auto t = Load(ByteLevelJson({}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Decode(t->Encode("a\xFF" "b")), "a\xEF\xBF\xBD" "b");
}

TEST(Encode, ConcurrentCallsAgree) {
  auto t = Load(ByteLevelJson({{"a", "b"}, {"ab", "c"}, {"\xC4\xA0", "ab"}}));
  ASSERT_TRUE(t);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("abc ab " + std::to_string(i) + " cab abab");
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : texts) want.push_back(t->Encode(s));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (size_t i = 0; i < texts.size(); ++i)
        if (t->Encode(texts[i]) != want[i]) ++mismatches;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// Random ids (many of them lone UTF-8 lead/continuation bytes) streamed one at a time: every
// piece is valid UTF-8 and the pieces add up to the full decode.
void CheckIncremental(const Tokenizer& t, int32_t max_id, uint32_t seed) {
  std::mt19937 rng(seed);
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids;
    int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(rng() % max_id));
    for (bool skip : {false, true}) {
      IncrementalDecoder dec(t, skip);
      std::string all;
      for (int32_t id : ids) {
        std::string piece = dec.Push(id);
        ASSERT_TRUE(IsValidUtf8(piece));
        all += piece;
      }
      all += dec.Finish();
      EXPECT_EQ(all, t.Decode(ids, skip));
    }
  }
}

TEST(IncrementalDecoder, ByteLevelNeverEmitsBrokenUtf8) {
  auto t = Load(ByteLevelJson({{"\xC3\x83", "\xC2\xA9"}}));  // é as one token, plus lone bytes
  ASSERT_TRUE(t);
  CheckIncremental(*t, 258, 7);
  // "é" split across two pushes: nothing until the second byte arrives.
  IncrementalDecoder dec(*t);
  auto lead = t->TokenToId("\xC3\x83");  // byte 0xC3 → 'Ã'
  auto cont = t->TokenToId("\xC2\xA9");  // byte 0xA9 → '©'
  ASSERT_TRUE(lead && cont);
  EXPECT_EQ(dec.Push(*lead), "");
  EXPECT_EQ(dec.Push(*cont), "\xC3\xA9");
  EXPECT_EQ(dec.Finish(), "");
}

TEST(IncrementalDecoder, ByteFallbackNeverEmitsBrokenUtf8) {
  auto t = Load(ByteFallbackJson());
  ASSERT_TRUE(t);
  CheckIncremental(*t, 266, 11);
}

}  // namespace
}  // namespace openrl::tokenizer
