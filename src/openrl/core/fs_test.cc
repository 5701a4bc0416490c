#include "openrl/core/fs.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>

namespace openrl::fs {
namespace {

std::string TestDir(const std::string& name) {
  std::string dir = ::testing::TempDir() + "/openrl_fs_test_" + name;
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(CreateDirectories(dir).ok());
  return dir;
}

size_t CountEntries(const std::string& dir) {
  size_t n = 0;
  for (auto it = std::filesystem::directory_iterator(dir); it != std::filesystem::directory_iterator(); ++it) ++n;
  return n;
}

// A disk that fills up after `room` bytes.
class FullDiskOps : public FileOps {
 public:
  explicit FullDiskOps(size_t room) : room_(room) {}
  ssize_t Write(int fd, const void* buf, size_t n) override {
    if (room_ == 0) {
      errno = ENOSPC;
      return -1;
    }
    size_t k = std::min(n, room_);
    room_ -= k;
    return FileOps::Write(fd, buf, k);  // a short write first, then ENOSPC
  }

 private:
  size_t room_;
};

class FailingRenameOps : public FileOps {
 public:
  int Rename(const char*, const char*) override {
    errno = EXDEV;
    return -1;
  }
};

class FailingFsyncOps : public FileOps {
 public:
  int Fsync(int) override {
    errno = EIO;
    return -1;
  }
};

TEST(Fs, WriteAtomicThenRead) {
  std::string dir = TestDir("roundtrip");
  std::string path = dir + "/a.json";
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, std::string("sec\0ond", 7)).ok());
  Result<std::string> got = ReadFile(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, std::string("sec\0ond", 7));
  EXPECT_EQ(CountEntries(dir), 1u);  // no temp file left
}

TEST(Fs, FullDiskKeepsOldContentsAndCleansUp) {
  std::string dir = TestDir("fulldisk");
  std::string path = dir + "/state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "old contents").ok());
  FullDiskOps ops(5);
  Status st = WriteFileAtomic(path, "new contents that do not fit", ops);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kResourceExhausted);
  EXPECT_NE(st.message().find(path + ".tmp-"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("No space left"), std::string::npos) << st.message();
  EXPECT_EQ(*ReadFile(path), "old contents");
  EXPECT_EQ(CountEntries(dir), 1u);
}

TEST(Fs, FailedRenameOrFsyncLeavesNoTrace) {
  std::string dir = TestDir("rename");
  std::string path = dir + "/x";
  FailingRenameOps rename_ops;
  Status st = WriteFileAtomic(path, "data", rename_ops);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rename"), std::string::npos);
  EXPECT_NE(st.message().find(path), std::string::npos);
  EXPECT_FALSE(Exists(path));
  FailingFsyncOps fsync_ops;
  st = WriteFileAtomic(path, "data", fsync_ops);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("fsync"), std::string::npos);
  EXPECT_EQ(CountEntries(dir), 0u);
}

TEST(Fs, ErrorsNameThePath) {
  std::string dir = TestDir("errors");
  Result<std::string> missing = ReadFile(dir + "/nope.txt");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find(dir + "/nope.txt"), std::string::npos);
  Status no_dir = WriteFileAtomic(dir + "/no/such/dir/f", "x");
  ASSERT_FALSE(no_dir.ok());
  EXPECT_NE(no_dir.message().find(dir + "/no/such/dir/f"), std::string::npos);
  ASSERT_TRUE(WriteFileAtomic(dir + "/file", "x").ok());
  Status over_file = CreateDirectories(dir + "/file/sub");
  EXPECT_FALSE(over_file.ok());
  EXPECT_NE(over_file.message().find(dir + "/file/sub"), std::string::npos);
}

TEST(Fs, CreateDirectoriesAndRemove) {
  std::string dir = TestDir("mkdir");
  EXPECT_TRUE(CreateDirectories(dir + "/a/b/c").ok());
  EXPECT_TRUE(CreateDirectories(dir + "/a/b/c").ok());  // idempotent
  EXPECT_TRUE(Exists(dir + "/a/b/c"));
  ASSERT_TRUE(WriteFileAtomic(dir + "/a/f", "x").ok());
  EXPECT_TRUE(RemoveFile(dir + "/a/f").ok());
  EXPECT_TRUE(RemoveFile(dir + "/a/f").ok());
  EXPECT_FALSE(Exists(dir + "/a/f"));
}

}  // namespace
}  // namespace openrl::fs
