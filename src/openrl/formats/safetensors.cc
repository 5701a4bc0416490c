#include "openrl/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "openrl/core/json.h"
#include "openrl/formats/utf8.h"

namespace openrl::formats {
namespace {

std::string Quote(std::string_view s) { return "'" + std::string(s) + "'"; }

// Parses JSON, refusing duplicate keys at any depth (nlohmann would silently keep one).
Result<Json> ParseJsonNoDuplicates(std::string_view text, const std::string& source) {
  struct Frame {
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Frame> stack;
  std::string duplicate;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      stack.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      if (!stack.empty()) stack.pop_back();
    } else if (event == Json::parse_event_t::key && !stack.empty() && duplicate.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!stack.back().keys.insert(key).second) {
        duplicate = stack.size() >= 2 ? "duplicate key " + Quote(key) + " in entry " +
                                            Quote(stack[stack.size() - 2].last_key)
                                      : "duplicate key " + Quote(key);
      }
      stack.back().last_key = key;
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text.begin(), text.end(), callback);
  } catch (const Json::exception& e) {
    return InvalidArgument(source + ": header is not valid JSON: " + e.what());
  }
  if (!duplicate.empty()) return InvalidArgument(source + ": header has a " + duplicate);
  return json;
}

// A JSON value as a non-negative integer.
std::optional<uint64_t> AsUnsigned(const Json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

std::string Describe(const Json& j) {
  std::string text = j.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(JsonTypeName(j)) + " " + text;
}

Status ParseMetadata(const Json& j, const std::string& source, SafetensorsHeader& header) {
  if (j.is_null()) return Status::Ok();  // the reference reads null as "no metadata"
  if (!j.is_object()) {
    return InvalidArgument(source + ": '__metadata__' must be an object of strings, got " +
                           Describe(j));
  }
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      return InvalidArgument(source + ": '__metadata__' value of " + Quote(key) +
                             " must be a string, got " + Describe(value));
    }
    header.metadata.emplace(key, value.get<std::string>());
  }
  return Status::Ok();
}

Status ParseShape(const Json& j, const std::string& where, TensorInfo& info) {
  if (!j.is_array()) return InvalidArgument(where + "shape must be an array, got " + Describe(j));
  for (size_t d = 0; d < j.size(); ++d) {
    const auto dim = AsUnsigned(j[d]);
    if (!dim || *dim > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidArgument(where + "shape[" + std::to_string(d) +
                             "] must be a non-negative integer, got " + Describe(j[d]));
    }
    info.shape.push_back(static_cast<int64_t>(*dim));
  }
  return Status::Ok();
}

Status ParseOffsets(const Json& j, const std::string& where, TensorInfo& info) {
  const auto bad = [&] {
    return InvalidArgument(where + "data_offsets must be [begin, end] of two non-negative "
                           "integers, got " + Describe(j));
  };
  if (!j.is_array() || j.size() != 2) return bad();
  const std::optional<uint64_t> begin = AsUnsigned(j[0]);
  const std::optional<uint64_t> end = AsUnsigned(j[1]);
  if (!begin.has_value() || !end.has_value()) return bad();
  info.begin = begin.value();
  info.end = end.value();
  if (info.begin > info.end) {
    return InvalidArgument(where + "data_offsets [" + std::to_string(info.begin) + ", " +
                           std::to_string(info.end) + "] end before they begin");
  }
  return Status::Ok();
}

// Checks that `info` holds exactly the bytes its dtype and shape need, within the buffer.
Status CheckExtent(const std::string& where, const TensorInfo& info, uint64_t data_bytes) {
  const std::string offsets =
      "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) + "]";
  const std::string what = "shape " + ShapeToString(info.shape) + " of " +
                           std::string(DtypeName(info.dtype));
  uint64_t numel = 1;
  for (int64_t dim : info.shape) {
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) {
      return InvalidArgument(where + what + " overflows the element count");
    }
  }
  const auto needed = DtypeBytesFor(info.dtype, numel);
  if (!needed) {
    const bool fractional = DtypeItemSize(info.dtype) == 0 && numel <= UINT64_MAX / 8;
    return InvalidArgument(where + what + (fractional ? " does not fill a whole number of bytes"
                                                      : " overflows the byte count"));
  }
  if (info.end > data_bytes) {
    return DataLoss(where + offsets + " run past the end of the " + std::to_string(data_bytes) +
                    "-byte data buffer (truncated file?)");
  }
  if (info.nbytes() != *needed) {
    return InvalidArgument(where + offsets + " hold " + std::to_string(info.nbytes()) +
                           " bytes but " + what + " needs " + std::to_string(*needed));
  }
  return Status::Ok();
}

Result<TensorInfo> ParseTensor(const std::string& name, const Json& j, const std::string& source,
                               uint64_t data_bytes) {
  const std::string where = source + ": tensor " + Quote(name) + ": ";
  if (!j.is_object()) {
    return InvalidArgument(where + "entry must be an object with dtype, shape and data_offsets, "
                           "got " + Describe(j));
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return InvalidArgument(where + "unknown field " + Quote(key) +
                             " (expected dtype, shape, data_offsets)");
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(field)) return InvalidArgument(where + "missing field '" + field + "'");
  }
  TensorInfo info;
  info.name = name;
  const Json& dtype = j["dtype"];
  if (!dtype.is_string()) return InvalidArgument(where + "dtype must be a string, got " + Describe(dtype));
  const auto parsed = ParseDtype(dtype.get_ref<const std::string&>());
  if (!parsed) {
    return InvalidArgument(where + "unknown dtype " + Quote(dtype.get_ref<const std::string&>()));
  }
  info.dtype = *parsed;
  OPENRL_RETURN_IF_ERROR(ParseShape(j["shape"], where, info));
  OPENRL_RETURN_IF_ERROR(ParseOffsets(j["data_offsets"], where, info));
  OPENRL_RETURN_IF_ERROR(CheckExtent(where, info, data_bytes));
  return info;
}

// Like the reference: sorted by offsets, tensors must tile the buffer with no gap, no overlap
// and nothing left over.
Status CheckCoverage(const std::string& source, const SafetensorsHeader& header) {
  uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const TensorInfo& t : header.tensors) {
    const std::string where = source + ": tensor " + Quote(t.name) + ": data_offsets [" +
                              std::to_string(t.begin) + ", " + std::to_string(t.end) + "]";
    if (t.begin < covered) {
      return InvalidArgument(where + " overlap tensor " + Quote(previous->name) + " [" +
                             std::to_string(previous->begin) + ", " +
                             std::to_string(previous->end) + "]");
    }
    if (t.begin > covered) {
      return InvalidArgument(where + " leave bytes [" + std::to_string(covered) + ", " +
                             std::to_string(t.begin) +
                             ") of the data buffer to no tensor (tensors must cover it)");
    }
    covered = t.end;
    previous = &t;
  }
  if (covered != header.data_bytes) {
    return InvalidArgument(source + ": tensors cover " + std::to_string(covered) +
                           " bytes but the data buffer holds " + std::to_string(header.data_bytes) +
                           " (bytes past the last tensor belong to none)");
  }
  return Status::Ok();
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated not to overflow when parsed
  return n;
}

const TensorInfo* SafetensorsHeader::Find(std::string_view name) const {
  const auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors[it->second];
}

std::string ShapeToString(std::span<const int64_t> shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

Result<SafetensorsHeader> SafetensorsFile::ParseHeader(std::span<const uint8_t> bytes,
                                                       uint64_t file_size,
                                                       std::string_view source_view) {
  const std::string source(source_view);
  if (file_size < 8) {
    return DataLoss(source + ": file is " + std::to_string(file_size) +
                    " bytes, too short for the 8-byte header length of a safetensors file");
  }
  if (bytes.size() < 8) return InvalidArgument(source + ": ParseHeader needs the first 8 bytes");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<size_t>(i)];
  if (n > kMaxSafetensorsHeaderBytes) {
    return InvalidArgument(source + ": header length " + std::to_string(n) + " exceeds the " +
                           std::to_string(kMaxSafetensorsHeaderBytes) + "-byte limit");
  }
  if (n > file_size - 8) {
    return DataLoss(source + ": header length " + std::to_string(n) + " runs past the end of the " +
                    std::to_string(file_size) + "-byte file (truncated file?)");
  }
  if (bytes.size() < 8 + n) {
    return InvalidArgument(source + ": ParseHeader needs the first " + std::to_string(8 + n) +
                           " bytes, got " + std::to_string(bytes.size()));
  }
  const auto text = bytes.subspan(8, n);
  if (const int64_t bad = FindInvalidUtf8(text); bad >= 0) {
    return InvalidArgument(source + ": header is not valid UTF-8 (byte " + std::to_string(bad) +
                           " of the header)");
  }
  // nlohmann stops at a NUL as if the input ended there; JSON allows no raw NUL anywhere.
  if (const auto nul = std::find(text.begin(), text.end(), uint8_t{0}); nul != text.end()) {
    return InvalidArgument(source + ": header is not valid JSON: NUL byte at byte " +
                           std::to_string(nul - text.begin()) + " of the header");
  }
  OPENRL_ASSIGN_OR_RETURN(
      Json json, ParseJsonNoDuplicates({reinterpret_cast<const char*>(text.data()), text.size()},
                                       source));
  if (!json.is_object()) {
    return InvalidArgument(source + ": header must be a JSON object, got " + Describe(json));
  }
  SafetensorsHeader header;
  header.header_bytes = n;
  header.data_start = 8 + n;
  header.data_bytes = file_size - header.data_start;
  for (const auto& [key, value] : json.items()) {
    if (key == "__metadata__") {
      OPENRL_RETURN_IF_ERROR(ParseMetadata(value, source, header));
      continue;
    }
    OPENRL_ASSIGN_OR_RETURN(TensorInfo info, ParseTensor(key, value, source, header.data_bytes));
    header.tensors.push_back(std::move(info));
  }
  std::stable_sort(header.tensors.begin(), header.tensors.end(),
                   [](const TensorInfo& a, const TensorInfo& b) {
                     return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
                   });
  OPENRL_RETURN_IF_ERROR(CheckCoverage(source, header));
  for (size_t i = 0; i < header.tensors.size(); ++i) header.index_.emplace(header.tensors[i].name, i);
  return header;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(MappedFile map, MappedFile::Open(path));
  OPENRL_ASSIGN_OR_RETURN(SafetensorsHeader header, ParseHeader(map.bytes(), map.size(), path));
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(path, std::move(map), std::move(header)));
}

SafetensorsFile::SafetensorsFile(std::string path, MappedFile map, SafetensorsHeader header)
    : path_(std::move(path)), map_(std::move(map)), header_(std::move(header)) {
  views_.reserve(header_.tensors.size());
  const uint8_t* data = map_.bytes().data() + header_.data_start;
  for (const TensorInfo& t : header_.tensors) views_.emplace_back(&t, data + t.begin);
}

SafetensorsFile::~SafetensorsFile() = default;

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.tensors.size());
  for (const TensorInfo& t : header_.tensors) out.push_back(t.name);
  return out;
}

Result<TensorView> SafetensorsFile::Get(std::string_view name) const {
  const TensorInfo* info = header_.Find(name);
  if (info == nullptr) return NotFound(path_ + ": no tensor named " + Quote(name));
  return TensorView(info, map_.bytes().data() + header_.data_start + info->begin);
}

}  // namespace openrl::formats
