#include "openrl/model/gguf_tokenizer.h"

#include <cctype>
#include <filesystem>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "openrl/core/fs.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::model {
namespace {

namespace gg = formats::gguf;
namespace stdfs = std::filesystem;

// llama.cpp's token types (tokenizer.ggml.token_type).
constexpr int64_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kByte = 6;
const char* const kSpace = "\xe2\x96\x81";  // U+2581, SentencePiece's visible space

// Pre-tokenizer regexes of llama.cpp's tokenizer.ggml.pre names (those transformers maps too).
const char* const kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::vector<std::pair<std::string, const char*>>& PreSplits() {
  static const std::vector<std::pair<std::string, const char*>> table = {
      {"llama3", kLlama3Split},   {"llama-v3", kLlama3Split}, {"llama-bpe", kLlama3Split},
      {"falcon3", kLlama3Split},  {"dbrx", kLlama3Split},     {"smaug-bpe", kLlama3Split},
      {"qwen2", kQwen2Split},     {"deepseek-r1-qwen", kQwen2Split}};
  return table;
}

bool InByteAlphabet(const std::string& token) {
  for (char32_t cp : tokenizer::ToCodePoints(token))
    if (tokenizer::UnicodeToByte(cp) < 0) return false;
  return true;
}

Json AddedToken(int64_t id, const std::string& content, bool special) {
  return Json{{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
              {"rstrip", false},   {"normalized", false}, {"special", special}};
}

// Merges implied by a vocabulary without any: every split of a token into two tokens of the
// vocabulary, tokens taken in file order, longer left pieces first (what transformers derives
// for Gemma, whose token order is its merge order).
Json MergesFromVocab(const std::vector<std::string>& tokens,
                     const std::unordered_map<std::string_view, int64_t>& vocab) {
  Json merges = Json::array();
  std::vector<size_t> bounds;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (vocab.at(t) != static_cast<int64_t>(i)) continue;  // a repeated token counts at its last index
    bounds.clear();
    for (size_t pos = 0; pos < t.size();) {
      char32_t cp;
      pos += tokenizer::DecodeUtf8(t, pos, &cp);
      if (pos < t.size()) bounds.push_back(pos);
    }
    for (auto b = bounds.rbegin(); b != bounds.rend(); ++b) {
      std::string_view sv(t);
      std::string_view l = sv.substr(0, *b), r = sv.substr(*b);
      if (vocab.contains(l) && vocab.contains(r)) merges.push_back(Json::array({std::string(l), std::string(r)}));
    }
  }
  return merges;
}

Json PostProcessor(const std::optional<std::string>& bos, int64_t bos_id, const std::optional<std::string>& eos,
                   int64_t eos_id) {
  auto seq = [](const char* id, int type) { return Json{{"Sequence", {{"id", id}, {"type_id", type}}}}; };
  auto special = [](const std::string& tok, int type) {
    return Json{{"SpecialToken", {{"id", tok}, {"type_id", type}}}};
  };
  Json single = Json::array(), pair = Json::array(), specials = Json::object();
  for (int part = 0; part < 2; ++part) {
    if (bos) {
      if (part == 0) single.push_back(special(*bos, 0));
      pair.push_back(special(*bos, part));
    }
    if (part == 0) single.push_back(seq("A", 0));
    pair.push_back(seq(part == 0 ? "A" : "B", part));
    if (eos) {
      if (part == 0) single.push_back(special(*eos, 0));
      pair.push_back(special(*eos, part));
    }
  }
  if (bos) specials[*bos] = {{"id", *bos}, {"ids", {bos_id}}, {"tokens", {*bos}}};
  if (eos) specials[*eos] = {{"id", *eos}, {"ids", {eos_id}}, {"tokens", {*eos}}};
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

struct GgufVocab {
  std::string model, pre;
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  std::map<std::string, std::optional<int64_t>> ids;  // bos, eos, unk, pad
  bool add_bos = false, add_eos = false;
};

Result<GgufVocab> ReadVocab(const gg::Metadata& md) {
  GgufVocab v;
  OPENRL_ASSIGN_OR_RETURN(v.model, md.GetString("tokenizer.ggml.model"));
  if (md.Contains("tokenizer.ggml.pre")) {
    OPENRL_ASSIGN_OR_RETURN(v.pre, md.GetString("tokenizer.ggml.pre"));
  }
  OPENRL_ASSIGN_OR_RETURN(v.tokens, md.GetStringArray("tokenizer.ggml.tokens"));
  if (v.tokens.empty()) return InvalidArgument(md.source + ": tokenizer.ggml.tokens is empty");
  if (md.Contains("tokenizer.ggml.token_type")) {
    OPENRL_ASSIGN_OR_RETURN(v.types, md.GetIntArray("tokenizer.ggml.token_type"));
    if (v.types.size() != v.tokens.size())
      return InvalidArgument(md.source + ": tokenizer.ggml.token_type has " + std::to_string(v.types.size()) +
                             " entries for " + std::to_string(v.tokens.size()) + " tokens");
  }
  for (const char* name : {"bos", "eos", "unknown", "padding"}) {
    std::string key = std::string("tokenizer.ggml.") + name + "_token_id";
    std::optional<int64_t> id;
    if (md.Contains(key)) {
      OPENRL_ASSIGN_OR_RETURN(uint64_t raw, md.GetUint(key));
      if (raw >= v.tokens.size())
        return InvalidArgument(md.source + ": " + key + " = " + std::to_string(raw) + " is not a token id (" +
                               std::to_string(v.tokens.size()) + " tokens)");
      id = static_cast<int64_t>(raw);
    }
    v.ids[name] = id;
  }
  v.add_bos = v.model == "llama";  // llama.cpp's default for SentencePiece vocabularies
  if (md.Contains("tokenizer.ggml.add_bos_token")) {
    OPENRL_ASSIGN_OR_RETURN(v.add_bos, md.GetBool("tokenizer.ggml.add_bos_token"));
  }
  if (md.Contains("tokenizer.ggml.add_eos_token")) {
    OPENRL_ASSIGN_OR_RETURN(v.add_eos, md.GetBool("tokenizer.ggml.add_eos_token"));
  }
  return v;
}

// tokenizer.json's model, normalizer, pre-tokenizer and decoder for a byte-level vocabulary.
Result<Json> ByteLevelTokenizer(const gg::Metadata& md, const GgufVocab& v, std::vector<std::string>& spelled) {
  Json vocab = Json::object();
  spelled.clear();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const std::string& t = v.tokens[i];
    spelled.push_back(InByteAlphabet(t) ? t : tokenizer::ByteLevelEncode(t));
    vocab[spelled.back()] = static_cast<int64_t>(i);
  }
  OPENRL_ASSIGN_OR_RETURN(auto merge_lines, md.GetStringArray("tokenizer.ggml.merges"));
  Json merges = Json::array();
  for (size_t i = 0; i < merge_lines.size(); ++i) {
    const std::string& m = merge_lines[i];
    size_t sp = m.find(' ');
    if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
      return InvalidArgument(md.source + ": tokenizer.ggml.merges[" + std::to_string(i) + "] = '" + m +
                             "' is not two tokens separated by one space");
    merges.push_back(Json::array({m.substr(0, sp), m.substr(sp + 1)}));
  }
  Json t;
  t["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
                {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
                {"ignore_merges", false}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
  t["normalizer"] = nullptr;
  Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  t["pre_tokenizer"] = byte_level;
  for (const auto& [name, regex] : PreSplits()) {
    if (name != v.pre) continue;
    Json no_regex = byte_level;
    no_regex["use_regex"] = false;
    t["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"},
                             {"invert", false}},
                            no_regex}}};
  }
  t["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  return t;
}

// The same for Gemma's SentencePiece vocabulary (BPE with byte fallback, merges recovered).
Json GemmaTokenizer(const GgufVocab& v, std::vector<std::string>& spelled) {
  spelled.clear();
  for (const std::string& t : v.tokens) {
    bool only_spaces = !t.empty() && t.find_first_not_of(' ') == std::string::npos;
    std::string s;
    if (only_spaces)
      for (size_t k = 0; k < t.size(); ++k) s += kSpace;
    spelled.push_back(only_spaces ? s : t);
  }
  std::unordered_map<std::string_view, int64_t> index;
  for (size_t i = 0; i < spelled.size(); ++i) index[spelled[i]] = static_cast<int64_t>(i);
  Json vocab = Json::object();
  for (size_t i = 0; i < spelled.size(); ++i) vocab[spelled[i]] = static_cast<int64_t>(i);
  Json t;
  t["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true},
                {"ignore_merges", false}, {"vocab", std::move(vocab)}, {"merges", MergesFromVocab(spelled, index)}};
  t["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}};
  t["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"},
                        {"invert", false}};
  t["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   {{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}}}}};
  return t;
}

}  // namespace

Result<TokenizerFiles> TokenizerFromGguf(const gg::Metadata& md, const std::string& architecture) {
  OPENRL_ASSIGN_OR_RETURN(GgufVocab v, ReadVocab(md));
  std::vector<std::string> spelled;
  Json t;
  if (v.model == "gpt2") {
    OPENRL_ASSIGN_OR_RETURN(t, ByteLevelTokenizer(md, v, spelled));
  } else if (v.model == "llama" && architecture.starts_with("gemma")) {
    t = GemmaTokenizer(v, spelled);
  } else {
    return Unimplemented(md.source + ": tokenizer.ggml.model '" + v.model + "' for architecture '" + architecture +
                         "' is not supported (supported: gpt2, and llama for gemma)");
  }
  // Control tokens stay whole and special; user-defined ones stay whole but are plain text.
  std::unordered_set<std::string_view> in_vocab(spelled.begin(), spelled.end());
  Json added = Json::array();
  for (size_t i = 0; i < v.types.size(); ++i) {
    const std::string& tok = v.tokens[i];
    if (v.types[i] == kControl && (v.model != "gpt2" || InByteAlphabet(tok)))
      added.push_back(AddedToken(static_cast<int64_t>(i), spelled[i], true));
    else if (v.types[i] == kUserDefined && in_vocab.contains(tok))
      added.push_back(AddedToken(static_cast<int64_t>(i), tok, false));
  }
  auto name_of = [&](const char* key) -> std::optional<std::string> {
    auto id = v.ids.at(key);
    if (!id) return std::nullopt;
    return spelled[*id];
  };
  std::optional<std::string> bos = v.add_bos ? name_of("bos") : std::nullopt;
  std::optional<std::string> eos = v.add_eos ? name_of("eos") : std::nullopt;
  t["post_processor"] = PostProcessor(bos, v.ids.at("bos").value_or(0), eos, v.ids.at("eos").value_or(0));
  t["version"] = "1.0";
  t["truncation"] = nullptr;
  t["padding"] = nullptr;
  t["added_tokens"] = std::move(added);

  TokenizerFiles out;
  out.tokenizer = std::move(t);
  Json& c = out.config;
  c["add_bos_token"] = v.add_bos;
  c["add_eos_token"] = v.add_eos;
  for (auto [hf, key] : {std::pair{"bos_token", "bos"}, {"eos_token", "eos"}, {"unk_token", "unknown"},
                         {"pad_token", "padding"}}) {
    auto n = name_of(key);
    c[hf] = n ? Json(*n) : Json(nullptr);
  }
  c["clean_up_tokenization_spaces"] = false;
  c["model_max_length"] = 1000000000000000019884624838656.0;
  c["tokenizer_class"] = v.model == "gpt2" ? "GPT2Tokenizer" : "GemmaTokenizer";
  if (md.Contains("tokenizer.chat_template")) {
    OPENRL_ASSIGN_OR_RETURN(out.chat_template, md.GetString("tokenizer.chat_template"));
  }
  return out;
}

namespace {

std::string TokenContent(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

bool IsByteToken(const std::string& t) {
  return t.size() == 6 && t.starts_with("<0x") && t.back() == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
         std::isxdigit(static_cast<unsigned char>(t[4]));
}

// llama.cpp's name for the pre-tokenizer of a byte-level tokenizer.json.
std::string PreName(const Json& pre) {
  if (pre.is_object() && pre.value("type", "") == "ByteLevel") return "gpt-2";
  if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers")) {
    for (const Json& p : pre["pretokenizers"]) {
      if (p.value("type", "") != "Split" || !p.contains("pattern") || !p["pattern"].contains("Regex")) continue;
      std::string regex = p["pattern"]["Regex"].get<std::string>();
      for (const auto& [name, r] : PreSplits())
        if (regex == r) return name;
    }
  }
  return "default";
}

}  // namespace

Status TokenizerToGguf(const std::string& dir, gg::Metadata& md) {
  std::string tj_path = (stdfs::path(dir) / "tokenizer.json").string();
  OPENRL_ASSIGN_OR_RETURN(Json tj, ReadJsonFile(tj_path));
  Json cfg = Json::object();
  std::string cfg_path = (stdfs::path(dir) / "tokenizer_config.json").string();
  if (openrl::fs::Exists(cfg_path)) {
    OPENRL_ASSIGN_OR_RETURN(cfg, ReadJsonFile(cfg_path));
  }
  const Json model = tj.value("model", Json::object());
  const Json vocab = model.value("vocab", Json::object());
  if (!vocab.is_object()) return InvalidArgument(tj_path + ": model.vocab must be an object");
  if (model.value("type", "") != "BPE")
    return Unimplemented(tj_path + ": model.type '" + model.value("type", "") + "' cannot be exported to GGUF (BPE only)");
  std::map<int64_t, std::string> by_id;
  for (const auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer()) return InvalidArgument(tj_path + ": model.vocab['" + tok + "'] is not an integer id");
    by_id[id.get<int64_t>()] = tok;
  }
  std::map<int64_t, bool> added;  // id -> special
  const Json added_tokens = tj.value("added_tokens", Json::array());
  for (const Json& a : added_tokens) {
    int64_t id = a.value("id", int64_t{-1});
    if (id < 0) return InvalidArgument(tj_path + ": added_tokens entry without an id");
    by_id[id] = a.value("content", "");
    added[id] = a.value("special", false);
  }
  if (by_id.empty()) return InvalidArgument(tj_path + ": empty vocabulary");
  int64_t n = by_id.rbegin()->first + 1;
  std::vector<std::string> tokens(n);
  for (int64_t i = 0; i < n; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) return InvalidArgument(tj_path + ": token id " + std::to_string(i) + " has no token");
    tokens[i] = it->second;
  }
  bool spm = model.value("byte_fallback", false);
  std::string unk = model.contains("unk_token") && model["unk_token"].is_string() ? model["unk_token"].get<std::string>() : "";
  std::vector<int64_t> types(n, kNormal);
  for (int64_t i = 0; i < n; ++i) {
    if (added.contains(i)) types[i] = added[i] ? kControl : kUserDefined;
    else if (spm && IsByteToken(tokens[i])) types[i] = kByte;
    else if (!unk.empty() && tokens[i] == unk) types[i] = kUnknown;
  }
  md.Set("tokenizer.ggml.model", gg::Value::String(spm ? "llama" : "gpt2"));
  std::string pre = spm ? "default" : PreName(tj.value("pre_tokenizer", Json()));
  std::string prov_path = (stdfs::path(dir) / "openrl_import.json").string();
  if (openrl::fs::Exists(prov_path)) {
    OPENRL_ASSIGN_OR_RETURN(Json prov, ReadJsonFile(prov_path));
    if (prov.value("tokenizer.ggml.pre", "") != "") pre = prov["tokenizer.ggml.pre"].get<std::string>();
  }
  md.Set("tokenizer.ggml.pre", gg::Value::String(pre));
  md.Set("tokenizer.ggml.tokens", gg::Value::StringArray(tokens));
  if (spm) {
    std::vector<double> scores(n);
    for (int64_t i = 0; i < n; ++i) scores[i] = -static_cast<double>(i);  // earlier tokens merge first
    md.Set("tokenizer.ggml.scores", gg::Value::F32Array(std::move(scores)));
  }
  md.Set("tokenizer.ggml.token_type", gg::Value::I32Array(types));
  if (!spm) {
    std::vector<std::string> merges;
    const Json merge_list = model.value("merges", Json::array());
    for (const Json& m : merge_list) {
      if (m.is_string()) merges.push_back(m.get<std::string>());
      else if (m.is_array() && m.size() == 2) merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      else return InvalidArgument(tj_path + ": model.merges holds an entry that is neither \"a b\" nor [a, b]");
    }
    md.Set("tokenizer.ggml.merges", gg::Value::StringArray(std::move(merges)));
  }
  std::map<std::string, int64_t> id_of;
  for (int64_t i = 0; i < n; ++i) id_of.emplace(tokens[i], i);
  for (auto [hf, key] : {std::pair{"bos_token", "bos"}, {"eos_token", "eos"}, {"unk_token", "unknown"},
                         {"pad_token", "padding"}}) {
    std::string tok = TokenContent(cfg.value(hf, Json()));
    if (tok.empty() || !id_of.contains(tok)) continue;
    md.Set(std::string("tokenizer.ggml.") + key + "_token_id", gg::Value::U32(static_cast<uint32_t>(id_of[tok])));
  }
  bool add_bos = false;
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
    add_bos = cfg["add_bos_token"].get<bool>();
  } else {
    std::string bos = TokenContent(cfg.value("bos_token", Json()));
    add_bos = !bos.empty() && tj.value("post_processor", Json(nullptr)).dump().find("\"" + bos + "\"") != std::string::npos;
  }
  md.Set("tokenizer.ggml.add_bos_token", gg::Value::Bool(add_bos));
  md.Set("tokenizer.ggml.add_eos_token", gg::Value::Bool(cfg.value("add_eos_token", false)));
  md.Set("tokenizer.ggml.add_space_prefix", gg::Value::Bool(false));
  std::string jinja = (stdfs::path(dir) / "chat_template.jinja").string();
  if (openrl::fs::Exists(jinja)) {
    OPENRL_ASSIGN_OR_RETURN(std::string text, openrl::fs::ReadFile(jinja));
    md.Set("tokenizer.chat_template", gg::Value::String(text));
  } else if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) {
    md.Set("tokenizer.chat_template", gg::Value::String(cfg["chat_template"].get<std::string>()));
  }
  return Status::Ok();
}

}  // namespace openrl::model
