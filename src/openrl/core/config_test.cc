#include "openrl/core/config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace openrl {
namespace {

ConfigSchema TestSchema() {
  ConfigSchema s;
  EXPECT_TRUE(s.Add({"server.port", ConfigType::kInt, 8080, "TCP port"}).ok());
  EXPECT_TRUE(s.Add({"server.host", ConfigType::kString, "127.0.0.1", "bind address"}).ok());
  EXPECT_TRUE(s.Add({"train.learning_rate", ConfigType::kDouble, 1e-4, "Adam lr"}).ok());
  EXPECT_TRUE(s.Add({"train.packed", ConfigType::kBool, false, "pack sequences"}).ok());
  EXPECT_TRUE(s.Add({"store.path", ConfigType::kString, nullptr, "database file"}).ok());
  return s;
}

std::string WriteConfig(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::function<std::optional<std::string>(const std::string&)> EnvFrom(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

TEST(Config, DefaultsOnly) {
  ConfigSchema schema = TestSchema();
  Result<Config> cfg = Config::Load(schema, {.env = EnvFrom({})});
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(*cfg->GetInt("server.port"), 8080);
  EXPECT_EQ(*cfg->GetString("server.host"), "127.0.0.1");
  EXPECT_DOUBLE_EQ(*cfg->GetDouble("train.learning_rate"), 1e-4);
  EXPECT_FALSE(*cfg->GetBool("train.packed"));
  EXPECT_EQ(*cfg->SourceOf("server.port"), "default");
  Result<std::string> unset = cfg->GetString("store.path");
  ASSERT_FALSE(unset.ok());
  EXPECT_EQ(unset.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(unset.status().message().find("OPENRL_STORE_PATH"), std::string::npos);
}

TEST(Config, PrecedenceFileEnvFlag) {
  ConfigSchema schema = TestSchema();
  std::string path = WriteConfig("prec.json", R"({"server": {"port": 9000, "host": "0.0.0.0"},
                                                  "train.learning_rate": 0.5, "store": {"path": "/f.db"}})");
  ConfigSources src{.file = path,
                    .flags = {"server.port=9002"},
                    .env = EnvFrom({{"OPENRL_SERVER_PORT", "9001"}, {"OPENRL_TRAIN_PACKED", "yes"},
                                    {"OPENRL_UNRELATED_THING", "ignored"}})};
  Result<Config> cfg = Config::Load(schema, src);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  EXPECT_EQ(*cfg->GetInt("server.port"), 9002);
  EXPECT_EQ(*cfg->SourceOf("server.port"), "flag --set server.port=9002");
  EXPECT_EQ(*cfg->GetString("server.host"), "0.0.0.0");
  EXPECT_EQ(*cfg->SourceOf("server.host"), "config file " + path);
  EXPECT_TRUE(*cfg->GetBool("train.packed"));
  EXPECT_EQ(*cfg->SourceOf("train.packed"), "env OPENRL_TRAIN_PACKED");
  EXPECT_DOUBLE_EQ(*cfg->GetDouble("train.learning_rate"), 0.5);
  EXPECT_EQ(*cfg->GetString("store.path"), "/f.db");
  Json d = cfg->Describe();
  EXPECT_EQ(d["server.port"]["value"], 9002);
}

TEST(Config, FileErrorsNamePathAndKey) {
  ConfigSchema schema = TestSchema();
  std::string unknown = WriteConfig("unknown.json", R"({"server": {"prot": 1}})");
  Result<Config> r = Config::Load(schema, {.file = unknown, .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(unknown), std::string::npos);
  EXPECT_NE(r.status().message().find("unknown key 'server.prot'"), std::string::npos);

  std::string mistyped = WriteConfig("mistyped.json", R"({"server": {"port": "80"}})");
  r = Config::Load(schema, {.file = mistyped, .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("key 'server.port' must be int, got string"), std::string::npos)
      << r.status().message();

  std::string broken = WriteConfig("broken.json", "{\"server\": ");
  r = Config::Load(schema, {.file = broken, .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(broken), std::string::npos);

  r = Config::Load(schema, {.file = ::testing::TempDir() + "/absent.json", .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("absent.json"), std::string::npos);
}

TEST(Config, EnvAndFlagErrorsNameTheirSource) {
  ConfigSchema schema = TestSchema();
  Result<Config> r = Config::Load(schema, {.env = EnvFrom({{"OPENRL_SERVER_PORT", "80x"}})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("environment variable OPENRL_SERVER_PORT"), std::string::npos);
  EXPECT_NE(r.status().message().find("'80x' is not an integer"), std::string::npos);

  r = Config::Load(schema, {.flags = {"train.packed=maybe"}, .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("flag --set train.packed=maybe"), std::string::npos);

  r = Config::Load(schema, {.flags = {"server.nope=1"}, .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown key 'server.nope'"), std::string::npos);

  r = Config::Load(schema, {.flags = {"server.port"}, .env = EnvFrom({})});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected section.key=value"), std::string::npos);

  r = Config::Load(schema, {.flags = {"train.learning_rate=inf"}, .env = EnvFrom({})});
  EXPECT_FALSE(r.ok());
}

TEST(Config, GetterTypeAndDeclarationErrors) {
  ConfigSchema schema = TestSchema();
  Result<Config> cfg = Config::Load(schema, {.env = EnvFrom({})});
  ASSERT_TRUE(cfg.ok());
  Result<std::string> wrong = cfg->GetString("server.port");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("is int, read as string"), std::string::npos);
  EXPECT_EQ(cfg->GetInt("server.undeclared").status().code(), ErrorCode::kNotFound);
}

TEST(ConfigSchema, RejectsBadDeclarations) {
  ConfigSchema s;
  EXPECT_TRUE(s.Add({"a.b", ConfigType::kInt, 1, ""}).ok());
  EXPECT_EQ(s.Add({"a.b", ConfigType::kInt, 1, ""}).code(), ErrorCode::kAlreadyExists);
  EXPECT_FALSE(s.Add({"nodot", ConfigType::kInt, 1, ""}).ok());
  EXPECT_FALSE(s.Add({"A.b", ConfigType::kInt, 1, ""}).ok());
  EXPECT_FALSE(s.Add({"a.c", ConfigType::kInt, "one", ""}).ok());
  EXPECT_EQ(ConfigSchema::EnvVarName("server.max_body_bytes"), "OPENRL_SERVER_MAX_BODY_BYTES");
  EXPECT_NE(s.HelpText().find("OPENRL_A_B"), std::string::npos);
}

}  // namespace
}  // namespace openrl
