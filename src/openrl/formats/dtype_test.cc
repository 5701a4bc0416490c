#include "openrl/formats/dtype.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>

namespace openrl::formats {
namespace {

float F(uint32_t bits) { return std::bit_cast<float>(bits); }

TEST(Dtype, NamesRoundTripAndSizes) {
  for (int i = 0; i < kDtypeCount; ++i) {
    const auto dtype = static_cast<Dtype>(i);
    EXPECT_EQ(ParseDtype(DtypeName(dtype)), dtype);
  }
  EXPECT_EQ(ParseDtype("bf16"), std::nullopt);
  EXPECT_EQ(ParseDtype(""), std::nullopt);
  EXPECT_EQ(DtypeName(Dtype::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(DtypeItemSize(Dtype::kBF16), 2);
  EXPECT_EQ(DtypeItemSize(Dtype::kC64), 8);
  EXPECT_EQ(DtypeItemSize(Dtype::kBool), 1);
  EXPECT_EQ(DtypeItemSize(Dtype::kF4), 0);
  EXPECT_EQ(DtypeBits(Dtype::kF6E2M3), 6);
  EXPECT_EQ(DtypeBytesFor(Dtype::kF4, 4), 2u);
  EXPECT_EQ(DtypeBytesFor(Dtype::kF4, 3), std::nullopt);
  EXPECT_EQ(DtypeBytesFor(Dtype::kF6E3M2, 4), 3u);
  EXPECT_EQ(DtypeBytesFor(Dtype::kF32, 1ull << 62), std::nullopt);
}

TEST(Dtype, BF16RoundsToNearestEvenLikeTorch) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBF16(F(0x3F808000)), 0x3F80);  // tie, even stays
  EXPECT_EQ(F32ToBF16(F(0x3F818000)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(F32ToBF16(F(0x3F808001)), 0x3F81);  // above the tie
  EXPECT_EQ(F32ToBF16(F(0x3F807FFF)), 0x3F80);  // below the tie
  EXPECT_EQ(F32ToBF16(-2.0f), 0xC000);
  EXPECT_EQ(F32ToBF16(F(0x7F7FFFFF)), 0x7F80);  // FLT_MAX overflows to inf
  EXPECT_EQ(F32ToBF16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(F32ToBF16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(F32ToBF16(F(0xFFC12345)), 0x7FC0);  // every NaN -> canonical
  EXPECT_EQ(F32ToBF16(F(0x00000001)), 0x0000);  // tiny subnormal rounds to zero
  EXPECT_EQ(BF16ToF32(0x4049), F(0x40490000));
  for (uint32_t h = 0; h < 0x10000; ++h) {  // widening then narrowing is the identity
    const float f = BF16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToBF16(f), h);
  }
}

TEST(Dtype, F16ConvertsAllValuesExactly) {
  EXPECT_EQ(F16ToF32(0x3C00), 1.0f);
  EXPECT_EQ(F16ToF32(0xC000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7BFF), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToF32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::isinf(F16ToF32(0xFC00)) && F16ToF32(0xFC00) < 0);
  EXPECT_TRUE(std::isnan(F16ToF32(0x7E00)));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), h) << std::hex << h;
  }
}

TEST(Dtype, F16RoundsToNearestEvenLikeTorch) {
  EXPECT_EQ(F32ToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);  // tie at max rounds to inf
  EXPECT_EQ(F32ToF16(1e10f), 0x7C00);
  EXPECT_EQ(F32ToF16(-1e10f), 0xFC00);
  EXPECT_EQ(F32ToF16(F(0x7FC00000)), 0x7E00);
  EXPECT_EQ(F32ToF16(F(0xFFC00000)), 0xFE00);  // NaN keeps its sign
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3 * 2^-11 is halfway between odd 0x3C01 and even 0x3C02.
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);          // tie with zero: even
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001);          // above the tie
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002);          // 1.5 units: tie to even 2
  EXPECT_EQ(F32ToF16(std::ldexp(1023.5f, -24)), 0x0400);       // rounds up into normals
  EXPECT_EQ(F32ToF16(-std::ldexp(1.0f, -30)), 0x8000);         // negative underflow keeps sign
}

TEST(Dtype, BulkFormsMatchScalarOnes) {
  const std::vector<float> in = {0.1f, -3.75f, 1e-6f, 70000.0f};
  std::vector<uint16_t> bf(in.size()), hf(in.size());
  std::vector<float> back(in.size());
  F32ToBF16(in, bf);
  F32ToF16(in, hf);
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(bf[i], F32ToBF16(in[i]));
    EXPECT_EQ(hf[i], F32ToF16(in[i]));
  }
  BF16ToF32(bf, back);
  EXPECT_EQ(back[1], -3.75f);
  F16ToF32(hf, back);
  EXPECT_TRUE(std::isinf(back[3]));
}

}  // namespace
}  // namespace openrl::formats
