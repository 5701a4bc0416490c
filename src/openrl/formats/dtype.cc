#include "openrl/formats/dtype.h"

#include <array>
#include <bit>
#include <cassert>
#include <cmath>

namespace openrl::formats {
namespace {

struct DtypeInfo {
  std::string_view name;
  int bits;
};

// Indexed by Dtype.
constexpr std::array<DtypeInfo, kDtypeCount> kDtypes = {{
    {"BOOL", 8},        {"F4", 4},           {"F6_E2M3", 6},      {"F6_E3M2", 6},
    {"U8", 8},          {"I8", 8},           {"F8_E5M2", 8},      {"F8_E4M3", 8},
    {"F8_E8M0", 8},     {"F8_E4M3FNUZ", 8},  {"F8_E5M2FNUZ", 8},  {"I16", 16},
    {"U16", 16},        {"F16", 16},         {"BF16", 16},        {"I32", 32},
    {"U32", 32},        {"F32", 32},         {"C64", 64},         {"F64", 64},
    {"I64", 64},        {"U64", 64},
}};

const DtypeInfo& Info(Dtype dtype) { return kDtypes[static_cast<size_t>(dtype)]; }

}  // namespace

std::string_view DtypeName(Dtype dtype) { return Info(dtype).name; }

std::optional<Dtype> ParseDtype(std::string_view name) {
  for (size_t i = 0; i < kDtypes.size(); ++i) {
    if (kDtypes[i].name == name) return static_cast<Dtype>(i);
  }
  return std::nullopt;
}

int DtypeBits(Dtype dtype) { return Info(dtype).bits; }

int DtypeItemSize(Dtype dtype) { return Info(dtype).bits % 8 == 0 ? Info(dtype).bits / 8 : 0; }

std::optional<uint64_t> DtypeBytesFor(Dtype dtype, uint64_t numel) {
  const auto bits = static_cast<uint64_t>(DtypeBits(dtype));
  uint64_t total_bits = 0;
  if (__builtin_mul_overflow(numel, bits, &total_bits)) return std::nullopt;
  if (total_bits % 8 != 0) return std::nullopt;
  return total_bits / 8;
}

float BF16ToF32(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t F32ToBF16(float value) {
  if (std::isnan(value)) return 0x7FC0;
  uint32_t u = std::bit_cast<uint32_t>(value);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest, ties to even; carries into the exponent
  return static_cast<uint16_t>(u >> 16);
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  uint32_t bits = 0;
  if (exponent == 0x1F) {  // infinity or NaN, payload kept
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: mantissa * 2^-24, normalised for f32
    uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

uint16_t F32ToF16(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return sign | 0x7E00u;   // NaN
  if (magnitude >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to infinity
  if (magnitude >= 0x38800000u) {                       // normal binary16 (>= 2^-14)
    const uint32_t exponent = (magnitude >> 23) - 127 + 15;
    const uint32_t mantissa = magnitude & 0x7FFFFFu;
    uint32_t h = (exponent << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  if (magnitude <= 0x33000000u) return sign;  // <= 2^-25: ties to the even zero
  // Subnormal binary16: count units of 2^-24.
  const uint32_t exponent = magnitude >> 23;  // 102..112
  const uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126 - exponent;  // 14..24
  uint32_t h = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1);
  const uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

void BF16ToF32(std::span<const uint16_t> in, std::span<float> out) {
  assert(in.size() == out.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = BF16ToF32(in[i]);
}

void F32ToBF16(std::span<const float> in, std::span<uint16_t> out) {
  assert(in.size() == out.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = F32ToBF16(in[i]);
}

void F16ToF32(std::span<const uint16_t> in, std::span<float> out) {
  assert(in.size() == out.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = F16ToF32(in[i]);
}

void F32ToF16(std::span<const float> in, std::span<uint16_t> out) {
  assert(in.size() == out.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = F32ToF16(in[i]);
}

}  // namespace openrl::formats
