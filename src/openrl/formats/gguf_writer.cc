// GgufWriter: serialises metadata and tensors as GGUF v3 and writes the file atomically.
#include <bit>
#include <cstring>
#include <limits>

#include "openrl/core/fs.h"
#include "openrl/formats/gguf.h"
#include "openrl/formats/gguf_internal.h"
#include "openrl/formats/utf8.h"

namespace openrl::formats::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF writer assumes a little-endian host");

using internal::Quote;

template <typename T>
void Put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

void PutString(std::string& out, std::string_view s) {
  Put<uint64_t>(out, s.size());
  out.append(s);
}

Status Mismatch(const std::string& where, ValueType t, std::string_view held) {
  return InvalidArgument(where + ": a " + std::string(ValueTypeName(t)) + " value cannot hold " +
                         std::string(held));
}

template <typename T>
Status OutOfRange(const std::string& where, ValueType t, T v) {
  return InvalidArgument(where + ": " + std::to_string(v) + " does not fit in " +
                         std::string(ValueTypeName(t)));
}

Status PutUnsigned(std::string& out, ValueType t, uint64_t v, const std::string& where) {
  switch (t) {
    case ValueType::kU8:
      if (v > UINT8_MAX) return OutOfRange(where, t, v);
      Put<uint8_t>(out, static_cast<uint8_t>(v));
      return Status::Ok();
    case ValueType::kU16:
      if (v > UINT16_MAX) return OutOfRange(where, t, v);
      Put<uint16_t>(out, static_cast<uint16_t>(v));
      return Status::Ok();
    case ValueType::kU32:
      if (v > UINT32_MAX) return OutOfRange(where, t, v);
      Put<uint32_t>(out, static_cast<uint32_t>(v));
      return Status::Ok();
    case ValueType::kU64:
      Put<uint64_t>(out, v);
      return Status::Ok();
    default:
      return Mismatch(where, t, "an unsigned integer");
  }
}

Status PutSigned(std::string& out, ValueType t, int64_t v, const std::string& where) {
  switch (t) {
    case ValueType::kI8:
      if (v < INT8_MIN || v > INT8_MAX) return OutOfRange(where, t, v);
      Put<int8_t>(out, static_cast<int8_t>(v));
      return Status::Ok();
    case ValueType::kI16:
      if (v < INT16_MIN || v > INT16_MAX) return OutOfRange(where, t, v);
      Put<int16_t>(out, static_cast<int16_t>(v));
      return Status::Ok();
    case ValueType::kI32:
      if (v < INT32_MIN || v > INT32_MAX) return OutOfRange(where, t, v);
      Put<int32_t>(out, static_cast<int32_t>(v));
      return Status::Ok();
    case ValueType::kI64:
      Put<int64_t>(out, v);
      return Status::Ok();
    default:
      return Mismatch(where, t, "a signed integer");
  }
}

// One scalar (or array element) `v`, written as type `t`.
template <typename T>
Status PutScalar(std::string& out, ValueType t, const T& v, const std::string& where) {
  if constexpr (std::is_same_v<T, uint64_t>) {
    return PutUnsigned(out, t, v, where);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return PutSigned(out, t, v, where);
  } else if constexpr (std::is_same_v<T, double>) {
    if (t == ValueType::kF32) {
      Put<float>(out, static_cast<float>(v));
    } else if (t == ValueType::kF64) {
      Put<double>(out, v);
    } else {
      return Mismatch(where, t, "a float");
    }
    return Status::Ok();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (t != ValueType::kBool) return Mismatch(where, t, "a bool");
    Put<uint8_t>(out, v ? 1 : 0);
    return Status::Ok();
  } else {
    static_assert(std::is_same_v<T, std::string>);
    if (t != ValueType::kString) return Mismatch(where, t, "a string");
    PutString(out, v);
    return Status::Ok();
  }
}

Status PutValue(std::string& out, const Value& value, const std::string& where) {
  if (value.type == ValueType::kArray && value.element_type == ValueType::kArray) {
    return InvalidArgument(where + ": arrays of arrays are not supported");
  }
  Put<uint32_t>(out, static_cast<uint32_t>(value.type));
  return std::visit(
      [&](const auto& data) -> Status {
        using T = std::decay_t<decltype(data)>;
        constexpr bool kIsVector = requires { typename T::value_type; }
        &&!std::is_same_v<T, std::string>;
        if constexpr (kIsVector) {
          if (value.type != ValueType::kArray) return Mismatch(where, value.type, "an array");
          Put<uint32_t>(out, static_cast<uint32_t>(value.element_type));
          Put<uint64_t>(out, data.size());
          for (const typename T::value_type& element : data) {
            OPENRL_RETURN_IF_ERROR(PutScalar(out, value.element_type, element, where));
          }
          return Status::Ok();
        } else {
          if (value.type == ValueType::kArray) return Mismatch(where, value.type, "a scalar");
          return PutScalar(out, value.type, data, where);
        }
      },
      value.data);
}

Status PutMetadata(std::string& out, const Metadata& md, const std::string& path) {
  for (const auto& [key, value] : md.entries()) {
    const std::string where = path + ": metadata " + Quote(key);
    if (!IsValidUtf8(key)) return InvalidArgument(where + ": key is not valid UTF-8");
    PutString(out, key);
    OPENRL_RETURN_IF_ERROR(PutValue(out, value, where));
  }
  return Status::Ok();
}

}  // namespace

Status GgufWriter::AddTensor(std::string name, std::vector<int64_t> dims, GgmlType type,
                             std::span<const uint8_t> data) {
  const std::string where = "GGUF writer: tensor " + Quote(name) + ": ";
  if (name.empty()) return InvalidArgument("GGUF writer: tensor names must not be empty");
  if (!IsValidUtf8(name)) return InvalidArgument(where + "name is not valid UTF-8");
  if (index_.contains(name)) return InvalidArgument(where + "added twice");
  const auto traits = Traits(static_cast<uint32_t>(type));
  if (!traits) {
    return InvalidArgument(where + "type " + std::to_string(static_cast<uint32_t>(type)) +
                           " is not a known ggml type");
  }
  OPENRL_ASSIGN_OR_RETURN(const uint64_t nbytes, internal::TensorBytes(dims, *traits, where));
  if (data.size() != nbytes) {
    return InvalidArgument(where + "data holds " + std::to_string(data.size()) + " bytes but dims " +
                           internal::DimsToString(dims) + " of " + std::string(traits->name) + " need " +
                           std::to_string(nbytes));
  }
  Entry entry;
  entry.info.name = name;
  entry.info.dims = std::move(dims);
  entry.info.type = type;
  entry.info.nbytes = nbytes;
  entry.data = data;
  index_.emplace(std::move(name), entries_.size());
  entries_.push_back(std::move(entry));
  return Status::Ok();
}

Status GgufWriter::AddTensor(std::string name, std::vector<int64_t> dims, GgmlType type,
                             std::vector<uint8_t> data) {
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(data));
  OPENRL_RETURN_IF_ERROR(AddTensor(std::move(name), std::move(dims), type, std::span<const uint8_t>(*owned)));
  entries_.back().owned = std::move(owned);  // the span points into the shared buffer
  return Status::Ok();
}

Status GgufWriter::Write(const std::string& path) const {
  OPENRL_ASSIGN_OR_RETURN(const uint64_t alignment, internal::AlignmentOf(metadata_, path));
  std::string out;
  Put<uint32_t>(out, kMagic);
  Put<uint32_t>(out, 3);
  Put<uint64_t>(out, entries_.size());
  Put<uint64_t>(out, metadata_.entries().size());
  OPENRL_RETURN_IF_ERROR(PutMetadata(out, metadata_, path));
  // Like the gguf package: each tensor's data is padded to the alignment, the last one too.
  uint64_t data_bytes = 0;
  for (const Entry& e : entries_) {
    PutString(out, e.info.name);
    Put<uint32_t>(out, static_cast<uint32_t>(e.info.dims.size()));
    for (int64_t d : e.info.dims) Put<uint64_t>(out, static_cast<uint64_t>(d));
    Put<uint32_t>(out, static_cast<uint32_t>(e.info.type));
    Put<uint64_t>(out, data_bytes);
    uint64_t padded = 0;
    if (!internal::AlignUp(e.info.nbytes, alignment, &padded) ||
        __builtin_add_overflow(data_bytes, padded, &data_bytes)) {
      return InvalidArgument(path + ": tensor data size overflows");
    }
  }
  uint64_t data_start = 0;
  uint64_t total = 0;
  if (!internal::AlignUp(out.size(), alignment, &data_start) ||
      __builtin_add_overflow(data_start, data_bytes, &total) || total > out.max_size()) {
    return InvalidArgument(path + ": file size overflows");
  }
  out.reserve(static_cast<size_t>(total));
  out.resize(static_cast<size_t>(data_start), '\0');
  for (const Entry& e : entries_) {
    out.append(reinterpret_cast<const char*>(e.data.data()), e.data.size());
    uint64_t padded = 0;
    internal::AlignUp(out.size() - data_start, alignment, &padded);  // bounded by `total`
    out.resize(static_cast<size_t>(data_start + padded), '\0');
  }
  return fs::WriteFileAtomic(path, out);
}

}  // namespace openrl::formats::gguf
