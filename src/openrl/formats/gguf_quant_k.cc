// k-quant decoders, mirroring the gguf package's quants.py (Q2_K ... Q6_K dequantize_blocks):
// the same float32 operations in the same order, so results are bit-identical.
#include "openrl/formats/gguf_quant_k.h"

#include <cstddef>

// The reference computes every product and difference as its own rounded float32 operation
// (numpy ufuncs); a fused multiply-add would change the last bit, so contraction is off here.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace openrl::formats::gguf::internal {
namespace {

constexpr int kQK = 256;

// The 6-bit scales and mins of Q4_K/Q5_K, packed in 12 bytes:
//   bytes 0-3: scales 0-3 (low 6 bits), high 2 bits of scales 4-7
//   bytes 4-7: mins 0-3 (low 6 bits),   high 2 bits of mins 4-7
//   bytes 8-11: low 4 bits of scales 4-7 | low 4 bits of mins 4-7 << 4
void ScaleMin(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = s[j] & 0x3F;
    mn[j] = s[j + 4] & 0x3F;
    sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0F) | ((s[j] >> 2) & 0x30));
    mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 2) & 0x30));
  }
}

}  // namespace

// Block: scales[16] (low nibble scale, high nibble min per 16 elements), qs[64] (2 bits), d, dmin.
void DequantizeQ2K(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 84, out += kQK) {
    const uint8_t* scales = src;
    const uint8_t* qs = src + 16;
    const float d = LoadHalf(src + 80);
    const float dmin = LoadHalf(src + 82);
    for (int p = 0; p < kQK; ++p) {
      // Element p = half * 128 + shift * 32 + l takes bits 2*shift of qs[half * 32 + l].
      const int half = p / 128, shift = (p % 128) / 32, l = p % 32;
      const auto q = static_cast<float>((qs[half * 32 + l] >> (2 * shift)) & 3);
      const uint8_t s = scales[p / 16];
      const float dl = d * static_cast<float>(s & 0xF);
      const float ml = dmin * static_cast<float>(s >> 4);
      out[p] = dl * q - ml;
    }
  }
}

// Block: hmask[32] (high bit, inverted), qs[64] (low 2 bits), scales[12] (16 six-bit scales
// biased by 32), d.
void DequantizeQ3K(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 110, out += kQK) {
    const uint8_t* hmask = src;
    const uint8_t* qs = src + 32;
    const uint8_t* sc = src + 96;
    const float d = LoadHalf(src + 108);
    float dl[16];
    for (int j = 0; j < 16; ++j) {
      const int low = (j < 8 ? sc[j] : sc[j - 8] >> 4) & 0x0F;
      const int high = (sc[8 + j % 4] >> (2 * (j / 4))) & 0x03;
      dl[j] = d * static_cast<float>((low | (high << 4)) - 32);
    }
    for (int p = 0; p < kQK; ++p) {
      const int half = p / 128, shift = (p % 128) / 32, l = p % 32;
      const int low = (qs[half * 32 + l] >> (2 * shift)) & 3;
      const int high_bit = (hmask[l] >> (p / 32)) & 1;
      // The 4 is subtracted when the mask bit is clear.
      out[p] = dl[p / 16] * static_cast<float>(low - ((high_bit ^ 1) << 2));
    }
  }
}

// Block: d, dmin, scales[12] (eight 6-bit scale/min pairs), qs[128] (4 bits).
void DequantizeQ4K(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 144, out += kQK) {
    const float d = LoadHalf(src);
    const float dmin = LoadHalf(src + 2);
    uint8_t sc[8], mn[8];
    ScaleMin(src + 4, sc, mn);
    const uint8_t* qs = src + 16;
    for (int j = 0; j < 8; ++j) {
      const float dj = d * static_cast<float>(sc[j]);
      const float mj = dmin * static_cast<float>(mn[j]);
      // Sub-block j = 2 * chunk + nibble holds nibble `nibble` of qs[chunk * 32 .. + 32].
      const uint8_t* q = qs + static_cast<ptrdiff_t>(j / 2) * 32;
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        out[j * 32 + l] = dj * static_cast<float>((q[l] >> shift) & 0x0F) - mj;
      }
    }
  }
}

// Block: d, dmin, scales[12], qh[32] (fifth bit: bit j of qh[l] for sub-block j), qs[128].
void DequantizeQ5K(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 176, out += kQK) {
    const float d = LoadHalf(src);
    const float dmin = LoadHalf(src + 2);
    uint8_t sc[8], mn[8];
    ScaleMin(src + 4, sc, mn);
    const uint8_t* qh = src + 16;
    const uint8_t* qs = src + 48;
    for (int j = 0; j < 8; ++j) {
      const float dj = d * static_cast<float>(sc[j]);
      const float mj = dmin * static_cast<float>(mn[j]);
      const uint8_t* q = qs + static_cast<ptrdiff_t>(j / 2) * 32;
      const int shift = 4 * (j % 2);
      for (int l = 0; l < 32; ++l) {
        const int value = ((q[l] >> shift) & 0x0F) | (((qh[l] >> j) & 1) << 4);
        out[j * 32 + l] = dj * static_cast<float>(value) - mj;
      }
    }
  }
}

// Block: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8 per 16 elements), d.
void DequantizeQ6K(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 210, out += kQK) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const auto* scales = reinterpret_cast<const int8_t*>(src + 192);
    const float d = LoadHalf(src + 208);
    float dl[16];
    for (int j = 0; j < 16; ++j) dl[j] = d * static_cast<float>(scales[j]);
    for (int p = 0; p < kQK; ++p) {
      // Element p of half h: low nibble `(p % 128) / 64` of ql[h * 64 + p % 64], high bits
      // 2 * ((p % 128) / 32) of qh[h * 32 + p % 32].
      const int half = p / 128, r = p % 128;
      const int low = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int high = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
      out[p] = dl[p / 16] * static_cast<float>((low | (high << 4)) - 32);
    }
  }
}

}  // namespace openrl::formats::gguf::internal
