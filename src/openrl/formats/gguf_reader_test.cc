// GgufFile::Parse/Open on hand-built bytes: every malformed header comes back as a Status that
// names the file and the field, and absurd counts fail before anything is allocated for them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "openrl/formats/gguf.h"
#include "openrl/formats/safetensors_test_util.h"

namespace openrl::formats::gguf {
namespace {

using ::testing::HasSubstr;
using testing::ScratchDir;
using testing::WriteBytes;

// Little-endian GGUF bytes, field by field.
struct Raw {
  std::string s;
  template <typename T>
  Raw& Put(T v) {
    char buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    s.append(buf, sizeof(T));
    return *this;
  }
  Raw& U32(uint32_t v) { return Put(v); }
  Raw& U64(uint64_t v) { return Put(v); }
  Raw& Str(std::string_view v) {
    U64(v.size());
    s.append(v);
    return *this;
  }
  Raw& Start(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return U32(kMagic).U32(version).U64(n_tensors).U64(n_kv);
  }
  Raw& Tensor(std::string_view name, const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }
  Raw& PadTo(size_t align) {
    s.resize((s.size() + align - 1) / align * align, '\0');
    return *this;
  }
  Raw& Data(size_t n) {
    s.append(n, '\x01');
    return *this;
  }
};

Result<Header> Parse(const std::string& s) {
  return GgufFile::Parse({reinterpret_cast<const uint8_t*>(s.data()), s.size()}, s.size(), "t.gguf");
}

// A file with one key and one 4-float tensor.
std::string Valid() {
  return Raw().Start(1, 1).Str("general.name").U32(8).Str("tiny").Tensor("w", {4}, 0, 0).PadTo(32).Data(16).s;
}

void ExpectError(const std::string& bytes, ErrorCode code, const std::string& text) {
  const auto h = Parse(bytes);
  ASSERT_FALSE(h.ok()) << text;
  EXPECT_EQ(h.status().code(), code) << h.status().ToString();
  EXPECT_THAT(h.status().message(), HasSubstr(text));
  EXPECT_THAT(h.status().message(), ::testing::StartsWith("t.gguf: "));
}

TEST(GgufReader, ParsesAHandBuiltFile) {
  const auto h = Parse(Valid());
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->version, 3u);
  EXPECT_EQ(h->alignment, 32u);
  EXPECT_EQ(h->data_start, 96u);
  EXPECT_EQ(*h->metadata.GetString("general.name"), "tiny");
  EXPECT_EQ(h->metadata.source, "t.gguf");
  ASSERT_NE(h->Find("w"), nullptr);
  EXPECT_EQ(h->Find("w")->nbytes, 16u);
  // Version 2 has the same layout.
  std::string v2 = Valid();
  v2[4] = 2;
  EXPECT_TRUE(Parse(v2).ok());
}

TEST(GgufReader, EveryTruncationIsDataLoss) {
  const std::string full = Valid();
  for (size_t n = 0; n < full.size(); ++n) {
    const auto h = Parse(full.substr(0, n));
    ASSERT_FALSE(h.ok()) << n;
    EXPECT_EQ(h.status().code(), ErrorCode::kDataLoss) << n << ": " << h.status().ToString();
  }
  ExpectError(full.substr(0, 20), ErrorCode::kDataLoss, "metadata count needs 8 bytes at offset 16");
  ExpectError(full.substr(0, full.size() - 1), ErrorCode::kDataLoss,
              "tensor 'w': offset 0 (+ 16 bytes from the data section at 96) runs past the end of the file "
              "(111 bytes");
}

TEST(GgufReader, AskingForMoreBytesThanGivenIsNotDataLoss) {
  const std::string full = Valid();
  const auto h = GgufFile::Parse({reinterpret_cast<const uint8_t*>(full.data()), 30}, full.size(), "t.gguf");
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(h.status().message(), HasSubstr("Parse needs the first"));
}

TEST(GgufReader, RefusesWrongMagicAndVersions) {
  std::string bad = Valid();
  bad[3] = 'X';
  ExpectError(bad, ErrorCode::kInvalidArgument, "bad magic 'GGUX' (expected 'GGUF')");
  bad[0] = '\0';
  ExpectError(bad, ErrorCode::kInvalidArgument, "bad magic '\\x00GUX'");
  for (uint32_t version : {1u, 4u, 0u}) {
    ExpectError(Raw().Start(0, 0, version).s, ErrorCode::kInvalidArgument,
                "GGUF version " + std::to_string(version) + " is not supported (versions 2 and 3 are)");
  }
  ExpectError(Raw().Start(0, 0, 0x03000000).s, ErrorCode::kInvalidArgument, "looks big-endian");
}

TEST(GgufReader, RefusesBadTensorTypesAndDims) {
  const auto one = [](const std::vector<uint64_t>& dims, uint32_t type) {
    return Raw().Start(1, 0).Tensor("w", dims, type, 0).PadTo(32).Data(4096).s;
  };
  ExpectError(one({4}, 99), ErrorCode::kInvalidArgument, "tensor 'w': type 99 is not a known ggml type");
  ExpectError(one({256}, 16), ErrorCode::kInvalidArgument, "tensor 'w': type 16 (IQ2_XXS) is not supported");
  ExpectError(one({1, 1, 1, 1, 1}, 0), ErrorCode::kInvalidArgument,
              "tensor 'w': has 5 dimensions, at most 4");
  ExpectError(one({uint64_t{1} << 63}, 0), ErrorCode::kInvalidArgument,
              "dims[0] 9223372036854775808 exceeds INT64_MAX");
  ExpectError(one({1ull << 32, 1ull << 32}, 0), ErrorCode::kInvalidArgument, "overflow the element count");
  ExpectError(one({1ull << 62}, 0), ErrorCode::kInvalidArgument, "overflow the byte count");
  ExpectError(one({16}, 8), ErrorCode::kInvalidArgument,
              "dims [16] of Q8_0: row length 16 is not a multiple of the block size 32");
  ExpectError(Raw().Start(1, 0).Tensor("\xc3(", {1}, 0, 0).s, ErrorCode::kInvalidArgument,
              "tensor #0 name is not valid UTF-8");
}

TEST(GgufReader, RefusesTensorsOutsideTheFileMisalignedOrOverlapping) {
  ExpectError(Raw().Start(1, 0).Tensor("blk.0.attn_q.weight", {4}, 0, 32).PadTo(32).Data(16).s,
              ErrorCode::kDataLoss, "tensor 'blk.0.attn_q.weight': offset 32 (+ 16 bytes");
  ExpectError(Raw().Start(1, 0).Tensor("w", {4}, 0, ~uint64_t{31}).PadTo(32).Data(16).s, ErrorCode::kDataLoss,
              "runs past the end of the file");
  ExpectError(Raw().Start(1, 0).Tensor("w", {4}, 0, 4).PadTo(32).Data(64).s, ErrorCode::kInvalidArgument,
              "tensor 'w': offset 4 is not a multiple of the alignment 32");
  ExpectError(Raw().Start(2, 0).Tensor("a", {16}, 0, 0).Tensor("b", {16}, 0, 32).PadTo(32).Data(128).s,
              ErrorCode::kInvalidArgument, "tensor 'b': bytes [32, 96) overlap tensor 'a' [0, 64)");
  ExpectError(Raw().Start(2, 0).Tensor("w", {4}, 0, 0).Tensor("w", {4}, 0, 32).PadTo(32).Data(64).s,
              ErrorCode::kInvalidArgument, "tensor 'w' appears twice");
  // Empty tensors share offsets with anything.
  EXPECT_TRUE(
      Parse(Raw().Start(2, 0).Tensor("a", {0}, 0, 0).Tensor("b", {4}, 0, 0).PadTo(32).Data(16).s).ok());
}

TEST(GgufReader, ValidatesTheAlignment) {
  const auto with = [](uint32_t type, uint64_t value) {
    Raw r;
    r.Start(1, 1).Str("general.alignment").U32(type);
    if (type == 4)
      r.U32(static_cast<uint32_t>(value));
    else
      r.U64(value);
    return r.Tensor("w", {4}, 0, 0).PadTo(64).Data(16).s;
  };
  const auto ok = Parse(with(4, 64));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->alignment, 64u);
  EXPECT_EQ(ok->data_start, 128u);
  ExpectError(with(4, 48), ErrorCode::kInvalidArgument,
              "metadata 'general.alignment' is 48, expected a power of two");
  ExpectError(with(4, 0), ErrorCode::kInvalidArgument,
              "metadata 'general.alignment' is 0, expected a power of two");
  ExpectError(with(10, 64), ErrorCode::kInvalidArgument,
              "metadata 'general.alignment' is UINT64, expected UINT32");
}

TEST(GgufReader, AbsurdCountsAndLengthsFailFast) {
  ExpectError(Raw().Start(1ull << 62, 0).s, ErrorCode::kDataLoss,
              "tensor count 4611686018427387904 cannot fit");
  ExpectError(Raw().Start(0, ~uint64_t{0}).s, ErrorCode::kDataLoss,
              "metadata count 18446744073709551615 cannot fit");
  ExpectError(Raw().Start(0, 1).Str("k").U32(9).U32(10).U64(1ull << 60).s, ErrorCode::kDataLoss,
              "metadata 'k': array of UINT64 with length 1152921504606846976 cannot fit");
  ExpectError(Raw().Start(0, 1).Str("tokens").U32(9).U32(8).U64(1ull << 61).Str("a").s, ErrorCode::kDataLoss,
              "array of STRING with length 2305843009213693952 cannot fit");
  ExpectError(Raw().Start(0, 1).U64(1000000).Data(8).s, ErrorCode::kDataLoss,
              "metadata entry #0 key: string length 1000000 runs past the end of the 40-byte file");
  ExpectError(Raw().Start(0, 1).Str("k").U32(8).U64(~uint64_t{0}).s, ErrorCode::kDataLoss,
              "metadata 'k': string length 18446744073709551615 runs past the end");
  ExpectError(Raw().Start(0, 1).Str("k").U32(9).U32(8).U64(2).Str("a").U64(99).s, ErrorCode::kDataLoss,
              "metadata 'k': array element: string length 99");
  ExpectError(Raw().Start(1, 0).U64(~uint64_t{0} - 3).s, ErrorCode::kDataLoss, "tensor count 1 cannot fit");
  ExpectError(Raw().Start(1, 0).U64(100).U32(0).U64(0).U32(0).U64(0).s, ErrorCode::kDataLoss,
              "tensor #0 name: string length 100 runs past the end");
}

TEST(GgufReader, RefusesBadMetadataValues) {
  const auto kv = [](uint32_t type, const std::string& tail) {
    return Raw().Start(0, 1).Str("k").U32(type).s + tail;
  };
  ExpectError(kv(13, ""), ErrorCode::kInvalidArgument,
              "metadata 'k': value type 13 is not a GGUF value type (0 to 12)");
  ExpectError(kv(9, Raw().U32(9).U64(0).s), ErrorCode::kInvalidArgument,
              "metadata 'k': array element type 9 (ARRAY): arrays of arrays are not supported");
  ExpectError(kv(9, Raw().U32(77).U64(0).s), ErrorCode::kInvalidArgument,
              "array element type 77 is not a GGUF value type");
  ExpectError(kv(7, std::string(1, '\x02')), ErrorCode::kInvalidArgument,
              "metadata 'k': BOOL byte 2 at offset 37 is neither 0 nor 1");
  ExpectError(kv(9, Raw().U32(7).U64(2).s + std::string("\x01\x05")), ErrorCode::kInvalidArgument,
              "array element: BOOL byte 5");
  ExpectError(kv(6, "\x01\x02"), ErrorCode::kDataLoss, "metadata 'k' needs 4 bytes");
  ExpectError(Raw().Start(0, 2).Str("k").U32(4).U32(1).Str("k").U32(4).U32(2).s, ErrorCode::kInvalidArgument,
              "metadata 'k' appears twice");
  ExpectError(Raw().Start(0, 1).Str("\xff").U32(4).U32(1).s, ErrorCode::kInvalidArgument,
              "metadata entry #0 key is not valid UTF-8 (byte 0)");
  // Metadata errors from typed accessors name the file the header came from.
  const auto h = Parse(Raw().Start(0, 1).Str("n").U32(4).U32(7).s);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->metadata.GetString("n").status().message(), "t.gguf: metadata 'n' is UINT32, expected STRING");
}

TEST(GgufReader, ParsesEveryValueType) {
  Raw r;
  r.Start(0, 12);
  r.Str("u8").U32(0).Put<uint8_t>(200).Str("i8").U32(1).Put<int8_t>(-100);
  r.Str("u16").U32(2).Put<uint16_t>(60000).Str("i16").U32(3).Put<int16_t>(-30000);
  r.Str("u32").U32(4).U32(4000000000u).Str("i32").U32(5).Put<int32_t>(-2000000000);
  r.Str("f32").U32(6).Put<float>(1.5f).Str("b").U32(7).Put<uint8_t>(1);
  r.Str("s").U32(8).Str("x").Str("u64").U32(10).U64(~uint64_t{0});
  r.Str("i64").U32(11).Put<int64_t>(-5).Str("f64").U32(12).Put<double>(-2.5);
  const auto h = Parse(r.s);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const Metadata& md = h->metadata;
  EXPECT_EQ(*md.GetUint("u8"), 200u);
  EXPECT_EQ(std::get<int64_t>(md.Find("i8")->data), -100);
  EXPECT_EQ(*md.GetUint("u16"), 60000u);
  EXPECT_EQ(std::get<int64_t>(md.Find("i16")->data), -30000);
  EXPECT_EQ(*md.GetUint("u32"), 4000000000u);
  EXPECT_EQ(std::get<int64_t>(md.Find("i32")->data), -2000000000);
  EXPECT_EQ(*md.GetFloat("f32"), 1.5);
  EXPECT_TRUE(*md.GetBool("b"));
  EXPECT_EQ(*md.GetString("s"), "x");
  EXPECT_EQ(*md.GetUint("u64"), ~uint64_t{0});
  EXPECT_EQ(std::get<int64_t>(md.Find("i64")->data), -5);
  EXPECT_EQ(*md.GetFloat("f64"), -2.5);
  EXPECT_EQ(md.Find("i16")->type, ValueType::kI16);
}

TEST(GgufReader, OpenMapsFilesAndReportsIoErrors) {
  ScratchDir dir;
  WriteBytes(dir / "ok.gguf", Valid());
  auto f = GgufFile::Open(dir / "ok.gguf");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const TensorInfo& w = (*f)->tensors()[0];
  EXPECT_EQ((*f)->Data(w).size(), 16u);
  EXPECT_EQ((*f)->Data(w)[0], 1);
  EXPECT_EQ((*f)->path(), dir / "ok.gguf");

  EXPECT_EQ(GgufFile::Open(dir / "missing.gguf").status().code(), ErrorCode::kNotFound);
  WriteBytes(dir / "empty.gguf", "");
  const auto empty = GgufFile::Open(dir / "empty.gguf");
  EXPECT_EQ(empty.status().code(), ErrorCode::kDataLoss);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty.gguf: GGUF magic needs 4 bytes"));
  EXPECT_THAT(GgufFile::Open(dir.path().string()).status().message(), HasSubstr("not a regular file"));
  std::string bad = Valid();
  bad[4] = 1;
  WriteBytes(dir / "v1.gguf", bad);
  EXPECT_THAT(GgufFile::Open(dir / "v1.gguf").status().message(), HasSubstr("v1.gguf: GGUF version 1"));
}

}  // namespace
}  // namespace openrl::formats::gguf
