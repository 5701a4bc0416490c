#include "openrl/core/fs.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc 2.28+)
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
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
int FileOps::Exchange(const char* a, const char* b) {
  return ::renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

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

Status SyncDirectory(const std::string& dir) { return FsyncDir(dir); }

Status SyncTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(dir, ec), end;
  if (ec) return ErrnoStatus("list", dir, ec.value());
  for (; it != end; it.increment(ec)) {
    if (ec) return ErrnoStatus("list", dir, ec.value());
    const std::string path = it->path().string();
    if (it->is_directory(ec)) {
      OPENRL_RETURN_IF_ERROR(FsyncDir(path));
      continue;
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus("open", path, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return ErrnoStatus("fsync", path, err);
  }
  if (ec) return ErrnoStatus("list", dir, ec.value());
  return FsyncDir(dir);
}

Result<std::string> StagingPath(const std::string& dir) {
  OPENRL_ASSIGN_OR_RETURN(std::string rnd, crypto::RandomBytes(6));
  return dir + ".partial-" + crypto::HexEncode(rnd);
}

namespace {

constexpr std::string_view kReplacedInfix = ".replaced-";

// Deletes what a publish moved aside; a failure only leaves bytes behind (the caller's sweep takes them).
void RemoveAside(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

}  // namespace

Status PublishDirectory(const std::string& staged, const std::string& dir, FileOps& ops) {
  const std::string parent = DirName(dir);
  if (DirName(staged) != parent)
    return InvalidArgument("publish " + staged + " as " + dir + ": the two must be in the same directory");
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    if (ops.Rename(staged.c_str(), dir.c_str()) != 0)
      return ErrnoStatus("rename " + staged + " to", dir, errno);
    return FsyncDir(parent);
  }
  if (ops.Exchange(staged.c_str(), dir.c_str()) == 0) {
    // `staged` now holds the old contents.
    Status st = FsyncDir(parent);
    RemoveAside(staged);
    return st;
  }
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    return ErrnoStatus("exchange " + staged + " with", dir, errno);
  // No atomic swap here: move the old directory aside, then the new one in.
  OPENRL_ASSIGN_OR_RETURN(std::string rnd, crypto::RandomBytes(6));
  const std::string aside = dir + std::string(kReplacedInfix) + crypto::HexEncode(rnd);
  if (ops.Rename(dir.c_str(), aside.c_str()) != 0) return ErrnoStatus("rename " + dir + " to", aside, errno);
  if (ops.Rename(staged.c_str(), dir.c_str()) != 0) {
    Status st = ErrnoStatus("rename " + staged + " to", dir, errno);
    if (ops.Rename(aside.c_str(), dir.c_str()) != 0)
      return Internal(st.message() + "; and putting the old directory back from " + aside +
                      " failed: " + std::strerror(errno));
    return st;
  }
  Status st = FsyncDir(parent);
  RemoveAside(aside);
  return st;
}

Result<bool> RecoverInterruptedPublish(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return false;
  const std::filesystem::path target(dir);
  const std::string prefix = target.filename().string() + std::string(kReplacedInfix);
  std::filesystem::directory_iterator it(DirName(dir), ec), end;
  if (ec)
    return ec.value() == ENOENT ? Result<bool>(false)
                                : Result<bool>(ErrnoStatus("list", DirName(dir), ec.value()));
  std::optional<std::string> aside;
  for (; it != end; it.increment(ec)) {
    if (ec) return ErrnoStatus("list", DirName(dir), ec.value());
    std::string name = it->path().filename().string();
    // While `dir` is missing there is at most one: the publish that moved it aside never finished.
    if (name.rfind(prefix, 0) == 0 && it->is_directory(ec)) aside = it->path().string();
  }
  if (!aside) return false;
  if (::rename(aside->c_str(), dir.c_str()) != 0)
    return ErrnoStatus("rename " + *aside + " back to", dir, errno);
  OPENRL_RETURN_IF_ERROR(FsyncDir(DirName(dir)));
  return true;
}

Result<FileLock> FileLock::Acquire(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("open lock file", path, errno);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    int err = errno;
    std::string holder;
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) holder += buf[i];  // the pid, if any
    ::close(fd);
    if (err != EWOULDBLOCK) return ErrnoStatus("lock", path, err);
    return FailedPrecondition(path + " is locked by another process" +
                              (holder.empty() ? "" : " (pid " + holder + ")"));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("write lock file", path, err);
  }
  return FileLock(fd);
}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the flock
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
