// Normalizers of tokenizer.json: NFC/NFD/NFKC/NFKD (utf8proc), Lowercase, Replace, Prepend,
// Strip, StripAccents, BertNormalizer, Sequence.
#include <utf8proc.h>

#include <cstdlib>

#include "openrl/tokenizer/components.h"
#include "openrl/tokenizer/regex.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(int options) : options_(options) {}
  std::string Normalize(std::string_view text) const override {
    if (text.empty()) return {};
    utf8proc_uint8_t* dst = nullptr;
    auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                          static_cast<utf8proc_ssize_t>(text.size()), &dst,
                          static_cast<utf8proc_option_t>(options_));
    if (n < 0) return std::string(text);  // not valid UTF-8: the pipeline sanitizes first
    std::string out(reinterpret_cast<char*>(dst), static_cast<size_t>(n));
    std::free(dst);
    return out;
  }

 private:
  int options_;
};

bool IsCased(char32_t c) {
  return utf8proc_tolower(static_cast<utf8proc_int32_t>(c)) != static_cast<utf8proc_int32_t>(c) ||
         utf8proc_toupper(static_cast<utf8proc_int32_t>(c)) != static_cast<utf8proc_int32_t>(c);
}

class Lowercase : public Normalizer {
 public:
  std::string Normalize(std::string_view text) const override {
    auto cps = ToCodePoints(text);
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < cps.size(); ++i) {
      char32_t c = cps[i];
      if (c == 0x130) { out += "i\xCC\x87"; continue; }  // İ → i + combining dot above
      if (c == 0x3A3) {  // final sigma when it ends a cased word
        bool before = i > 0 && IsCased(cps[i - 1]);
        bool after = i + 1 < cps.size() && IsCased(cps[i + 1]);
        AppendUtf8(before && !after ? 0x3C2 : 0x3C3, out);
        continue;
      }
      AppendUtf8(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))), out);
    }
    return out;
  }
};

class ReplaceNorm : public Normalizer {
 public:
  ReplaceNorm(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  std::string Normalize(std::string_view text) const override {
    return ReplaceAll(text, *re_, content_);
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : p_(std::move(p)) {}
  std::string Normalize(std::string_view text) const override {
    return text.empty() ? std::string() : p_ + std::string(text);
  }

 private:
  std::string p_;
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  std::string Normalize(std::string_view text) const override {
    auto cps = ToCodePoints(text);
    size_t b = 0, e = cps.size();
    if (left_) while (b < e && IsWhitespace(cps[b])) ++b;
    if (right_) while (e > b && IsWhitespace(cps[e - 1])) --e;
    std::string out;
    for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], out);
    return out;
  }

 private:
  bool left_, right_;
};

bool IsMark(char32_t c) {
  auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_MC || cat == UTF8PROC_CATEGORY_ME;
}

class StripAccents : public Normalizer {
 public:
  std::string Normalize(std::string_view text) const override {
    std::string out;
    for (char32_t c : ToCodePoints(text))
      if (!IsMark(c)) AppendUtf8(c, out);
    return out;
  }
};

bool IsChinese(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNorm : public Normalizer {
 public:
  BertNorm(bool clean, bool chinese, bool strip, bool lower)
      : clean_(clean), chinese_(chinese), strip_(strip), lower_(lower) {}
  std::string Normalize(std::string_view text) const override {
    std::string out;
    for (char32_t c : ToCodePoints(text)) {
      if (clean_) {
        auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
        bool control = c != '\t' && c != '\n' && c != '\r' &&
                       (cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
                        cat == UTF8PROC_CATEGORY_CN || cat == UTF8PROC_CATEGORY_CO);
        if (c == 0 || c == 0xFFFD || control) continue;
        if (IsWhitespace(c)) c = ' ';
      }
      if (chinese_ && IsChinese(c)) {
        out += ' ';
        AppendUtf8(c, out);
        out += ' ';
      } else {
        AppendUtf8(c, out);
      }
    }
    if (strip_) out = StripAccents().Normalize(UnicodeForm(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE).Normalize(out));
    if (lower_) out = Lowercase().Normalize(out);
    return out;
  }

 private:
  bool clean_, chinese_, strip_, lower_;
};

class SequenceNorm : public Normalizer {
 public:
  explicit SequenceNorm(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  std::string Normalize(std::string_view text) const override {
    std::string s(text);
    for (const auto& p : parts_) s = p->Normalize(s);
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

Result<std::unique_ptr<Normalizer>> MakeSequenceNorm(const Json& j, const JsonCtx& ctx) {
  auto list_ctx = ctx.Field("normalizers");
  if (!j.contains("normalizers") || !j["normalizers"].is_array())
    return list_ctx.Error("expected an array");
  std::vector<std::unique_ptr<Normalizer>> parts;
  for (size_t i = 0; i < j["normalizers"].size(); ++i) {
    OPENRL_ASSIGN_OR_RETURN(auto p, MakeNormalizer(j["normalizers"][i], list_ctx.Index(i)));
    if (p) parts.push_back(std::move(p));
  }
  return std::unique_ptr<Normalizer>(new SequenceNorm(std::move(parts)));
}

}  // namespace

Result<std::unique_ptr<Normalizer>> MakeNormalizer(const Json& j, const JsonCtx& ctx) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(j));
  OPENRL_ASSIGN_OR_RETURN(std::string type, ctx.ReqString(j, "type"));
  auto form = [](int o) { return std::unique_ptr<Normalizer>(new UnicodeForm(UTF8PROC_STABLE | o)); };
  if (type == "NFC") return form(UTF8PROC_COMPOSE);
  if (type == "NFD") return form(UTF8PROC_DECOMPOSE);
  if (type == "NFKC") return form(UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  if (type == "NFKD") return form(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new Lowercase());
  if (type == "StripAccents") return std::unique_ptr<Normalizer>(new StripAccents());
  if (type == "Sequence") return MakeSequenceNorm(j, ctx);
  if (type == "Replace") {
    if (!j.contains("pattern")) return ctx.Field("pattern").Error("missing required pattern");
    OPENRL_ASSIGN_OR_RETURN(auto re, MakePattern(j["pattern"], ctx.Field("pattern")));
    OPENRL_ASSIGN_OR_RETURN(std::string content, ctx.ReqString(j, "content"));
    return std::unique_ptr<Normalizer>(new ReplaceNorm(std::move(re), std::move(content)));
  }
  if (type == "Prepend") {
    OPENRL_ASSIGN_OR_RETURN(std::string p, ctx.ReqString(j, "prepend"));
    return std::unique_ptr<Normalizer>(new Prepend(std::move(p)));
  }
  if (type == "Strip") {
    OPENRL_ASSIGN_OR_RETURN(bool l, ctx.OptBool(j, "strip_left", true));
    OPENRL_ASSIGN_OR_RETURN(bool r, ctx.OptBool(j, "strip_right", true));
    return std::unique_ptr<Normalizer>(new Strip(l, r));
  }
  if (type == "BertNormalizer") {
    OPENRL_ASSIGN_OR_RETURN(bool clean, ctx.OptBool(j, "clean_text", true));
    OPENRL_ASSIGN_OR_RETURN(bool chinese, ctx.OptBool(j, "handle_chinese_chars", true));
    OPENRL_ASSIGN_OR_RETURN(bool lower, ctx.OptBool(j, "lowercase", true));
    OPENRL_ASSIGN_OR_RETURN(bool strip, ctx.OptBool(j, "strip_accents", lower));
    return std::unique_ptr<Normalizer>(new BertNorm(clean, chinese, strip, lower));
  }
  return ctx.Field("type").Error("unsupported normalizer type '" + type + "'");
}

}  // namespace openrl::tokenizer
