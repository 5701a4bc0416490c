// Reading safetensors files without any tensor library.
//
// A safetensors file is: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header
// {"<name>": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the data buffer; offsets are relative to the buffer's start.
//
// SafetensorsFile::Open maps a file read-only and validates every header field the way the
// reference implementation (safetensors 0.8) does, a little more strictly (duplicate keys and
// unknown tensor fields are refused). Tensors come back as zero-copy views into the mapping.
// SafetensorsFile::ParseHeader is the pure parser underneath (the fuzz target calls it).
// Writing lives in safetensors_writer.h, sharded checkpoints in sharded_checkpoint.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/formats/dtype.h"
#include "openrl/formats/mapped_file.h"

namespace openrl::formats {

// The reference refuses headers above 100 MB.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// One tensor's header entry. Offsets are relative to the data buffer.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;

  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// A validated header.
struct SafetensorsHeader {
  uint64_t header_bytes = 0;   // N, including any padding
  uint64_t data_start = 0;     // 8 + N: file offset of the data buffer
  uint64_t data_bytes = 0;     // size of the data buffer (file size - data_start)
  std::vector<TensorInfo> tensors;  // in data order (ascending offsets)
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent

  // The entry named `name`, or nullptr.
  const TensorInfo* Find(std::string_view name) const;

 private:
  friend class SafetensorsFile;
  std::unordered_map<std::string, size_t> index_;
};

// A tensor inside a mapped file; valid while its SafetensorsFile lives.
class TensorView {
 public:
  TensorView(const TensorInfo* info, const uint8_t* data) : info_(info), data_(data) {}

  const std::string& name() const { return info_->name; }
  Dtype dtype() const { return info_->dtype; }
  const std::vector<int64_t>& shape() const { return info_->shape; }
  int64_t numel() const { return info_->numel(); }
  uint64_t nbytes() const { return info_->nbytes(); }
  // Little-endian, C-order element bytes, straight from the mapping.
  std::span<const uint8_t> data() const { return {data_, static_cast<size_t>(info_->nbytes())}; }
  const TensorInfo& info() const { return *info_; }

 private:
  const TensorInfo* info_;
  const uint8_t* data_;
};

class SafetensorsFile {
 public:
  // Maps `path` read-only (MAP_PRIVATE) and validates its header. Errors name the path and the
  // tensor and field at fault. The file must not be truncated while it stays open.
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // Parses and validates the header of a file of `file_size` bytes whose first bytes are
  // `bytes` (at least 8 + N of them, or the whole file). `source` names the file in errors.
  static Result<SafetensorsHeader> ParseHeader(std::span<const uint8_t> bytes, uint64_t file_size,
                                               std::string_view source);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  // Tensor names in data order (the order their bytes lie in the file).
  std::vector<std::string> names() const;
  size_t size() const { return header_.tensors.size(); }
  // All tensors in data order.
  const std::vector<TensorView>& tensors() const { return views_; }
  bool Contains(std::string_view name) const { return header_.Find(name) != nullptr; }
  // NOT_FOUND naming the file when absent.
  Result<TensorView> Get(std::string_view name) const;
  // The whole mapped file.
  std::span<const uint8_t> bytes() const { return map_.bytes(); }

 private:
  SafetensorsFile(std::string path, MappedFile map, SafetensorsHeader header);

  std::string path_;
  MappedFile map_;
  SafetensorsHeader header_;
  std::vector<TensorView> views_;
};

// "[64, 32]"
std::string ShapeToString(std::span<const int64_t> shape);

}  // namespace openrl::formats
