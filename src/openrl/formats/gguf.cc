// GGUF types, metadata values and their typed accessors. The parser lives in gguf_reader.cc,
// the writer in gguf_writer.cc.
#include "openrl/formats/gguf.h"

#include <algorithm>
#include <array>
#include <cctype>

#include "openrl/formats/gguf_internal.h"

namespace openrl::formats::gguf {
namespace {

struct TypeRow {
  GgmlType type;
  TypeTraits traits;
};

// Sizes as in the gguf package's GGML_QUANT_SIZES (QK_K = 256).
constexpr std::array<TypeRow, 20> kTypes = {{
    {GgmlType::kF32, {"F32", 1, 4}},
    {GgmlType::kF16, {"F16", 1, 2}},
    {GgmlType::kQ4_0, {"Q4_0", 32, 2 + 16}},
    {GgmlType::kQ4_1, {"Q4_1", 32, 2 + 2 + 16}},
    {GgmlType::kQ5_0, {"Q5_0", 32, 2 + 4 + 16}},
    {GgmlType::kQ5_1, {"Q5_1", 32, 2 + 2 + 4 + 16}},
    {GgmlType::kQ8_0, {"Q8_0", 32, 2 + 32}},
    {GgmlType::kQ8_1, {"Q8_1", 32, 4 + 4 + 32}},
    {GgmlType::kQ2_K, {"Q2_K", 256, 2 + 2 + 256 / 16 + 256 / 4}},
    {GgmlType::kQ3_K, {"Q3_K", 256, 2 + 256 / 4 + 256 / 8 + 12}},
    {GgmlType::kQ4_K, {"Q4_K", 256, 2 + 2 + 256 / 2 + 12}},
    {GgmlType::kQ5_K, {"Q5_K", 256, 2 + 2 + 256 / 2 + 256 / 8 + 12}},
    {GgmlType::kQ6_K, {"Q6_K", 256, 2 + 256 / 2 + 256 / 4 + 256 / 16}},
    {GgmlType::kQ8_K, {"Q8_K", 256, 4 + 256 + 256 / 8}},
    {GgmlType::kI8, {"I8", 1, 1}},
    {GgmlType::kI16, {"I16", 1, 2}},
    {GgmlType::kI32, {"I32", 1, 4}},
    {GgmlType::kI64, {"I64", 1, 8}},
    {GgmlType::kF64, {"F64", 1, 8}},
    {GgmlType::kBF16, {"BF16", 1, 2}},
}};

bool IsUnsigned(ValueType t) {
  return t == ValueType::kU8 || t == ValueType::kU16 || t == ValueType::kU32 || t == ValueType::kU64;
}
bool IsSigned(ValueType t) {
  return t == ValueType::kI8 || t == ValueType::kI16 || t == ValueType::kI32 || t == ValueType::kI64;
}
bool IsFloat(ValueType t) { return t == ValueType::kF32 || t == ValueType::kF64; }

// "UINT32", or "ARRAY of STRING".
std::string Describe(const Value& v) {
  std::string out(ValueTypeName(v.type));
  if (v.type == ValueType::kArray) out += " of " + std::string(ValueTypeName(v.element_type));
  return out;
}

template <typename T>
Value Scalar(ValueType type, T data) {
  Value v;
  v.type = type;
  v.data.emplace<T>(std::move(data));
  return v;
}

template <typename T>
Value Array(ValueType element_type, std::vector<T> data) {
  Value v;
  v.type = ValueType::kArray;
  v.element_type = element_type;
  v.data.emplace<std::vector<T>>(std::move(data));
  return v;
}

}  // namespace

std::optional<TypeTraits> Traits(uint32_t type) {
  for (const TypeRow& row : kTypes) {
    if (static_cast<uint32_t>(row.type) == type) return row.traits;
  }
  return std::nullopt;
}

std::optional<GgmlType> ParseTypeName(std::string_view name) {
  for (const TypeRow& row : kTypes) {
    const std::string_view known = row.traits.name;
    if (known.size() == name.size() &&
        std::equal(known.begin(), known.end(), name.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) == std::toupper(static_cast<unsigned char>(b));
        })) {
      return row.type;
    }
  }
  return std::nullopt;
}

std::string_view ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kU8:
      return "UINT8";
    case ValueType::kI8:
      return "INT8";
    case ValueType::kU16:
      return "UINT16";
    case ValueType::kI16:
      return "INT16";
    case ValueType::kU32:
      return "UINT32";
    case ValueType::kI32:
      return "INT32";
    case ValueType::kF32:
      return "FLOAT32";
    case ValueType::kBool:
      return "BOOL";
    case ValueType::kString:
      return "STRING";
    case ValueType::kArray:
      return "ARRAY";
    case ValueType::kU64:
      return "UINT64";
    case ValueType::kI64:
      return "INT64";
    case ValueType::kF64:
      return "FLOAT64";
  }
  return "UNKNOWN";
}

Value Value::U32(uint32_t v) { return Scalar(ValueType::kU32, uint64_t{v}); }
Value Value::I32(int32_t v) { return Scalar(ValueType::kI32, int64_t{v}); }
Value Value::U64(uint64_t v) { return Scalar(ValueType::kU64, v); }
Value Value::F32(float v) { return Scalar(ValueType::kF32, static_cast<double>(v)); }
Value Value::Bool(bool v) { return Scalar(ValueType::kBool, v); }
Value Value::String(std::string v) { return Scalar(ValueType::kString, std::move(v)); }
Value Value::StringArray(std::vector<std::string> v) { return Array(ValueType::kString, std::move(v)); }
Value Value::I32Array(std::vector<int64_t> v) { return Array(ValueType::kI32, std::move(v)); }
Value Value::F32Array(std::vector<double> v) { return Array(ValueType::kF32, std::move(v)); }

size_t Value::array_size() const {
  if (type != ValueType::kArray) return 0;
  return std::visit(
      [](const auto& d) -> size_t {
        if constexpr (requires { d.size(); } && !std::is_same_v<std::decay_t<decltype(d)>, std::string>) {
          return d.size();
        } else {
          return 0;
        }
      },
      data);
}

void Metadata::Set(std::string key, Value value) {
  if (const auto it = index_.find(key); it != index_.end()) {
    entries_[it->second].second = std::move(value);
    return;
  }
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
}

bool Metadata::Contains(std::string_view key) const { return Find(key) != nullptr; }

const Value* Metadata::Find(std::string_view key) const {
  const auto it = index_.find(std::string(key));
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

namespace {

// Shared by the typed accessors: the value, or NOT_FOUND naming the source and key.
Result<const Value*> Lookup(const Metadata& md, std::string_view key) {
  const Value* v = md.Find(key);
  if (v == nullptr) {
    return NotFound((md.source.empty() ? "metadata" : md.source) + ": metadata key '" + std::string(key) +
                    "' not found");
  }
  return v;
}

Status WrongType(const Metadata& md, std::string_view key, const Value& v, std::string_view expected) {
  return InvalidArgument((md.source.empty() ? "metadata" : md.source) + ": metadata '" + std::string(key) +
                         "' is " + Describe(v) + ", expected " + std::string(expected));
}

}  // namespace

Result<uint64_t> Metadata::GetUint(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (IsUnsigned(v->type)) return std::get<uint64_t>(v->data);
  if (IsSigned(v->type)) {
    const int64_t i = std::get<int64_t>(v->data);
    if (i >= 0) return static_cast<uint64_t>(i);
    return WrongType(*this, key, *v, "a non-negative integer (got " + std::to_string(i) + ")");
  }
  return WrongType(*this, key, *v, "an unsigned integer");
}

Result<double> Metadata::GetFloat(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (IsFloat(v->type)) return std::get<double>(v->data);
  return WrongType(*this, key, *v, "FLOAT32 or FLOAT64");
}

Result<bool> Metadata::GetBool(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (v->type == ValueType::kBool) return std::get<bool>(v->data);
  return WrongType(*this, key, *v, "BOOL");
}

Result<std::string> Metadata::GetString(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (v->type == ValueType::kString) return std::get<std::string>(v->data);
  return WrongType(*this, key, *v, "STRING");
}

Result<std::vector<std::string>> Metadata::GetStringArray(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (v->type == ValueType::kArray && v->element_type == ValueType::kString) {
    return std::get<std::vector<std::string>>(v->data);
  }
  return WrongType(*this, key, *v, "ARRAY of STRING");
}

Result<std::vector<int64_t>> Metadata::GetIntArray(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (v->type == ValueType::kArray && IsSigned(v->element_type)) {
    return std::get<std::vector<int64_t>>(v->data);
  }
  if (v->type == ValueType::kArray && IsUnsigned(v->element_type)) {
    const auto& in = std::get<std::vector<uint64_t>>(v->data);
    std::vector<int64_t> out;
    out.reserve(in.size());
    for (uint64_t u : in) {
      if (u > static_cast<uint64_t>(INT64_MAX)) {
        return WrongType(*this, key, *v,
                         "integers up to INT64_MAX (element " + std::to_string(out.size()) + " is " +
                             std::to_string(u) + ")");
      }
      out.push_back(static_cast<int64_t>(u));
    }
    return out;
  }
  return WrongType(*this, key, *v, "an ARRAY of integers");
}

Result<std::vector<double>> Metadata::GetFloatArray(std::string_view key) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Lookup(*this, key));
  if (v->type == ValueType::kArray && IsFloat(v->element_type)) {
    return std::get<std::vector<double>>(v->data);
  }
  return WrongType(*this, key, *v, "an ARRAY of FLOAT32 or FLOAT64");
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;  // validated not to overflow when parsed or added
  return n;
}

std::vector<int64_t> TensorInfo::shape() const { return {dims.rbegin(), dims.rend()}; }

const TensorInfo* Header::Find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors[it->second];
}

}  // namespace openrl::formats::gguf

namespace openrl::formats::gguf::internal {

std::string DimsToString(std::span<const int64_t> dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i > 0 ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

Result<uint64_t> TensorBytes(std::span<const int64_t> dims, const TypeTraits& type,
                             const std::string& where) {
  if (dims.size() > kMaxDims) {
    return InvalidArgument(where + "has " + std::to_string(dims.size()) + " dimensions, at most " +
                           std::to_string(kMaxDims) + " are allowed");
  }
  const std::string what = "dims " + DimsToString(dims) + " of " + std::string(type.name);
  uint64_t numel = 1;
  for (int64_t d : dims) {
    if (d < 0) return InvalidArgument(where + what + ": negative dimension");
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
        numel > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidArgument(where + what + " overflow the element count");
    }
  }
  const int64_t row = dims.empty() ? 1 : dims[0];
  if (row % type.block_size != 0) {
    return InvalidArgument(where + what + ": row length " + std::to_string(row) +
                           " is not a multiple of the block size " + std::to_string(type.block_size));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel / static_cast<uint64_t>(type.block_size),
                             static_cast<uint64_t>(type.type_size), &bytes)) {
    return InvalidArgument(where + what + " overflow the byte count");
  }
  return bytes;
}

Result<uint64_t> AlignmentOf(const Metadata& md, const std::string& source) {
  const Value* v = md.Find("general.alignment");
  if (v == nullptr) return kDefaultAlignment;
  if (v->type != ValueType::kU32) {
    return InvalidArgument(source + ": metadata 'general.alignment' is " + Describe(*v) +
                           ", expected UINT32");
  }
  const uint64_t align = std::get<uint64_t>(v->data);
  if (!IsPowerOfTwo(align)) {
    return InvalidArgument(source + ": metadata 'general.alignment' is " + std::to_string(align) +
                           ", expected a power of two");
  }
  return align;
}

}  // namespace openrl::formats::gguf::internal
