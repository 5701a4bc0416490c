// GGUF writer -> reader round trips, metadata accessors, type tables and writer refusals.
// Malformed files are in gguf_reader_test.cc, quantization in gguf_quant_test.cc.
#include "openrl/formats/gguf.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "openrl/formats/safetensors_test_util.h"

namespace openrl::formats::gguf {
namespace {

using ::testing::HasSubstr;
using testing::ReadBytes;
using testing::ScratchDir;

Value Typed(ValueType type, decltype(Value::data) data, ValueType element = ValueType::kU32) {
  Value v;
  v.type = type;
  v.element_type = element;
  v.data = std::move(data);
  return v;
}

std::vector<uint8_t> Bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + 7 * i);
  return v;
}

// Every scalar type, every array element kind and an empty array.
void FillMetadata(Metadata& md) {
  md.Set("general.architecture", Value::String("llama"));
  md.Set("u8", Typed(ValueType::kU8, uint64_t{255}));
  md.Set("i8", Typed(ValueType::kI8, int64_t{-128}));
  md.Set("u16", Typed(ValueType::kU16, uint64_t{65535}));
  md.Set("i16", Typed(ValueType::kI16, int64_t{-32768}));
  md.Set("u32", Value::U32(4000000000u));
  md.Set("i32", Value::I32(-7));
  md.Set("f32", Value::F32(0.1f));
  md.Set("bool", Value::Bool(true));
  md.Set("u64", Value::U64(UINT64_MAX));
  md.Set("i64", Typed(ValueType::kI64, int64_t{INT64_MIN}));
  md.Set("f64", Typed(ValueType::kF64, 0.1));
  md.Set("tokens", Value::StringArray({"a", "", "ünï ✓"}));
  md.Set("types", Value::I32Array({1, -2, 3}));
  md.Set("scores", Value::F32Array({0.5, -1.25}));
  md.Set("u8s", Typed(ValueType::kArray, std::vector<uint64_t>{0, 255}, ValueType::kU8));
  md.Set("bools", Typed(ValueType::kArray, std::vector<bool>{true, false}, ValueType::kBool));
  md.Set("f64s", Typed(ValueType::kArray, std::vector<double>{1e300}, ValueType::kF64));
  md.Set("empty", Value::StringArray({}));
}

TEST(Gguf, RoundTripsMetadataAndTensors) {
  ScratchDir dir;
  const std::string path = dir / "m.gguf";
  GgufWriter w;
  FillMetadata(w.metadata());
  w.metadata().Set("general.alignment", Value::U32(64));
  const auto f32 = Bytes(size_t{3} * 5 * 4, 1);
  const auto q8 = Bytes(size_t{2} * 34, 2);
  ASSERT_TRUE(w.AddTensor("w.f32", {5, 3}, GgmlType::kF32, std::span<const uint8_t>(f32)).ok());
  ASSERT_TRUE(w.AddTensor("w.q8", {32, 2}, GgmlType::kQ8_0, q8).ok());
  ASSERT_TRUE(w.AddTensor("scalar", {}, GgmlType::kF16, std::vector<uint8_t>{0x00, 0x3C}).ok());
  ASSERT_TRUE(w.AddTensor("empty", {0, 4}, GgmlType::kQ4_K, std::vector<uint8_t>{}).ok());
  ASSERT_TRUE(w.Write(path).ok());

  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const GgufFile& f = **file;
  EXPECT_EQ(f.header().version, 3u);
  EXPECT_EQ(f.header().alignment, 64u);
  EXPECT_EQ(f.header().data_start % 64, 0u);
  ASSERT_EQ(f.metadata().entries().size(), w.metadata().entries().size());
  for (size_t i = 0; i < f.metadata().entries().size(); ++i) {
    const auto& [key, value] = f.metadata().entries()[i];
    const auto& [want_key, want] = w.metadata().entries()[i];
    EXPECT_EQ(key, want_key);
    EXPECT_EQ(value.type, want.type) << key;
    if (value.type == ValueType::kArray) {
      EXPECT_EQ(value.element_type, want.element_type) << key;
    }
    if (key == "f32") {
      EXPECT_EQ(std::get<double>(value.data), static_cast<double>(0.1f));
    } else {
      EXPECT_EQ(value.data, want.data) << key;
    }
  }
  ASSERT_EQ(f.tensors().size(), 4u);
  const TensorInfo* q = f.Find("w.q8");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dims, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(q->shape(), (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(q->numel(), 64);
  EXPECT_EQ(q->nbytes, q8.size());
  EXPECT_EQ(q->offset % 64, 0u);
  auto data = f.Data(*q);
  EXPECT_EQ(std::vector<uint8_t>(data.begin(), data.end()), q8);
  EXPECT_EQ(f.Find("w.f32")->offset, 0u);
  EXPECT_EQ(std::vector<uint8_t>(f.Data(*f.Find("w.f32")).begin(), f.Data(*f.Find("w.f32")).end()), f32);
  EXPECT_EQ(f.Find("scalar")->numel(), 1);
  EXPECT_TRUE(f.Find("scalar")->shape().empty());
  EXPECT_EQ(f.Find("empty")->nbytes, 0u);
  EXPECT_EQ(f.Find("missing"), nullptr);
  // Every tensor is padded to the alignment, the last one too (like the gguf package).
  EXPECT_EQ(ReadBytes(path).size(), f.header().data_start + 64 + 128 + 64);
}

TEST(Gguf, DefaultAlignmentIs32AndEmptyFilesRoundTrip) {
  ScratchDir dir;
  GgufWriter w;
  ASSERT_TRUE(w.Write(dir / "empty.gguf").ok());
  EXPECT_EQ(ReadBytes(dir / "empty.gguf").size(), 32u);  // 24-byte header padded to 32
  auto f = GgufFile::Open(dir / "empty.gguf");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->header().alignment, 32u);
  EXPECT_TRUE((*f)->tensors().empty());

  ASSERT_TRUE(w.AddTensor("t", {3}, GgmlType::kF32, Bytes(12, 0)).ok());
  ASSERT_TRUE(w.Write(dir / "one.gguf").ok());
  auto one = GgufFile::Open(dir / "one.gguf");
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_EQ((*one)->header().data_start % 32, 0u);
}

TEST(Gguf, TypedAccessorsNameTheKeyOnAWrongType) {
  Metadata md;
  md.source = "m.gguf";
  FillMetadata(md);
  EXPECT_EQ(*md.GetUint("u8"), 255u);
  EXPECT_EQ(*md.GetUint("u64"), UINT64_MAX);
  EXPECT_EQ(*md.GetString("general.architecture"), "llama");
  EXPECT_EQ(*md.GetFloat("f32"), static_cast<double>(0.1f));
  EXPECT_EQ(*md.GetFloat("f64"), 0.1);
  EXPECT_TRUE(*md.GetBool("bool"));
  EXPECT_EQ(md.GetStringArray("tokens")->size(), 3u);
  EXPECT_EQ(*md.GetIntArray("types"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(*md.GetIntArray("u8s"), (std::vector<int64_t>{0, 255}));
  EXPECT_EQ(*md.GetFloatArray("scores"), (std::vector<double>{0.5, -1.25}));
  EXPECT_TRUE(md.GetStringArray("empty")->empty());

  const auto wrong = md.GetString("u32");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(), "m.gguf: metadata 'u32' is UINT32, expected STRING");
  EXPECT_THAT(md.GetUint("i32").status().message(),
              HasSubstr("metadata 'i32' is INT32, expected a non-negative integer (got -7)"));
  EXPECT_THAT(md.GetUint("general.architecture").status().message(),
              HasSubstr("'general.architecture' is STRING"));
  EXPECT_THAT(md.GetFloat("u8").status().message(), HasSubstr("'u8' is UINT8"));
  EXPECT_THAT(md.GetBool("u8").status().message(), HasSubstr("'u8' is UINT8, expected BOOL"));
  EXPECT_THAT(md.GetStringArray("types").status().message(), HasSubstr("'types' is ARRAY of INT32"));
  EXPECT_THAT(md.GetIntArray("tokens").status().message(), HasSubstr("'tokens' is ARRAY of STRING"));
  EXPECT_THAT(md.GetFloatArray("types").status().message(), HasSubstr("'types' is ARRAY of INT32"));
  EXPECT_THAT(md.GetIntArray("bools").status().message(), HasSubstr("'bools' is ARRAY of BOOL"));
  md.Set("huge", Typed(ValueType::kArray, std::vector<uint64_t>{UINT64_MAX}, ValueType::kU64));
  EXPECT_THAT(md.GetIntArray("huge").status().message(), HasSubstr("'huge'"));

  const auto missing = md.GetUint("nope");
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "m.gguf: metadata key 'nope' not found");
}

TEST(Gguf, SetReplacesInPlaceAndValueHelpersSetTypes) {
  Metadata md;
  md.Set("a", Value::U32(1));
  md.Set("b", Value::U32(2));
  md.Set("a", Value::String("x"));
  ASSERT_EQ(md.entries().size(), 2u);
  EXPECT_EQ(md.entries()[0].first, "a");
  EXPECT_EQ(md.entries()[0].second.type, ValueType::kString);
  EXPECT_TRUE(md.Contains("b"));
  EXPECT_FALSE(md.Contains("c"));
  EXPECT_EQ(Value::I32Array({1, 2}).element_type, ValueType::kI32);
  EXPECT_EQ(Value::F32Array({1}).element_type, ValueType::kF32);
  EXPECT_EQ(Value::StringArray({"a", "b", "c"}).array_size(), 3u);
  EXPECT_EQ(Value::String("abc").array_size(), 0u);
  EXPECT_EQ(Value::U64(5).type, ValueType::kU64);
}

TEST(Gguf, TypeTablesMatchTheGgufPackage) {
  EXPECT_EQ(Traits(0)->name, "F32");
  EXPECT_EQ(Traits(12)->block_size, 256);
  EXPECT_EQ(Traits(12)->type_size, 144);
  EXPECT_EQ(Traits(14)->type_size, 210);
  EXPECT_EQ(Traits(11)->type_size, 110);
  EXPECT_EQ(Traits(8)->type_size, 34);
  EXPECT_EQ(Traits(30)->name, "BF16");
  EXPECT_FALSE(Traits(4).has_value());  // Q4_2, removed from ggml
  EXPECT_FALSE(Traits(16).has_value());
  EXPECT_EQ(ParseTypeName("q4_k"), GgmlType::kQ4_K);
  EXPECT_EQ(ParseTypeName("BF16"), GgmlType::kBF16);
  EXPECT_FALSE(ParseTypeName("q4").has_value());
  EXPECT_EQ(ValueTypeName(ValueType::kF32), "FLOAT32");
  EXPECT_EQ(ValueTypeName(ValueType::kArray), "ARRAY");
}

TEST(GgufWriter, RefusesBadTensors) {
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("t", {32}, GgmlType::kF32, Bytes(128, 0)).ok());
  EXPECT_THAT(w.AddTensor("t", {1}, GgmlType::kF32, Bytes(4, 0)).message(), HasSubstr("'t': added twice"));
  EXPECT_THAT(w.AddTensor("u", {31}, GgmlType::kF32, Bytes(128, 0)).message(),
              HasSubstr("data holds 128 bytes but dims [31] of F32 need 124"));
  EXPECT_THAT(w.AddTensor("v", {16}, GgmlType::kQ8_0, Bytes(17, 0)).message(),
              HasSubstr("row length 16 is not a multiple of the block size 32"));
  EXPECT_THAT(w.AddTensor("w", {-1}, GgmlType::kF32, Bytes(0, 0)).message(), HasSubstr("negative"));
  EXPECT_THAT(w.AddTensor("x", {1, 1, 1, 1, 1}, GgmlType::kF32, Bytes(4, 0)).message(),
              HasSubstr("5 dimensions, at most 4"));
  EXPECT_THAT(w.AddTensor("y", {INT64_MAX, 2}, GgmlType::kF32, Bytes(4, 0)).message(), HasSubstr("overflow"));
  EXPECT_THAT(w.AddTensor("z", {1}, static_cast<GgmlType>(99), Bytes(4, 0)).message(),
              HasSubstr("type 99 is not a known ggml type"));
  EXPECT_THAT(w.AddTensor("", {1}, GgmlType::kF32, Bytes(4, 0)).message(), HasSubstr("empty"));
  EXPECT_THAT(w.AddTensor("\xff", {1}, GgmlType::kF32, Bytes(4, 0)).message(), HasSubstr("UTF-8"));
}

TEST(GgufWriter, RefusesMetadataItCannotWrite) {
  ScratchDir dir;
  const std::string path = dir / "bad.gguf";
  const auto fails_with = [&](const std::string& key, Value v, const std::string& text) {
    GgufWriter w;
    w.metadata().Set(key, std::move(v));
    const Status st = w.Write(path);
    EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument) << key;
    EXPECT_THAT(st.message(), HasSubstr(text)) << key;
    EXPECT_FALSE(std::filesystem::exists(path));
  };
  fails_with("k", Typed(ValueType::kU8, uint64_t{300}), "metadata 'k': 300 does not fit in UINT8");
  fails_with("k", Typed(ValueType::kI16, int64_t{-40000}), "does not fit in INT16");
  fails_with("k", Typed(ValueType::kU32, std::string("x")), "a UINT32 value cannot hold a string");
  fails_with("k", Typed(ValueType::kArray, std::vector<uint64_t>{1}, ValueType::kArray), "arrays of arrays");
  fails_with("k", Typed(ValueType::kArray, std::vector<int64_t>{1}, ValueType::kString),
             "STRING value cannot hold");
  fails_with("k", Typed(ValueType::kString, std::vector<std::string>{"a"}), "cannot hold an array");
  fails_with("k", Typed(ValueType::kArray, std::string("a"), ValueType::kString), "cannot hold a scalar");
  fails_with("\xc3", Value::U32(1), "key is not valid UTF-8");
  fails_with("general.alignment", Value::U32(48), "'general.alignment' is 48, expected a power of two");
  fails_with("general.alignment", Value::U32(0), "expected a power of two");
  fails_with("general.alignment", Value::U64(64), "'general.alignment' is UINT64, expected UINT32");
}

TEST(GgufWriter, WriteIntoMissingDirectoryFailsCleanly) {
  ScratchDir dir;
  GgufWriter w;
  const Status st = w.Write(dir / "no/such/dir/m.gguf");
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("no/such/dir"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(GgufWriter, ReplacesAnExistingFileAtomically) {
  ScratchDir dir;
  const std::string path = dir / "m.gguf";
  GgufWriter a;
  a.metadata().Set("v", Value::U32(1));
  ASSERT_TRUE(a.Write(path).ok());
  GgufWriter b;
  b.metadata().Set("v", Value::U32(2));
  ASSERT_TRUE(b.Write(path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*(*f)->metadata().GetUint("v"), 2u);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);  // no temp left
}

}  // namespace
}  // namespace openrl::formats::gguf
