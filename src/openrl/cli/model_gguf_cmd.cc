// `openrl model import FILE.gguf --out DIR` and `openrl model export DIR [--adapter A] --gguf OUT
// --type f16|q8_0|q4_0` (also spelled `openrl models ...`).
#include <chrono>
#include <iostream>
#include <memory>

#include "openrl/cli/command.h"
#include "openrl/cli/model_loading.h"
#include "openrl/model/gguf_import.h"
#include "openrl/model/peft_io.h"

namespace openrl::cli {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int Import(const std::string& file, const std::string& out, const std::string& dtype_name) {
  auto t0 = std::chrono::steady_clock::now();
  auto dtype = model::ParseDtype(dtype_name);
  if (!dtype.ok()) return PrintError(dtype.status());
  if (*dtype != at::kFloat && *dtype != at::kBFloat16 && *dtype != at::kHalf)
    return PrintError(InvalidArgument("--dtype: expected float32, bfloat16 or float16"));
  auto m = model::ImportGguf(file);
  if (!m.ok()) return PrintError(m.status());
  if (auto st = model::WriteImportedModel(*m, out, {*dtype}); !st.ok()) return PrintError(st);
  std::cout << Json{{"out", out},
                    {"model_type", m->config.model_type},
                    {"parameters", m->config.NumParameters()},
                    {"tensors", m->tensors.size()},
                    {"dtype", model::DtypeName(*dtype)},
                    {"sha256", m->provenance["source"]["sha256"]},
                    {"seconds", SecondsSince(t0)}}
                   .dump()
            << "\n";
  return 0;
}

int Export(const ModelOptions& opts, const std::string& out, const std::string& type_name) {
  auto t0 = std::chrono::steady_clock::now();
  auto type = model::ParseExportType(type_name);
  if (!type.ok()) return PrintError(type.status());
  ModelOptions fp32 = opts;
  fp32.dtype = "float32";  // merge and quantize from full precision
  auto loaded = LoadModelForCli(fp32);
  if (!loaded.ok()) return PrintError(loaded.status());
  auto& m = *loaded;
  if (m.adapter) {
    if (auto st = model::MergeAdapter(*m.dir.model, *m.adapter); !st.ok()) return PrintError(st);
  }
  auto base_name = [](std::string p) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();  // "dir/" names "dir"
    return std::filesystem::path(p).filename().string();
  };
  std::string name = base_name(opts.model_dir);
  if (!opts.adapter_dir.empty()) name += "+" + base_name(opts.adapter_dir);
  if (auto st = model::ExportGguf(*m.dir.model, m.dir.path, out, *type, name); !st.ok()) return PrintError(st);
  std::cout << Json{{"gguf", out},
                    {"type", type_name},
                    {"adapter", opts.adapter_dir.empty() ? Json(nullptr) : Json(opts.adapter_dir)},
                    {"seconds", SecondsSince(t0)}}
                   .dump()
            << "\n";
  return 0;
}

}  // namespace

void InstallGgufCommands(CLI::App* model) {
  auto* imp = model->add_subcommand("import", "Import a GGUF file (llama, gemma3) as a Hugging Face model directory");
  auto file = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto dtype = std::make_shared<std::string>("bfloat16");
  imp->add_option("FILE", *file, "GGUF file")->required();
  imp->add_option("--out", *out, "new model directory")->required();
  imp->add_option("--dtype", *dtype, "safetensors dtype: float32 | bfloat16 | float16")->capture_default_str();
  imp->callback([file, out, dtype] { SetExitCode(Import(*file, *out, *dtype)); });

  auto* exp = model->add_subcommand("export", "Merge an adapter into a model and write a GGUF for llama.cpp / Ollama");
  auto opts = std::make_shared<ModelOptions>();
  auto gguf = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>("f16");
  exp->add_option("DIR", opts->model_dir, "Hugging Face model directory or GGUF file")->required();
  exp->add_option("--adapter", opts->adapter_dir, "PEFT LoRA adapter directory to merge first");
  exp->add_option("--gguf", *gguf, "output GGUF file")->required();
  exp->add_option("--type", *type, "f16 | q8_0 | q4_0")->capture_default_str();
  exp->add_option("--threads", opts->threads, "CPU threads (0 = all cores)");
  exp->callback([opts, gguf, type] { SetExitCode(Export(*opts, *gguf, *type)); });
}

}  // namespace openrl::cli
