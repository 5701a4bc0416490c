// Element types of the safetensors format (the names it writes in a header, e.g. "BF16") with
// their sizes, plus bit-exact conversions between f32 and the 16-bit float types, matching
// PyTorch: f32 -> bf16 and f32 -> f16 round to nearest, ties to even.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace openrl::formats {

// Declared in the order of the reference implementation (safetensors 0.8), which is increasing
// alignment: writers sort tensors by descending Dtype so every tensor's data stays aligned.
enum class Dtype : uint8_t {
  kBool,
  kF4,
  kF6E2M3,
  kF6E3M2,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kF8E4M3Fnuz,
  kF8E5M2Fnuz,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,
  kF64,
  kI64,
  kU64,
};

inline constexpr int kDtypeCount = static_cast<int>(Dtype::kU64) + 1;

// "BF16", "F8_E4M3", ... as written in a safetensors header.
std::string_view DtypeName(Dtype dtype);
// The inverse of DtypeName; nullopt for an unknown name (names are case-sensitive).
std::optional<Dtype> ParseDtype(std::string_view name);
// Bits per element: 4 for F4, 6 for F6_*, 8 for BOOL, 16 for BF16, ...
int DtypeBits(Dtype dtype);
// Bytes per element, or 0 for the sub-byte types (F4, F6_*), whose elements are packed.
int DtypeItemSize(Dtype dtype);
// Bytes taken by `numel` elements; nullopt on overflow or when sub-byte elements do not end on
// a byte boundary.
std::optional<uint64_t> DtypeBytesFor(Dtype dtype, uint64_t numel);

// bf16 <-> f32. bf16 is the top half of an f32, so widening is exact; narrowing rounds to
// nearest even, maps every NaN to 0x7FC0 and overflows to infinity, like torch.
float BF16ToF32(uint16_t bits);
uint16_t F32ToBF16(float value);
// IEEE binary16 <-> f32, subnormals included. Narrowing rounds to nearest even, overflows to
// infinity and keeps the sign of NaN as a quiet 0x7E00 NaN, like torch.
float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);

// Bulk forms; `out` must be as long as `in`.
void BF16ToF32(std::span<const uint16_t> in, std::span<float> out);
void F32ToBF16(std::span<const float> in, std::span<uint16_t> out);
void F16ToF32(std::span<const uint16_t> in, std::span<float> out);
void F32ToF16(std::span<const float> in, std::span<uint16_t> out);

}  // namespace openrl::formats
