#include "openrl/core/log.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "openrl/core/json.h"

namespace openrl::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetSinkForTesting([this](std::string_view line) { lines_.emplace_back(line); });
    SetLevel(Level::kInfo);
    SetFormat(Format::kText);
  }
  void TearDown() override {
    SetSinkForTesting(nullptr);
    SetLevel(Level::kInfo);
    SetFormat(Format::kText);
    unsetenv("OPENRL_LOG_LEVEL");
    unsetenv("OPENRL_LOG_FORMAT");
  }
  std::vector<std::string> lines_;
};

int g_evaluations = 0;
int Expensive() { return ++g_evaluations; }

TEST_F(LogTest, TextLineHasLevelLocationAndMessage) {
  OPENRL_LOG_INFO("loaded {} tensors from {}", 3, "model.safetensors");
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_NE(lines_[0].find(" info log_test.cc:"), std::string::npos) << lines_[0];
  EXPECT_NE(lines_[0].find("loaded 3 tensors from model.safetensors"), std::string::npos);
  EXPECT_EQ(lines_[0][4], '-');  // ISO 8601 timestamp first
}

TEST_F(LogTest, LevelFiltersAndSkipsArgumentEvaluation) {
  g_evaluations = 0;
  OPENRL_LOG_DEBUG("value {}", Expensive());
  EXPECT_TRUE(lines_.empty());
  EXPECT_EQ(g_evaluations, 0);
  SetLevel(Level::kDebug);
  OPENRL_LOG_DEBUG("value {}", Expensive());
  EXPECT_EQ(lines_.size(), 1u);
  SetLevel(Level::kOff);
  OPENRL_LOG_ERROR("never");
  EXPECT_EQ(lines_.size(), 1u);
}

TEST_F(LogTest, JsonLinesEscapeProperly) {
  SetFormat(Format::kJson);
  OPENRL_LOG_WARN("quote \" and newline \n inside");
  ASSERT_EQ(lines_.size(), 1u);
  Result<Json> j = ParseJson(lines_[0], "log line");
  ASSERT_TRUE(j.ok()) << lines_[0];
  EXPECT_EQ((*j)["level"], "warn");
  EXPECT_EQ((*j)["msg"], "quote \" and newline \n inside");
  EXPECT_EQ((*j)["file"], "log_test.cc");
  EXPECT_TRUE((*j)["line"].is_number_integer());
  EXPECT_TRUE((*j)["ts"].get<std::string>().ends_with("Z"));
}

TEST_F(LogTest, ParseLevel) {
  EXPECT_EQ(*ParseLevel("WARNING"), Level::kWarn);
  EXPECT_EQ(*ParseLevel("trace"), Level::kTrace);
  Result<Level> bad = ParseLevel("loud");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'loud'"), std::string::npos);
}

TEST_F(LogTest, InitFromEnv) {
  setenv("OPENRL_LOG_LEVEL", "error", 1);
  setenv("OPENRL_LOG_FORMAT", "json", 1);
  ASSERT_TRUE(InitFromEnv().ok());
  EXPECT_EQ(GetLevel(), Level::kError);
  EXPECT_EQ(GetFormat(), Format::kJson);
  setenv("OPENRL_LOG_LEVEL", "chatty", 1);
  Status st = InitFromEnv();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("OPENRL_LOG_LEVEL"), std::string::npos);
  EXPECT_EQ(GetLevel(), Level::kError);  // unchanged
}

TEST(LogStderr, NeverWritesToStdout) {
  SetLevel(Level::kInfo);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  OPENRL_LOG_INFO("to stderr {}", 42);
  std::string out = ::testing::internal::GetCapturedStdout();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "");
  EXPECT_NE(err.find("to stderr 42"), std::string::npos);
}

}  // namespace
}  // namespace openrl::log
