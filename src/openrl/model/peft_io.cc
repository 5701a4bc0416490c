#include "openrl/model/peft_io.h"

#include <c10/core/GradMode.h>

#include <filesystem>
#include <map>

#include "openrl/core/fs.h"
#include "openrl/formats/safetensors.h"
#include "openrl/model/checkpoint.h"

namespace openrl::model {
namespace stdfs = std::filesystem;
namespace {

const std::set<LinearKind> kAllLinear = {LinearKind::kQ,    LinearKind::kK,  LinearKind::kV,
                                         LinearKind::kO,    LinearKind::kGate, LinearKind::kUp,
                                         LinearKind::kDown};

// "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight" → (3, kQ, 'A').
bool ParsePeftName(const std::string& name, int64_t& layer, LinearKind& kind, char& which) {
  static const std::string kHead = "base_model.model.lm_head.lora_";
  if (name.starts_with(kHead) && name.size() == kHead.size() + 8 && name.ends_with(".weight")) {
    layer = -1;
    kind = LinearKind::kLmHead;
    which = name[kHead.size()];
    return which == 'A' || which == 'B';
  }
  static const std::string kLayers = "base_model.model.model.layers.";
  if (!name.starts_with(kLayers)) return false;
  size_t p = kLayers.size(), dot = name.find('.', p);
  if (dot == std::string::npos) return false;
  try {
    layer = std::stoll(name.substr(p, dot - p));
  } catch (...) {
    return false;
  }
  std::string rest = name.substr(dot + 1);  // self_attn.q_proj.lora_A.weight
  size_t d1 = rest.find('.'), d2 = rest.find('.', d1 + 1);
  if (d1 == std::string::npos || d2 == std::string::npos) return false;
  auto k = LinearFromName(rest.substr(d1 + 1, d2 - d1 - 1));
  std::string tail = rest.substr(d2 + 1);
  if (!k || (tail != "lora_A.weight" && tail != "lora_B.weight")) return false;
  kind = *k;
  which = tail[5];
  return true;
}

}  // namespace

Result<LoraConfig> LoraConfigFromPeft(const Json& j, std::string_view src) {
  LoraConfig c;
  std::string s(src);
  std::string type = j.value("peft_type", "LORA");
  if (type != "LORA") return InvalidArgument(s + ": field 'peft_type': only LORA is supported, got '" + type + "'");
  OPENRL_ASSIGN_OR_RETURN(c.rank, GetField<int64_t>(j, "r", src));
  OPENRL_ASSIGN_OR_RETURN(c.alpha, GetFieldOr<double>(j, "lora_alpha", 8.0, src));
  OPENRL_ASSIGN_OR_RETURN(c.dropout, GetFieldOr<double>(j, "lora_dropout", 0.0, src));
  OPENRL_ASSIGN_OR_RETURN(c.use_rslora, GetFieldOr<bool>(j, "use_rslora", false, src));
  if (j.value("use_dora", false)) return InvalidArgument(s + ": field 'use_dora': DoRA adapters are not supported");
  if (j.contains("bias") && j["bias"] != "none") return InvalidArgument(s + ": field 'bias': only 'none' is supported");
  if (j.contains("rank_pattern") && j["rank_pattern"].is_object() && !j["rank_pattern"].empty())
    return InvalidArgument(s + ": field 'rank_pattern': per-module ranks are not supported");
  if (j.contains("alpha_pattern") && j["alpha_pattern"].is_object() && !j["alpha_pattern"].empty())
    return InvalidArgument(s + ": field 'alpha_pattern': per-module alphas are not supported");
  if (j.contains("layers_to_transform") && !j["layers_to_transform"].is_null())
    return InvalidArgument(s + ": field 'layers_to_transform' is not supported");
  const Json& t = j.contains("target_modules") ? j["target_modules"] : Json();
  c.targets.clear();
  if (t.is_string() && t.get<std::string>() == "all-linear") {
    c.targets = kAllLinear;
  } else if (t.is_array()) {
    for (const Json& m : t) {
      auto k = m.is_string() ? LinearFromName(m.get<std::string>()) : std::nullopt;
      if (!k) return InvalidArgument(s + ": field 'target_modules': unsupported module " + m.dump());
      c.targets.insert(*k);
    }
  } else {
    return InvalidArgument(s + ": field 'target_modules' must be a list of module names or 'all-linear'");
  }
  OPENRL_RETURN_IF_ERROR(c.Validate().WithContext(s));
  return c;
}

Json LoraConfigToPeft(const LoraConfig& c, const std::string& base_model) {
  Json targets = Json::array();
  for (LinearKind k : c.targets) targets.push_back(LinearName(k));
  return {{"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"r", c.rank}, {"lora_alpha", c.alpha},
          {"lora_dropout", c.dropout}, {"target_modules", targets}, {"bias", "none"},
          {"use_rslora", c.use_rslora}, {"use_dora", false}, {"fan_in_fan_out", false},
          {"base_model_name_or_path", base_model}, {"inference_mode", true},
          {"modules_to_save", nullptr}, {"init_lora_weights", true}};
}

Result<std::unique_ptr<LoraAdapter>> LoadPeftAdapter(const std::string& dir, const ModelConfig& model,
                                                     at::ScalarType dtype, at::Device device) {
  std::string cfg_path = (stdfs::path(dir) / "adapter_config.json").string();
  std::string st_path = (stdfs::path(dir) / "adapter_model.safetensors").string();
  OPENRL_ASSIGN_OR_RETURN(Json cj, ReadJsonFile(cfg_path));
  OPENRL_ASSIGN_OR_RETURN(LoraConfig cfg, LoraConfigFromPeft(cj, cfg_path));
  OPENRL_ASSIGN_OR_RETURN(auto file, formats::SafetensorsFile::Open(st_path));
  // Shapes come from a fresh adapter of the same config; every one must be matched once.
  auto expected = LoraAdapter::Create(model, cfg, at::kFloat, at::kCPU, 0);
  auto adapter = std::make_unique<LoraAdapter>(cfg);
  std::map<std::pair<int64_t, LinearKind>, int> seen;
  for (const auto& view : file->tensors()) {
    int64_t layer;
    LinearKind kind;
    char which;
    if (!ParsePeftName(view.name(), layer, kind, which))
      return InvalidArgument(st_path + ": tensor '" + view.name() + "' is not a LoRA weight of a supported module");
    const auto* want = expected->Find(layer, kind);
    if (want == nullptr)
      return InvalidArgument(st_path + ": tensor '" + view.name() +
                             "' targets a module or layer that adapter_config.json / the base model does not have");
    OPENRL_ASSIGN_OR_RETURN(at::Tensor t, TensorFromView(view, st_path));
    const at::Tensor& ref = which == 'A' ? want->a : want->b;
    if (t.sizes() != ref.sizes())
      return InvalidArgument(st_path + ": tensor '" + view.name() + "' has shape " +
                             formats::ShapeToString(view.shape()) + " but rank " + std::to_string(cfg.rank) +
                             " over this base model needs " +
                             formats::ShapeToString(std::vector<int64_t>(ref.sizes().begin(), ref.sizes().end())));
    LoraAdapter::Pair* p = adapter->Find(layer, kind);
    LoraAdapter::Pair cur = p ? *p : LoraAdapter::Pair{};
    (which == 'A' ? cur.a : cur.b) = t.to(device, dtype).contiguous();
    adapter->Set(layer, kind, cur);
    seen[{layer, kind}] |= which == 'A' ? 1 : 2;
  }
  for (const auto& [name, t] : expected->NamedTensors()) {
    int64_t layer;
    LinearKind kind;
    char which;
    ParsePeftName(name, layer, kind, which);
    if (!(seen[{layer, kind}] & (which == 'A' ? 1 : 2)))
      return InvalidArgument(st_path + ": missing tensor '" + name + "' required by adapter_config.json");
  }
  return adapter;
}

Status SavePeftAdapter(const LoraAdapter& adapter, const std::string& dir, const std::string& base_model) {
  OPENRL_RETURN_IF_ERROR(openrl::fs::CreateDirectories(dir));
  OPENRL_RETURN_IF_ERROR(WriteTensors(adapter.NamedTensors(), (stdfs::path(dir) / "adapter_model.safetensors").string(),
                                      {{"format", "pt"}}));
  return openrl::fs::WriteFileAtomic((stdfs::path(dir) / "adapter_config.json").string(),
                         LoraConfigToPeft(adapter.config(), base_model).dump(2) + "\n");
}

Status MergeAdapter(Transformer& model, const LoraAdapter& adapter) {
  at::NoGradGuard no_grad;
  if (model.config().tie_word_embeddings && adapter.Find(-1, LinearKind::kLmHead) != nullptr)
    return FailedPrecondition(
        "merge: the adapter trains lm_head but this model ties it to the input embeddings; merging "
        "would change both (serve the adapter unmerged instead)");
  double scale = adapter.config().scale();
  return model.ForEachLinear([&](int64_t layer, LinearKind kind, at::Tensor& w) {
    const auto* p = adapter.Find(layer, kind);
    if (p == nullptr) return;
    at::Tensor delta = at::matmul(p->b.to(at::kFloat), p->a.to(at::kFloat)) * scale;
    w.copy_((w.to(at::kFloat) + delta.to(w.device())).to(w.scalar_type()));
  });
}

}  // namespace openrl::model
