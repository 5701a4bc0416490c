#include "openrl/core/fs.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

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

// A directory `dir` holding one file `f` with `text`.
void MakeDir(const std::string& dir, const std::string& text) {
  ASSERT_TRUE(CreateDirectories(dir + "/sub").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/f", text).ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/sub/g", text + "!").ok());
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// A filesystem without RENAME_EXCHANGE (NFS), whose renames numbered in `fail` (1-based) fail.
class NoExchangeOps : public FileOps {
 public:
  explicit NoExchangeOps(std::set<int> fail = {}) : fail_(std::move(fail)) {}
  int Exchange(const char*, const char*) override {
    errno = EINVAL;
    return -1;
  }
  int Rename(const char* from, const char* to) override {
    if (fail_.count(++renames_) > 0) {
      errno = EIO;
      return -1;
    }
    return FileOps::Rename(from, to);
  }
  int renames_ = 0;

 private:
  std::set<int> fail_;
};

// Counts the one-step swaps a publish makes.
class CountingOps : public FileOps {
 public:
  int Exchange(const char* a, const char* b) override {
    ++exchanges;
    return FileOps::Exchange(a, b);
  }
  int exchanges = 0;
};

TEST(Fs, PublishDirectoryPutsANewDirectoryInPlace) {
  std::string root = TestDir("publish_new");
  MakeDir(root + "/ck.partial-1", "new");
  CountingOps ops;
  ASSERT_TRUE(PublishDirectory(root + "/ck.partial-1", root + "/ck", ops).ok());
  EXPECT_EQ(*ReadFile(root + "/ck/f"), "new");
  EXPECT_EQ(*ReadFile(root + "/ck/sub/g"), "new!");
  EXPECT_EQ(Names(root), std::vector<std::string>{"ck"});
  EXPECT_EQ(ops.exchanges, 0);  // nothing to swap with: a plain rename
}

TEST(Fs, PublishDirectorySwapsOutTheOldOneInOneStep) {
  std::string root = TestDir("publish_swap");
  MakeDir(root + "/ck", "old");
  ASSERT_TRUE(WriteFileAtomic(root + "/ck/only_in_old", "x").ok());
  MakeDir(root + "/ck.partial-2", "new");
  CountingOps ops;
  ASSERT_TRUE(PublishDirectory(root + "/ck.partial-2", root + "/ck", ops).ok());
  EXPECT_EQ(ops.exchanges, 1);
  EXPECT_EQ(*ReadFile(root + "/ck/f"), "new");
  EXPECT_FALSE(Exists(root + "/ck/only_in_old"));          // the whole directory was replaced, not merged
  EXPECT_EQ(Names(root), std::vector<std::string>{"ck"});  // the old one deleted, nothing left aside
}

TEST(Fs, PublishDirectoryWithoutExchangeTakesTwoRenamesAndCanBeRecovered) {
  std::string root = TestDir("publish_fallback");
  MakeDir(root + "/ck", "old");
  MakeDir(root + "/ck.partial-3", "new");
  NoExchangeOps ops;
  ASSERT_TRUE(PublishDirectory(root + "/ck.partial-3", root + "/ck", ops).ok());
  EXPECT_EQ(ops.renames_, 2);
  EXPECT_EQ(*ReadFile(root + "/ck/f"), "new");
  EXPECT_EQ(Names(root), std::vector<std::string>{"ck"});

  // The second rename fails: the old directory is put back and the staged one left to the caller.
  MakeDir(root + "/ck.partial-4", "newer");
  NoExchangeOps failing({2});
  Status st = PublishDirectory(root + "/ck.partial-4", root + "/ck", failing);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(root + "/ck.partial-4"), std::string::npos) << st.message();
  EXPECT_EQ(*ReadFile(root + "/ck/f"), "new");
  EXPECT_EQ(Names(root), (std::vector<std::string>{"ck", "ck.partial-4"}));

  // A crash between the two renames (here: renaming stops after the first, and the undo fails
  // too) leaves `ck` missing and the old one aside; recovery puts it back.
  NoExchangeOps dying({2, 3});
  st = PublishDirectory(root + "/ck.partial-4", root + "/ck", dying);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("putting the old directory back"), std::string::npos) << st.message();
  EXPECT_FALSE(Exists(root + "/ck"));
  Result<bool> back = RecoverInterruptedPublish(root + "/ck");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_TRUE(*back);
  EXPECT_EQ(*ReadFile(root + "/ck/f"), "new");
  EXPECT_EQ(*ReadFile(root + "/ck/sub/g"), "new!");
  EXPECT_EQ(Names(root), (std::vector<std::string>{"ck", "ck.partial-4"}));
  // Nothing to recover where the directory is in place, or where nothing was set aside.
  EXPECT_FALSE(*RecoverInterruptedPublish(root + "/ck"));
  EXPECT_FALSE(*RecoverInterruptedPublish(root + "/other"));
  EXPECT_FALSE(*RecoverInterruptedPublish(root + "/no/such/parent/x"));
}

TEST(Fs, PublishDirectoryRefusesAStagedDirectoryElsewhere) {
  std::string root = TestDir("publish_elsewhere");
  MakeDir(root + "/a/ck.partial", "new");
  ASSERT_TRUE(CreateDirectories(root + "/b").ok());
  Status st = PublishDirectory(root + "/a/ck.partial", root + "/b/ck");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Exists(root + "/a/ck.partial/f"));
}

TEST(Fs, SyncTreeReachesEveryFileAndNamesWhatFails) {
  std::string root = TestDir("synctree");
  MakeDir(root + "/d", "x");
  EXPECT_TRUE(SyncTree(root + "/d").ok());
  Status st = SyncTree(root + "/missing");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), ErrorCode::kNotFound);
  EXPECT_NE(st.message().find(root + "/missing"), std::string::npos) << st.message();
  Result<std::string> staged = StagingPath(root + "/ck");
  ASSERT_TRUE(staged.ok());
  EXPECT_EQ(staged->rfind(root + "/ck.partial-", 0), 0u) << *staged;
  EXPECT_NE(*staged, *StagingPath(root + "/ck"));
}

TEST(Fs, FileLockIsExclusiveUntilReleased) {
  std::string root = TestDir("lock");
  Result<FileLock> first = FileLock::Acquire(root + "/serve.lock");
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_EQ(*ReadFile(root + "/serve.lock"), std::to_string(::getpid()) + "\n");
  Result<FileLock> second = FileLock::Acquire(root + "/serve.lock");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(root + "/serve.lock"), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find("pid " + std::to_string(::getpid())), std::string::npos)
      << second.status().message();
  { FileLock moved = std::move(*first); }  // released when its last owner goes
  EXPECT_TRUE(FileLock::Acquire(root + "/serve.lock").ok());
  Result<FileLock> nowhere = FileLock::Acquire(root + "/no/such/dir/serve.lock");
  ASSERT_FALSE(nowhere.ok());
  EXPECT_NE(nowhere.status().message().find(root + "/no/such/dir/serve.lock"), std::string::npos);
}

}  // namespace
}  // namespace openrl::fs
