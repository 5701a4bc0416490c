#include "openrl/core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "openrl/core/crypto.h"

namespace openrl::fs {
namespace {

Status ErrnoStatus(std::string_view step, const std::string& path, int err) {
  std::string msg = std::string(step) + " " + path + ": " + std::strerror(err);
  switch (err) {
    case ENOENT: return NotFound(std::move(msg));
    case EACCES:
    case EPERM: return PermissionDenied(std::move(msg));
    case ENOSPC:
    case EDQUOT: return ResourceExhausted(std::move(msg));
    default: return Internal(std::move(msg));
  }
}

std::string DirName(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

Status FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open directory", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync directory", dir, err);
  return Status::Ok();
}

Status WriteAll(FileOps& ops, int fd, std::string_view data, const std::string& tmp) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ops.Write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write", tmp, errno);
    if (n == 0) return ErrnoStatus("write", tmp, EIO);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Writes and fsyncs the temp file; closes fd in all cases.
Status FillTemp(FileOps& ops, int fd, std::string_view data, const std::string& tmp) {
  Status st = WriteAll(ops, fd, data, tmp);
  if (st.ok() && ops.Fsync(fd) != 0) st = ErrnoStatus("fsync", tmp, errno);
  if (ops.Close(fd) != 0 && st.ok()) st = ErrnoStatus("close", tmp, errno);
  return st;
}

}  // namespace

int FileOps::Open(const char* path, int flags, mode_t mode) { return ::open(path, flags, mode); }
ssize_t FileOps::Write(int fd, const void* buf, size_t n) { return ::write(fd, buf, n); }
int FileOps::Fsync(int fd) { return ::fsync(fd); }
int FileOps::Close(int fd) { return ::close(fd); }
int FileOps::Rename(const char* from, const char* to) { return ::rename(from, to); }

FileOps& DefaultFileOps() {
  static FileOps ops;
  return ops;
}

Result<std::string> ReadFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  std::string out;
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("read", path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Status WriteFileAtomic(const std::string& path, std::string_view data, FileOps& ops) {
  Result<std::string> rnd = crypto::RandomBytes(6);
  if (!rnd.ok()) return rnd.status();
  const std::string tmp = path + ".tmp-" + crypto::HexEncode(*rnd);
  int fd = ops.Open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp, errno);
  Status st = FillTemp(ops, fd, data, tmp);
  if (st.ok() && ops.Rename(tmp.c_str(), path.c_str()) != 0) st = ErrnoStatus("rename " + tmp + " to", path, errno);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  return FsyncDir(DirName(path));
}

Status CreateDirectories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return ErrnoStatus("create directory", path, ec.value());
  if (!std::filesystem::is_directory(path, ec)) return FailedPrecondition("create directory " + path + ": exists and is not a directory");
  return Status::Ok();
}

bool Exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(path, ec);
}

Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove", path, errno);
  return Status::Ok();
}

}  // namespace openrl::fs
