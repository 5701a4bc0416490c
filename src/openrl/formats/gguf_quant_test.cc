// ggml block quantization: decoders checked against ggml's reference C loops (ggml-quants.c,
// written out below in their own shape) on random blocks, quantizers against bytes produced by
// the gguf Python package 0.19 (pinned here, incl. NaN, subnormal and rounding corner cases),
// quantize -> dequantize error bounds, and the refusals. tests/test_gguf_format.py compares
// every type with the gguf package on real models and random data.
#include "openrl/formats/gguf_quant.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "openrl/formats/dtype.h"

// The reference loops below must round every operation on its own, like the code under test.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace openrl::formats::gguf {
namespace {

using ::testing::HasSubstr;

std::vector<uint8_t> Hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

float Bits(uint32_t b) { return std::bit_cast<float>(b); }

// Random blocks whose f16 scales are finite (bytes at `scale_offsets` of each block rewritten).
std::vector<uint8_t> RandomBlocks(size_t n_blocks, size_t type_size, const std::vector<int>& scale_offsets,
                                  uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  std::vector<uint8_t> out(n_blocks * type_size);
  for (auto& b : out) b = static_cast<uint8_t>(byte(rng));
  for (size_t b = 0; b < n_blocks; ++b) {
    for (int off : scale_offsets) {
      const uint16_t h = F32ToF16(scale(rng));
      const size_t at = b * type_size + static_cast<size_t>(off);
      out[at] = static_cast<uint8_t>(h & 0xFF);
      out[at + 1] = static_cast<uint8_t>(h >> 8);
    }
  }
  return out;
}

float H(const uint8_t* p) { return F16ToF32(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// ggml's reference decoders, kept in the shape of its C code (implicit int -> float included).
// NOLINTBEGIN(bugprone-narrowing-conversions)

// ggml-quants.c get_scale_min_k4.
void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// ggml-quants.c dequantize_row_q4_K / q5_K / q6_K / q2_K / q3_K, one block each.
void RefQ4K(const uint8_t* x, float* y) {
  const float d = H(x), min = H(x + 2);
  const uint8_t* q = x + 16;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
    uint8_t sc, m;
    ScaleMinK4(is, x + 4, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    ScaleMinK4(is + 1, x + 4, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
  }
}

void RefQ5K(const uint8_t* x, float* y) {
  const float d = H(x), min = H(x + 2);
  const uint8_t *qh = x + 16, *ql = x + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
    uint8_t sc, m;
    ScaleMinK4(is, x + 4, &sc, &m);
    const float d1 = d * sc, m1 = min * m;
    ScaleMinK4(is + 1, x + 4, &sc, &m);
    const float d2 = d * sc, m2 = min * m;
    for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

void RefQ6K(const uint8_t* x, float* y) {
  const uint8_t *ql = x, *qh = x + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(x + 192);
  const float d = H(x + 208);
  for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = static_cast<int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = static_cast<int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
  }
}

void RefQ2K(const uint8_t* x, float* y) {
  const uint8_t *scales = x, *q = x + 16;
  const float d = H(x + 80), min = H(x + 82);
  for (int n = 0, is = 0; n < 256; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2) {
      uint8_t sc = scales[is++];
      float dl = d * (sc & 0xF), ml = min * (sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l] >> shift) & 3) - ml;
      sc = scales[is++];
      dl = d * (sc & 0xF), ml = min * (sc >> 4);
      for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<int8_t>((q[l + 16] >> shift) & 3) - ml;
    }
  }
}

void RefQ3K(const uint8_t* x, float* y) {
  const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
  uint32_t aux[4];
  std::memcpy(aux, x + 96, 12);
  const uint32_t tmp = aux[2];
  aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
  aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
  aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
  aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
  const auto* scales = reinterpret_cast<const int8_t*>(aux);
  const float d_all = H(x + 108);
  const uint8_t *q = x + 32, *hm = x;
  uint8_t m = 1;
  for (int n = 0, is = 0; n < 256; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
      float dl = d_all * (scales[is++] - 32);
      for (int l = 0; l < 16; ++l)
        *y++ = dl * (static_cast<int8_t>((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
      dl = d_all * (scales[is++] - 32);
      for (int l = 0; l < 16; ++l)
        *y++ = dl * (static_cast<int8_t>((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
    }
  }
}

// NOLINTEND(bugprone-narrowing-conversions)

struct KCase {
  GgmlType type;
  size_t type_size;
  std::vector<int> scales;
  void (*ref)(const uint8_t*, float*);
};

TEST(GgufQuant, KQuantsMatchGgmlReferenceLoops) {
  const KCase cases[] = {{GgmlType::kQ2_K, 84, {80, 82}, RefQ2K},
                         {GgmlType::kQ3_K, 110, {108}, RefQ3K},
                         {GgmlType::kQ4_K, 144, {0, 2}, RefQ4K},
                         {GgmlType::kQ5_K, 176, {0, 2}, RefQ5K},
                         {GgmlType::kQ6_K, 210, {208}, RefQ6K}};
  for (const KCase& c : cases) {
    const size_t n_blocks = 16;
    const auto src = RandomBlocks(n_blocks, c.type_size, c.scales, 7);
    std::vector<float> ours(n_blocks * 256), want(ours.size());
    ASSERT_TRUE(Dequantize(c.type, src, ours).ok());
    for (size_t b = 0; b < n_blocks; ++b) c.ref(&src[b * c.type_size], &want[b * 256]);
    for (size_t i = 0; i < ours.size(); ++i) {
      ASSERT_EQ(std::bit_cast<uint32_t>(ours[i]), std::bit_cast<uint32_t>(want[i]))
          << Traits(static_cast<uint32_t>(c.type))->name << " element " << i;
    }
  }
}

TEST(GgufQuant, DecodesHandBuiltBlocks) {
  // Q8_0: d = 0.5 (f16 0x3800), then int8 codes.
  std::vector<uint8_t> q8 = {0x00, 0x38};
  for (int i = 0; i < 32; ++i) q8.push_back(static_cast<uint8_t>(static_cast<int8_t>(i - 16)));
  std::vector<float> out(32);
  ASSERT_TRUE(Dequantize(GgmlType::kQ8_0, q8, out).ok());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * static_cast<float>(i - 16));
  // Q4_1: d = 2, m = -1; byte j holds element j (low nibble) and j + 16 (high nibble).
  std::vector<uint8_t> q41 = {0x00, 0x40, 0x00, 0xBC};
  for (int j = 0; j < 16; ++j) q41.push_back(static_cast<uint8_t>(j | ((15 - j) << 4)));
  ASSERT_TRUE(Dequantize(GgmlType::kQ4_1, q41, out).ok());
  EXPECT_EQ(out[3], 2.0f * 3 - 1);
  EXPECT_EQ(out[16 + 3], 2.0f * 12 - 1);
  // Q5_0: d = 1, element 0 has the fifth bit set (16 + 1 - 16 = 1), element 31 not (15 - 16).
  std::vector<uint8_t> q50 = {0x00, 0x3C, 0x01, 0x00, 0x00, 0x00};
  for (int j = 0; j < 16; ++j) q50.push_back(0xF1);
  ASSERT_TRUE(Dequantize(GgmlType::kQ5_0, q50, out).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -15.0f);
  EXPECT_EQ(out[31], -1.0f);
}

TEST(GgufQuant, PlainTypesConvertExactly) {
  std::vector<float> out(2);
  const int8_t i8[] = {-128, 127};
  ASSERT_TRUE(Dequantize(GgmlType::kI8, {reinterpret_cast<const uint8_t*>(i8), 2}, out).ok());
  EXPECT_EQ(out, (std::vector<float>{-128, 127}));
  const int32_t i32[] = {-5, 16777217};
  ASSERT_TRUE(Dequantize(GgmlType::kI32, {reinterpret_cast<const uint8_t*>(i32), 8}, out).ok());
  EXPECT_EQ(out, (std::vector<float>{-5, 16777216}));
  const double f64[] = {0.1, -1e300};
  ASSERT_TRUE(Dequantize(GgmlType::kF64, {reinterpret_cast<const uint8_t*>(f64), 16}, out).ok());
  EXPECT_EQ(out[0], 0.1f);
  EXPECT_TRUE(std::isinf(out[1]) && out[1] < 0);
  const uint16_t f16[] = {0x7C01, 0x0001};  // signalling NaN keeps its payload, like numpy
  ASSERT_TRUE(Dequantize(GgmlType::kF16, {reinterpret_cast<const uint8_t*>(f16), 4}, out).ok());
  EXPECT_EQ(std::bit_cast<uint32_t>(out[0]), 0x7F802000u);
  EXPECT_EQ(out[1], std::ldexp(1.0f, -24));
  const uint16_t bf16[] = {0x3F80, 0xFFC1};
  ASSERT_TRUE(Dequantize(GgmlType::kBF16, {reinterpret_cast<const uint8_t*>(bf16), 4}, out).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(out[1]), 0xFFC10000u);
}

// Bytes from gguf.quants.quantize (0.19.0, numpy 2.4, x86-64).
TEST(GgufQuant, QuantizersMatchTheGgufPackageBytes) {
  std::vector<float> ramp(32);
  for (int i = 0; i < 32; ++i) ramp[i] = static_cast<float>(i) * 0.25f - 3.0f;
  const std::pair<GgmlType, std::string> cases[] = {
      {GgmlType::kQ8_0, "ca28b0b6bdc4cbd1d8dfe5ecf3f900070d141b21282f353c434a50575e646b72787f"},
      {GgmlType::kQ4_0, "c0b86d6d5c5c5b4b4b3a3a39292818180707"},
      {GgmlType::kQ4_1, "223800c280809191a2a2b3b3c4c4d5d5e6e6f7f7"},
      {GgmlType::kQ5_0, "c0b4ff1f0000dac9b8a89786857463534231302f1e0d"},
      {GgmlType::kQ5_1, "003400c20000ffff00112233445566778899aabbccddeeff"}};
  for (const auto& [type, hex] : cases) {
    auto bytes = Quantize(type, ramp);
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(*bytes, Hex(hex)) << Traits(static_cast<uint32_t>(type))->name;
  }
  // Subnormal blocks: the reciprocal scale overflows and numpy's float -> int cast yields 0.
  const std::vector<float> tiny(32, 1e-40f);
  EXPECT_EQ(*Quantize(GgmlType::kQ8_0, tiny), std::vector<uint8_t>(34, 0));
  EXPECT_EQ(*Quantize(GgmlType::kQ4_0, tiny), Hex("008000000000000000000000000000000000"));
  // NaN: min/max reductions give the canonical NaN, argmax the element itself (payload kept).
  std::vector<float> nan_block(32);
  for (int i = 0; i < 32; ++i) nan_block[i] = static_cast<float>(i - 16);
  nan_block[5] = Bits(0xFFC12345);
  EXPECT_EQ(*Quantize(GgmlType::kQ4_1, nan_block), Hex("007e007e00000000000000000000000000000000"));
  EXPECT_EQ(*Quantize(GgmlType::kQ5_0, nan_block), Hex("09fe0000000000000000000000000000000000000000"));
}

TEST(GgufQuant, HalfPrecisionFollowsNumpyAndGguf) {
  const std::vector<float> x = {
      Bits(0x7F800001), Bits(0xFFC12345), Bits(0x3F808000), Bits(0x3F818000), 65520.0f, 1e-8f, -0.0f,
      Bits(0x7F7FFFFF)};
  const auto f16 = *Quantize(GgmlType::kF16, x);
  const auto bf16 = *Quantize(GgmlType::kBF16, x);
  const uint16_t want_f16[] = {0x7C01, 0xFE09, 0x3C04, 0x3C0C, 0x7C00, 0x0000, 0x8000, 0x7C00};
  const uint16_t want_bf16[] = {0x7FC0, 0xFFC1, 0x3F80, 0x3F82, 0x4780, 0x322C, 0x8000, 0x7F80};
  ASSERT_EQ(f16.size(), 16u);
  ASSERT_EQ(bf16.size(), 16u);
  EXPECT_EQ(std::memcmp(f16.data(), want_f16, 16), 0);
  EXPECT_EQ(std::memcmp(bf16.data(), want_bf16, 16), 0);
  const auto* x_bytes = reinterpret_cast<const uint8_t*>(x.data());
  EXPECT_EQ(*Quantize(GgmlType::kF32, x), std::vector<uint8_t>(x_bytes, x_bytes + 32));
}

TEST(GgufQuant, QuantizeDequantizeStaysWithinTheStepSize) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t{32} * 64);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = normal(rng) * (i < 1024 ? 0.01f : 50.0f) + (i % 64 < 32 ? 0.0f : 3.0f);
  }
  // Worst error per block as a fraction of its step: half a step for rounding codecs, a whole
  // step where the extreme value is clipped (Q4_0/Q5_0 map -max to one past the top code).
  const struct {
    GgmlType type;
    float levels;
    bool symmetric;
    float max_steps;
  } cases[] = {{GgmlType::kQ8_0, 127, true, 0.51f},
               {GgmlType::kQ4_0, 8, true, 1.01f},
               {GgmlType::kQ5_0, 16, true, 1.01f},
               {GgmlType::kQ4_1, 15, false, 0.51f},
               {GgmlType::kQ5_1, 31, false, 0.51f}};
  for (const auto& c : cases) {
    const auto q = Quantize(c.type, x);
    ASSERT_TRUE(q.ok());
    std::vector<float> y(x.size());
    ASSERT_TRUE(Dequantize(c.type, *q, y).ok());
    for (size_t b = 0; b < x.size(); b += 32) {
      float lo = x[b], hi = x[b], amax = 0;
      for (size_t i = b; i < b + 32; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
        amax = std::max(amax, std::fabs(x[i]));
      }
      const float step = c.symmetric ? amax / c.levels : (hi - lo) / c.levels;
      // Scales are stored as float16 (relative error 2^-11, times up to `levels` codes).
      const float slack = step * c.levels * 1e-3f + (c.symmetric ? 0 : std::fabs(lo) * 1e-3f);
      for (size_t i = b; i < b + 32; ++i) {
        ASSERT_LE(std::fabs(y[i] - x[i]), step * c.max_steps + slack)
            << Traits(static_cast<uint32_t>(c.type))->name << " element " << i;
      }
    }
  }
  for (GgmlType t : {GgmlType::kF16, GgmlType::kBF16}) {
    std::vector<float> y(x.size());
    ASSERT_TRUE(Dequantize(t, *Quantize(t, x), y).ok());
    const float rel = t == GgmlType::kF16 ? 1.0f / 2048 : 1.0f / 256;
    for (size_t i = 0; i < x.size(); ++i) ASSERT_LE(std::fabs(y[i] - x[i]), std::fabs(x[i]) * rel + 1e-7f);
  }
}

TEST(GgufQuant, RefusesWrongSizesAndUnsupportedTypes) {
  std::vector<float> out(32);
  const std::vector<uint8_t> block(34);
  EXPECT_TRUE(Dequantize(GgmlType::kQ8_0, block, out).ok());
  EXPECT_THAT(Dequantize(GgmlType::kQ8_0, std::span(block).first(33), out).message(),
              HasSubstr("dequantize Q8_0: 32 elements take 34 bytes, got 33"));
  std::vector<float> odd(31);
  EXPECT_THAT(Dequantize(GgmlType::kQ8_0, block, odd).message(),
              HasSubstr("31 elements are not a multiple of the block size 32"));
  const Status q8k = Dequantize(GgmlType::kQ8_K, block, out);
  EXPECT_EQ(q8k.code(), ErrorCode::kUnimplemented);
  EXPECT_THAT(q8k.message(), HasSubstr("dequantizing Q8_K is not supported"));
  EXPECT_FALSE(CanDequantize(GgmlType::kQ8_1));
  EXPECT_FALSE(CanDequantize(static_cast<GgmlType>(99)));
  EXPECT_TRUE(CanDequantize(GgmlType::kQ3_K));
  EXPECT_EQ(Quantize(GgmlType::kQ4_K, std::vector<float>(256)).status().code(), ErrorCode::kUnimplemented);
  EXPECT_THAT(Quantize(GgmlType::kQ4_0, std::vector<float>(33)).status().message(),
              HasSubstr("quantize Q4_0: 33 elements are not a multiple of the block size 32"));
  EXPECT_FALSE(CanQuantize(GgmlType::kQ6_K));
  EXPECT_TRUE(CanQuantize(GgmlType::kQ5_1));
  EXPECT_TRUE(Quantize(GgmlType::kQ8_0, {}).ok());
}

}  // namespace
}  // namespace openrl::formats::gguf
