#include "openrl/formats/sharded_checkpoint.h"

#include <cctype>
#include <filesystem>
#include <set>

#include "openrl/core/json.h"

namespace openrl::formats {
namespace {

namespace fs = std::filesystem;

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of("/\\") == std::string::npos;
}

// weight_map as tensor -> shard file name, every value checked.
Result<std::map<std::string, std::string>> ReadWeightMap(const Json& index,
                                                         const std::string& source) {
  if (!index.is_object()) {
    return InvalidArgument(source + ": index must be a JSON object, got " +
                           std::string(JsonTypeName(index)));
  }
  const auto it = index.find("weight_map");
  if (it == index.end()) return InvalidArgument(source + ": missing field 'weight_map'");
  if (!it->is_object()) {
    return InvalidArgument(source + ": field 'weight_map' must be an object, got " +
                           std::string(JsonTypeName(*it)));
  }
  std::map<std::string, std::string> map;
  for (const auto& [tensor, shard] : it->items()) {
    if (!shard.is_string() || !IsPlainFileName(shard.get<std::string>())) {
      return InvalidArgument(source + ": weight_map entry for tensor " + Quote(tensor) +
                             " must be a shard file name in the index's directory, got " +
                             shard.dump());
    }
    map.emplace(tensor, shard.get<std::string>());
  }
  return map;
}

Result<int64_t> ReadDeclaredTotalSize(const Json& index, const std::string& source) {
  const auto meta = index.find("metadata");
  if (meta == index.end() || meta->is_null()) return int64_t{-1};
  if (!meta->is_object()) {
    return InvalidArgument(source + ": field 'metadata' must be an object, got " +
                           std::string(JsonTypeName(*meta)));
  }
  const auto total = meta->find("total_size");
  if (total == meta->end() || total->is_null()) return int64_t{-1};
  // Some writers store it as a float with an integral value.
  if (total->is_number_float() && *total >= 0 && total->get<double>() < 9.2e18 &&
      total->get<double>() == static_cast<double>(static_cast<int64_t>(total->get<double>()))) {
    return static_cast<int64_t>(total->get<double>());
  }
  if (!total->is_number_integer() || total->get<int64_t>() < 0) {
    return InvalidArgument(source + ": field 'metadata.total_size' must be a non-negative "
                           "integer, got " + total->dump());
  }
  return total->get<int64_t>();
}

}  // namespace

Status ShardedCheckpoint::AddShard(std::unique_ptr<SafetensorsFile> shard) {
  for (const TensorView& t : shard->tensors()) {
    const auto [it, inserted] = shard_of_.emplace(t.name(), shard.get());
    if (!inserted) {
      return InvalidArgument(source_ + ": tensor " + Quote(t.name()) + " appears in two shards, " +
                             it->second->path() + " and " + shard->path());
    }
    names_.push_back(t.name());
    total_size_ += t.nbytes();
  }
  shards_.push_back(std::move(shard));
  return Status::Ok();
}

Result<std::unique_ptr<ShardedCheckpoint>> ShardedCheckpoint::OpenSingle(const std::string& file) {
  OPENRL_ASSIGN_OR_RETURN(auto shard, SafetensorsFile::Open(file));
  std::unique_ptr<ShardedCheckpoint> ckpt(new ShardedCheckpoint());
  ckpt->source_ = file;
  OPENRL_RETURN_IF_ERROR(ckpt->AddShard(std::move(shard)));
  return ckpt;
}

Result<std::unique_ptr<ShardedCheckpoint>> ShardedCheckpoint::OpenIndex(
    const std::string& index_path) {
  OPENRL_ASSIGN_OR_RETURN(Json index, ReadJsonFile(index_path));
  OPENRL_ASSIGN_OR_RETURN(auto weight_map, ReadWeightMap(index, index_path));
  std::unique_ptr<ShardedCheckpoint> ckpt(new ShardedCheckpoint());
  ckpt->source_ = index_path;
  ckpt->index_path_ = index_path;
  OPENRL_ASSIGN_OR_RETURN(ckpt->declared_total_size_, ReadDeclaredTotalSize(index, index_path));
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::string> first_tensor_of;  // shard -> a tensor naming it
  for (const auto& [tensor, shard] : weight_map) first_tensor_of.emplace(shard, tensor);
  for (const auto& [shard, tensor] : first_tensor_of) {
    const std::string path = (dir / shard).string();
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      return NotFound(index_path + ": shard " + Quote(shard) + " (named for tensor " +
                      Quote(tensor) + ") does not exist: " + path);
    }
    OPENRL_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
    OPENRL_RETURN_IF_ERROR(ckpt->AddShard(std::move(file)));
  }
  for (const auto& [tensor, shard] : weight_map) {
    const SafetensorsFile* holder = ckpt->ShardOf(tensor);
    const std::string expected = (dir / shard).string();
    if (holder == nullptr) {
      return InvalidArgument(index_path + ": tensor " + Quote(tensor) + " is mapped to shard " +
                             Quote(shard) + " but no shard holds it");
    }
    if (holder->path() != expected) {
      return InvalidArgument(index_path + ": tensor " + Quote(tensor) + " is mapped to shard " +
                             Quote(shard) + " but lies in " + holder->path());
    }
  }
  for (const std::string& name : ckpt->names_) {
    if (weight_map.count(name) == 0) {
      return InvalidArgument(index_path + ": shard " + ckpt->ShardOf(name)->path() +
                             " holds tensor " + Quote(name) + " that weight_map does not list");
    }
  }
  return ckpt;
}

Result<std::unique_ptr<ShardedCheckpoint>> ShardedCheckpoint::Open(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / "model.safetensors", ec)) return OpenSingle((dir / "model.safetensors").string());
    if (fs::exists(dir / "model.safetensors.index.json", ec)) {
      return OpenIndex((dir / "model.safetensors.index.json").string());
    }
    return NotFound(path + ": directory holds neither model.safetensors nor "
                    "model.safetensors.index.json");
  }
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return OpenIndex(path);
  return OpenSingle(path);
}

bool ShardedCheckpoint::Contains(std::string_view name) const { return ShardOf(name) != nullptr; }

const SafetensorsFile* ShardedCheckpoint::ShardOf(std::string_view name) const {
  const auto it = shard_of_.find(std::string(name));
  return it == shard_of_.end() ? nullptr : it->second;
}

Result<TensorView> ShardedCheckpoint::Get(std::string_view name) const {
  const SafetensorsFile* shard = ShardOf(name);
  if (shard == nullptr) return NotFound(source_ + ": no tensor named " + Quote(name));
  return shard->Get(name);
}

Result<uint64_t> ParseShardSize(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    uint64_t factor;
  };
  static constexpr Unit kUnits[] = {{"GIB", 1ull << 30}, {"MIB", 1ull << 20}, {"KIB", 1ull << 10},
                                    {"GB", 1'000'000'000}, {"MB", 1'000'000}, {"KB", 1'000}};
  std::string upper(text);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  uint64_t factor = 1;
  bool bits = false;
  std::string_view digits = text;
  for (const Unit& unit : kUnits) {
    if (upper.size() > unit.suffix.size() &&
        upper.compare(upper.size() - unit.suffix.size(), unit.suffix.size(), unit.suffix) == 0) {
      factor = unit.factor;
      digits = text.substr(0, text.size() - unit.suffix.size());
      bits = unit.suffix.size() == 2 && text.back() == 'b';  // "5Gb": gigabits, as transformers
      break;
    }
  }
  const auto bad = [&] {
    return InvalidArgument("shard size " + Quote(text) +
                           " must be a byte count or a number with GB, MB, KB, GiB, MiB or KiB");
  };
  if (digits.empty() || digits.size() > 19) return bad();
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return bad();
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(value, factor, &bytes)) return bad();
  if (bits) bytes /= 8;
  if (bytes == 0) return InvalidArgument("shard size " + Quote(text) + " must be positive");
  return bytes;
}

}  // namespace openrl::formats
