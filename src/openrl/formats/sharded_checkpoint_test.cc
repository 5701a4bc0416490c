#include "openrl/formats/sharded_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "openrl/core/json.h"
#include "openrl/formats/safetensors_test_util.h"
#include "openrl/formats/safetensors_writer.h"

namespace openrl::formats {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Iota;
using testing::ScratchDir;

// Tensors of 40, 40, 100 (above a 64-byte limit), 20 and 28 bytes, in insertion order.
class ShardedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<std::pair<std::string, int64_t>> tensors = {
        {"embed", 10}, {"l0.q", 10}, {"huge", 25}, {"l0.k", 5}, {"norm", 7}};
    for (const auto& [name, n] : tensors) {
      data_.push_back(Iota(static_cast<size_t>(n) * 4, static_cast<uint8_t>(data_.size() * 50)));
      ASSERT_TRUE(writer_.Add(name, Dtype::kF32, {n}, data_.back()).ok());
    }
    ASSERT_TRUE(writer_.SetMetadata("format", "pt").ok());
  }
  std::vector<std::vector<uint8_t>> data_;
  SafetensorsWriter writer_;
  ScratchDir dir_;
};

TEST_F(ShardedTest, SplitsLikeTransformersAndReadsBack) {
  auto files = writer_.WriteSharded(dir_.path().string(), 64);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  // embed+l0.q would be 80 > 64; huge (100) alone, placed before the shard being filled.
  EXPECT_THAT(*files, ElementsAre("model-00001-of-00004.safetensors",
                                  "model-00002-of-00004.safetensors",
                                  "model-00003-of-00004.safetensors",
                                  "model-00004-of-00004.safetensors",
                                  "model.safetensors.index.json"));
  auto index = ReadJsonFile(dir_ / "model.safetensors.index.json");
  ASSERT_TRUE(index.ok());
  EXPECT_EQ((*index)["metadata"]["total_size"], 228);
  EXPECT_EQ((*index)["metadata"]["total_parameters"], 57);
  EXPECT_EQ((*index)["weight_map"]["embed"], "model-00001-of-00004.safetensors");
  EXPECT_EQ((*index)["weight_map"]["huge"], "model-00002-of-00004.safetensors");
  EXPECT_EQ((*index)["weight_map"]["l0.q"], "model-00003-of-00004.safetensors");
  EXPECT_EQ((*index)["weight_map"]["l0.k"], "model-00003-of-00004.safetensors");
  EXPECT_EQ((*index)["weight_map"]["norm"], "model-00004-of-00004.safetensors");

  auto ckpt = ShardedCheckpoint::Open(dir_.path().string());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->size(), 5u);
  EXPECT_EQ((*ckpt)->shards().size(), 4u);
  EXPECT_EQ((*ckpt)->total_size(), 228u);
  EXPECT_EQ((*ckpt)->declared_total_size(), 228);
  auto huge = (*ckpt)->Get("huge");
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(std::vector<uint8_t>(huge->data().begin(), huge->data().end()), data_[2]);
  EXPECT_EQ((*ckpt)->shards()[0]->metadata().at("format"), "pt");
  EXPECT_EQ((*ckpt)->Get("absent").status().code(), ErrorCode::kNotFound);
}

TEST_F(ShardedTest, RewritingRemovesStaleFiles) {
  ASSERT_TRUE(writer_.WriteSharded(dir_.path().string(), 64).ok());
  testing::WriteBytes(dir_ / "config.json", "{}");
  auto single = writer_.WriteSharded(dir_.path().string(), 1'000'000);
  ASSERT_TRUE(single.ok());
  EXPECT_THAT(*single, ElementsAre("model.safetensors"));
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    left.push_back(e.path().filename().string());
  }
  std::sort(left.begin(), left.end());
  EXPECT_THAT(left, ElementsAre("config.json", "model.safetensors"));
  auto ckpt = ShardedCheckpoint::Open(dir_.path().string());
  ASSERT_TRUE(ckpt.ok());
  EXPECT_EQ((*ckpt)->size(), 5u);
  EXPECT_TRUE((*ckpt)->index_path().empty());
}

// Writes a 2-shard checkpoint, then lets `edit` rewrite the index JSON.
class BadIndexTest : public ShardedTest {
 protected:
  Status OpenWith(const std::function<void(Json&)>& edit) {
    auto files = writer_.WriteSharded(dir_.path().string(), 200);
    if (!files.ok()) return files.status();
    auto index = ReadJsonFile(dir_ / "model.safetensors.index.json");
    edit(*index);
    testing::WriteBytes(dir_ / "model.safetensors.index.json", index->dump());
    return ShardedCheckpoint::Open(dir_.path().string()).status();
  }
};

TEST_F(BadIndexTest, EachInconsistencyIsNamed) {
  const std::string one = "model-00001-of-00002.safetensors";
  const std::string two = "model-00002-of-00002.safetensors";
  struct Case {
    std::string label;
    std::function<void(Json&)> edit;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"missing shard", [&](Json& j) { j["weight_map"]["norm"] = "model-00009-of-00009.safetensors"; },
       {"shard 'model-00009-of-00009.safetensors'", "tensor 'norm'", "does not exist"}},
      {"tensor in wrong shard", [&](Json& j) { j["weight_map"]["embed"] = two; },
       {"tensor 'embed' is mapped to shard '" + two + "' but lies in", one}},
      {"tensor in no shard", [&](Json& j) { j["weight_map"]["ghost"] = one; },
       {"tensor 'ghost'", "no shard holds it"}},
      {"unlisted tensor", [&](Json& j) { j["weight_map"].erase("embed"); },
       {"holds tensor 'embed' that weight_map does not list"}},
      {"no weight_map", [&](Json& j) { j.erase("weight_map"); }, {"missing field 'weight_map'"}},
      {"weight_map not object", [&](Json& j) { j["weight_map"] = Json::array(); },
       {"'weight_map' must be an object"}},
      {"shard outside dir", [&](Json& j) { j["weight_map"]["norm"] = "../x.safetensors"; },
       {"tensor 'norm'", "shard file name"}},
      {"bad total_size", [&](Json& j) { j["metadata"]["total_size"] = "big"; },
       {"metadata.total_size"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    const Status s = OpenWith(c.edit);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr("model.safetensors.index.json"));
    for (const auto& needle : c.needles) EXPECT_THAT(s.message(), HasSubstr(needle));
  }
}

TEST_F(BadIndexTest, TensorInTwoShards) {
  ASSERT_TRUE(writer_.WriteSharded(dir_.path().string(), 200).ok());
  // Rewrite shard 2 so that it also holds "embed", which shard 1 holds.
  SafetensorsWriter dup;
  ASSERT_TRUE(dup.Add("embed", Dtype::kF32, {10}, data_[0]).ok());
  ASSERT_TRUE(dup.Add("norm", Dtype::kF32, {7}, data_[4]).ok());
  ASSERT_TRUE(dup.Write(dir_ / "model-00002-of-00002.safetensors").ok());
  auto index = ReadJsonFile(dir_ / "model.safetensors.index.json");
  (*index)["weight_map"].erase("huge");
  (*index)["weight_map"].erase("l0.k");
  testing::WriteBytes(dir_ / "model.safetensors.index.json", index->dump());
  const Status s = ShardedCheckpoint::Open(dir_ / "model.safetensors.index.json").status();
  EXPECT_THAT(s.message(), AllOf(HasSubstr("tensor 'embed' appears in two shards"),
                                 HasSubstr("model-00001-of-00002.safetensors"),
                                 HasSubstr("model-00002-of-00002.safetensors")));
}

TEST(ShardedCheckpoint, CorruptShardNamesTheShard) {
  ScratchDir dir;
  testing::WriteBytes(dir / "model.safetensors.index.json",
                      R"({"weight_map": {"a": "model-00001-of-00001.safetensors"}})");
  testing::WriteBytes(dir / "model-00001-of-00001.safetensors", "junk");
  const Status s = ShardedCheckpoint::Open(dir.path().string()).status();
  EXPECT_THAT(s.message(), HasSubstr("model-00001-of-00001.safetensors: file is 4 bytes"));
  EXPECT_EQ(ShardedCheckpoint::Open(dir / "nothing").status().code(), ErrorCode::kNotFound);
  ScratchDir empty;
  EXPECT_THAT(ShardedCheckpoint::Open(empty.path().string()).status().message(),
              HasSubstr("neither model.safetensors nor"));
}

TEST(ParseShardSize, AcceptsTransformersSpellings) {
  EXPECT_EQ(*ParseShardSize("5GB"), 5'000'000'000u);
  EXPECT_EQ(*ParseShardSize("2GiB"), 2ull << 30);
  EXPECT_EQ(*ParseShardSize("200MB"), 200'000'000u);
  EXPECT_EQ(*ParseShardSize("20kB"), 20'000u);
  EXPECT_EQ(*ParseShardSize("20kb"), 2'500u);  // kilobits, as transformers reads it
  EXPECT_EQ(*ParseShardSize("8Mb"), 1'000'000u);  // megabits
  EXPECT_EQ(*ParseShardSize("10000"), 10'000u);
  for (const char* bad : {"", "GB", "5 GB", "-1", "1.5GB", "5TB", "0", "99999999999999999999GB"}) {
    EXPECT_FALSE(ParseShardSize(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace openrl::formats
