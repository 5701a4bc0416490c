// GGUF export: the engine's model -> llama.cpp names, layout and metadata (see gguf_import.h).
#include <memory>

#include "openrl/formats/gguf_quant.h"
#include "openrl/model/gguf_import.h"

namespace openrl::model {
namespace {

namespace gg = formats::gguf;

std::string_view ArchName(Family f) {
  switch (f) {
    case Family::kLlama: return "llama";
    case Family::kQwen3: return "qwen3";
    case Family::kGemma3: return "gemma3";
  }
  return "";
}

Status SetArchMetadata(const ModelConfig& c, gg::Metadata& md) {
  std::string a(ArchName(c.family));
  auto u32 = [&](const char* key, int64_t v) { md.Set(a + "." + key, gg::Value::U32(static_cast<uint32_t>(v))); };
  u32("context_length", c.max_position_embeddings);
  u32("embedding_length", c.hidden_size);
  u32("block_count", c.num_hidden_layers);
  u32("feed_forward_length", c.intermediate_size);
  u32("attention.head_count", c.num_attention_heads);
  u32("attention.head_count_kv", c.num_key_value_heads);
  md.Set(a + ".rope.freq_base", gg::Value::F32(static_cast<float>(c.rope.theta)));
  md.Set(a + ".attention.layer_norm_rms_epsilon", gg::Value::F32(static_cast<float>(c.rms_norm_eps)));
  if (c.family == Family::kLlama) {
    u32("rope.dimension_count", c.head_dim);
    u32("vocab_size", c.vocab_size);
  } else {
    u32("attention.key_length", c.head_dim);
    u32("attention.value_length", c.head_dim);
  }
  if (c.gemma()) {
    if (!c.sliding_window) return InvalidArgument("gemma3 export: config has no sliding_window");
    u32("attention.sliding_window", *c.sliding_window);
    for (size_t i = 0; i < c.layer_is_sliding.size(); ++i)
      if (c.layer_is_sliding[i] != ((i + 1) % 6 != 0))
        return Unimplemented("gemma3 export: llama.cpp assumes every sixth layer is global; layer " +
                             std::to_string(i) + " of this model differs");
  }
  if (c.rope.type == "linear") {
    md.Set(a + ".rope.scaling.type", gg::Value::String("linear"));
    md.Set(a + ".rope.scaling.factor", gg::Value::F32(static_cast<float>(c.rope.factor)));
  } else if (c.rope.type != "default") {
    return Unimplemented("GGUF export of rope type '" + c.rope.type + "' is not supported (default, linear)");
  }
  return Status::Ok();
}

gg::GgmlType TensorType(ExportType type, const at::Tensor& t) {
  if (t.dim() < 2) return gg::GgmlType::kF32;  // norms and biases stay exact, as llama.cpp keeps them
  if (type == ExportType::kF16) return gg::GgmlType::kF16;
  if (t.size(-1) % 32 != 0) return gg::GgmlType::kF16;  // rows must fill whole blocks
  return type == ExportType::kQ8_0 ? gg::GgmlType::kQ8_0 : gg::GgmlType::kQ4_0;
}

}  // namespace

Result<ExportType> ParseExportType(std::string_view name) {
  if (name == "f16") return ExportType::kF16;
  if (name == "q8_0") return ExportType::kQ8_0;
  if (name == "q4_0") return ExportType::kQ4_0;
  return InvalidArgument("--type '" + std::string(name) + "': expected f16, q8_0 or q4_0");
}

Status ExportGguf(const Transformer& model, const std::string& tokenizer_dir, const std::string& out_path,
                  ExportType type, const std::string& name) {
  const ModelConfig& c = model.config();
  gg::GgufWriter w;
  gg::Metadata& md = w.metadata();
  md.Set("general.architecture", gg::Value::String(std::string(ArchName(c.family))));
  md.Set("general.type", gg::Value::String("model"));
  md.Set("general.name", gg::Value::String(name));
  uint32_t file_type = type == ExportType::kF16 ? 1 : type == ExportType::kQ8_0 ? 7 : 2;  // llama_ftype
  md.Set("general.file_type", gg::Value::U32(file_type));
  md.Set("general.quantization_version", gg::Value::U32(2));
  OPENRL_RETURN_IF_ERROR(SetArchMetadata(c, md));
  try {
    OPENRL_RETURN_IF_ERROR(TokenizerToGguf(tokenizer_dir, md));
    for (const auto& [hf, param] : model.NamedParameters()) {
      std::string gname = GgufTensorName(hf, c.family);
      if (gname.empty()) return Unimplemented("GGUF export: no llama.cpp name for parameter '" + hf + "'");
      OPENRL_ASSIGN_OR_RETURN(at::Tensor t, ConvertLlamaCppLayout(c, gname, param.detach().to(at::kCPU, at::kFloat),
                                                                  LayoutDirection::kToGguf));
      t = t.contiguous();
      gg::GgmlType gtype = TensorType(type, t);
      OPENRL_ASSIGN_OR_RETURN(auto bytes,
                              gg::Quantize(gtype, {t.data_ptr<float>(), static_cast<size_t>(t.numel())}));
      std::vector<int64_t> dims(t.sizes().rbegin(), t.sizes().rend());
      OPENRL_RETURN_IF_ERROR(w.AddTensor(gname, std::move(dims), gtype, std::move(bytes)));
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, out_path);
  }
  return w.Write(out_path);
}

}  // namespace openrl::model
