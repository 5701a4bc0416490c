// Filesystem helpers: read a whole file, write one atomically (temp file in the same directory,
// fsync, rename, fsync the directory), create directories. Errors name the path and the step.
// The system calls WriteFileAtomic makes go through FileOps, a seam tests override to inject
// faults (a full disk, a short write, a failed rename).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl::fs {

// The POSIX calls behind WriteFileAtomic; each returns what the POSIX call returns and sets errno.
class FileOps {
 public:
  virtual ~FileOps() = default;
  virtual int Open(const char* path, int flags, mode_t mode);
  virtual ssize_t Write(int fd, const void* buf, size_t n);
  virtual int Fsync(int fd);
  virtual int Close(int fd);
  virtual int Rename(const char* from, const char* to);
};

FileOps& DefaultFileOps();

Result<std::string> ReadFile(const std::string& path);
// Either the old contents or the new contents are at `path` afterwards, never a mix, and the
// new contents survive a crash once this returns OK. No temporary file is left behind on error.
Status WriteFileAtomic(const std::string& path, std::string_view data, FileOps& ops = DefaultFileOps());
// mkdir -p; OK if the directory already exists.
Status CreateDirectories(const std::string& path);
bool Exists(const std::string& path);
// OK if the file did not exist.
Status RemoveFile(const std::string& path);

}  // namespace openrl::fs
