// ggml block (de)quantization, mirroring the gguf package's quants.py operation by operation:
// every product, sum and conversion is a separately rounded float32 operation in the same order,
// float -> integer casts behave like numpy's on x86 (see NumpyCastU8) and float16 conversions
// keep NaN payloads like numpy's. That is what makes the results bit-identical.
#include "openrl/formats/gguf_quant.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "openrl/formats/dtype.h"
#include "openrl/formats/gguf_quant_k.h"

// The reference computes every product and sum as its own rounded float32 operation (numpy
// ufuncs); a fused multiply-add would change the last bit, so contraction is off here.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace openrl::formats::gguf {
namespace {

using internal::LoadHalf;
constexpr int kQK = 32;  // elements per block of the *_0 / *_1 types

// numpy's float32 -> float16 (astype): round to nearest even; NaN keeps its sign and the top of
// its payload (a payload that would vanish becomes 1) where dtype.h makes every NaN 0x7E00.
uint16_t NumpyHalf(float x) {
  if (!std::isnan(x)) return F32ToF16(x);
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  uint16_t h = static_cast<uint16_t>(0x7C00u + ((bits & 0x7FFFFFu) >> 13));
  if (h == 0x7C00u) ++h;
  return static_cast<uint16_t>(((bits >> 16) & 0x8000u) | h);
}

void StoreHalf(uint8_t* p, float x) {
  const uint16_t h = NumpyHalf(x);
  p[0] = static_cast<uint8_t>(h & 0xFF);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// numpy's float32 -> uint8/int8 cast on x86: a truncating conversion to int32 (NaN and values
// beyond its range give INT32_MIN), then the low byte. Only infinities and NaN from degenerate
// blocks (e.g. subnormal inputs, whose reciprocal scale overflows) ever reach the odd cases.
uint8_t NumpyCastU8(float x) {
  if (!(std::fabs(x) < 2147483648.0f)) return 0;
  return static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(x)));
}

// np.where(d == 0, 0, 1 / d)
float InverseOrZero(float d) { return d == 0.0f ? 0.0f : 1.0f / d; }

// The element of largest magnitude (first on ties; the first NaN wins, like np.argmax).
float AbsMaxSigned(const float* x) {
  int best = 0;
  for (int i = 0; i < kQK; ++i) {
    if (std::isnan(x[i])) return x[i];
    if (std::fabs(x[i]) > std::fabs(x[best])) best = i;
  }
  return x[best];
}

// np.max / np.min over a block of 32: NaN propagates, as the canonical quiet NaN (numpy's SIMD
// reductions drop the sign and payload).
void MinMax(const float* x, float* lo, float* hi) {
  *lo = x[0];
  *hi = x[0];
  for (int i = 0; i < kQK; ++i) {
    if (std::isnan(x[i])) {
      *lo = *hi = std::numeric_limits<float>::quiet_NaN();
      return;
    }
    if (x[i] < *lo) *lo = x[i];
    if (x[i] > *hi) *hi = x[i];
  }
}

// ---- decoders: one block of 32 ----

void DecodeQ4_0(const uint8_t* b, float* out) {
  const float d = LoadHalf(b);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>((b[2 + j] & 0x0F) - 8);
    out[j + 16] = d * static_cast<float>((b[2 + j] >> 4) - 8);
  }
}

void DecodeQ4_1(const uint8_t* b, float* out) {
  const float d = LoadHalf(b);
  const float m = LoadHalf(b + 2);
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>(b[4 + j] & 0x0F) + m;
    out[j + 16] = d * static_cast<float>(b[4 + j] >> 4) + m;
  }
}

// Q5: element j's fifth bit is bit j of the little-endian u32 qh.
uint32_t LoadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void DecodeQ5_0(const uint8_t* b, float* out) {
  const float d = LoadHalf(b);
  const uint32_t qh = LoadU32(b + 2);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b[6 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (b[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    out[j] = d * static_cast<float>(lo - 16);
    out[j + 16] = d * static_cast<float>(hi - 16);
  }
}

void DecodeQ5_1(const uint8_t* b, float* out) {
  const float d = LoadHalf(b);
  const float m = LoadHalf(b + 2);
  const uint32_t qh = LoadU32(b + 4);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b[8 + j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (b[8 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    out[j] = d * static_cast<float>(lo) + m;
    out[j + 16] = d * static_cast<float>(hi) + m;
  }
}

void DecodeQ8_0(const uint8_t* b, float* out) {
  const float d = LoadHalf(b);
  for (int j = 0; j < kQK; ++j) out[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// ---- encoders: one block of 32 ----

void EncodeQ8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int i = 0; i < kQK; ++i) {
    const float a = std::fabs(x[i]);
    if (std::isnan(a)) {
      amax = std::numeric_limits<float>::quiet_NaN();  // as MinMax
      break;
    }
    if (a > amax) amax = a;
  }
  const float d = amax / 127.0f;
  const float id = InverseOrZero(d);
  StoreHalf(b, d);
  for (int i = 0; i < kQK; ++i) {
    // np_roundf: round half away from zero, as floor(|v|) + floor(2 * frac) with v's sign.
    const float v = x[i] * id;
    const float a = std::fabs(v);
    const float floored = std::floor(a);
    const float r = floored + std::floor(2.0f * (a - floored));
    const float sign = v > 0.0f ? 1.0f : v < 0.0f ? -1.0f : v == 0.0f ? 0.0f : v;
    b[2 + i] = NumpyCastU8(sign * r);
  }
}

// Q4_0 / Q5_0: d = (signed value of largest magnitude) / -(levels / 2); q = trunc(x / d + bias).
void EncodeSymmetric(const float* x, float divisor, float bias, uint8_t max_q, float* d_out, uint8_t q[kQK]) {
  const float d = AbsMaxSigned(x) / divisor;
  const float id = InverseOrZero(d);
  for (int i = 0; i < kQK; ++i) {
    const uint8_t v = NumpyCastU8(std::trunc(x[i] * id + bias));
    q[i] = v > max_q ? max_q : v;
  }
  *d_out = d;
}

// Q4_1 / Q5_1: d = (max - min) / levels; q = trunc((x - min) / d + 0.5).
void EncodeAffine(const float* x, float levels, uint8_t max_q, float* d_out, float* m_out, uint8_t q[kQK]) {
  float lo = 0.0f, hi = 0.0f;
  MinMax(x, &lo, &hi);
  const float d = (hi - lo) / levels;
  const float id = InverseOrZero(d);
  for (int i = 0; i < kQK; ++i) {
    const uint8_t v = NumpyCastU8(std::trunc((x[i] - lo) * id + 0.5f));
    q[i] = v > max_q ? max_q : v;
  }
  *d_out = d;
  *m_out = lo;
}

// Packs 32 4-bit codes: byte j holds element j (low nibble) and element j + 16 (high nibble).
void PackNibbles(const uint8_t q[kQK], uint8_t* qs) {
  for (int j = 0; j < 16; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | (q[j + 16] << 4));
}

// The fifth bits of 32 5-bit codes as a little-endian u32.
void PackHighBits(const uint8_t q[kQK], uint8_t* qh) {
  uint32_t bits = 0;
  for (int i = 0; i < kQK; ++i) bits |= static_cast<uint32_t>((q[i] >> 4) != 0) << i;
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(bits >> (8 * k));
}

void EncodeQ4_0(const float* x, uint8_t* b) {
  float d = 0.0f;
  uint8_t q[kQK];
  EncodeSymmetric(x, -8.0f, 8.5f, 15, &d, q);
  StoreHalf(b, d);
  PackNibbles(q, b + 2);
}

void EncodeQ4_1(const float* x, uint8_t* b) {
  float d = 0.0f, m = 0.0f;
  uint8_t q[kQK];
  EncodeAffine(x, 15.0f, 15, &d, &m, q);
  StoreHalf(b, d);
  StoreHalf(b + 2, m);
  PackNibbles(q, b + 4);
}

void EncodeQ5_0(const float* x, uint8_t* b) {
  float d = 0.0f;
  uint8_t q[kQK];
  EncodeSymmetric(x, -16.0f, 16.5f, 31, &d, q);
  StoreHalf(b, d);
  PackHighBits(q, b + 2);
  PackNibbles(q, b + 6);
}

void EncodeQ5_1(const float* x, uint8_t* b) {
  float d = 0.0f, m = 0.0f;
  uint8_t q[kQK];
  EncodeAffine(x, 31.0f, 31, &d, &m, q);
  StoreHalf(b, d);
  StoreHalf(b + 2, m);
  PackHighBits(q, b + 4);
  PackNibbles(q, b + 8);
}

// gguf's f32 -> bf16 (ggml_compute_fp32_to_bf16): NaN made quiet keeping sign and payload top,
// then round to nearest even.
uint16_t GgufBF16(float x) {
  uint32_t n = std::bit_cast<uint32_t>(x);
  if ((n & 0x7FFFFFFFu) > 0x7F800000u) n = (n & 0xFFFF0000u) | (64u << 16);
  return static_cast<uint16_t>((static_cast<uint64_t>(n) + (0x7FFFu + ((n >> 16) & 1u))) >> 16);
}

// ---- whole-span drivers ----

template <void (*Decode)(const uint8_t*, float*)>
void DecodeBlocks(const uint8_t* src, float* out, int64_t n_blocks, int64_t type_size) {
  for (int64_t b = 0; b < n_blocks; ++b) Decode(src + b * type_size, out + b * kQK);
}

template <typename T>
T LoadLE(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // hosts are little-endian (checked in gguf_reader.cc)
  return v;
}

template <typename T>
void CastElements(const uint8_t* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(LoadLE<T>(src + i * sizeof(T)));
}

// Decodes n elements; `type` is known to be supported and the sizes to match.
void DequantizeSpan(GgmlType type, const uint8_t* src, float* out, int64_t n) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, src, static_cast<size_t>(n) * 4);
      return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = LoadHalf(src + 2 * i);
      return;
    case GgmlType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = BF16ToF32(LoadLE<uint16_t>(src + 2 * i));
      return;
    case GgmlType::kF64:
      CastElements<double>(src, out, n);
      return;
    case GgmlType::kI8:
      CastElements<int8_t>(src, out, n);
      return;
    case GgmlType::kI16:
      CastElements<int16_t>(src, out, n);
      return;
    case GgmlType::kI32:
      CastElements<int32_t>(src, out, n);
      return;
    case GgmlType::kI64:
      CastElements<int64_t>(src, out, n);
      return;
    case GgmlType::kQ4_0:
      DecodeBlocks<DecodeQ4_0>(src, out, n / kQK, 18);
      return;
    case GgmlType::kQ4_1:
      DecodeBlocks<DecodeQ4_1>(src, out, n / kQK, 20);
      return;
    case GgmlType::kQ5_0:
      DecodeBlocks<DecodeQ5_0>(src, out, n / kQK, 22);
      return;
    case GgmlType::kQ5_1:
      DecodeBlocks<DecodeQ5_1>(src, out, n / kQK, 24);
      return;
    case GgmlType::kQ8_0:
      DecodeBlocks<DecodeQ8_0>(src, out, n / kQK, 34);
      return;
    case GgmlType::kQ2_K:
      internal::DequantizeQ2K(src, out, n / 256);
      return;
    case GgmlType::kQ3_K:
      internal::DequantizeQ3K(src, out, n / 256);
      return;
    case GgmlType::kQ4_K:
      internal::DequantizeQ4K(src, out, n / 256);
      return;
    case GgmlType::kQ5_K:
      internal::DequantizeQ5K(src, out, n / 256);
      return;
    case GgmlType::kQ6_K:
      internal::DequantizeQ6K(src, out, n / 256);
      return;
    default:
      return;
  }
}

std::string TypeName(GgmlType type) {
  const auto traits = Traits(static_cast<uint32_t>(type));
  return traits ? std::string(traits->name) : "type " + std::to_string(static_cast<uint32_t>(type));
}

}  // namespace

bool CanDequantize(GgmlType type) {
  return Traits(static_cast<uint32_t>(type)).has_value() && type != GgmlType::kQ8_1 &&
         type != GgmlType::kQ8_K;
}

Status Dequantize(GgmlType type, std::span<const uint8_t> src, std::span<float> out) {
  if (!CanDequantize(type)) return Unimplemented("dequantizing " + TypeName(type) + " is not supported");
  const TypeTraits traits = *Traits(static_cast<uint32_t>(type));
  const auto n = static_cast<uint64_t>(out.size());
  if (n % static_cast<uint64_t>(traits.block_size) != 0) {
    return InvalidArgument("dequantize " + TypeName(type) + ": " + std::to_string(n) +
                           " elements are not a multiple of the block size " +
                           std::to_string(traits.block_size));
  }
  uint64_t needed = 0;
  if (__builtin_mul_overflow(n / static_cast<uint64_t>(traits.block_size),
                             static_cast<uint64_t>(traits.type_size), &needed) ||
      src.size() != needed) {
    return InvalidArgument("dequantize " + TypeName(type) + ": " + std::to_string(n) + " elements take " +
                           std::to_string(needed) + " bytes, got " + std::to_string(src.size()));
  }
  DequantizeSpan(type, src.data(), out.data(), static_cast<int64_t>(n));
  return Status::Ok();
}

bool CanQuantize(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ5_1:
      return true;
    default:
      return false;
  }
}

Result<std::vector<uint8_t>> Quantize(GgmlType type, std::span<const float> src) {
  if (!CanQuantize(type)) return Unimplemented("quantizing to " + TypeName(type) + " is not supported");
  const TypeTraits traits = *Traits(static_cast<uint32_t>(type));
  const auto block = static_cast<size_t>(traits.block_size);
  if (src.size() % block != 0) {
    return InvalidArgument("quantize " + TypeName(type) + ": " + std::to_string(src.size()) +
                           " elements are not a multiple of the block size " + std::to_string(block));
  }
  const size_t n_blocks = src.size() / block;
  std::vector<uint8_t> out(n_blocks * static_cast<size_t>(traits.type_size));
  uint8_t* dst = out.data();
  const float* x = src.data();
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, x, src.size() * 4);
      break;
    case GgmlType::kF16:
      for (size_t i = 0; i < src.size(); ++i) StoreHalf(dst + 2 * i, x[i]);
      break;
    case GgmlType::kBF16:
      for (size_t i = 0; i < src.size(); ++i) {
        const uint16_t h = GgufBF16(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      break;
    default: {
      void (*encode)(const float*, uint8_t*) = type == GgmlType::kQ8_0   ? EncodeQ8_0
                                               : type == GgmlType::kQ4_0 ? EncodeQ4_0
                                               : type == GgmlType::kQ4_1 ? EncodeQ4_1
                                               : type == GgmlType::kQ5_0 ? EncodeQ5_0
                                                                         : EncodeQ5_1;
      for (size_t b = 0; b < n_blocks; ++b) encode(x + b * kQK, dst + b * traits.type_size);
    }
  }
  return out;
}

}  // namespace openrl::formats::gguf
