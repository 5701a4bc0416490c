// `openrl gguf inspect FILE [--full-arrays]`: prints the header of a GGUF file as JSON: version,
// alignment, data_start, metadata in file order (arrays above 16 elements summarised as
// {"type": "array", "element_type", "length"} unless --full-arrays) and every tensor's name,
// type, shape (numpy order), offset (in the data section), file_offset and nbytes.
// `openrl gguf dequant FILE --out OUT.safetensors [--tensor NAME ...]`: dequantizes the named
// tensors (all by default) to F32 and writes them, numpy-shaped, as a safetensors file.
// `openrl gguf quantize IN.safetensors --type q8_0 --out OUT.gguf`: writes every F32 tensor of
// IN as the given type (tensors whose rows do not fill whole blocks stay F32; other float and
// integer dtypes are copied as their GGUF type).
#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>

#include "openrl/cli/command.h"
#include "openrl/formats/gguf.h"
#include "openrl/formats/gguf_quant.h"
#include "openrl/formats/safetensors.h"
#include "openrl/formats/safetensors_writer.h"

namespace openrl::cli {
namespace {

namespace gguf = formats::gguf;
using OrderedJson = nlohmann::ordered_json;

constexpr size_t kSummariseArraysAbove = 16;

std::string_view TypeName(gguf::GgmlType type) {
  return gguf::Traits(static_cast<uint32_t>(type))->name;  // a parsed file only holds known types
}

OrderedJson ValueToJson(const gguf::Value& v, bool full_arrays) {
  if (v.type == gguf::ValueType::kArray && !full_arrays && v.array_size() > kSummariseArraysAbove) {
    return {
        {"type", "array"}, {"element_type", gguf::ValueTypeName(v.element_type)}, {"length", v.array_size()}};
  }
  return std::visit([](const auto& data) { return OrderedJson(data); }, v.data);
}

Result<OrderedJson> Inspect(const std::string& path, bool full_arrays) {
  OPENRL_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
  const gguf::Header& h = file->header();
  OrderedJson metadata = OrderedJson::object();
  for (const auto& [key, value] : h.metadata.entries()) metadata[key] = ValueToJson(value, full_arrays);
  OrderedJson tensors = OrderedJson::array();
  for (const gguf::TensorInfo& t : h.tensors) {
    tensors.push_back({{"name", t.name},
                       {"type", TypeName(t.type)},
                       {"shape", t.shape()},
                       {"offset", t.offset},
                       {"file_offset", h.data_start + t.offset},
                       {"nbytes", t.nbytes}});
  }
  return OrderedJson{{"version", h.version},
                     {"alignment", h.alignment},
                     {"data_start", h.data_start},
                     {"metadata", std::move(metadata)},
                     {"tensors", std::move(tensors)}};
}

// Streams a tensor's floats to the sink a few rows at a time, so memory stays small.
formats::TensorProducer DequantProducer(const gguf::GgufFile& file, const gguf::TensorInfo& t) {
  return [&file, &t](const formats::ChunkSink& sink) -> Status {
    const gguf::TypeTraits traits = *gguf::Traits(static_cast<uint32_t>(t.type));
    const auto numel = static_cast<uint64_t>(t.numel());
    const uint64_t row = t.dims.empty() ? 1 : static_cast<uint64_t>(t.dims[0]);
    if (numel == 0) return Status::Ok();
    const uint64_t rows_per_chunk = std::max<uint64_t>(1, (uint64_t{1} << 20) / row);
    const uint64_t row_bytes =
        row / static_cast<uint64_t>(traits.block_size) * static_cast<uint64_t>(traits.type_size);
    const std::span<const uint8_t> src = file.Data(t);
    std::vector<float> buf;
    for (uint64_t r = 0; r < numel / row; r += rows_per_chunk) {
      const uint64_t rows = std::min(rows_per_chunk, numel / row - r);
      buf.resize(rows * row);
      Status st = gguf::Dequantize(t.type, src.subspan(r * row_bytes, rows * row_bytes), buf);
      if (!st.ok()) return st.WithContext(file.path() + ": tensor '" + t.name + "'");
      OPENRL_RETURN_IF_ERROR(sink({reinterpret_cast<const uint8_t*>(buf.data()), buf.size() * 4}));
    }
    return Status::Ok();
  };
}

Result<OrderedJson> Dequant(const std::string& path, const std::string& out, std::vector<std::string> names) {
  OPENRL_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
  if (names.empty()) {
    for (const gguf::TensorInfo& t : file->tensors()) names.push_back(t.name);
  }
  formats::SafetensorsWriter writer;
  for (const std::string& name : names) {
    const gguf::TensorInfo* t = file->Find(name);
    if (t == nullptr) return NotFound(path + ": no tensor named '" + name + "'");
    if (!gguf::CanDequantize(t->type)) {
      return Unimplemented(path + ": tensor '" + name + "': dequantizing " + std::string(TypeName(t->type)) +
                           " is not supported");
    }
    OPENRL_RETURN_IF_ERROR(
        writer.AddStreamed(name, formats::Dtype::kF32, t->shape(), DequantProducer(*file, *t)));
  }
  OPENRL_RETURN_IF_ERROR(writer.Write(out));
  return OrderedJson{{"written", out}, {"tensors", names.size()}};
}

// The GGUF type a non-F32 safetensors dtype is copied as.
std::optional<gguf::GgmlType> CopyType(formats::Dtype dtype) {
  switch (dtype) {
    case formats::Dtype::kF16:
      return gguf::GgmlType::kF16;
    case formats::Dtype::kBF16:
      return gguf::GgmlType::kBF16;
    case formats::Dtype::kF64:
      return gguf::GgmlType::kF64;
    case formats::Dtype::kI8:
      return gguf::GgmlType::kI8;
    case formats::Dtype::kI16:
      return gguf::GgmlType::kI16;
    case formats::Dtype::kI32:
      return gguf::GgmlType::kI32;
    case formats::Dtype::kI64:
      return gguf::GgmlType::kI64;
    default:
      return std::nullopt;
  }
}

// Adds one safetensors tensor to `writer` as `target` (F32) or as its own type (others).
Status AddQuantized(gguf::GgufWriter& writer, const formats::TensorView& t, gguf::GgmlType target,
                    const std::string& path, OrderedJson& report) {
  std::vector<int64_t> dims(t.shape().rbegin(), t.shape().rend());
  const std::string where = path + ": tensor '" + t.name() + "'";
  if (t.dtype() != formats::Dtype::kF32) {
    const auto type = CopyType(t.dtype());
    if (!type) {
      return InvalidArgument(where + ": dtype " + std::string(formats::DtypeName(t.dtype())) +
                             " has no GGUF type");
    }
    report.push_back({{"name", t.name()}, {"type", TypeName(*type)}});
    return writer.AddTensor(t.name(), std::move(dims), *type, t.data());
  }
  const int64_t block = gguf::Traits(static_cast<uint32_t>(target))->block_size;
  const int64_t row = dims.empty() ? 1 : dims[0];
  const gguf::GgmlType type = row % block == 0 ? target : gguf::GgmlType::kF32;
  std::vector<float> values(static_cast<size_t>(t.numel()));
  std::memcpy(values.data(), t.data().data(), t.data().size());  // the mapping may be unaligned
  auto bytes = gguf::Quantize(type, values);
  if (!bytes.ok()) return bytes.status().WithContext(where);
  report.push_back({{"name", t.name()}, {"type", TypeName(type)}});
  return writer.AddTensor(t.name(), std::move(dims), type, std::move(bytes).value());
}

Result<OrderedJson> Quantize(const std::string& path, const std::string& type_name, const std::string& out) {
  const auto target = gguf::ParseTypeName(type_name);
  if (!target || !gguf::CanQuantize(*target)) {
    return InvalidArgument("--type '" + type_name +
                           "' is not a type OpenRL quantizes to (F32, F16, BF16, Q8_0, Q4_0, "
                           "Q4_1, Q5_0, Q5_1)");
  }
  OPENRL_ASSIGN_OR_RETURN(auto file, formats::SafetensorsFile::Open(path));
  gguf::GgufWriter writer;
  OrderedJson tensors = OrderedJson::array();
  for (const formats::TensorView& t : file->tensors()) {
    OPENRL_RETURN_IF_ERROR(AddQuantized(writer, t, *target, path, tensors));
  }
  OPENRL_RETURN_IF_ERROR(writer.Write(out));
  return OrderedJson{{"written", out}, {"tensors", std::move(tensors)}};
}

void Emit(const Result<OrderedJson>& result) {
  if (!result.ok()) {
    SetExitCode(PrintError(result.status()));
    return;
  }
  std::cout << result->dump(2, ' ', false, OrderedJson::error_handler_t::replace) << "\n";
  SetExitCode(0);
}

}  // namespace

OPENRL_CLI_COMMAND("gguf", [](CLI::App& app) {
  auto* cmd = app.add_subcommand("gguf", "Inspect, dequantize and quantize GGUF files");
  cmd->require_subcommand(1);

  auto* inspect = cmd->add_subcommand("inspect", "Describe a GGUF file's header as JSON");
  auto path = std::make_shared<std::string>();
  auto full = std::make_shared<bool>(false);
  inspect->add_option("file", *path, "a .gguf file")->required();
  inspect->add_flag("--full-arrays", *full, "print metadata arrays whole instead of summarised");
  inspect->callback([=] { Emit(Inspect(*path, *full)); });

  auto* dequant = cmd->add_subcommand("dequant", "Dequantize tensors to F32 safetensors");
  auto dq_path = std::make_shared<std::string>();
  auto dq_out = std::make_shared<std::string>();
  auto names = std::make_shared<std::vector<std::string>>();
  dequant->add_option("file", *dq_path, "a .gguf file")->required();
  dequant->add_option("--out", *dq_out, "the .safetensors file to write")->required();
  dequant->add_option("--tensor", *names, "a tensor to dequantize (repeatable; default all)");
  dequant->callback([=] { Emit(Dequant(*dq_path, *dq_out, *names)); });

  auto* quantize = cmd->add_subcommand("quantize", "Quantize the F32 tensors of a safetensors file");
  auto q_path = std::make_shared<std::string>();
  auto q_type = std::make_shared<std::string>();
  auto q_out = std::make_shared<std::string>();
  quantize->add_option("file", *q_path, "a .safetensors file")->required();
  quantize->add_option("--type", *q_type, "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1")->required();
  quantize->add_option("--out", *q_out, "the .gguf file to write")->required();
  quantize->callback([=] { Emit(Quantize(*q_path, *q_type, *q_out)); });
});

}  // namespace openrl::cli
