// Hugging Face checkpoints split over several safetensors files.
//
// A sharded checkpoint is a directory holding model-00001-of-0000N.safetensors ... and
// model.safetensors.index.json: {"metadata": {"total_size": bytes, ...},
// "weight_map": {tensor name: shard file name}}. ShardedCheckpoint opens one (or a plain
// model.safetensors, or a single .safetensors file) and finds tensors by name across shards,
// after checking that the index and the shards agree. SafetensorsWriter::WriteSharded writes
// one; ParseShardSize reads transformers-style sizes ("5GB", "500MiB", "10000").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/formats/safetensors.h"

namespace openrl::formats {

class ShardedCheckpoint {
 public:
  // `path` is a directory (holding model.safetensors.index.json or model.safetensors), an
  // index .json file, or a single .safetensors file. Validates that every shard named in the
  // index exists and parses, that each tensor lies in the shard the index names, that no tensor
  // appears twice or outside the index, and that metadata.total_size, when given, is a
  // non-negative integer. (It is not required to equal the sum of the tensor sizes: published
  // indexes often count tied weights that the shards do not hold.) Errors name the index or
  // shard file and the tensor. A directory holding both model.safetensors and an index is read
  // as the single file, as transformers does.
  static Result<std::unique_ptr<ShardedCheckpoint>> Open(const std::string& path);

  // Tensor names: shards in index order (file name order), tensors in data order within each.
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }
  bool Contains(std::string_view name) const;
  // NOT_FOUND naming the checkpoint when absent. The view lives as long as this object.
  Result<TensorView> Get(std::string_view name) const;
  // The shard file holding `name`, or nullptr.
  const SafetensorsFile* ShardOf(std::string_view name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }
  // The index file, or empty for a single-file checkpoint.
  const std::string& index_path() const { return index_path_; }
  // Sum of the tensors' byte sizes.
  uint64_t total_size() const { return total_size_; }
  // metadata.total_size as the index declares it, or -1 when absent.
  int64_t declared_total_size() const { return declared_total_size_; }

 private:
  ShardedCheckpoint() = default;
  static Result<std::unique_ptr<ShardedCheckpoint>> OpenIndex(const std::string& index_path);
  static Result<std::unique_ptr<ShardedCheckpoint>> OpenSingle(const std::string& file);
  Status AddShard(std::unique_ptr<SafetensorsFile> shard);

  std::string source_;
  std::string index_path_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, const SafetensorsFile*> shard_of_;
  uint64_t total_size_ = 0;
  int64_t declared_total_size_ = -1;
};

// "5GB" -> 5'000'000'000, "2GiB" -> 2^31, "200MB", "100KB", "10000" (bytes), like
// transformers' convert_file_size_to_int. INVALID_ARGUMENT for anything else.
Result<uint64_t> ParseShardSize(std::string_view text);

}  // namespace openrl::formats
