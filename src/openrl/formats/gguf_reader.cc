// GgufFile: the validating GGUF parser and the read-only mapping around it.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "openrl/formats/gguf.h"
#include "openrl/formats/gguf_internal.h"
#include "openrl/formats/utf8.h"

namespace openrl::formats::gguf {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

using internal::Quote;

// The smallest encodings, used to refuse counts the remaining bytes cannot hold before anything
// is allocated for them: a metadata entry is a key length, a value type and at least one byte;
// a tensor info is a name length, a dimension count, a type and an offset.
constexpr uint64_t kMinMetadataEntryBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
constexpr uint32_t kMaxValueType = static_cast<uint32_t>(ValueType::kF64);

// Bytes a value of type `t` takes at least (its exact size for fixed-size scalars).
uint64_t MinValueBytes(ValueType t) {
  switch (t) {
    case ValueType::kU8:
    case ValueType::kI8:
    case ValueType::kBool:
      return 1;
    case ValueType::kU16:
    case ValueType::kI16:
      return 2;
    case ValueType::kU32:
    case ValueType::kI32:
    case ValueType::kF32:
      return 4;
    case ValueType::kU64:
    case ValueType::kI64:
    case ValueType::kF64:
    case ValueType::kString:
      return 8;
    case ValueType::kArray:
      return 4 + 8;
  }
  return 1;
}

// Names of ggml types the gguf package knows and this reader does not, for error messages.
std::string_view UnsupportedTypeName(uint32_t type) {
  switch (type) {
    case 16:
      return "IQ2_XXS";
    case 17:
      return "IQ2_XS";
    case 18:
      return "IQ3_XXS";
    case 19:
      return "IQ1_S";
    case 20:
      return "IQ4_NL";
    case 21:
      return "IQ3_S";
    case 22:
      return "IQ2_S";
    case 23:
      return "IQ4_XS";
    case 29:
      return "IQ1_M";
    case 34:
      return "TQ1_0";
    case 35:
      return "TQ2_0";
    case 39:
      return "MXFP4";
    case 40:
      return "NVFP4";
    case 41:
      return "Q1_0";
    default:
      return {};
  }
}

// Reads little-endian fields front to back. Every read is checked against the file size (a
// short file is DATA_LOSS) and against the bytes Parse was given (too few is INVALID_ARGUMENT).
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, uint64_t file_size, const std::string& source)
      : bytes_(bytes), file_size_(file_size), source_(source) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return file_size_ - pos_; }
  const std::string& source() const { return source_; }

  // OK when `n` more bytes can be read; else an error saying `what` needed them.
  Status Need(uint64_t n, std::string_view what) const {
    if (n > left()) {
      return DataLoss(source_ + ": " + std::string(what) + " needs " + std::to_string(n) +
                      " bytes at offset " + std::to_string(pos_) + " but the file ends at " +
                      std::to_string(file_size_) + " (truncated file?)");
    }
    if (pos_ + n > bytes_.size()) {
      return InvalidArgument(source_ + ": Parse needs the first " + std::to_string(pos_ + n) +
                             " bytes, got " + std::to_string(bytes_.size()));
    }
    return Status::Ok();
  }
  // Refuses `count` items of at least `min_each` bytes when the rest of the file cannot hold them.
  Status CheckCount(uint64_t count, uint64_t min_each, std::string_view what) const {
    if (count <= left() / min_each) return Status::Ok();
    return DataLoss(source_ + ": " + std::string(what) + " " + std::to_string(count) + " cannot fit in the " +
                    std::to_string(left()) + " bytes left after offset " + std::to_string(pos_) +
                    " (truncated or corrupt file?)");
  }
  // Unchecked: call Need first.
  template <typename T>
  T Take() {
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <typename T>
  Result<T> Read(std::string_view what) {
    OPENRL_RETURN_IF_ERROR(Need(sizeof(T), what));
    return Take<T>();
  }
  Result<std::string> ReadString(std::string_view what) {
    OPENRL_ASSIGN_OR_RETURN(const uint64_t len, Read<uint64_t>(what));
    if (len > left()) {
      return DataLoss(source_ + ": " + std::string(what) + ": string length " + std::to_string(len) +
                      " runs past the end of the " + std::to_string(file_size_) +
                      "-byte file (truncated or corrupt file?)");
    }
    OPENRL_RETURN_IF_ERROR(Need(len, what));
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  uint64_t file_size_;
  const std::string& source_;
  uint64_t pos_ = 0;
};

// Reads one scalar of fixed size into the variant alternative its type calls for.
decltype(Value::data) TakeScalar(Cursor& c, ValueType t) {
  switch (t) {
    case ValueType::kU8:
      return uint64_t{c.Take<uint8_t>()};
    case ValueType::kI8:
      return int64_t{c.Take<int8_t>()};
    case ValueType::kU16:
      return uint64_t{c.Take<uint16_t>()};
    case ValueType::kI16:
      return int64_t{c.Take<int16_t>()};
    case ValueType::kU32:
      return uint64_t{c.Take<uint32_t>()};
    case ValueType::kI32:
      return int64_t{c.Take<int32_t>()};
    case ValueType::kF32:
      return static_cast<double>(c.Take<float>());
    case ValueType::kU64:
      return c.Take<uint64_t>();
    case ValueType::kI64:
      return c.Take<int64_t>();
    case ValueType::kF64:
      return c.Take<double>();
    default:
      return uint64_t{c.Take<uint8_t>()};  // kBool, checked by the caller
  }
}

Status BadBool(const Cursor& c, uint8_t byte, const std::string& where) {
  return InvalidArgument(c.source() + ": " + where + ": BOOL byte " + std::to_string(byte) + " at offset " +
                         std::to_string(c.pos() - 1) + " is neither 0 nor 1");
}

Result<decltype(Value::data)> ParseScalar(Cursor& c, ValueType t, const std::string& where) {
  using Data = decltype(Value::data);
  if (t == ValueType::kString) {
    OPENRL_ASSIGN_OR_RETURN(std::string s, c.ReadString(where));
    return Data(std::move(s));
  }
  OPENRL_RETURN_IF_ERROR(c.Need(MinValueBytes(t), where));
  if (t == ValueType::kBool) {
    const auto byte = c.Take<uint8_t>();
    if (byte > 1) return BadBool(c, byte, where);
    return Data(byte == 1);
  }
  return TakeScalar(c, t);
}

// Reads `count` elements of v.element_type into v.data as a `Vec` (the vector alternative that
// element type maps to).
template <typename Vec>
Result<Value> ParseArrayData(Cursor& c, uint64_t count, const std::string& where, Value& v) {
  using Elem = typename Vec::value_type;
  Vec& out = v.data.emplace<Vec>();
  if constexpr (!std::is_same_v<Elem, std::string> && !std::is_same_v<Elem, bool>) {
    out.reserve(count);  // CheckCount bounded count by the bytes left
  }
  for (uint64_t i = 0; i < count; ++i) {
    OPENRL_ASSIGN_OR_RETURN(auto scalar, ParseScalar(c, v.element_type, where));
    out.push_back(std::get<Elem>(std::move(scalar)));
  }
  return std::move(v);
}

Result<Value> ParseArray(Cursor& c, const std::string& where) {
  OPENRL_ASSIGN_OR_RETURN(const uint32_t raw, c.Read<uint32_t>(where + ": array element type"));
  if (raw > kMaxValueType || raw == static_cast<uint32_t>(ValueType::kArray)) {
    return InvalidArgument(c.source() + ": " + where + ": array element type " + std::to_string(raw) +
                           (raw == static_cast<uint32_t>(ValueType::kArray)
                                ? " (ARRAY): arrays of arrays are not supported"
                                : " is not a GGUF value type"));
  }
  Value v;
  v.type = ValueType::kArray;
  v.element_type = static_cast<ValueType>(raw);
  OPENRL_ASSIGN_OR_RETURN(const uint64_t count, c.Read<uint64_t>(where + ": array length"));
  const std::string what =
      where + ": array of " + std::string(ValueTypeName(v.element_type)) + " with length";
  OPENRL_RETURN_IF_ERROR(c.CheckCount(count, MinValueBytes(v.element_type), what));
  const std::string element = where + ": array element";
  switch (v.element_type) {
    case ValueType::kU8:
    case ValueType::kU16:
    case ValueType::kU32:
    case ValueType::kU64:
      return ParseArrayData<std::vector<uint64_t>>(c, count, element, v);
    case ValueType::kI8:
    case ValueType::kI16:
    case ValueType::kI32:
    case ValueType::kI64:
      return ParseArrayData<std::vector<int64_t>>(c, count, element, v);
    case ValueType::kF32:
    case ValueType::kF64:
      return ParseArrayData<std::vector<double>>(c, count, element, v);
    case ValueType::kBool:
      return ParseArrayData<std::vector<bool>>(c, count, element, v);
    default:
      return ParseArrayData<std::vector<std::string>>(c, count, element, v);
  }
}

Result<Value> ParseValue(Cursor& c, uint32_t raw_type, const std::string& where) {
  if (raw_type > kMaxValueType) {
    return InvalidArgument(c.source() + ": " + where + ": value type " + std::to_string(raw_type) +
                           " is not a GGUF value type (0 to " + std::to_string(kMaxValueType) + ")");
  }
  const auto type = static_cast<ValueType>(raw_type);
  if (type == ValueType::kArray) return ParseArray(c, where);
  Value v;
  v.type = type;
  OPENRL_ASSIGN_OR_RETURN(v.data, ParseScalar(c, type, where));
  return v;
}

Status CheckUtf8(const Cursor& c, std::string_view s, const std::string& what) {
  const int64_t bad = FindInvalidUtf8({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  if (bad < 0) return Status::Ok();
  return InvalidArgument(c.source() + ": " + what + " is not valid UTF-8 (byte " + std::to_string(bad) + ")");
}

Status ParseMetadata(Cursor& c, uint64_t count, Metadata& md) {
  OPENRL_RETURN_IF_ERROR(c.CheckCount(count, kMinMetadataEntryBytes, "metadata count"));
  for (uint64_t i = 0; i < count; ++i) {
    const std::string entry = "metadata entry #" + std::to_string(i);
    OPENRL_ASSIGN_OR_RETURN(std::string key, c.ReadString(entry + " key"));
    OPENRL_RETURN_IF_ERROR(CheckUtf8(c, key, entry + " key"));
    const std::string where = "metadata " + Quote(key);
    if (md.Contains(key)) return InvalidArgument(c.source() + ": " + where + " appears twice");
    OPENRL_ASSIGN_OR_RETURN(const uint32_t type, c.Read<uint32_t>(where + ": value type"));
    OPENRL_ASSIGN_OR_RETURN(Value value, ParseValue(c, type, where));
    md.Set(std::move(key), std::move(value));
  }
  return Status::Ok();
}

Status CheckType(const Cursor& c, uint32_t type, const std::string& where) {
  if (Traits(type).has_value()) return Status::Ok();
  const std::string_view known = UnsupportedTypeName(type);
  return InvalidArgument(
      c.source() + ": " + where + ": type " + std::to_string(type) +
      (known.empty() ? " is not a known ggml type" : " (" + std::string(known) + ") is not supported"));
}

Result<TensorInfo> ParseTensorInfo(Cursor& c, uint64_t index) {
  const std::string entry = "tensor #" + std::to_string(index);
  TensorInfo info;
  OPENRL_ASSIGN_OR_RETURN(info.name, c.ReadString(entry + " name"));
  OPENRL_RETURN_IF_ERROR(CheckUtf8(c, info.name, entry + " name"));
  const std::string where = "tensor " + Quote(info.name);
  OPENRL_ASSIGN_OR_RETURN(const uint32_t n_dims, c.Read<uint32_t>(where + ": dimension count"));
  if (n_dims > internal::kMaxDims) {
    return InvalidArgument(c.source() + ": " + where + ": has " + std::to_string(n_dims) +
                           " dimensions, at most " + std::to_string(internal::kMaxDims) + " are allowed");
  }
  for (uint32_t d = 0; d < n_dims; ++d) {
    OPENRL_ASSIGN_OR_RETURN(const uint64_t dim, c.Read<uint64_t>(where + ": dims"));
    if (dim > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidArgument(c.source() + ": " + where + ": dims[" + std::to_string(d) + "] " +
                             std::to_string(dim) + " exceeds INT64_MAX");
    }
    info.dims.push_back(static_cast<int64_t>(dim));
  }
  OPENRL_ASSIGN_OR_RETURN(const uint32_t type, c.Read<uint32_t>(where + ": type"));
  OPENRL_RETURN_IF_ERROR(CheckType(c, type, where));
  info.type = static_cast<GgmlType>(type);
  OPENRL_ASSIGN_OR_RETURN(info.offset, c.Read<uint64_t>(where + ": offset"));
  OPENRL_ASSIGN_OR_RETURN(info.nbytes,
                          internal::TensorBytes(info.dims, *Traits(type), c.source() + ": " + where + ": "));
  return info;
}

// Offsets aligned, data inside the file, no two tensors sharing bytes.
Status CheckPlacement(const std::string& source, const Header& h, uint64_t file_size) {
  for (const TensorInfo& t : h.tensors) {
    const std::string where = source + ": tensor " + Quote(t.name) + ": offset " + std::to_string(t.offset);
    if (t.offset % h.alignment != 0) {
      return InvalidArgument(where + " is not a multiple of the alignment " + std::to_string(h.alignment));
    }
    uint64_t end = 0;
    if (__builtin_add_overflow(h.data_start, t.offset, &end) || __builtin_add_overflow(end, t.nbytes, &end) ||
        end > file_size) {
      return DataLoss(where + " (+ " + std::to_string(t.nbytes) + " bytes from the data section at " +
                      std::to_string(h.data_start) + ") runs past the end of the file (" +
                      std::to_string(file_size) + " bytes; truncated file?)");
    }
  }
  std::vector<const TensorInfo*> sorted;
  for (const TensorInfo& t : h.tensors) {
    if (t.nbytes > 0) sorted.push_back(&t);
  }
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const TensorInfo& prev = *sorted[i - 1];
    const TensorInfo& t = *sorted[i];
    if (t.offset < prev.offset + prev.nbytes) {
      return InvalidArgument(source + ": tensor " + Quote(t.name) + ": bytes [" + std::to_string(t.offset) +
                             ", " + std::to_string(t.offset + t.nbytes) + ") overlap tensor " +
                             Quote(prev.name) + " [" + std::to_string(prev.offset) + ", " +
                             std::to_string(prev.offset + prev.nbytes) + ")");
    }
  }
  return Status::Ok();
}

// The four magic bytes as text, non-printable ones escaped: "GGUF", "\\x00\\x00\\x00\\x00".
std::string MagicText(uint32_t magic) {
  std::string text;
  for (int i = 0; i < 4; ++i) {
    const auto ch = static_cast<unsigned char>(magic >> (8 * i));
    if (ch >= 0x20 && ch < 0x7F) {
      text += static_cast<char>(ch);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      text += {'\\', 'x', kHex[ch >> 4], kHex[ch & 15]};
    }
  }
  return text;
}

// Magic, version and the two counts.
Status ParseStart(Cursor& c, Header& h, uint64_t& tensor_count, uint64_t& kv_count) {
  OPENRL_ASSIGN_OR_RETURN(const uint32_t magic, c.Read<uint32_t>("GGUF magic"));
  if (magic != kMagic) {
    return InvalidArgument(c.source() + ": bad magic '" + MagicText(magic) +
                           "' (expected 'GGUF'): not a GGUF file");
  }
  OPENRL_ASSIGN_OR_RETURN(h.version, c.Read<uint32_t>("version"));
  if (h.version != 2 && h.version != 3) {
    const bool swapped = (h.version & 0xFFFF) == 0;
    return InvalidArgument(c.source() + ": GGUF version " + std::to_string(h.version) +
                           " is not supported (versions 2 and 3 are)" +
                           (swapped ? "; the file looks big-endian, only little-endian is read" : ""));
  }
  OPENRL_ASSIGN_OR_RETURN(tensor_count, c.Read<uint64_t>("tensor count"));
  OPENRL_ASSIGN_OR_RETURN(kv_count, c.Read<uint64_t>("metadata count"));
  return Status::Ok();
}

}  // namespace

Result<Header> GgufFile::Parse(std::span<const uint8_t> bytes, uint64_t file_size,
                               std::string_view source_view) {
  const std::string source(source_view);
  Cursor c(bytes, file_size, source);
  Header h;
  h.metadata.source = source;
  uint64_t tensor_count = 0;
  uint64_t kv_count = 0;
  OPENRL_RETURN_IF_ERROR(ParseStart(c, h, tensor_count, kv_count));
  OPENRL_RETURN_IF_ERROR(ParseMetadata(c, kv_count, h.metadata));
  OPENRL_ASSIGN_OR_RETURN(h.alignment, internal::AlignmentOf(h.metadata, source));
  OPENRL_RETURN_IF_ERROR(c.CheckCount(tensor_count, kMinTensorInfoBytes, "tensor count"));
  h.tensors.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    OPENRL_ASSIGN_OR_RETURN(TensorInfo info, ParseTensorInfo(c, i));
    if (!h.index_.emplace(info.name, h.tensors.size()).second) {
      return InvalidArgument(source + ": tensor " + Quote(info.name) + " appears twice");
    }
    h.tensors.push_back(std::move(info));
  }
  if (!internal::AlignUp(c.pos(), h.alignment, &h.data_start)) {
    return InvalidArgument(source + ": data section start overflows");  // unreachable: pos < 2^63
  }
  OPENRL_RETURN_IF_ERROR(CheckPlacement(source, h, file_size));
  return h;
}

Result<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(MappedFile map, MappedFile::Open(path));
  OPENRL_ASSIGN_OR_RETURN(Header header, Parse(map.bytes(), map.size(), path));
  return std::unique_ptr<GgufFile>(new GgufFile(path, std::move(map), std::move(header)));
}

GgufFile::GgufFile(std::string path, MappedFile map, Header header)
    : path_(std::move(path)), map_(std::move(map)), header_(std::move(header)) {}

GgufFile::~GgufFile() = default;

std::span<const uint8_t> GgufFile::Data(const TensorInfo& info) const {
  return map_.bytes().subspan(header_.data_start + info.offset, static_cast<size_t>(info.nbytes));
}

}  // namespace openrl::formats::gguf
