// Filesystem helpers: read a whole file, write one atomically (temp file in the same directory,
// fsync, rename, fsync the directory), publish a whole directory atomically, create directories.
// Errors name the path and the step. The system calls WriteFileAtomic and PublishDirectory make
// go through FileOps, a seam tests override to inject faults (a full disk, a short write, a failed
// rename, a filesystem without RENAME_EXCHANGE).
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
  // renameat2(RENAME_EXCHANGE): swaps two existing paths in one step. EINVAL where the filesystem
  // cannot (NFS, some FUSE filesystems).
  virtual int Exchange(const char* a, const char* b);
};

FileOps& DefaultFileOps();

Result<std::string> ReadFile(const std::string& path);
// Either the old contents or the new contents are at `path` afterwards, never a mix, and the
// new contents survive a crash once this returns OK. No temporary file is left behind on error.
Status WriteFileAtomic(const std::string& path, std::string_view data, FileOps& ops = DefaultFileOps());
// fsync every file and directory under `dir`, and `dir` itself, so that a rename of `dir` after it
// publishes contents that survive a power loss.
Status SyncTree(const std::string& dir);
// fsync the directory `dir` itself (its list of entries), e.g. after a rename inside it.
Status SyncDirectory(const std::string& dir);

// Moves the directory `staged`, written and synced in full (SyncTree), to `dir`, in its parent
// directory, replacing what is there. Where the filesystem can swap two directories in one step,
// a crash at any moment leaves the whole old or the whole new directory at `dir`, never neither.
// Elsewhere the old one is first renamed to `dir` + ".replaced-<hex>" and a crash between the two
// renames leaves `dir` missing; RecoverInterruptedPublish puts it back. The old contents are deleted
// once the new ones are in place; on error `dir` is as it was and `staged` is left to the caller.
Status PublishDirectory(const std::string& staged, const std::string& dir, FileOps& ops = DefaultFileOps());
// Where `dir` is missing because a PublishDirectory was interrupted between its two renames, renames
// the old directory back to `dir` (true); false when there is nothing to restore.
Result<bool> RecoverInterruptedPublish(const std::string& dir);
// A name for a staging directory beside `dir` (`dir` + ".partial-<hex>"), unique in practice.
Result<std::string> StagingPath(const std::string& dir);

// An exclusive advisory lock (flock) on the file at `path`, made if missing, held until the
// FileLock is destroyed or the process dies (a kill -9 releases it too). The holder's pid is
// written into the file. FAILED_PRECONDITION naming the file and that pid when another process
// holds it.
class FileLock {
 public:
  static Result<FileLock> Acquire(const std::string& path);
  FileLock(FileLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// mkdir -p; OK if the directory already exists.
Status CreateDirectories(const std::string& path);
bool Exists(const std::string& path);
// OK if the file did not exist.
Status RemoveFile(const std::string& path);

}  // namespace openrl::fs
