#include "openrl/formats/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "openrl/formats/safetensors_test_util.h"

namespace openrl::formats {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::RawFile;
using testing::ScratchDir;
using testing::WriteBytes;

std::string Entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

TEST(SafetensorsReader, ReadsTensorsMetadataAndZeroCopyViews) {
  ScratchDir dir;
  const std::string path = dir / "a.safetensors";
  // Header out of data order on purpose: names() follows the data.
  const std::string header = "{\"__metadata__\":{\"format\":\"pt\"}," +
                             Entry("w", "F32", "[2, 2]", "[2, 18]") + "," +
                             Entry("b", "BF16", "[1]", "[0, 2]") + "," +
                             Entry("empty", "I64", "[0, 3]", "[18, 18]") + "}   ";
  std::string data = "\x80\x3F";  // bf16 1.0
  const float w[4] = {1.0f, -2.0f, 3.5f, 0.0f};
  data.append(reinterpret_cast<const char*>(w), sizeof(w));
  WriteBytes(path, RawFile(header, data));

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  const SafetensorsFile& f = **file;
  EXPECT_EQ(f.names(), (std::vector<std::string>{"b", "w", "empty"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.header().data_start, 8 + header.size());

  auto t = f.Get("w");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->dtype(), Dtype::kF32);
  EXPECT_EQ(t->shape(), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(t->numel(), 4);
  ASSERT_EQ(t->data().size(), sizeof(w));
  EXPECT_EQ(std::memcmp(t->data().data(), w, sizeof(w)), 0);
  // A view into the mapping, not a copy.
  EXPECT_EQ(t->data().data(), f.bytes().data() + f.header().data_start + 2);

  auto b = f.Get("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(BF16ToF32(static_cast<uint16_t>(b->data()[0] | (b->data()[1] << 8))), 1.0f);
  EXPECT_EQ(f.Get("empty")->numel(), 0);
  EXPECT_TRUE(f.Get("empty")->data().empty());

  auto missing = f.Get("nope");
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.status().message(), AllOf(HasSubstr(path), HasSubstr("'nope'")));
}

TEST(SafetensorsReader, AcceptsWhatTheReferenceAccepts) {
  // Scalar (shape []), empty file body, null metadata, leading and trailing header whitespace.
  const std::string scalar = RawFile(" {" + Entry("s", "F32", "[]", "[0,4]") + "}\n", "abcd");
  auto h = SafetensorsFile::ParseHeader(
      {reinterpret_cast<const uint8_t*>(scalar.data()), scalar.size()}, scalar.size(), "s");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->tensors.at(0).numel(), 1);
  for (const std::string header : {"{}", "{\"__metadata__\":null}", "{\"__metadata__\":{}}"}) {
    const std::string bytes = RawFile(header);
    EXPECT_TRUE(SafetensorsFile::ParseHeader(
                    {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, bytes.size(), "x")
                    .ok())
        << header;
  }
}

struct BadCase {
  std::string label;
  std::string bytes;
  ErrorCode code;
  std::vector<std::string> needles;  // all must appear in the message
};

std::vector<BadCase> BadCases() {
  const std::string ok_u8 = Entry("t", "U8", "[4]", "[0,4]");
  const std::string big = std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  std::string too_large(8, '\0');
  too_large[0] = '\x01';
  too_large[3] = '\x10';  // 0x10000001 > 100 MB
  return {
      {"empty file", "", ErrorCode::kDataLoss, {"0 bytes", "too short"}},
      {"under 8 bytes", "abc", ErrorCode::kDataLoss, {"3 bytes"}},
      {"header length past EOF", RawFile("{}").substr(0, 9), ErrorCode::kDataLoss,
       {"header length 2", "past the end"}},
      {"header length absurd", big + "{}", ErrorCode::kInvalidArgument, {"exceeds", "limit"}},
      {"header over 100MB", too_large + "{}", ErrorCode::kInvalidArgument, {"limit"}},
      {"header not JSON", RawFile("{\"t\":"), ErrorCode::kInvalidArgument, {"not valid JSON"}},
      {"header not UTF-8", RawFile("{\"\xff\":1}"), ErrorCode::kInvalidArgument, {"UTF-8"}},
      {"NUL padding", RawFile(std::string("{}\0\0", 4)), ErrorCode::kInvalidArgument, {"JSON"}},
      {"header not object", RawFile("[1,2]"), ErrorCode::kInvalidArgument, {"must be a JSON object", "array"}},
      {"entry not object", RawFile("{\"t\":5}"), ErrorCode::kInvalidArgument, {"tensor 't'", "entry must be an object"}},
      {"missing dtype", RawFile("{\"t\":{\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "missing field 'dtype'"}},
      {"missing data_offsets", RawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[1]}}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "missing field 'data_offsets'"}},
      {"extra field", RawFile("{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "unknown field 'x'"}},
      {"unknown dtype", RawFile("{" + Entry("t", "F12", "[1]", "[0,1]") + "}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "unknown dtype 'F12'"}},
      {"lowercase dtype", RawFile("{" + Entry("t", "f32", "[1]", "[0,4]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"unknown dtype 'f32'"}},
      {"dtype not string", RawFile("{\"t\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "dtype must be a string"}},
      {"negative shape", RawFile("{" + Entry("t", "U8", "[-1]", "[0,1]") + "}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "shape[0]", "non-negative"}},
      {"float shape", RawFile("{" + Entry("t", "U8", "[1.0]", "[0,1]") + "}", "x"),
       ErrorCode::kInvalidArgument, {"shape[0]"}},
      {"shape not array", RawFile("{" + Entry("t", "U8", "4", "[0,4]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "shape must be an array"}},
      {"shape overflow", RawFile("{" + Entry("t", "F32", "[4294967296,4294967296]", "[0,4]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "overflows"}},
      {"bytes overflow", RawFile("{" + Entry("t", "F64", "[4611686018427387904]", "[0,4]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "overflows"}},
      {"dim beyond int64", RawFile("{" + Entry("t", "U8", "[18446744073709551615]", "[0,4]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "shape[0]"}},
      {"three offsets", RawFile("{" + Entry("t", "U8", "[1]", "[0,1,2]") + "}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "data_offsets must be [begin, end]"}},
      {"negative offset", RawFile("{" + Entry("t", "U8", "[1]", "[-1,0]") + "}", "x"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "data_offsets"}},
      {"reversed offsets", RawFile("{" + Entry("t", "U8", "[0]", "[4,0]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "end before they begin"}},
      {"offsets past end", RawFile("{" + Entry("t", "U8", "[8]", "[0,8]") + "}", "xxxx"),
       ErrorCode::kDataLoss, {"tensor 't'", "data_offsets [0, 8]", "4-byte data buffer"}},
      {"size mismatch",
       RawFile("{" + Entry("model.layers.0.mlp.up_proj.weight", "F32", "[64, 32]", "[0,4096]") + "}",
               std::string(4096, 'x')),
       ErrorCode::kInvalidArgument,
       {"tensor 'model.layers.0.mlp.up_proj.weight'",
        "data_offsets [0, 4096] hold 4096 bytes but shape [64, 32] of F32 needs 8192"}},
      {"sub-byte not byte aligned", RawFile("{" + Entry("t", "F4", "[3]", "[0,2]") + "}", "xx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "whole number of bytes"}},
      {"overlap",
       RawFile("{" + Entry("a", "U8", "[4]", "[0,4]") + "," + Entry("b", "U8", "[4]", "[2,6]") + "}",
               "xxxxxx"),
       ErrorCode::kInvalidArgument, {"tensor 'b'", "overlap tensor 'a' [0, 4]"}},
      {"hole at start", RawFile("{" + Entry("t", "U8", "[2]", "[2,4]") + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"tensor 't'", "leave bytes [0, 2)"}},
      {"hole between",
       RawFile("{" + Entry("a", "U8", "[2]", "[0,2]") + "," + Entry("b", "U8", "[2]", "[3,5]") + "}",
               "xxxxx"),
       ErrorCode::kInvalidArgument, {"tensor 'b'", "leave bytes [2, 3)"}},
      {"trailing bytes", RawFile("{" + ok_u8 + "}", "xxxxxx"), ErrorCode::kInvalidArgument,
       {"cover 4 bytes", "holds 6"}},
      {"duplicate tensor", RawFile("{" + ok_u8 + "," + ok_u8 + "}", "xxxx"),
       ErrorCode::kInvalidArgument, {"duplicate key 't'"}},
      {"duplicate field", RawFile("{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", "x"),
       ErrorCode::kInvalidArgument, {"duplicate key 'dtype' in entry 't'"}},
      {"metadata not object", RawFile("{\"__metadata__\":[1]}"), ErrorCode::kInvalidArgument,
       {"'__metadata__' must be an object"}},
      {"metadata non-string", RawFile("{\"__metadata__\":{\"step\":1}}"), ErrorCode::kInvalidArgument,
       {"'__metadata__' value of 'step' must be a string", "integer"}},
  };
}

TEST(SafetensorsReader, EveryMalformedFileGivesAClearError) {
  ScratchDir dir;
  for (const BadCase& c : BadCases()) {
    SCOPED_TRACE(c.label);
    const std::string path = dir / "bad.safetensors";
    WriteBytes(path, c.bytes);
    auto file = SafetensorsFile::Open(path);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), c.code) << file.status().ToString();
    EXPECT_THAT(file.status().message(), HasSubstr(path));
    for (const std::string& needle : c.needles) {
      EXPECT_THAT(file.status().message(), HasSubstr(needle));
    }
    // The pure parser agrees with Open.
    auto header = SafetensorsFile::ParseHeader(
        {reinterpret_cast<const uint8_t*>(c.bytes.data()), c.bytes.size()}, c.bytes.size(), "src");
    ASSERT_FALSE(header.ok());
    EXPECT_EQ(header.status().code(), c.code);
  }
}

TEST(SafetensorsReader, ParseHeaderNeedsTheWholeHeader) {
  const std::string bytes = RawFile("{}    ");
  auto h = SafetensorsFile::ParseHeader({reinterpret_cast<const uint8_t*>(bytes.data()), 10},
                                        bytes.size(), "partial");
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("needs the first 14 bytes"));
}

TEST(SafetensorsReader, MissingFileAndDirectory) {
  ScratchDir dir;
  auto missing = SafetensorsFile::Open(dir / "absent.safetensors");
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("absent.safetensors"));
  auto directory = SafetensorsFile::Open(dir.path().string());
  EXPECT_FALSE(directory.ok());
  EXPECT_THAT(directory.status().message(), HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace openrl::formats
