#include "openrl/core/age.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "openrl/core/crypto.h"
#include "openrl/core/fs.h"

namespace openrl::crypto {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The X25519 example from the age spec (c2sp.org/age): secret = 32 bytes of 0x42.
constexpr char kSpecSecret[] = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX";
constexpr char kSpecRecipient[] = "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj";

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

AgeRecipient MustParse(std::string_view text) {
  Result<AgeRecipient> r = ParseAgeRecipient(text);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : AgeRecipient{};
}

AgeRecipient NewRecipient() {
  Result<AgeIdentity> id = AgeGenerateIdentity();
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  return MustParse(id->recipient_text);
}

// Standard base64 without padding, as in the header; empty on a non-canonical or bad input.
std::string DecodeBase64NoPad(const std::string& text) {
  std::string padded = text + std::string((4 - text.size() % 4) % 4, '=');
  std::string out(padded.size() / 4 * 3, '\0');
  int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(padded.data()), static_cast<int>(padded.size()));
  if (n < 0) return "";
  out.resize(static_cast<size_t>(n) - (padded.size() - text.size()));
  return out;
}

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> lines;
  std::stringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Splits an encrypted file at the end of the header's "--- MAC" line.
std::pair<std::string, std::string> SplitHeader(const std::string& file) {
  size_t mac = file.find("\n--- ");
  size_t end = mac == std::string::npos ? mac : file.find('\n', mac + 1);
  if (end == std::string::npos) return {"", ""};
  return {file.substr(0, end + 1), file.substr(end + 1)};
}

size_t ExpectedPayloadSize(size_t plaintext) {
  size_t chunks = plaintext == 0 ? 1 : (plaintext + kAgeChunkSize - 1) / kAgeChunkSize;
  return 16 + plaintext + 16 * chunks;
}

std::string TestPlaintext(size_t n) {
  Result<std::string> r = RandomBytes(n);
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : std::string(n, 'x');
}

TEST(AgeRecipient, ParsesTheSpecExampleInEitherCase) {
  Result<AgeIdentity> id = AgeIdentityFromSecretKey(std::string(32, '\x42'));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->secret_text, kSpecSecret);
  EXPECT_EQ(id->recipient_text, kSpecRecipient);
  AgeRecipient lower = MustParse(kSpecRecipient);
  EXPECT_EQ(lower.x25519_public_key.size(), kAgeX25519KeySize);
  EXPECT_EQ(MustParse(Upper(kSpecRecipient)).x25519_public_key, lower.x25519_public_key);
}

TEST(AgeRecipient, GeneratedIdentityRoundTrips) {
  Result<AgeIdentity> a = AgeGenerateIdentity();
  Result<AgeIdentity> b = AgeGenerateIdentity();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_THAT(a->secret_text, StartsWith("AGE-SECRET-KEY-1"));
  EXPECT_EQ(a->secret_text, Upper(a->secret_text));
  EXPECT_EQ(a->secret_text.size(), 74u);
  EXPECT_THAT(a->recipient_text, StartsWith("age1"));
  EXPECT_EQ(a->recipient_text.size(), 62u);
  EXPECT_NE(a->recipient_text, b->recipient_text);
  EXPECT_EQ(MustParse(a->recipient_text).x25519_public_key.size(), kAgeX25519KeySize);
}

void ExpectRejected(std::string_view text, std::string_view why) {
  Result<AgeRecipient> r = ParseAgeRecipient(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(std::string(why))) << text;
}

TEST(AgeRecipient, RejectsWithTheReason) {
  std::string typo = kSpecRecipient;
  typo.back() = typo.back() == 'q' ? 'p' : 'q';
  ExpectRejected(typo, "checksum");
  std::string mixed = kSpecRecipient;
  mixed[10] = static_cast<char>(std::toupper(static_cast<unsigned char>(mixed[10])));
  ExpectRejected(mixed, "mixes upper and lower case");
  ExpectRejected("", "empty");
  ExpectRejected("npub1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqzqujme", "HRP is 'npub'");
  ExpectRejected("age", "no '1'");
  ExpectRejected(std::string(kSpecRecipient) + "\n", "whitespace");
  ExpectRejected("age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwx", "checksum");
  ExpectRejected("age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwo", "Bech32 alphabet");
  // Valid Bech32 (checksums made with an independent Python BIP 173 encoder) of the wrong size.
  ExpectRejected("age1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7ru28p0lr", "31 bytes, want 32");
  ExpectRejected("age1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7ruszzxrc4t3", "33 bytes, want 32");
  ExpectRejected("age1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7ruspxc8t5c", "padding");
  ExpectRejected("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHd0AJY5 user@host", "ends inside its key");
  ExpectRejected("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ", "not base64 of a plausible length");
  ExpectRejected(kSpecSecret, "secret key");
  ExpectRejected("age1pq1qqqqqqqqqqqqqqqqqqqqqqqq", "post-quantum");
}

// Made with ssh-keygen; the X25519 form of the Ed25519 key and the fingerprint were worked out
// independently in Python (u = (1 + y) / (1 - y) mod 2^255 - 19; SHA-256 of the blob).
constexpr const char* kSshEd25519 =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvgRZHWzF9dxrgtpbwG9Di+jLCnuhAoR6o2EPoJvPEZ alice@example";
constexpr const char* kSshEd25519AsX25519 =
    "2792dcd76e121a73e253fa0217b0fe98f6c6506de86bf13554a28e5967e1285a";
constexpr const char* kSshRsa2048 =
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAABAQDO4TkuhuI5BirFpoMisjA5tHRJH7fA9GZ2rScXJzHXswSkXKklLCfBFlow3Mf1gXD7Ts57P2wS"
    "K4sA"
    "qrTkPufIGRSbdxyFJYU9+nNKtaHdP+o8FtcXBYwEYMEjoeAtBzbHaK0zQL+AGRwjlX8XSqo4JqJZ7WFhHRD6BiF2n9QwQoUF6L+"
    "UGrZWzJe3sUkZJ0O8"
    "Dee4mEeHrD/tUaYgRLOhW46YuBV0yafv3tlF5JtbHjmtdOTeMmtWJjOozB/"
    "fL+luOP1887NnlCaCl9Rw1cQUcFADEDlA+CYvnrU+6DrBU7c1OgPDEWaa"
    "kIV9bERqW2fET7Zh9TwyFV3w1CP4k4MX bob@example";
constexpr const char* kSshRsa1024 =
    "ssh-rsa "
    "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDq3OW/"
    "ucBI4Pjpj6sZdb6jcJlingIXKzVG7iTEn2GJUZ7ISviGUJDS5n0D8Zvc3vIfB5Z3rJStWgQ6"
    "GLUnfwJPIADXelbxqV0cDL8TfcDgo/7fd+S5L3YjXfWN8mO/CpBF/7VQrS07boMo+ReNcKB6cizQYmK5IAFYNmstJaAFrQ== old";

TEST(AgeRecipient, ParsesSshKeys) {
  AgeRecipient ed = MustParse(kSshEd25519);
  EXPECT_EQ(ed.kind, AgeRecipient::Kind::kSshEd25519);
  EXPECT_EQ(HexEncode(ed.x25519_public_key), kSshEd25519AsX25519);
  EXPECT_EQ(ed.ssh_key.size(), 4u + 11u + 4u + 32u);
  // The comment is optional.
  std::string bare(kSshEd25519);
  EXPECT_EQ(MustParse(bare.substr(0, bare.rfind(' '))).x25519_public_key, ed.x25519_public_key);
  AgeRecipient rsa = MustParse(kSshRsa2048);
  EXPECT_EQ(rsa.kind, AgeRecipient::Kind::kSshRsa);
  EXPECT_EQ(HexEncode(rsa.rsa_e), "010001");
  EXPECT_EQ(rsa.rsa_n.size(), 256u);
}

TEST(AgeRecipient, RejectsSshKeysWithTheReason) {
  ExpectRejected(kSshRsa1024, "the RSA key has 1024 bits; 2048 to 16384 are accepted");
  ExpectRejected("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= ec",
                 "SSH keys of type ecdsa-sha2-nistp256 are not supported");
  ExpectRejected("ssh-dss AAAAB3NzaC1kc3M=", "SSH keys of type ssh-dss are not supported");
  ExpectRejected("sk-ssh-ed25519@openssh.com AAAA", "not supported");
  ExpectRejected("ssh-ed25519", "no key after the type");
  ExpectRejected("ssh-ed25519 AAAA!C3N", "not base64");
  std::string ed(kSshEd25519);
  // The blob of an RSA key under the ed25519 type, and the reverse.
  ExpectRejected("ssh-ed25519 " + std::string(kSshRsa2048).substr(8), "another type than its text says");
  ExpectRejected("ssh-rsa " + ed.substr(12), "another type than its text says");
  ExpectRejected(ed + "\nssh-ed25519 AAAA", "more than one line");
  // Blobs built by hand: a 31-byte Ed25519 key, bytes after the key, y = 1 (no X25519 form).
  auto blob = [](std::string_view type, std::string_view key, std::string_view extra = "") {
    auto str = [](std::string_view v) {
      std::string out(4, '\0');
      for (int i = 0; i < 4; ++i) out[3 - i] = static_cast<char>((v.size() >> (8 * i)) & 0xff);
      return out + std::string(v);
    };
    std::string raw = str(type) + str(key) + std::string(extra);
    std::string b64(4 * ((raw.size() + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                            reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
    b64.resize(static_cast<size_t>(n));
    return std::string(type) + " " + b64;
  };
  ExpectRejected(blob("ssh-ed25519", std::string(31, 'k')), "the Ed25519 key is 31 bytes, want 32");
  ExpectRejected(blob("ssh-ed25519", std::string(32, 'k'), "x"), "bytes follow the key");
  std::string y_is_one(32, '\0');
  y_is_one[0] = 1;
  ExpectRejected(blob("ssh-ed25519", y_is_one), "no X25519 form");
  // A negative RSA exponent, and an even one.
  ExpectRejected(blob("ssh-rsa", "\x80\x01"), "its exponent is negative");
  ExpectRejected(blob("ssh-rsa", "\x02", std::string("\0\0\1\1\x01", 5) + std::string(256, '\xcb')),
                 "not an odd number");
  // An even modulus (found by the age_recipient fuzz target: OpenSSL then fails to encrypt).
  ExpectRejected(blob("ssh-rsa", "\x03", std::string("\0\0\1\1\x01", 5) + std::string(256, '\xcc')),
                 "the RSA modulus is even");
}

TEST(AgeRecipient, ErrorsNeverEchoASecretKey) {
  Result<AgeRecipient> r = ParseAgeRecipient(kSpecSecret);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("GFPYYSJZ")));
}

TEST(AgeEncrypt, HeaderHasOneX25519StanzaPerRecipientAndAMac) {
  Result<std::string> file = AgeEncrypt("hello", {NewRecipient(), NewRecipient()});
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto [header, payload] = SplitHeader(*file);
  std::vector<std::string> lines = Lines(header);
  ASSERT_EQ(lines.size(), 6u) << header;
  EXPECT_EQ(lines[0], "age-encryption.org/v1");
  for (int i : {1, 3}) {
    ASSERT_THAT(lines[i], StartsWith("-> X25519 "));
    std::string share = lines[i].substr(10);
    EXPECT_EQ(share.size(), 43u);
    EXPECT_EQ(DecodeBase64NoPad(share).size(), 32u);
    EXPECT_EQ(lines[i + 1].size(), 43u);  // 16-byte file key + 16-byte tag; shorter than 64
    EXPECT_EQ(DecodeBase64NoPad(lines[i + 1]).size(), 32u);
  }
  EXPECT_NE(lines[1], lines[3]);  // a fresh ephemeral share per stanza
  ASSERT_THAT(lines[5], StartsWith("--- "));
  EXPECT_EQ(DecodeBase64NoPad(lines[5].substr(4)).size(), 32u);
  EXPECT_EQ(header.find('='), std::string::npos);
  EXPECT_EQ(payload.size(), ExpectedPayloadSize(5));
}

TEST(AgeEncrypt, FreshKeysEachTime) {
  std::vector<AgeRecipient> to = {NewRecipient()};
  Result<std::string> a = AgeEncrypt("same", to);
  Result<std::string> b = AgeEncrypt("same", to);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(SplitHeader(*a).second, SplitHeader(*b).second);
}

TEST(AgeEncrypt, PayloadIsNonceThenOneTagPerChunk) {
  std::vector<AgeRecipient> to = {NewRecipient()};
  for (size_t n : {0u, 1u, 65535u, 65536u, 65537u, 200000u}) {
    Result<std::string> file = AgeEncrypt(TestPlaintext(n), to);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ(SplitHeader(*file).second.size(), ExpectedPayloadSize(n)) << "plaintext size " << n;
  }
}

AgeRecipient RawX25519(std::string key) {
  AgeRecipient r;
  r.x25519_public_key = std::move(key);
  return r;
}

TEST(AgeEncrypt, RejectsNoRecipientsAndBadKeys) {
  Result<std::string> none = AgeEncrypt("x", {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("at least one recipient"));
  // The all-zero point is of low order: every shared secret with it is zero.
  Result<std::string> zero = AgeEncrypt("x", {NewRecipient(), RawX25519(std::string(32, '\0'))});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("recipient #2"));
  EXPECT_THAT(zero.status().message(), HasSubstr("all-zero shared secret"));
  Result<std::string> short_key = AgeEncrypt("x", {RawX25519("abc")});
  ASSERT_FALSE(short_key.ok());
  EXPECT_THAT(short_key.status().message(), HasSubstr("32 bytes"));
}

class AgeFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/age_file_test_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(fs::CreateDirectories(dir_).ok());
    ASSERT_TRUE(fs::WriteFileAtomic(Path("plain"), plain_).ok());
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  size_t FilesInDir() const {
    return static_cast<size_t>(std::distance(std::filesystem::directory_iterator(dir_), {}));
  }
  std::string dir_;
  std::string plain_ = TestPlaintext(200000);
  std::vector<AgeRecipient> to_ = {NewRecipient()};
};

TEST_F(AgeFileTest, StreamsAFileIntoPlace) {
  ASSERT_TRUE(AgeEncryptFile(Path("plain"), Path("out.age"), to_).ok());
  Result<std::string> file = fs::ReadFile(Path("out.age"));
  ASSERT_TRUE(file.ok());
  auto [header, payload] = SplitHeader(*file);
  EXPECT_THAT(header, StartsWith("age-encryption.org/v1\n-> X25519 "));
  EXPECT_EQ(payload.size(), ExpectedPayloadSize(plain_.size()));
  EXPECT_EQ(FilesInDir(), 2u);  // plain and out.age: no temporary left over
}

TEST_F(AgeFileTest, MissingPlaintextNamesThePath) {
  Status st = AgeEncryptFile(Path("absent"), Path("out.age"), to_);
  EXPECT_EQ(st.code(), ErrorCode::kNotFound);
  EXPECT_THAT(st.message(), HasSubstr(Path("absent")));
  EXPECT_FALSE(fs::Exists(Path("out.age")));
}

// Fails the Nth write or the rename with an errno, like a full disk or a vanished directory.
class FaultyOps : public fs::FileOps {
 public:
  int fail_write_at = -1;
  bool fail_rename = false;
  ssize_t Write(int fd, const void* buf, size_t n) override {
    if (writes_++ == fail_write_at) {
      errno = ENOSPC;
      return -1;
    }
    return FileOps::Write(fd, buf, n);
  }
  int Rename(const char* from, const char* to) override {
    if (fail_rename) {
      errno = EXDEV;
      return -1;
    }
    return FileOps::Rename(from, to);
  }

 private:
  int writes_ = 0;
};

TEST_F(AgeFileTest, AFailedWriteOrRenameLeavesTheOldFileAndNoTemporary) {
  ASSERT_TRUE(fs::WriteFileAtomic(Path("out.age"), "old").ok());
  FaultyOps disk_full;
  disk_full.fail_write_at = 2;  // header+nonce, first chunk, then the disk fills
  Status st = AgeEncryptFile(Path("plain"), Path("out.age"), to_, disk_full);
  EXPECT_EQ(st.code(), ErrorCode::kResourceExhausted);
  EXPECT_THAT(st.message(), HasSubstr(Path("out.age")));
  FaultyOps bad_rename;
  bad_rename.fail_rename = true;
  st = AgeEncryptFile(Path("plain"), Path("out.age"), to_, bad_rename);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("rename"));
  EXPECT_EQ(*fs::ReadFile(Path("out.age")), "old");
  EXPECT_EQ(FilesInDir(), 2u);
}

// Not a unit test: tests/test_age.py runs this with OPENRL_AGE_VECTORS_DIR and
// OPENRL_AGE_RECIPIENTS (comma-separated age1... made by pyrage) and decrypts the output with
// pyrage, the real peer. Writes <size>.plain / <size>.age for each size, and an identity of
// ours (generated.identity, generated.recipient) with generated.age encrypted to it.
TEST(AgeVectors, WriteForPeer) {
  const char* dir = std::getenv("OPENRL_AGE_VECTORS_DIR");
  const char* list = std::getenv("OPENRL_AGE_RECIPIENTS");
  if (dir == nullptr || list == nullptr)
    GTEST_SKIP() << "set OPENRL_AGE_VECTORS_DIR and OPENRL_AGE_RECIPIENTS";
  std::vector<AgeRecipient> to;
  std::stringstream in{std::string(list)};
  for (std::string text; std::getline(in, text, ',');) to.push_back(MustParse(text));
  ASSERT_FALSE(to.empty());
  const std::string base = std::string(dir) + "/";
  for (size_t n : {0u, 1u, 65535u, 65536u, 65537u, 200000u}) {
    const std::string name = base + std::to_string(n);
    ASSERT_TRUE(fs::WriteFileAtomic(name + ".plain", TestPlaintext(n)).ok());
    Status st = AgeEncryptFile(name + ".plain", name + ".age", to);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  Result<AgeIdentity> id = AgeGenerateIdentity();
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(fs::WriteFileAtomic(base + "generated.identity", id->secret_text).ok());
  ASSERT_TRUE(fs::WriteFileAtomic(base + "generated.recipient", id->recipient_text).ok());
  Result<std::string> file = AgeEncrypt("from our own identity", {MustParse(id->recipient_text)});
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE(fs::WriteFileAtomic(base + "generated.age", *file).ok());
}

}  // namespace
}  // namespace openrl::crypto
