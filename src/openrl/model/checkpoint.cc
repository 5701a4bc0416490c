#include "openrl/model/checkpoint.h"

#include <ATen/Context.h>

#include <cstring>
#include <filesystem>

#include "openrl/core/fs.h"
#include "openrl/formats/safetensors_writer.h"
#include "openrl/formats/sharded_checkpoint.h"

namespace openrl::model {
namespace stdfs = std::filesystem;

Result<at::ScalarType> ParseDtype(std::string_view name) {
  if (name == "float32" || name == "fp32" || name == "f32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "f16") return at::kHalf;
  return InvalidArgument("unsupported dtype '" + std::string(name) +
                         "' (use float32, bfloat16 or float16)");
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return "float32";
  }
}

Result<at::Device> ParseDevice(const std::string& name) {
  try {
    at::Device d(name);
    if (d.is_cuda() && !at::hasCUDA())
      return FailedPrecondition("device '" + name + "': this build or machine has no CUDA (build with -DOPENRL_WITH_CUDA=ON on a GPU machine)");
    if (!d.is_cpu() && !d.is_cuda()) return InvalidArgument("device '" + name + "': only cpu and cuda are supported");
    if (d.is_cuda() && d.has_index() && static_cast<size_t>(d.index()) >= at::getNumGPUs())
      return FailedPrecondition("device '" + name + "': this machine has " + std::to_string(at::getNumGPUs()) +
                                " CUDA device(s)");
    return d;
  } catch (const std::exception&) {
    return InvalidArgument("device '" + name + "' is not a device name (use cpu, cuda or cuda:N)");
  }
}

namespace {

Result<at::ScalarType> TorchDtype(formats::Dtype d) {
  using formats::Dtype;
  switch (d) {
    case Dtype::kF32: return at::kFloat;
    case Dtype::kF16: return at::kHalf;
    case Dtype::kBF16: return at::kBFloat16;
    case Dtype::kF64: return at::kDouble;
    case Dtype::kI64: return at::kLong;
    case Dtype::kI32: return at::kInt;
    case Dtype::kI16: return at::kShort;
    case Dtype::kI8: return at::kChar;
    case Dtype::kU8: return at::kByte;
    case Dtype::kBool: return at::kBool;
    default: return InvalidArgument("dtype not supported by the engine");
  }
}

Result<formats::Dtype> FormatDtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return formats::Dtype::kF32;
    case at::kHalf: return formats::Dtype::kF16;
    case at::kBFloat16: return formats::Dtype::kBF16;
    case at::kDouble: return formats::Dtype::kF64;
    case at::kLong: return formats::Dtype::kI64;
    case at::kInt: return formats::Dtype::kI32;
    case at::kByte: return formats::Dtype::kU8;
    case at::kBool: return formats::Dtype::kBool;
    default: return InvalidArgument("cannot write dtype " + std::string(c10::toString(t)));
  }
}

// Multimodal Gemma 3 checkpoints nest the language model; these prefixes map onto ours.
const std::vector<std::pair<std::string, std::string>> kNamePrefixes = {
    {"model.", "model.language_model."},
    {"model.", "language_model.model."},
    {"lm_head.", "language_model.lm_head."},
};

}  // namespace

Result<at::Tensor> TensorFromView(const formats::TensorView& view, std::string_view source) {
  auto dt = TorchDtype(view.dtype());
  if (!dt.ok()) {
    std::string where = "tensor '" + view.name() + "'";
    return dt.status().WithContext(source.empty() ? where : std::string(source) + ": " + where);
  }
  auto span = view.data();
  at::Tensor t = at::empty(view.shape(), at::TensorOptions().dtype(*dt));
  if (!span.empty()) std::memcpy(t.data_ptr(), span.data(), span.size());
  return t;
}

std::vector<int64_t> StopTokenIds(const ModelDir& dir) {
  std::vector<int64_t> ids;
  if (dir.generation_config.is_object() && dir.generation_config.contains("eos_token_id"))
    ids = EosTokenIds(dir.generation_config["eos_token_id"]);
  return ids.empty() ? dir.config.eos_token_ids : ids;
}

Result<ModelConfig> ReadModelConfig(const std::string& dir) {
  stdfs::path p = stdfs::path(dir) / "config.json";
  if (!stdfs::exists(p)) return NotFound(dir + ": no config.json (not a Hugging Face model directory)");
  return ModelConfig::FromFile(p.string());
}

Result<ModelDir> LoadModelDir(const std::string& dir, const LoadOptions& opts) {
  ModelDir out;
  out.path = dir;
  OPENRL_ASSIGN_OR_RETURN(out.config, ReadModelConfig(dir));
  stdfs::path gen = stdfs::path(dir) / "generation_config.json";
  if (stdfs::exists(gen)) {
    OPENRL_ASSIGN_OR_RETURN(out.generation_config, ReadJsonFile(gen.string()));
  }
  if (!opts.weights) return out;
  OPENRL_ASSIGN_OR_RETURN(auto ckpt, formats::ShardedCheckpoint::Open(dir));
  at::ScalarType dtype = at::kFloat;
  if (opts.dtype) {
    dtype = *opts.dtype;
  } else {
    OPENRL_ASSIGN_OR_RETURN(dtype, ParseDtype(out.config.torch_dtype));
  }
  std::string source = dir;
  auto lookup = [&](const std::string& name) -> Result<at::Tensor> {
    std::string found = name;
    if (!ckpt->Contains(name)) {
      found.clear();
      for (const auto& [ours, theirs] : kNamePrefixes)
        if (name.starts_with(ours) && ckpt->Contains(theirs + name.substr(ours.size())))
          found = theirs + name.substr(ours.size());
      if (found.empty())
        return InvalidArgument("checkpoint has no tensor '" + name + "' required by config.json");
    }
    OPENRL_ASSIGN_OR_RETURN(auto view, ckpt->Get(found));
    return TensorFromView(view, "");
  };
  try {
    auto model = Transformer::Load(out.config, lookup, dtype, opts.device);
    if (!model.ok()) return model.status().WithContext(dir);
    out.model = std::move(model).value();
  } catch (const std::exception& e) {  // allocation or libtorch failures while materializing
    return StatusFromException(e, dir);
  }
  return out;
}

// Adds `tensors` (converted to `dtype` when given) to `w`; `keep` owns the bytes until written.
static Status AddTensors(formats::SafetensorsWriter& w, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  std::optional<at::ScalarType> dtype, std::vector<at::Tensor>& keep) {
  for (const auto& [name, t] : tensors) {
    at::Tensor c = t.detach().to(at::kCPU, dtype.value_or(t.scalar_type())).contiguous();
    keep.push_back(c);
    OPENRL_ASSIGN_OR_RETURN(auto dt, FormatDtype(c.scalar_type()));
    std::vector<int64_t> shape(c.sizes().begin(), c.sizes().end());
    OPENRL_RETURN_IF_ERROR(w.Add(name, dt, shape, {static_cast<const uint8_t*>(c.data_ptr()), c.nbytes()}));
  }
  return Status::Ok();
}

Status WriteTensors(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                    const std::string& path, const std::map<std::string, std::string>& metadata) {
  formats::SafetensorsWriter w;
  std::vector<at::Tensor> keep;
  OPENRL_RETURN_IF_ERROR(AddTensors(w, tensors, std::nullopt, keep));
  for (const auto& [k, v] : metadata) OPENRL_RETURN_IF_ERROR(w.SetMetadata(k, v));
  return w.Write(path);
}

Result<std::vector<std::pair<std::string, at::Tensor>>> ReadTensors(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(auto file, formats::SafetensorsFile::Open(path));
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const std::string& name : file->names()) {
    OPENRL_ASSIGN_OR_RETURN(formats::TensorView view, file->Get(name));
    OPENRL_ASSIGN_OR_RETURN(at::Tensor t, TensorFromView(view, path));
    out.emplace_back(name, std::move(t));
  }
  return out;
}

Status SaveModelDir(const Transformer& model, const std::string& dir, const SaveOptions& opts) {
  OPENRL_RETURN_IF_ERROR(openrl::fs::CreateDirectories(dir));
  formats::SafetensorsWriter w;
  std::vector<at::Tensor> keep;
  OPENRL_RETURN_IF_ERROR(AddTensors(w, model.NamedParameters(), opts.dtype, keep));
  OPENRL_RETURN_IF_ERROR(w.SetMetadata("format", "pt"));
  OPENRL_ASSIGN_OR_RETURN(auto files, w.WriteSharded(dir, opts.max_shard_bytes));
  ModelConfig cfg = model.config();
  cfg.torch_dtype = DtypeName(opts.dtype);
  OPENRL_RETURN_IF_ERROR(openrl::fs::WriteFileAtomic((stdfs::path(dir) / "config.json").string(), cfg.ToJson().dump(2) + "\n"));
  if (!opts.generation_config.is_null()) {
    OPENRL_RETURN_IF_ERROR(openrl::fs::WriteFileAtomic((stdfs::path(dir) / "generation_config.json").string(),
                                           opts.generation_config.dump(2) + "\n"));
  }
  if (!opts.tokenizer_from.empty() && stdfs::path(opts.tokenizer_from) != stdfs::path(dir)) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "chat_template.jinja"}) {
      std::string src = (stdfs::path(opts.tokenizer_from) / f).string();
      if (!openrl::fs::Exists(src)) continue;
      OPENRL_ASSIGN_OR_RETURN(std::string bytes, openrl::fs::ReadFile(src));
      OPENRL_RETURN_IF_ERROR(openrl::fs::WriteFileAtomic((stdfs::path(dir) / f).string(), bytes));
    }
  }
  return Status::Ok();
}

}  // namespace openrl::model
