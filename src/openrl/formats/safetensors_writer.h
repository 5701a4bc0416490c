// Writing safetensors files the way the reference (Python `safetensors` 0.8) writes them:
// tensors ordered by descending dtype alignment then name, so each tensor's data is aligned to
// its element size; compact JSON header with "__metadata__" first, padded with spaces to a
// multiple of 8 bytes. A file written from the same tensors and a single metadata entry is
// byte-identical to `safetensors.torch.save_file`'s (metadata keys are written sorted).
//
// Files are written to a temporary file in the target directory, fsynced and renamed, so a
// crash never leaves a half-written file under the final name. Tensor bytes come from a span
// (which must stay valid until Write returns) or from a producer callback that streams them.
// WriteSharded splits the tensors into model-00001-of-0000N.safetensors files plus
// model.safetensors.index.json like transformers' save_pretrained (see sharded_checkpoint.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "openrl/core/status.h"
#include "openrl/formats/dtype.h"

namespace openrl::formats {

// Receives the bytes of one tensor, in order, in chunks of any size.
using ChunkSink = std::function<Status(std::span<const uint8_t> chunk)>;
// Streams one tensor's bytes into the sink; must deliver exactly the tensor's size in total.
using TensorProducer = std::function<Status(const ChunkSink& sink)>;

// Where the serialised bytes go; the seam tests use to inject a failing disk.
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual Status Append(std::span<const uint8_t> bytes) = 0;
};

class SafetensorsWriter {
 public:
  // Adds a tensor whose bytes are `data` (little-endian, C order); `data` must stay valid until
  // the last Write. Refuses duplicate or reserved names, negative dims and a size mismatch.
  Status Add(std::string name, Dtype dtype, std::vector<int64_t> shape,
             std::span<const uint8_t> data);
  // Adds a tensor whose bytes `producer` streams when the file is written.
  Status AddStreamed(std::string name, Dtype dtype, std::vector<int64_t> shape,
                     TensorProducer producer);
  // Adds a "__metadata__" entry (e.g. "format" -> "pt"); the key must not repeat.
  Status SetMetadata(std::string key, std::string value);

  size_t size() const { return entries_.size(); }
  // Total bytes of tensor data.
  uint64_t data_bytes() const;

  // Writes one safetensors file atomically (temp file, fsync, rename, fsync of the directory).
  Status Write(const std::string& path) const;
  // Serialises the file into `sink`. `source` names the destination in errors.
  Status WriteTo(ByteSink& sink, const std::string& source) const;

  // Splits the tensors, in the order they were added, into shards of at most `max_shard_bytes`
  // of data (a larger tensor gets a shard of its own) and writes them into `dir` as
  // "<prefix>-00001-of-0000N.safetensors" with "<prefix>.safetensors.index.json", or as a single
  // "<prefix>.safetensors" when everything fits in one shard. Each shard carries the metadata.
  // Files of an earlier checkpoint with the same prefix that the new one does not use are
  // removed once the new one is complete. Returns the names of the files written.
  Result<std::vector<std::string>> WriteSharded(const std::string& dir, uint64_t max_shard_bytes,
                                                const std::string& prefix = "model") const;

 private:
  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<int64_t> shape;
    uint64_t numel;
    uint64_t nbytes;
    std::span<const uint8_t> data;  // used when producer is empty
    TensorProducer producer;
  };
  Result<Entry> MakeEntry(std::string name, Dtype dtype, std::vector<int64_t> shape);
  static Status WriteEntries(std::vector<const Entry*> entries,
                             const std::map<std::string, std::string>& metadata, ByteSink& sink,
                             const std::string& source);
  std::vector<std::vector<const Entry*>> PlanShards(uint64_t max_shard_bytes) const;
  static void RemoveStaleFiles(const std::filesystem::path& root, const std::string& prefix,
                               const std::vector<std::string>& keep);
  static Status WriteFileAtomically(const std::string& path,
                                    const std::function<Status(ByteSink&)>& fill);

  std::vector<Entry> entries_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace openrl::formats
