#include "openrl/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "openrl/core/json.h"
#include "openrl/tokenizer/added_vocab.h"
#include "openrl/tokenizer/bpe_model.h"
#include "openrl/tokenizer/components.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonText(std::string_view text,
                                                           std::string_view source) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  try {
    OPENRL_RETURN_IF_ERROR(t->Load(text, source));
  } catch (const std::exception& e) {  // nlohmann accessors: a bug of ours, never a crash
    return StatusFromException(e, source);
  }
  return t;
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromDirectory(const std::string& dir) {
  std::string path = (std::filesystem::path(dir) / "tokenizer.json").string();
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  OPENRL_ASSIGN_OR_RETURN(auto tok, FromJsonText(ss.str(), path));
  std::string config = (std::filesystem::path(dir) / "tokenizer_config.json").string();
  if (std::filesystem::exists(config)) {
    try {
      OPENRL_RETURN_IF_ERROR(tok->LoadConfig(config));
    } catch (const std::exception& e) {
      return StatusFromException(e, config);
    }
  }
  return tok;
}

Status Tokenizer::Load(std::string_view text, std::string_view source) {
  OPENRL_ASSIGN_OR_RETURN(Json j, ParseJson(text, source));
  JsonCtx root(source, "");
  OPENRL_RETURN_IF_ERROR(root.ExpectObject(j));
  if (!j.contains("model")) return root.Field("model").Error("missing required object");
  const Json& model = j["model"];
  auto mctx = root.Field("model");
  OPENRL_RETURN_IF_ERROR(mctx.ExpectObject(model));
  OPENRL_ASSIGN_OR_RETURN(auto type, mctx.OptString(model, "type"));
  if (!type && !model.contains("merges")) return mctx.Field("type").Error("missing model type");
  if (type && *type != "BPE")
    return mctx.Field("type").Error("unsupported model type '" + *type + "' (supported: BPE)");
  OPENRL_ASSIGN_OR_RETURN(model_, BpeModel::FromJson(model, mctx));
  auto section = [&](const char* name) -> const Json& {
    static const Json kNull;
    return j.contains(name) ? j[name] : kNull;
  };
  OPENRL_ASSIGN_OR_RETURN(normalizer_, MakeNormalizer(section("normalizer"), root.Field("normalizer")));
  OPENRL_ASSIGN_OR_RETURN(pre_tokenizer_,
                          MakePreTokenizer(section("pre_tokenizer"), root.Field("pre_tokenizer")));
  OPENRL_ASSIGN_OR_RETURN(post_processor_, MakePostProcessor(section("post_processor"),
                                                             root.Field("post_processor")));
  OPENRL_ASSIGN_OR_RETURN(decoder_, MakeDecoder(section("decoder"), root.Field("decoder")));
  OPENRL_RETURN_IF_ERROR(LoadAddedTokens(&j, source));
  // A template that starts with a special token names the BOS (tokenizer_config.json may
  // override it).
  const Json& pp = section("post_processor");
  if (pp.is_object() && pp.value("type", "") == "TemplateProcessing" && pp.contains("single") &&
      pp["single"].is_array() && !pp["single"].empty() && pp["single"][0].is_object() &&
      pp["single"][0].contains("SpecialToken") && pp["single"][0]["SpecialToken"].is_object()) {
    const Json& st = pp["single"][0]["SpecialToken"];
    if (st.contains("id") && st["id"].is_string()) bos_id_ = TokenToId(st["id"].get<std::string>());
  }
  return Status::Ok();
}

Status Tokenizer::LoadAddedTokens(const void* json, std::string_view source) {
  const Json& j = *static_cast<const Json*>(json);
  JsonCtx actx(source, "added_tokens");
  if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return Status::Ok();
  if (!j["added_tokens"].is_array()) return actx.Error("expected an array");
  std::vector<std::string> raw_patterns, norm_patterns;
  std::vector<const AddedToken*> raw_tokens, norm_tokens;
  const Json& arr = j["added_tokens"];
  for (size_t i = 0; i < arr.size(); ++i) {
    auto ctx = actx.Index(i);
    OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(arr[i]));
    auto t = std::make_unique<AddedToken>();
    OPENRL_ASSIGN_OR_RETURN(int64_t id, ctx.ReqInt(arr[i], "id"));
    if (id < 0 || id > INT32_MAX) return ctx.Field("id").Error("id out of range");
    t->id = static_cast<int32_t>(id);
    OPENRL_ASSIGN_OR_RETURN(t->content, ctx.ReqString(arr[i], "content"));
    OPENRL_ASSIGN_OR_RETURN(t->special, ctx.OptBool(arr[i], "special", false));
    OPENRL_ASSIGN_OR_RETURN(t->lstrip, ctx.OptBool(arr[i], "lstrip", false));
    OPENRL_ASSIGN_OR_RETURN(t->rstrip, ctx.OptBool(arr[i], "rstrip", false));
    OPENRL_ASSIGN_OR_RETURN(t->single_word, ctx.OptBool(arr[i], "single_word", false));
    OPENRL_ASSIGN_OR_RETURN(t->normalized, ctx.OptBool(arr[i], "normalized", !t->special));
    if (t->content.empty()) return ctx.Field("content").Error("added token content is empty");
    if (!IsValidUtf8(t->content)) return ctx.Field("content").Error("content is not valid UTF-8");
    if (t->normalized) {
      norm_patterns.push_back(normalizer_ ? normalizer_->Normalize(t->content) : t->content);
      norm_tokens.push_back(t.get());
    } else {
      raw_patterns.push_back(t->content);
      raw_tokens.push_back(t.get());
    }
    added_by_id_[t->id] = t.get();
    added_by_content_[t->content] = t->id;
    if (t->special) special_tokens_.push_back(t->content);
    added_.push_back(std::move(t));
  }
  raw_matcher_ = std::make_unique<AddedTokenMatcher>(std::move(raw_patterns), std::move(raw_tokens));
  normalized_matcher_ =
      std::make_unique<AddedTokenMatcher>(std::move(norm_patterns), std::move(norm_tokens));
  return Status::Ok();
}

namespace {
// A special token in tokenizer_config.json: "text" or {"content": "text", ...}.
std::optional<std::string> ConfigToken(const Json& cfg, const char* name) {
  if (!cfg.contains(name)) return std::nullopt;
  const Json& v = cfg[name];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}
}  // namespace

Status Tokenizer::LoadConfig(const std::string& path) {
  OPENRL_ASSIGN_OR_RETURN(Json cfg, ReadJsonFile(path));
  JsonCtx ctx(path, "");
  OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(cfg));
  struct Slot { const char* field; std::optional<int32_t>* id; };
  for (Slot s : {Slot{"bos_token", &bos_id_}, Slot{"eos_token", &eos_id_}, Slot{"pad_token", &pad_id_}}) {
    if (!cfg.contains(s.field) || cfg[s.field].is_null()) continue;
    auto text = ConfigToken(cfg, s.field);
    if (!text) return ctx.Field(s.field).Error("expected a string or {\"content\": ...}");
    auto id = TokenToId(*text);
    if (!id) return ctx.Field(s.field).Error("token '" + *text + "' is not in tokenizer.json");
    *s.id = id;
  }
  if (cfg.contains("add_bos_token") && !cfg["add_bos_token"].is_null()) {
    OPENRL_ASSIGN_OR_RETURN(bool b, ctx.OptBool(cfg, "add_bos_token", false));
    add_bos_token_ = b;
  }
  if (cfg.contains("model_max_length")) {
    const Json& m = cfg["model_max_length"];
    if (m.is_number_integer() && m.get<int64_t>() > 0) model_max_length_ = m.get<int64_t>();
    else if (!m.is_null() && !m.is_number())
      return ctx.Field("model_max_length").Error("expected a number");
    // floats (1e30 = "unlimited" in HF configs) and unsigned overflow mean no limit
  }
  return Status::Ok();
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  std::string clean = IsValidUtf8(text) ? std::string(text) : Utf8Lossy(text);
  std::vector<Piece> pieces;
  if (!clean.empty()) pieces.push_back(Piece{std::move(clean), -1, true});
  if (raw_matcher_ && !raw_matcher_->empty()) {
    std::vector<Piece> out;
    for (auto& p : pieces) raw_matcher_->Split(p, out);
    pieces = std::move(out);
  }
  {
    std::vector<Piece> out;
    for (auto& p : pieces) {
      if (p.id >= 0) { out.push_back(std::move(p)); continue; }
      if (normalizer_) p.text = normalizer_->Normalize(p.text);
      if (normalized_matcher_ && !normalized_matcher_->empty()) normalized_matcher_->Split(p, out);
      else if (!p.text.empty()) out.push_back(std::move(p));
    }
    pieces = std::move(out);
  }
  if (pre_tokenizer_) pre_tokenizer_->Apply(pieces);
  std::vector<int32_t> ids;
  ids.reserve(pieces.size() * 2);
  for (const auto& p : pieces) {
    if (p.id >= 0) ids.push_back(p.id);
    else model_->Tokenize(p.text, ids);
  }
  if (post_processor_) post_processor_->Process(ids, add_special_tokens);
  return ids;
}

const std::string* Tokenizer::DecodableToken(int32_t id, bool skip_special_tokens) const {
  auto it = added_by_id_.find(id);
  if (it != added_by_id_.end()) {
    if (skip_special_tokens && it->second->special) return nullptr;
    return &it->second->content;
  }
  const std::string* t = model_->IdToToken(id);
  if (t && skip_special_tokens) {
    auto sp = added_by_content_.find(*t);
    if (sp != added_by_content_.end() && added_by_id_.at(sp->second)->special) return nullptr;
  }
  return t;
}

std::string Tokenizer::DecodeTokens(std::vector<std::string> tokens, bool at_start) const {
  std::string out;
  if (!decoder_) {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  decoder_->DecodeChain(tokens, Decoder::State{at_start, false});
  for (auto& t : tokens) out += t;
  return out;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids)
    if (const std::string* t = DecodableToken(id, skip_special_tokens)) tokens.push_back(*t);
  return DecodeTokens(std::move(tokens), true);
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = static_cast<int64_t>(model_->vocab_size());
  for (const auto& t : added_)
    if (!model_->TokenToId(t->content)) ++n;
  return n;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = added_by_content_.find(std::string(token));
  if (it != added_by_content_.end()) return it->second;
  return model_->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  if (const std::string* t = DecodableToken(id, false)) return *t;
  return std::nullopt;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  auto it = added_by_id_.find(id);
  return it != added_by_id_.end() && it->second->special;
}

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tok_(tokenizer), skip_special_(skip_special_tokens) {}

// The window of undecided tokens is decoded as a whole; it is released once its text no longer
// ends in U+FFFD (an incomplete UTF-8 sequence) and its last token does not continue a
// byte-fallback run. Released text never changes afterwards, since these decoders act on each
// token (or each closed byte run) independently.
std::string IncrementalDecoder::Push(int32_t id) {
  const std::string* t = tok_.DecodableToken(id, skip_special_);
  if (!t) return {};
  window_.push_back(*t);
  if (tok_.decoder_ && tok_.decoder_->HoldsToken(*t)) return {};
  std::string text = tok_.DecodeTokens(window_, !emitted_any_);
  if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) return {};
  if (!tok_.decoder_ && emitted_any_) text.insert(0, " ");
  window_.clear();
  emitted_any_ = true;
  return text;
}

std::string IncrementalDecoder::Finish() {
  if (window_.empty()) return {};
  std::string text = tok_.DecodeTokens(window_, !emitted_any_);
  if (!tok_.decoder_ && emitted_any_) text.insert(0, " ");
  window_.clear();
  emitted_any_ = true;
  return text;
}

}  // namespace openrl::tokenizer
