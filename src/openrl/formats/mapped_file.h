// A file mapped read-only (MAP_PRIVATE) for the readers in this module; unmapped when destroyed.
// The file must not be truncated while mapped. An empty file gives an empty span (mmap cannot map
// zero bytes), so parsers word the error themselves.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "openrl/core/status.h"

namespace openrl::formats {

class MappedFile {
 public:
  // NOT_FOUND, PERMISSION_DENIED or INVALID_ARGUMENT ("not a regular file"), naming `path`.
  static Result<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {base_, size_}; }
  uint64_t size() const { return size_; }

 private:
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

}  // namespace openrl::formats
