// `openrl safetensors inspect PATH [--sha256]`: prints one JSON object describing a safetensors
// file, a sharded checkpoint directory or its index: every tensor's dtype, shape, shard file and
// byte range (and, with --sha256, the SHA-256 of its bytes), plus each shard's metadata.
// `openrl safetensors copy SRC DST [--max-shard-size SIZE]`: reads SRC with OpenRL's reader and
// writes it with OpenRL's writer, to one file when DST ends in .safetensors and no size is
// given, else as a checkpoint directory sharded like transformers' save_pretrained.
#include <openssl/evp.h>

#include <iostream>
#include <memory>

#include "openrl/cli/command.h"
#include "openrl/formats/sharded_checkpoint.h"
#include "openrl/formats/safetensors_writer.h"

namespace openrl::cli {
namespace {

using formats::ShardedCheckpoint;
using formats::TensorView;

Result<std::string> Sha256Hex(std::span<const uint8_t> bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return Internal("sha256 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

Result<Json> Inspect(const std::string& path, bool sha256) {
  OPENRL_ASSIGN_OR_RETURN(auto ckpt, ShardedCheckpoint::Open(path));
  Json shards = Json::array();
  Json tensors = Json::array();
  for (const auto& shard : ckpt->shards()) {
    const auto& header = shard->header();
    shards.push_back({{"file", shard->path()},
                      {"metadata", shard->metadata()},
                      {"header_bytes", header.header_bytes},
                      {"data_start", header.data_start}});
    for (const TensorView& t : shard->tensors()) {
      Json entry = {{"name", t.name()},
                    {"dtype", formats::DtypeName(t.dtype())},
                    {"shape", t.shape()},
                    {"file", shard->path()},
                    {"data_offsets", {t.info().begin, t.info().end}},
                    {"file_offsets", {header.data_start + t.info().begin, header.data_start + t.info().end}}};
      if (sha256) {
        OPENRL_ASSIGN_OR_RETURN(entry["sha256"], Sha256Hex(t.data()));
      }
      tensors.push_back(std::move(entry));
    }
  }
  return Json{{"path", path},
              {"index", ckpt->index_path().empty() ? Json(nullptr) : Json(ckpt->index_path())},
              {"total_size", ckpt->total_size()},
              {"shards", shards},
              {"tensors", tensors}};
}

Result<Json> Copy(const std::string& src, const std::string& dst, const std::string& max_size) {
  OPENRL_ASSIGN_OR_RETURN(auto ckpt, ShardedCheckpoint::Open(src));
  formats::SafetensorsWriter writer;
  for (const auto& shard : ckpt->shards()) {
    for (const TensorView& t : shard->tensors()) {
      OPENRL_RETURN_IF_ERROR(writer.Add(t.name(), t.dtype(), t.shape(), t.data()));
    }
  }
  // Shards of one checkpoint normally carry the same metadata; the first shard's wins.
  if (!ckpt->shards().empty()) {
    for (const auto& [key, value] : ckpt->shards().front()->metadata()) {
      OPENRL_RETURN_IF_ERROR(writer.SetMetadata(key, value));
    }
  }
  const bool single_file = max_size.empty() && dst.size() > 12 &&
                           dst.compare(dst.size() - 12, 12, ".safetensors") == 0;
  if (single_file) {
    OPENRL_RETURN_IF_ERROR(writer.Write(dst));
    return Json{{"written", {dst}}};
  }
  uint64_t limit = UINT64_MAX;
  if (!max_size.empty()) {
    OPENRL_ASSIGN_OR_RETURN(limit, formats::ParseShardSize(max_size));
  }
  OPENRL_ASSIGN_OR_RETURN(auto files, writer.WriteSharded(dst, limit));
  return Json{{"written", files}};
}

void Emit(const Result<Json>& result) {
  if (!result.ok()) {
    SetExitCode(PrintError(result.status()));
    return;
  }
  std::cout << result->dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
  SetExitCode(0);
}

}  // namespace

OPENRL_CLI_COMMAND("safetensors", [](CLI::App& app) {
  auto* st = app.add_subcommand("safetensors", "Inspect and copy safetensors checkpoints");
  st->require_subcommand(1);

  auto* inspect = st->add_subcommand("inspect", "Describe a .safetensors file or checkpoint as JSON");
  auto path = std::make_shared<std::string>();
  auto sha = std::make_shared<bool>(false);
  inspect->add_option("path", *path, "file, checkpoint directory or index .json")->required();
  inspect->add_flag("--sha256", *sha, "add the SHA-256 of every tensor's bytes");
  inspect->callback([=] { Emit(Inspect(*path, *sha)); });

  auto* copy = st->add_subcommand("copy", "Rewrite a checkpoint with OpenRL's writer");
  auto src = std::make_shared<std::string>();
  auto dst = std::make_shared<std::string>();
  auto max_size = std::make_shared<std::string>();
  copy->add_option("src", *src, "file, checkpoint directory or index .json")->required();
  copy->add_option("dst", *dst, "a .safetensors file, or a directory")->required();
  copy->add_option("--max-shard-size", *max_size, "e.g. 5GB, 500MiB or a byte count");
  copy->callback([=] { Emit(Copy(*src, *dst, *max_size)); });
});

}  // namespace openrl::cli
