#include "openrl/formats/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

#include "openrl/core/json.h"
#include "openrl/formats/safetensors.h"
#include "openrl/formats/utf8.h"

namespace openrl::formats {
namespace {

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

Status ErrnoStatus(const std::string& what) {
  const int err = errno;
  const std::string msg = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return ResourceExhausted(msg);
  if (err == EACCES || err == EPERM || err == EROFS) return PermissionDenied(msg);
  if (err == ENOENT || err == ENOTDIR) return NotFound(msg);
  return Internal(msg);
}

// Appends to an open file descriptor, buffering small writes.
class FdSink : public ByteSink {
 public:
  FdSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  Status Append(std::span<const uint8_t> bytes) override {
    if (buffer_.size() + bytes.size() > kBufferBytes) OPENRL_RETURN_IF_ERROR(Flush());
    if (bytes.size() >= kBufferBytes) return WriteAll(bytes);
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
    return Status::Ok();
  }
  Status Flush() {
    OPENRL_RETURN_IF_ERROR(WriteAll(buffer_));
    buffer_.clear();
    return Status::Ok();
  }

 private:
  static constexpr size_t kBufferBytes = 1 << 20;
  Status WriteAll(std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ErrnoStatus(path_ + ": write failed");
      bytes = bytes.subspan(static_cast<size_t>(n));
    }
    return Status::Ok();
  }
  int fd_;
  std::string path_;
  std::vector<uint8_t> buffer_;
};

Status FsyncDirectory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(dir.string() + ": cannot open directory to fsync");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus(dir.string() + ": fsync failed");
  return Status::Ok();
}

std::string ShardName(const std::string& prefix, size_t index, size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "-%05zu-of-%05zu.safetensors", index, count);
  return prefix + buf;
}

}  // namespace

Result<SafetensorsWriter::Entry> SafetensorsWriter::MakeEntry(std::string name, Dtype dtype,
                                                              std::vector<int64_t> shape) {
  if (name == "__metadata__") return InvalidArgument("tensor name '__metadata__' is reserved");
  if (by_name_.count(name) != 0) return InvalidArgument("duplicate tensor " + Quote(name));
  if (!IsValidUtf8(name)) return InvalidArgument("tensor name is not valid UTF-8");
  uint64_t numel = 1;
  for (int64_t dim : shape) {
    if (dim < 0) {
      return InvalidArgument("tensor " + Quote(name) + ": negative dimension in shape " +
                             ShapeToString(shape));
    }
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) {
      return InvalidArgument("tensor " + Quote(name) + ": shape " + ShapeToString(shape) +
                             " overflows the element count");
    }
  }
  const auto nbytes = DtypeBytesFor(dtype, numel);
  if (!nbytes) {
    return InvalidArgument("tensor " + Quote(name) + ": shape " + ShapeToString(shape) + " of " +
                           std::string(DtypeName(dtype)) + " does not fill whole bytes");
  }
  return Entry{std::move(name), dtype, std::move(shape), numel, *nbytes, {}, {}};
}

Status SafetensorsWriter::Add(std::string name, Dtype dtype, std::vector<int64_t> shape,
                              std::span<const uint8_t> data) {
  OPENRL_ASSIGN_OR_RETURN(Entry entry, MakeEntry(std::move(name), dtype, std::move(shape)));
  if (data.size() != entry.nbytes) {
    return InvalidArgument("tensor " + Quote(entry.name) + ": " + std::to_string(data.size()) +
                           " bytes given but shape " + ShapeToString(entry.shape) + " of " +
                           std::string(DtypeName(dtype)) + " needs " +
                           std::to_string(entry.nbytes));
  }
  entry.data = data;
  by_name_.emplace(entry.name, entries_.size());
  entries_.push_back(std::move(entry));
  return Status::Ok();
}

Status SafetensorsWriter::AddStreamed(std::string name, Dtype dtype, std::vector<int64_t> shape,
                                      TensorProducer producer) {
  OPENRL_ASSIGN_OR_RETURN(Entry entry, MakeEntry(std::move(name), dtype, std::move(shape)));
  if (!producer) return InvalidArgument("tensor " + Quote(entry.name) + ": empty producer");
  entry.producer = std::move(producer);
  by_name_.emplace(entry.name, entries_.size());
  entries_.push_back(std::move(entry));
  return Status::Ok();
}

Status SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
    return InvalidArgument("metadata " + Quote(key) + ": key and value must be valid UTF-8");
  }
  if (!metadata_.emplace(std::move(key), std::move(value)).second) {
    return InvalidArgument("duplicate metadata key");
  }
  return Status::Ok();
}

uint64_t SafetensorsWriter::data_bytes() const {
  uint64_t total = 0;
  for (const Entry& e : entries_) total += e.nbytes;
  return total;
}

Status SafetensorsWriter::WriteEntries(std::vector<const Entry*> entries,
                                       const std::map<std::string, std::string>& metadata,
                                       ByteSink& sink, const std::string& source) {
  // Descending alignment, then name: keeps every tensor aligned to its element size.
  std::sort(entries.begin(), entries.end(), [](const Entry* a, const Entry* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;
    return a->name < b->name;
  });
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Entry* e : entries) {
    header[e->name] = {{"dtype", DtypeName(e->dtype)},
                       {"shape", e->shape},
                       {"data_offsets", {offset, offset + e->nbytes}}};
    offset += e->nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  OPENRL_RETURN_IF_ERROR(sink.Append(length));
  OPENRL_RETURN_IF_ERROR(sink.Append({reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
  for (const Entry* e : entries) {
    if (!e->producer) {
      OPENRL_RETURN_IF_ERROR(sink.Append(e->data));
      continue;
    }
    uint64_t delivered = 0;
    const ChunkSink chunk_sink = [&](std::span<const uint8_t> chunk) -> Status {
      if (chunk.size() > e->nbytes - delivered) {
        return InvalidArgument(source + ": tensor " + Quote(e->name) + ": producer delivered more "
                               "than the " + std::to_string(e->nbytes) + " bytes its shape needs");
      }
      delivered += chunk.size();
      return sink.Append(chunk);
    };
    OPENRL_RETURN_IF_ERROR(e->producer(chunk_sink).WithContext(source + ": tensor " + Quote(e->name)));
    if (delivered != e->nbytes) {
      return InvalidArgument(source + ": tensor " + Quote(e->name) + ": producer delivered " +
                             std::to_string(delivered) + " bytes but its shape needs " +
                             std::to_string(e->nbytes));
    }
  }
  return Status::Ok();
}

Status SafetensorsWriter::WriteTo(ByteSink& sink, const std::string& source) const {
  std::vector<const Entry*> all;
  for (const Entry& e : entries_) all.push_back(&e);
  return WriteEntries(std::move(all), metadata_, sink, source);
}

Status SafetensorsWriter::WriteFileAtomically(const std::string& path,
                                              const std::function<Status(ByteSink&)>& fill) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path final_path(path);
  const std::string temp = path + ".tmp." + std::to_string(::getpid()) + "." +
                           std::to_string(counter.fetch_add(1));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(path + ": cannot create temporary file " + temp);
  FdSink sink(fd, path);
  Status status = fill(sink);
  if (status.ok()) status = sink.Flush();
  if (status.ok() && ::fsync(fd) != 0) status = ErrnoStatus(path + ": fsync failed");
  if (::close(fd) != 0 && status.ok()) status = ErrnoStatus(path + ": close failed");
  if (status.ok() && ::rename(temp.c_str(), path.c_str()) != 0) {
    status = ErrnoStatus(path + ": cannot rename " + temp + " into place");
  }
  if (!status.ok()) {
    ::unlink(temp.c_str());
    return status;
  }
  return FsyncDirectory(final_path.parent_path());
}

Status SafetensorsWriter::Write(const std::string& path) const {
  return WriteFileAtomically(path, [&](ByteSink& sink) { return WriteTo(sink, path); });
}

std::vector<std::vector<const SafetensorsWriter::Entry*>> SafetensorsWriter::PlanShards(
    uint64_t max_shard_bytes) const {
  // As huggingface_hub's split_state_dict_into_shards: in insertion order, a tensor that would
  // tip the current shard over the limit starts a new one; a tensor above the limit alone gets
  // a shard of its own, placed before the shard being filled.
  std::vector<std::vector<const Entry*>> shards;
  std::vector<const Entry*> current;
  uint64_t current_bytes = 0;
  for (const Entry& e : entries_) {
    if (e.nbytes > max_shard_bytes) {
      shards.push_back({&e});
      continue;
    }
    if (!current.empty() && current_bytes + e.nbytes > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(&e);
    current_bytes += e.nbytes;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));
  return shards;
}

Result<std::vector<std::string>> SafetensorsWriter::WriteSharded(const std::string& dir,
                                                                 uint64_t max_shard_bytes,
                                                                 const std::string& prefix) const {
  if (max_shard_bytes == 0) return InvalidArgument(dir + ": max shard size must be positive");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InvalidArgument(dir + ": cannot create directory: " + ec.message());
  const auto shards = PlanShards(max_shard_bytes);
  const std::filesystem::path root(dir);
  const std::string index_name = prefix + ".safetensors.index.json";
  std::vector<std::string> written;
  if (shards.size() == 1) {
    written.push_back(prefix + ".safetensors");
    OPENRL_RETURN_IF_ERROR(Write((root / written[0]).string()));
  } else {
    Json weight_map = Json::object();
    uint64_t total_size = 0;
    uint64_t total_parameters = 0;
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name = ShardName(prefix, i + 1, shards.size());
      const std::string path = (root / name).string();
      for (const Entry* e : shards[i]) {
        weight_map[e->name] = name;
        total_size += e->nbytes;
        total_parameters += e->numel;
      }
      OPENRL_RETURN_IF_ERROR(WriteFileAtomically(path, [&](ByteSink& sink) {
        return WriteEntries(shards[i], metadata_, sink, path);
      }));
      written.push_back(name);
    }
    Json index = {{"metadata", {{"total_parameters", total_parameters}, {"total_size", total_size}}},
                  {"weight_map", weight_map}};
    const std::string text = index.dump(2) + "\n";
    OPENRL_RETURN_IF_ERROR(WriteFileAtomically((root / index_name).string(), [&](ByteSink& sink) {
      return sink.Append({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
    }));
    written.push_back(index_name);
  }
  RemoveStaleFiles(root, prefix, written);
  return written;
}

void SafetensorsWriter::RemoveStaleFiles(const std::filesystem::path& root,
                                         const std::string& prefix,
                                         const std::vector<std::string>& keep) {
  // A loader that finds <prefix>.safetensors next to an index (or stray shards) would read stale
  // weights; transformers' save_pretrained removes them too.
  const std::regex shard_re(std::regex_replace(prefix, std::regex(R"([.^$|()\[\]{}*+?\\])"),
                                               R"(\$&)") +
                            R"(-\d{5}-of-\d{5}\.safetensors)");
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(root, ec)) {
    const std::string name = item.path().filename().string();
    const bool ours = name == prefix + ".safetensors" ||
                      name == prefix + ".safetensors.index.json" ||
                      std::regex_match(name, shard_re);
    if (ours && std::find(keep.begin(), keep.end(), name) == keep.end()) {
      std::filesystem::remove(item.path(), ec);
    }
  }
}

}  // namespace openrl::formats
