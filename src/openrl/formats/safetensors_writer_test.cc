#include "openrl/formats/safetensors_writer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "openrl/formats/safetensors.h"
#include "openrl/formats/safetensors_test_util.h"

namespace openrl::formats {
namespace {

using ::testing::HasSubstr;
using testing::Iota;
using testing::RawFile;
using testing::ReadBytes;
using testing::ScratchDir;

std::span<const uint8_t> Bytes(const std::vector<float>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float)};
}

std::vector<std::string> Listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string FloatBytes(const std::vector<float>& v) {
  return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)};
}

// Byte layouts the reference implementation's own tests pin down.
TEST(SafetensorsWriter, MatchesTheReferenceByteForByte) {
  ScratchDir dir;
  const std::vector<float> data = {0, 1, 2, 3, 4, 5};
  {
    SafetensorsWriter w;
    ASSERT_TRUE(w.Add("attn.0", Dtype::kF32, {1, 2, 3}, Bytes(data)).ok());
    ASSERT_TRUE(w.Write(dir / "a.safetensors").ok());
    EXPECT_EQ(ReadBytes(dir / "a.safetensors"),
              RawFile(R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})",
                      FloatBytes(data)));
  }
  {  // header padded with spaces to a multiple of 8
    SafetensorsWriter w;
    ASSERT_TRUE(w.Add("attn0", Dtype::kF32, {1, 1, 2, 3}, Bytes(data)).ok());
    ASSERT_TRUE(w.Write(dir / "b.safetensors").ok());
    EXPECT_EQ(ReadBytes(dir / "b.safetensors"),
              RawFile(R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})"
                      "       ",
                      FloatBytes(data)));
  }
  {
    SafetensorsWriter empty;
    ASSERT_TRUE(empty.Write(dir / "c.safetensors").ok());
    EXPECT_EQ(ReadBytes(dir / "c.safetensors"), RawFile("{}      "));
    ASSERT_TRUE(empty.SetMetadata("framework", "pt").ok());
    ASSERT_TRUE(empty.Write(dir / "d.safetensors").ok());
    EXPECT_EQ(ReadBytes(dir / "d.safetensors"), RawFile(R"({"__metadata__":{"framework":"pt"}})"
                                                        "     "));
  }
}

TEST(SafetensorsWriter, RoundTripsEveryDtypeAligned) {
  ScratchDir dir;
  const std::string path = dir / "rt.safetensors";
  SafetensorsWriter w;
  std::map<std::string, std::vector<uint8_t>> expected;
  const std::vector<std::pair<Dtype, int64_t>> kinds = {
      {Dtype::kU8, 3},  {Dtype::kF64, 2},  {Dtype::kBF16, 5}, {Dtype::kBool, 1}, {Dtype::kI32, 3},
      {Dtype::kF16, 1}, {Dtype::kI64, 1},  {Dtype::kF8E4M3, 7}, {Dtype::kF32, 4}, {Dtype::kC64, 1},
      {Dtype::kU16, 1}, {Dtype::kF4, 2}};
  for (size_t i = 0; i < kinds.size(); ++i) {
    const auto [dtype, n] = kinds[i];
    const std::string name = "t" + std::to_string(i) + "." + std::string(DtypeName(dtype));
    expected[name] = Iota(*DtypeBytesFor(dtype, static_cast<uint64_t>(n)), static_cast<uint8_t>(i * 16));
    ASSERT_TRUE(w.Add(name, dtype, {n}, expected[name]).ok());
  }
  ASSERT_TRUE(w.SetMetadata("format", "pt").ok());
  ASSERT_TRUE(w.SetMetadata("step", "7").ok());
  ASSERT_TRUE(w.Write(path).ok());

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "7"}}));
  ASSERT_EQ((*file)->size(), expected.size());
  EXPECT_EQ((*file)->header().data_start % 8, 0u);
  Dtype previous = Dtype::kU64;
  for (const TensorView& t : (*file)->tensors()) {
    SCOPED_TRACE(t.name());
    EXPECT_LE(t.dtype(), previous);  // descending alignment
    previous = t.dtype();
    const auto& want = expected.at(t.name());
    EXPECT_EQ(std::vector<uint8_t>(t.data().begin(), t.data().end()), want);
    if (DtypeItemSize(t.dtype()) > 0) {
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data().data()) % DtypeItemSize(t.dtype()), 0u);
    }
  }
  EXPECT_EQ(Listing(dir.path()), (std::vector<std::string>{"rt.safetensors"}));  // no temp left
}

TEST(SafetensorsWriter, StreamsBytesFromAProducer) {
  ScratchDir dir;
  SafetensorsWriter w;
  const auto bytes = Iota(1000);
  ASSERT_TRUE(w.AddStreamed("s", Dtype::kI16, {500}, [&](const ChunkSink& sink) {
                 for (size_t off = 0; off < bytes.size(); off += 300) {
                   OPENRL_RETURN_IF_ERROR(sink(std::span(bytes).subspan(off, std::min<size_t>(300, bytes.size() - off))));
                 }
                 return Status::Ok();
               }).ok());
  ASSERT_TRUE(w.Write(dir / "s.safetensors").ok());
  auto file = SafetensorsFile::Open(dir / "s.safetensors");
  ASSERT_TRUE(file.ok());
  auto t = (*file)->Get("s");
  EXPECT_EQ(std::vector<uint8_t>(t->data().begin(), t->data().end()), bytes);
}

TEST(SafetensorsWriter, AFailedWriteLeavesTheOldFileAndNoTempFile) {
  ScratchDir dir;
  const std::string path = dir / "model.safetensors";
  testing::WriteBytes(path, "previous contents");
  const auto half = Iota(8);
  const std::vector<std::pair<std::string, TensorProducer>> producers = {
      {"disk error midway", [&](const ChunkSink& sink) {
         OPENRL_RETURN_IF_ERROR(sink(half));
         return ResourceExhausted("no space left on device");
       }},
      {"too few bytes", [&](const ChunkSink& sink) { return sink(half); }},
      {"too many bytes", [&](const ChunkSink& sink) {
         OPENRL_RETURN_IF_ERROR(sink(Iota(16)));
         return sink(half);
       }},
  };
  for (const auto& [label, producer] : producers) {
    SCOPED_TRACE(label);
    SafetensorsWriter w;
    ASSERT_TRUE(w.AddStreamed("big.weight", Dtype::kF32, {4}, producer).ok());
    const Status s = w.Write(path);
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(path));
    EXPECT_THAT(s.message(), HasSubstr("tensor 'big.weight'"));
    EXPECT_EQ(testing::ReadBytes(path), "previous contents");
    EXPECT_EQ(Listing(dir.path()), (std::vector<std::string>{"model.safetensors"}));
  }
}

class FullDisk : public ByteSink {
 public:
  explicit FullDisk(size_t capacity) : capacity_(capacity) {}
  Status Append(std::span<const uint8_t> bytes) override {
    if (written_ + bytes.size() > capacity_) return ResourceExhausted("disk full");
    written_ += bytes.size();
    return Status::Ok();
  }

 private:
  size_t capacity_;
  size_t written_ = 0;
};

TEST(SafetensorsWriter, ReportsASinkThatFills) {
  SafetensorsWriter w;
  const auto data = Iota(64);
  ASSERT_TRUE(w.Add("x", Dtype::kU8, {64}, data).ok());
  FullDisk disk(70);
  const Status s = w.WriteTo(disk, "out.safetensors");
  EXPECT_EQ(s.code(), ErrorCode::kResourceExhausted);
}

TEST(SafetensorsWriter, RefusesBadTensors) {
  SafetensorsWriter w;
  const auto four = Iota(4);
  ASSERT_TRUE(w.Add("a", Dtype::kU8, {4}, four).ok());
  EXPECT_THAT(w.Add("a", Dtype::kU8, {4}, four).message(), HasSubstr("duplicate tensor 'a'"));
  EXPECT_THAT(w.Add("__metadata__", Dtype::kU8, {4}, four).message(), HasSubstr("reserved"));
  EXPECT_THAT(w.Add("n", Dtype::kU8, {-4}, four).message(), HasSubstr("negative dimension"));
  EXPECT_THAT(w.Add("m", Dtype::kF32, {2}, four).message(),
              HasSubstr("4 bytes given but shape [2] of F32 needs 8"));
  EXPECT_THAT(w.Add("f4", Dtype::kF4, {3}, four).message(), HasSubstr("whole bytes"));
  EXPECT_THAT(w.Add(std::string("\xff"), Dtype::kU8, {4}, four).message(), HasSubstr("UTF-8"));
  EXPECT_FALSE(w.SetMetadata("k", std::string("\xc3")).ok());
  ASSERT_TRUE(w.SetMetadata("k", "v").ok());
  EXPECT_FALSE(w.SetMetadata("k", "w").ok());
  EXPECT_EQ(w.size(), 1u);
}

TEST(SafetensorsWriter, WriteIntoMissingDirectoryFailsCleanly) {
  ScratchDir dir;
  SafetensorsWriter w;
  const Status s = w.Write(dir / "no/such/dir/x.safetensors");
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("x.safetensors"));
}

}  // namespace
}  // namespace openrl::formats
