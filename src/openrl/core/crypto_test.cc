#include "openrl/core/crypto.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace openrl::crypto {
namespace {

std::string Unhex(std::string_view hex) {
  Result<std::string> r = HexDecode(hex);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : std::string();
}

TEST(Sha256, NistVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256("abc").size(), kSha256Size);
}

TEST(Sha256, StreamingMatchesOneShotAndResets) {
  Sha256Hasher h;
  h.Update("a");
  h.Update("");
  h.Update("bc");
  EXPECT_EQ(h.FinishHex(), Sha256Hex("abc"));
  h.Update("abc");  // reusable after Finish
  EXPECT_EQ(h.FinishHex(), Sha256Hex("abc"));
}

TEST(Sha256, FileLargerThanOneChunk) {
  std::string path = ::testing::TempDir() + "/sha_file_test.bin";
  std::string data(200000, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31);
  std::ofstream(path, std::ios::binary) << data;
  Result<std::string> got = Sha256FileHex(path);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Sha256Hex(data));
  std::filesystem::remove(path);
  Result<std::string> missing = Sha256FileHex(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(path), std::string::npos);
}

struct Rfc8032Case {
  const char* seed;
  const char* pub;
  const char* msg;
  const char* sig;
};

TEST(HmacSha256, Rfc4231Vectors) {
  // Test case 1: key 0x0b * 20, "Hi There"; test case 2: key "Jefe".
  EXPECT_EQ(HexEncode(HmacSha256(std::string(20, '\x0b'), "Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HexEncode(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  // Test case 6: a key longer than the block size is hashed first.
  EXPECT_EQ(HexEncode(HmacSha256(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(Ed25519, Rfc8032Test1And2) {
  const Rfc8032Case cases[] = {
      {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
       "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
       "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
      {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
       "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
       "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
  };
  for (const auto& c : cases) {
    std::string seed = Unhex(c.seed), msg = Unhex(c.msg);
    Result<std::string> pub = Ed25519PublicFromPrivate(seed);
    ASSERT_TRUE(pub.ok());
    EXPECT_EQ(HexEncode(*pub), c.pub);
    Result<std::string> sig = Ed25519Sign(seed, msg);
    ASSERT_TRUE(sig.ok());
    EXPECT_EQ(HexEncode(*sig), c.sig);
    EXPECT_TRUE(Ed25519Verify(*pub, msg, *sig));
    std::string tampered = *sig;
    tampered[10] ^= 1;
    EXPECT_FALSE(Ed25519Verify(*pub, msg, tampered));
    EXPECT_FALSE(Ed25519Verify(*pub, msg + "x", *sig));
  }
}

TEST(Ed25519, GenerateSignVerifyAndBadLengths) {
  Result<Ed25519KeyPair> kp = Ed25519Generate();
  ASSERT_TRUE(kp.ok());
  Result<Ed25519KeyPair> other = Ed25519Generate();
  ASSERT_TRUE(other.ok());
  EXPECT_NE(kp->private_key, other->private_key);
  Result<std::string> sig = Ed25519Sign(kp->private_key, "lineage statement");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(Ed25519Verify(kp->public_key, "lineage statement", *sig));
  EXPECT_FALSE(Ed25519Verify(other->public_key, "lineage statement", *sig));
  EXPECT_FALSE(Ed25519Verify("short", "m", *sig));
  EXPECT_FALSE(Ed25519Verify(kp->public_key, "m", "short"));
  Result<std::string> bad = Ed25519Sign("too short", "m");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("32 bytes, got 9"), std::string::npos);
}

TEST(Ed25519, PemRoundTrip) {
  Result<Ed25519KeyPair> kp = Ed25519Generate();
  ASSERT_TRUE(kp.ok());
  Result<std::string> priv_pem = Ed25519PrivateKeyToPem(kp->private_key);
  Result<std::string> pub_pem = Ed25519PublicKeyToPem(kp->public_key);
  ASSERT_TRUE(priv_pem.ok() && pub_pem.ok());
  EXPECT_NE(priv_pem->find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(pub_pem->find("-----BEGIN PUBLIC KEY-----"), std::string::npos);
  Result<std::string> priv = Ed25519PrivateKeyFromPem(*priv_pem);
  Result<std::string> pub = Ed25519PublicKeyFromPem(*pub_pem);
  ASSERT_TRUE(priv.ok() && pub.ok());
  EXPECT_EQ(*priv, kp->private_key);
  EXPECT_EQ(*pub, kp->public_key);
  EXPECT_FALSE(Ed25519PrivateKeyFromPem("not a pem").ok());
  EXPECT_FALSE(Ed25519PublicKeyFromPem(*priv_pem).ok());
}

TEST(Crypto, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secrets"));
}

TEST(Crypto, RandomBytes) {
  Result<std::string> a = RandomBytes(32), b = RandomBytes(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 32u);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(RandomBytes(0)->empty());
}

TEST(Crypto, Hex) {
  EXPECT_EQ(HexEncode(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(*HexDecode("00FF10"), std::string("\x00\xff\x10", 3));
  EXPECT_FALSE(HexDecode("abc").ok());
  Result<std::string> bad = HexDecode("zz");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("offset 0"), std::string::npos);
}

TEST(Crypto, Base64UrlRfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""}, {"f", "Zg"}, {"fo", "Zm8"}, {"foo", "Zm9v"}, {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (auto [plain, enc] : vectors) {
    EXPECT_EQ(Base64UrlEncode(plain), enc);
    EXPECT_EQ(*Base64UrlDecode(enc), plain);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_EQ(*Base64UrlDecode("-_8"), "\xfb\xff");
  EXPECT_EQ(*Base64UrlDecode("Zm8="), "fo");
  EXPECT_EQ(*Base64UrlDecode("Zg=="), "f");
  EXPECT_FALSE(Base64UrlDecode("Zm8+").ok());  // standard alphabet rejected
  EXPECT_FALSE(Base64UrlDecode("Z").ok());
  EXPECT_FALSE(Base64UrlDecode("Zh").ok());    // non-zero trailing bits
  EXPECT_FALSE(Base64UrlDecode("Zg=").ok());   // incomplete padding
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(*Base64UrlDecode(Base64UrlEncode(all)), all);
}

}  // namespace
}  // namespace openrl::crypto
