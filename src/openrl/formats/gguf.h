// Reading and writing GGUF files (llama.cpp's model format) without any tensor library.
//
// A GGUF file is: magic "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata count;
// the metadata key/value pairs (key: u64 length + UTF-8 bytes; u32 value type; value); one
// info per tensor (name, u32 n_dims, u64 dims[n_dims] innermost first, u32 ggml type, u64 offset
// relative to the data section); padding to `general.alignment` (default 32); the data section.
// Every tensor's offset must be a multiple of the alignment. All integers are little-endian.
//
// GgufFile::Open maps a file read-only and validates every header field (counts and lengths
// against the bytes left, value types, array element types, dims and their product, tensor
// types, offsets, alignment, overlaps, tensors past the end). Errors name the file, the key or
// tensor and the field at fault. GgufFile::Parse is the pure parser underneath (the fuzz target
// calls it). Quantized blocks are turned into floats by gguf_quant.h; GgufWriter writes files.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/formats/mapped_file.h"

namespace openrl::formats::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint64_t kDefaultAlignment = 32;

// ggml tensor types (the numbers stored in the file).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

// Elements per block and bytes per block of a type (1 and the item size for plain types).
struct TypeTraits {
  std::string_view name;  // "Q4_K", as the gguf Python package spells it
  int64_t block_size = 0;
  int64_t type_size = 0;
};
// Traits of a known type; nullopt for a number this reader does not know.
std::optional<TypeTraits> Traits(uint32_t type);
// "Q4_K" -> type; case-insensitive; nullopt when unknown.
std::optional<GgmlType> ParseTypeName(std::string_view name);

// Metadata value types (the numbers stored in the file).
enum class ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};
std::string_view ValueTypeName(ValueType t);  // "UINT32", "STRING", ... like the gguf package

// One metadata value. Integers of every width are held as int64_t/uint64_t, floats as double,
// but `type` remembers what the file said (and what a writer will write). Arrays hold their
// element type and the elements in the vector matching it (arrays of arrays are refused).
struct Value {
  ValueType type = ValueType::kU32;
  ValueType element_type = ValueType::kU32;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<uint64_t>,
               std::vector<int64_t>, std::vector<double>, std::vector<bool>,
               std::vector<std::string>>
      data;

  static Value U32(uint32_t v);
  static Value I32(int32_t v);
  static Value U64(uint64_t v);
  static Value F32(float v);
  static Value Bool(bool v);
  static Value String(std::string v);
  static Value StringArray(std::vector<std::string> v);
  static Value I32Array(std::vector<int64_t> v);
  static Value F32Array(std::vector<double> v);
  size_t array_size() const;  // 0 for scalars
};

// Metadata in file order with typed accessors. Accessors fail with INVALID_ARGUMENT naming the
// source and the key when the value has another type, NOT_FOUND when the key is absent.
class Metadata {
 public:
  void Set(std::string key, Value value);  // replaces an existing key in place
  bool Contains(std::string_view key) const;
  const Value* Find(std::string_view key) const;
  const std::vector<std::pair<std::string, Value>>& entries() const { return entries_; }

  // Any unsigned or non-negative signed integer type.
  Result<uint64_t> GetUint(std::string_view key) const;
  Result<double> GetFloat(std::string_view key) const;  // F32 or F64
  Result<bool> GetBool(std::string_view key) const;
  Result<std::string> GetString(std::string_view key) const;
  Result<std::vector<std::string>> GetStringArray(std::string_view key) const;
  Result<std::vector<int64_t>> GetIntArray(std::string_view key) const;  // any integer elements
  Result<std::vector<double>> GetFloatArray(std::string_view key) const;  // F32/F64 elements

  std::string source;  // names the file in errors

 private:
  std::vector<std::pair<std::string, Value>> entries_;
  std::unordered_map<std::string, size_t> index_;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the row length (innermost)
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t nbytes = 0;  // numel / block_size * type_size

  int64_t numel() const;
  // PyTorch / numpy order: dims reversed.
  std::vector<int64_t> shape() const;
};

struct Header {
  uint32_t version = 3;
  uint64_t alignment = kDefaultAlignment;
  uint64_t data_start = 0;  // file offset of the data section
  Metadata metadata;
  std::vector<TensorInfo> tensors;  // in file order

  const TensorInfo* Find(std::string_view name) const;

 private:
  friend class GgufFile;
  std::unordered_map<std::string, size_t> index_;
};

class GgufFile {
 public:
  // Maps `path` read-only and validates it.
  static Result<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses and validates a file of `file_size` bytes whose first bytes are `bytes` (the whole
  // file, or at least its header). `source` names the file in errors.
  static Result<Header> Parse(std::span<const uint8_t> bytes, uint64_t file_size,
                              std::string_view source);

  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  const Header& header() const { return header_; }
  const Metadata& metadata() const { return header_.metadata; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const TensorInfo* Find(std::string_view name) const { return header_.Find(name); }
  // The raw (possibly quantized) bytes of a tensor, straight from the mapping.
  std::span<const uint8_t> Data(const TensorInfo& info) const;

 private:
  GgufFile(std::string path, MappedFile map, Header header);
  std::string path_;
  MappedFile map_;
  Header header_;
};

// Writes GGUF v3 files: metadata in insertion order ("general.alignment" honoured when set),
// tensors in insertion order, each aligned. Written to a temporary file, fsynced and renamed.
class GgufWriter {
 public:
  Metadata& metadata() { return metadata_; }
  // `dims` in ggml order; `data` must be exactly the size the type and dims call for and stay
  // valid until Write returns. Refuses duplicate names.
  Status AddTensor(std::string name, std::vector<int64_t> dims, GgmlType type,
                   std::span<const uint8_t> data);
  // Same, owning the bytes.
  Status AddTensor(std::string name, std::vector<int64_t> dims, GgmlType type,
                   std::vector<uint8_t> data);
  Status Write(const std::string& path) const;

 private:
  struct Entry {
    TensorInfo info;
    std::span<const uint8_t> data;
    std::shared_ptr<std::vector<uint8_t>> owned;
  };
  Metadata metadata_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace openrl::formats::gguf
