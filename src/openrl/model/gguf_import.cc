#include "openrl/model/gguf_import.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "openrl/core/crypto.h"
#include "openrl/core/fs.h"
#include "openrl/core/log.h"
#include "openrl/formats/gguf_quant.h"
#include "openrl/model/checkpoint.h"

namespace openrl::model {
namespace {

namespace gg = formats::gguf;
namespace stdfs = std::filesystem;

// Bump when the layout of an import changes, so cached imports are redone.
constexpr int kImportFormat = 1;

// llama.cpp's per-layer tensor names -> transformers' (the FFN norm depends on the family).
const std::vector<std::pair<std::string, std::string>>& LayerNames() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"attn_norm", "input_layernorm"},
      {"attn_q", "self_attn.q_proj"},
      {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},
      {"attn_output", "self_attn.o_proj"},
      {"attn_q_norm", "self_attn.q_norm"},
      {"attn_k_norm", "self_attn.k_norm"},
      {"ffn_gate", "mlp.gate_proj"},
      {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
      {"post_attention_norm", "post_attention_layernorm"},
      {"post_ffw_norm", "post_feedforward_layernorm"},
  };
  return names;
}

std::string FfnNormName(Family family) {
  return family == Family::kGemma3 ? "pre_feedforward_layernorm" : "post_attention_layernorm";
}

Result<uint64_t> ArchUint(const gg::Metadata& md, const std::string& arch, const char* key) {
  return md.GetUint(arch + "." + key);
}

template <typename T>
Result<T> Optional(const gg::Metadata& md, const std::string& key, T fallback,
                   Result<T> (gg::Metadata::*get)(std::string_view) const) {
  if (!md.Contains(key)) return fallback;
  return (md.*get)(key);
}

Result<Json> RopeJson(const gg::Metadata& md, const std::string& arch, double theta) {
  Json rope = {{"rope_type", "default"}, {"rope_theta", theta}};
  std::string type_key = arch + ".rope.scaling.type";
  if (!md.Contains(type_key)) return rope;
  OPENRL_ASSIGN_OR_RETURN(std::string type, md.GetString(type_key));
  if (type == "none") return rope;
  if (type != "linear")
    return Unimplemented(md.source + ": " + type_key + " '" + type + "' is not supported (none, linear)");
  OPENRL_ASSIGN_OR_RETURN(double factor, md.GetFloat(arch + ".rope.scaling.factor"));
  rope["rope_type"] = "linear";
  rope["factor"] = factor;
  return rope;
}

}  // namespace

std::string HfTensorName(std::string_view g, Family family) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  if (!g.starts_with("blk.")) return "";
  size_t dot = g.find('.', 4);
  if (dot == std::string_view::npos) return "";
  std::string_view layer = g.substr(4, dot - 4), rest = g.substr(dot + 1);
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string_view::npos) return "";
  size_t last = rest.rfind('.');
  if (last == std::string_view::npos) return "";
  std::string_view part = rest.substr(0, last), kind = rest.substr(last + 1);
  if (kind != "weight" && kind != "bias") return "";
  std::string hf;
  if (part == "ffn_norm") hf = FfnNormName(family);
  for (const auto& [ours, theirs] : LayerNames())
    if (part == ours) hf = theirs;
  if (hf.empty()) return "";
  return "model.layers." + std::string(layer) + "." + hf + "." + std::string(kind);
}

std::string GgufTensorName(std::string_view hf, Family family) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  constexpr std::string_view kPrefix = "model.layers.";
  if (!hf.starts_with(kPrefix)) return "";
  std::string_view rest = hf.substr(kPrefix.size());
  size_t dot = rest.find('.');
  size_t last = rest.rfind('.');
  if (dot == std::string_view::npos || last <= dot) return "";
  std::string_view layer = rest.substr(0, dot), part = rest.substr(dot + 1, last - dot - 1);
  std::string_view kind = rest.substr(last + 1);
  std::string g;
  if (part == FfnNormName(family)) g = "ffn_norm";
  for (const auto& [ours, theirs] : LayerNames())
    if (part == theirs && !(theirs == "post_attention_layernorm" && family != Family::kGemma3)) g = ours;
  if (g.empty()) return "";
  return "blk." + std::string(layer) + "." + g + "." + std::string(kind);
}

Result<Json> ConfigJsonFromGguf(const gg::GgufFile& file) {
  const gg::Metadata& md = file.metadata();
  OPENRL_ASSIGN_OR_RETURN(std::string arch, md.GetString("general.architecture"));
  if (arch != "llama" && arch != "qwen3" && arch != "gemma3")
    return Unimplemented(md.source + ": general.architecture '" + arch + "' is not supported (llama, qwen3, gemma3)");
  if (file.Find("rope_freqs.weight"))
    return Unimplemented(md.source + ": tensor 'rope_freqs.weight' (Llama 3.1 rope scaling) is not supported yet");
  const gg::TensorInfo* embd = file.Find("token_embd.weight");
  if (!embd || embd->dims.size() != 2) return InvalidArgument(md.source + ": no 2-D tensor 'token_embd.weight'");
  Json c;
  c["model_type"] = arch == "gemma3" ? "gemma3_text" : arch;
  c["architectures"] = {arch == "llama" ? "LlamaForCausalLM" : arch == "qwen3" ? "Qwen3ForCausalLM" : "Gemma3ForCausalLM"};
  c["vocab_size"] = embd->dims[1];
  for (auto [key, hf] : {std::pair{"embedding_length", "hidden_size"}, {"block_count", "num_hidden_layers"},
                         {"feed_forward_length", "intermediate_size"}, {"attention.head_count", "num_attention_heads"},
                         {"context_length", "max_position_embeddings"}}) {
    OPENRL_ASSIGN_OR_RETURN(uint64_t v, ArchUint(md, arch, key));
    c[hf] = v;
  }
  uint64_t heads = c["num_attention_heads"].get<uint64_t>();
  OPENRL_ASSIGN_OR_RETURN(uint64_t kv, Optional<uint64_t>(md, arch + ".attention.head_count_kv", heads, &gg::Metadata::GetUint));
  c["num_key_value_heads"] = kv;
  uint64_t head_dim = heads ? c["hidden_size"].get<uint64_t>() / heads : 0;
  OPENRL_ASSIGN_OR_RETURN(head_dim, Optional<uint64_t>(md, arch + ".attention.key_length", head_dim, &gg::Metadata::GetUint));
  if (arch == "llama") {
    OPENRL_ASSIGN_OR_RETURN(head_dim, Optional<uint64_t>(md, arch + ".rope.dimension_count", head_dim, &gg::Metadata::GetUint));
  }
  c["head_dim"] = head_dim;
  OPENRL_ASSIGN_OR_RETURN(c["rms_norm_eps"], md.GetFloat(arch + ".attention.layer_norm_rms_epsilon"));
  OPENRL_ASSIGN_OR_RETURN(double theta, Optional<double>(md, arch + ".rope.freq_base", 10000.0, &gg::Metadata::GetFloat));
  OPENRL_ASSIGN_OR_RETURN(Json rope, RopeJson(md, arch, theta));
  c["tie_word_embeddings"] = file.Find("output.weight") == nullptr;
  c["attention_bias"] = file.Find("blk.0.attn_q.bias") != nullptr;
  c["torch_dtype"] = "float32";
  if (arch == "gemma3") {
    OPENRL_ASSIGN_OR_RETURN(uint64_t window, ArchUint(md, arch, "attention.sliding_window"));
    c["sliding_window"] = window;
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["query_pre_attn_scalar"] = head_dim;  // llama.cpp scales by head_dim^-0.5 (27B aside)
    c["final_logit_softcapping"] = nullptr;
    c["attn_logit_softcapping"] = nullptr;
    Json types = Json::array();  // llama.cpp's Gemma 3 pattern: every sixth layer attends globally
    for (uint64_t i = 0; i < c["num_hidden_layers"].get<uint64_t>(); ++i)
      types.push_back((i + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
    c["layer_types"] = types;
    c["rope_parameters"] = {{"full_attention", rope},
                            {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
  } else {
    c["hidden_act"] = "silu";
    c["rope_parameters"] = rope;
  }
  for (auto [key, hf] : {std::pair{"tokenizer.ggml.bos_token_id", "bos_token_id"},
                         {"tokenizer.ggml.eos_token_id", "eos_token_id"},
                         {"tokenizer.ggml.padding_token_id", "pad_token_id"}}) {
    if (!md.Contains(key)) continue;
    OPENRL_ASSIGN_OR_RETURN(uint64_t id, md.GetUint(key));
    c[hf] = id;
  }
  return c;
}

Result<at::Tensor> ConvertLlamaCppLayout(const ModelConfig& cfg, const std::string& gguf_name, at::Tensor t,
                                         LayoutDirection direction) {
  bool to_gguf = direction == LayoutDirection::kToGguf;
  bool is_q = gguf_name.find(".attn_q.") != std::string::npos;
  bool is_k = gguf_name.find(".attn_k.") != std::string::npos;
  if (cfg.family == Family::kLlama && (is_q || is_k)) {
    int64_t heads = is_q ? cfg.num_attention_heads : cfg.num_key_value_heads;
    int64_t rows = t.size(0);
    if (rows % (2 * heads) != 0)
      return InvalidArgument("tensor '" + gguf_name + "' has " + std::to_string(rows) + " rows, not a multiple of 2 x " +
                             std::to_string(heads) + " heads");
    // Per head: (2 halves, dim/2) in our layout, (dim/2, 2) interleaved in llama.cpp's.
    std::vector<int64_t> shape = {heads, 2, rows / heads / 2};
    if (!to_gguf) std::swap(shape[1], shape[2]);
    for (int64_t d = 1; d < t.dim(); ++d) shape.push_back(t.size(d));
    t = t.reshape(shape).transpose(1, 2).reshape(t.sizes()).contiguous();
  }
  if (cfg.gemma() && gguf_name.find("norm.weight") != std::string::npos) t = to_gguf ? t + 1.0 : t - 1.0;
  return t;
}

// The tensor as the engine wants it: dequantized to fp32, in PyTorch layout, with llama.cpp's
// conversion undone.
static Result<at::Tensor> ReadTensor(const gg::GgufFile& file, const gg::TensorInfo& info, const ModelConfig& cfg) {
  if (!gg::CanDequantize(info.type))
    return Unimplemented(file.path() + ": tensor '" + info.name + "': type " +
                         std::string(gg::Traits(static_cast<uint32_t>(info.type))->name) + " cannot be dequantized");
  at::Tensor t = at::empty(info.shape(), at::kFloat);
  OPENRL_RETURN_IF_ERROR(gg::Dequantize(info.type, file.Data(info), {t.data_ptr<float>(), static_cast<size_t>(t.numel())})
                             .WithContext(file.path() + ": tensor '" + info.name + "'"));
  auto converted = ConvertLlamaCppLayout(cfg, info.name, std::move(t), LayoutDirection::kFromGguf);
  if (!converted.ok()) return converted.status().WithContext(file.path());
  return converted;
}

Result<ImportedModel> ImportGguf(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(auto file, gg::GgufFile::Open(path));
  ImportedModel m;
  OPENRL_ASSIGN_OR_RETURN(m.config_json, ConfigJsonFromGguf(*file));
  OPENRL_ASSIGN_OR_RETURN(m.config, ModelConfig::FromJson(m.config_json, path));
  OPENRL_ASSIGN_OR_RETURN(std::string arch, file->metadata().GetString("general.architecture"));
  OPENRL_ASSIGN_OR_RETURN(m.tokenizer, TokenizerFromGguf(file->metadata(), arch));
  m.generation_config = {{"_from_model_config", true}};
  for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (m.config_json.contains(k)) m.generation_config[k] = m.config_json[k];
  Json unmapped = Json::array();
  try {
    for (const gg::TensorInfo& info : file->tensors()) {
      std::string hf = HfTensorName(info.name, m.config.family);
      if (hf.empty()) {
        unmapped.push_back(info.name);
        continue;
      }
      OPENRL_ASSIGN_OR_RETURN(at::Tensor t, ReadTensor(*file, info, m.config));
      m.tensors.emplace_back(std::move(hf), std::move(t));
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, path);
  }
  OPENRL_ASSIGN_OR_RETURN(std::string sha, crypto::Sha256FileHex(path));
  Json general = Json::object();
  for (const auto& [key, value] : file->metadata().entries()) {
    if (!key.starts_with("general.")) continue;
    if (const auto* s = std::get_if<std::string>(&value.data)) general[key] = *s;
    else if (const auto* u = std::get_if<uint64_t>(&value.data)) general[key] = *u;
  }
  std::string pre;
  if (file->metadata().Contains("tokenizer.ggml.pre")) {
    OPENRL_ASSIGN_OR_RETURN(pre, file->metadata().GetString("tokenizer.ggml.pre"));
  }
  m.provenance = {{"format", kImportFormat},
                  {"source", {{"path", stdfs::absolute(path).string()}, {"sha256", sha}, {"gguf_version", file->header().version}}},
                  {"general", general},
                  {"tokenizer.ggml.pre", pre},
                  {"unmapped_tensors", unmapped}};
  return m;
}

Status WriteImportedModel(const ImportedModel& m, const std::string& out_dir, const ImportOptions& opts) {
  stdfs::path final_dir = stdfs::absolute(out_dir);
  if (stdfs::exists(final_dir) && !stdfs::is_empty(final_dir))
    return AlreadyExists(out_dir + ": exists and is not empty; choose a new --out directory");
  stdfs::path tmp = final_dir;
  tmp += ".partial-" + std::to_string(::getpid());
  std::error_code ec;
  stdfs::remove_all(tmp, ec);
  OPENRL_RETURN_IF_ERROR(openrl::fs::CreateDirectories(tmp.string()));
  auto write_json = [&](const char* name, const Json& j) {
    return openrl::fs::WriteFileAtomic((tmp / name).string(), j.dump(2) + "\n");
  };
  Status st = [&]() -> Status {
    Json cfg = m.config_json;
    cfg["torch_dtype"] = DtypeName(opts.dtype);
    std::vector<std::pair<std::string, at::Tensor>> converted;
    converted.reserve(m.tensors.size());
    for (const auto& [name, t] : m.tensors) converted.emplace_back(name, t.to(opts.dtype));
    OPENRL_RETURN_IF_ERROR(WriteTensors(converted, (tmp / "model.safetensors").string(), {{"format", "pt"}}));
    OPENRL_RETURN_IF_ERROR(write_json("config.json", cfg));
    OPENRL_RETURN_IF_ERROR(write_json("generation_config.json", m.generation_config));
    OPENRL_RETURN_IF_ERROR(
        openrl::fs::WriteFileAtomic((tmp / "tokenizer.json").string(), m.tokenizer.tokenizer.dump() + "\n"));
    OPENRL_RETURN_IF_ERROR(write_json("tokenizer_config.json", m.tokenizer.config));
    if (!m.tokenizer.chat_template.empty()) {
      OPENRL_RETURN_IF_ERROR(openrl::fs::WriteFileAtomic((tmp / "chat_template.jinja").string(), m.tokenizer.chat_template));
    }
    return write_json("openrl_import.json", m.provenance);
  }();
  if (st.ok()) {
    stdfs::remove(final_dir, ec);  // an empty directory may stand there
    stdfs::rename(tmp, final_dir, ec);
    if (ec) st = Internal(out_dir + ": cannot move the import into place: " + ec.message());
  }
  if (!st.ok()) stdfs::remove_all(tmp, ec);
  return st;
}

bool IsGgufFile(const std::string& path) {
  std::error_code ec;
  if (!stdfs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  uint32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  return in.gcount() == sizeof magic && magic == gg::kMagic;
}

// One cached import per source file: imports of the same path under another key (the file was
// replaced or touched since) are removed. Mappings of a removed copy stay valid until unmapped.
static void DropStaleImports(const stdfs::path& root, const stdfs::path& keep, const std::string& source) {
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(root, ec)) {
    if (entry.path() == keep || !entry.is_directory(ec)) continue;
    auto prov = ReadJsonFile((entry.path() / "openrl_import.json").string());
    if (!prov.ok() || !prov->contains("source") || !(*prov)["source"].is_object()) continue;
    if ((*prov)["source"].value("path", "") == source) stdfs::remove_all(entry.path(), ec);
  }
}

Result<std::string> ImportGgufCached(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return NotFound(path + ": no such file");
  std::string key = crypto::Sha256Hex(stdfs::absolute(path).string() + "|" + std::to_string(st.st_size) + "|" +
                                      std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) +
                                      "|" + std::to_string(kImportFormat))
                        .substr(0, 16);
  const char* cache = std::getenv("OPENRL_CACHE");
  const char* home = std::getenv("HOME");
  stdfs::path root = cache ? stdfs::path(cache) : stdfs::path(home ? home : "/tmp") / ".cache" / "openrl";
  stdfs::path dir = root / "gguf" / (stdfs::path(path).stem().string() + "-" + key);
  if (stdfs::exists(dir / "openrl_import.json")) return dir.string();
  log::Write(log::Level::kInfo, "importing " + path + " into " + dir.string() + " (first use only)");
  OPENRL_ASSIGN_OR_RETURN(ImportedModel m, ImportGguf(path));
  Status written = WriteImportedModel(m, dir.string(), {at::kFloat});
  // Another process importing the same file may have moved its copy into place first.
  if (!written.ok() && !stdfs::exists(dir / "openrl_import.json")) return written;
  DropStaleImports(dir.parent_path(), dir, stdfs::absolute(path).string());
  return dir.string();
}

}  // namespace openrl::model
