// Decoders of tokenizer.json: ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace,
// BPEDecoder, Sequence — each a rewrite of the token-string list (HF decode_chain).
#include "openrl/tokenizer/components.h"
#include "openrl/tokenizer/regex.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

class ByteLevelDec : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens, State) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      std::string mapped;
      bool all = true;
      for (size_t i = 0; i < t.size() && all;) {
        char32_t cp;
        i += DecodeUtf8(t, i, &cp);
        int b = UnicodeToByte(cp);
        if (b < 0) all = false;
        else mapped.push_back(static_cast<char>(b));
      }
      bytes += all ? mapped : t;
    }
    tokens.assign(1, Utf8Lossy(bytes));
  }
  bool Fuses() const override { return true; }
};

int ByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class ByteFallbackDec : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens, State) const override {
    std::vector<std::string> out;
    std::string run;
    auto flush = [&] {
      if (run.empty()) return;
      if (IsValidUtf8(run)) out.push_back(run);
      else
        for (size_t i = 0; i < run.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      run.clear();
    };
    for (auto& t : tokens) {
      int b = ByteToken(t);
      if (b >= 0) {
        run.push_back(static_cast<char>(b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens = std::move(out);
  }
  bool HoldsToken(std::string_view token) const override { return ByteToken(token) >= 0; }
};

class FuseDec : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>& tokens, State) const override {
    std::string all;
    for (auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
  bool Fuses() const override { return true; }
};

// After Fuse the "token" is the whole text, so in a later window of an IncrementalDecoder the
// leading strip no longer applies. (A trailing strip after Fuse is applied per window: no
// tokenizer family we support uses one.)
class StripDec : public Decoder {
 public:
  StripDec(char32_t c, int64_t start, int64_t stop) : c_(c), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>& tokens, State state) const override {
    int64_t start = state.fused && !state.at_start ? 0 : start_;
    for (auto& t : tokens) {
      auto cps = ToCodePoints(t);
      size_t b = 0, e = cps.size();
      for (int64_t i = 0; i < start && b < e && cps[b] == c_; ++i) ++b;
      for (int64_t i = 0; i < stop_ && e > b && cps[e - 1] == c_; ++i) --e;
      std::string s;
      for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], s);
      t = std::move(s);
    }
  }

 private:
  char32_t c_;
  int64_t start_, stop_;
};

class ReplaceDec : public Decoder {
 public:
  ReplaceDec(std::unique_ptr<Regex> re, std::string content)
      : re_(std::move(re)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>& tokens, State) const override {
    for (auto& t : tokens) t = ReplaceAll(t, *re_, content_);
  }

 private:
  std::unique_ptr<Regex> re_;
  std::string content_;
};

class MetaspaceDec : public Decoder {
 public:
  MetaspaceDec(char32_t repl, bool strip_first) : repl_(repl), strip_first_(strip_first) {}
  void DecodeChain(std::vector<std::string>& tokens, State state) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string s;
      for (char32_t c : ToCodePoints(tokens[i])) {
        if (c != repl_) AppendUtf8(c, s);
        else if (!(i == 0 && state.at_start && strip_first_)) s.push_back(' ');
      }
      tokens[i] = std::move(s);
    }
  }

 private:
  char32_t repl_;
  bool strip_first_;
};

class BpeDec : public Decoder {
 public:
  explicit BpeDec(std::string suffix) : suffix_(std::move(suffix)) {}
  void DecodeChain(std::vector<std::string>& tokens, State) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string out;
      for (size_t p = 0; p < t.size();) {
        if (!suffix_.empty() && t.compare(p, suffix_.size(), suffix_) == 0) {
          if (i + 1 != tokens.size()) out.push_back(' ');
          p += suffix_.size();
        } else {
          out.push_back(t[p++]);
        }
      }
      t = std::move(out);
    }
  }

 private:
  std::string suffix_;
};

class SequenceDec : public Decoder {
 public:
  explicit SequenceDec(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void DecodeChain(std::vector<std::string>& tokens, State state) const override {
    for (const auto& p : parts_) {
      p->DecodeChain(tokens, state);
      state.fused = state.fused || p->Fuses();
    }
  }
  bool Fuses() const override {
    for (const auto& p : parts_)
      if (p->Fuses()) return true;
    return false;
  }
  bool HoldsToken(std::string_view token) const override {
    for (const auto& p : parts_)
      if (p->HoldsToken(token)) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

Result<char32_t> OneChar(const Json& j, std::string_view field, const JsonCtx& ctx,
                         char32_t fallback) {
  OPENRL_ASSIGN_OR_RETURN(auto s, ctx.OptString(j, field));
  if (!s) return fallback;
  auto cps = ToCodePoints(*s);
  if (cps.size() != 1 || !IsValidUtf8(*s)) return ctx.Field(field).Error("expected a single character");
  return cps[0];
}

Result<std::unique_ptr<Decoder>> MakeMetaspaceDec(const Json& j, const JsonCtx& ctx) {
  OPENRL_ASSIGN_OR_RETURN(char32_t repl, OneChar(j, "replacement", ctx, U'\u2581'));
  OPENRL_ASSIGN_OR_RETURN(bool strip, ctx.OptBool(j, "add_prefix_space", true));
  OPENRL_ASSIGN_OR_RETURN(auto scheme, ctx.OptString(j, "prepend_scheme"));
  if (scheme) strip = *scheme != "never";
  return std::unique_ptr<Decoder>(new MetaspaceDec(repl, strip));
}

Result<std::unique_ptr<Decoder>> MakeSequenceDec(const Json& j, const JsonCtx& ctx) {
  auto list_ctx = ctx.Field("decoders");
  if (!j.contains("decoders") || !j["decoders"].is_array()) return list_ctx.Error("expected an array");
  std::vector<std::unique_ptr<Decoder>> parts;
  for (size_t i = 0; i < j["decoders"].size(); ++i) {
    OPENRL_ASSIGN_OR_RETURN(auto p, MakeDecoder(j["decoders"][i], list_ctx.Index(i)));
    if (p) parts.push_back(std::move(p));
  }
  return std::unique_ptr<Decoder>(new SequenceDec(std::move(parts)));
}

}  // namespace

Result<std::unique_ptr<Decoder>> MakeDecoder(const Json& j, const JsonCtx& ctx) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(j));
  OPENRL_ASSIGN_OR_RETURN(std::string type, ctx.ReqString(j, "type"));
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDec());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDec());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDec());
  if (type == "Sequence") return MakeSequenceDec(j, ctx);
  if (type == "Metaspace") return MakeMetaspaceDec(j, ctx);
  if (type == "Strip") {
    OPENRL_ASSIGN_OR_RETURN(char32_t c, OneChar(j, "content", ctx, U' '));
    OPENRL_ASSIGN_OR_RETURN(int64_t start, ctx.OptInt(j, "start", 0));
    OPENRL_ASSIGN_OR_RETURN(int64_t stop, ctx.OptInt(j, "stop", 0));
    return std::unique_ptr<Decoder>(new StripDec(c, start, stop));
  }
  if (type == "Replace") {
    if (!j.contains("pattern")) return ctx.Field("pattern").Error("missing required pattern");
    OPENRL_ASSIGN_OR_RETURN(auto re, MakePattern(j["pattern"], ctx.Field("pattern")));
    OPENRL_ASSIGN_OR_RETURN(std::string content, ctx.ReqString(j, "content"));
    return std::unique_ptr<Decoder>(new ReplaceDec(std::move(re), std::move(content)));
  }
  if (type == "BPEDecoder") {
    OPENRL_ASSIGN_OR_RETURN(auto suffix, ctx.OptString(j, "suffix"));
    return std::unique_ptr<Decoder>(new BpeDec(suffix.value_or("</w>")));
  }
  return ctx.Field("type").Error("unsupported decoder type '" + type + "'");
}

}  // namespace openrl::tokenizer
