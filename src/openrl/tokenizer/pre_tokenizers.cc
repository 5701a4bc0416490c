// Pre-tokenizers of tokenizer.json: Split, ByteLevel, Metaspace, Digits, Punctuation,
// Whitespace, WhitespaceSplit, BertPreTokenizer, CharDelimiterSplit, Sequence.
#include "openrl/tokenizer/components.h"
#include "openrl/tokenizer/regex.h"
#include "openrl/tokenizer/split_internal.h"
#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {
namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

Result<SplitBehavior> ParseBehavior(const Json& j, const JsonCtx& ctx, SplitBehavior fallback) {
  OPENRL_ASSIGN_OR_RETURN(auto name, ctx.OptString(j, "behavior"));
  if (!name) return fallback;
  if (*name == "Removed") return SplitBehavior::kRemoved;
  if (*name == "Isolated") return SplitBehavior::kIsolated;
  if (*name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (*name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (*name == "Contiguous") return SplitBehavior::kContiguous;
  return ctx.Field("behavior").Error("unknown split behavior '" + *name + "'");
}

class RegexSplit : public PreTokenizer {
 public:
  RegexSplit(std::unique_ptr<Regex> re, SplitBehavior b, bool invert)
      : re_(std::move(re)), behavior_(b), invert_(invert) {}
  void Split(const Piece& p, std::vector<Piece>& out) const override {
    PushSpans(p, SplitSpans(p.text, *re_, behavior_, invert_), out);
  }

 private:
  std::unique_ptr<Regex> re_;
  SplitBehavior behavior_;
  bool invert_;
};

class CharSplit : public PreTokenizer {
 public:
  CharSplit(std::function<bool(char32_t)> pred, SplitBehavior b) : pred_(std::move(pred)), b_(b) {}
  void Split(const Piece& p, std::vector<Piece>& out) const override {
    PushSpans(p, ApplyBehavior(CharMatches(p.text, pred_), b_, false), out);
  }

 private:
  std::function<bool(char32_t)> pred_;
  SplitBehavior b_;
};

class ByteLevelPre : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, std::unique_ptr<Regex> re)
      : add_prefix_space_(add_prefix_space), re_(std::move(re)) {}
  void Split(const Piece& p, std::vector<Piece>& out) const override {
    Piece src = p;
    if (add_prefix_space_ && (src.text.empty() || src.text[0] != ' ')) src.text.insert(0, " ");
    std::vector<Piece> parts;
    if (re_) PushSpans(src, SplitSpans(src.text, *re_, SplitBehavior::kIsolated, false), parts);
    else if (!src.text.empty()) parts.push_back(src);
    for (auto& part : parts) {
      part.text = ByteLevelEncode(part.text);
      out.push_back(std::move(part));
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> re_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePre : public PreTokenizer {
 public:
  MetaspacePre(char32_t repl, PrependScheme scheme, bool split)
      : repl_(repl), scheme_(scheme), split_(split) {
    AppendUtf8(repl, repl_str_);
  }
  void Split(const Piece& p, std::vector<Piece>& out) const override {
    Piece src{std::string(), -1, p.at_start};
    for (char c : p.text) {
      if (c == ' ') src.text += repl_str_;
      else src.text.push_back(c);
    }
    bool starts = src.text.compare(0, repl_str_.size(), repl_str_) == 0;
    if (!starts && (scheme_ == PrependScheme::kAlways ||
                    (scheme_ == PrependScheme::kFirst && p.at_start)))
      src.text.insert(0, repl_str_);
    if (!split_) {
      if (!src.text.empty()) out.push_back(std::move(src));
      return;
    }
    char32_t r = repl_;
    auto spans = ApplyBehavior(CharMatches(src.text, [r](char32_t c) { return c == r; }),
                               SplitBehavior::kMergedWithNext, false);
    PushSpans(src, spans, out);
  }

 private:
  char32_t repl_;
  std::string repl_str_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePre : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void Split(const Piece& p, std::vector<Piece>& out) const override {
    std::vector<Piece> pieces{p};
    for (const auto& part : parts_) part->Apply(pieces);
    for (auto& x : pieces) out.push_back(std::move(x));
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class WhitespacePre : public PreTokenizer {
 public:
  explicit WhitespacePre(std::unique_ptr<Regex> re) : re_(std::move(re)) {}
  void Split(const Piece& p, std::vector<Piece>& out) const override {
    PushSpans(p, SplitSpans(p.text, *re_, SplitBehavior::kRemoved, true), out);
  }

 private:
  std::unique_ptr<Regex> re_;
};

Result<char32_t> SingleChar(const Json& j, std::string_view field, const JsonCtx& ctx,
                            char32_t fallback) {
  OPENRL_ASSIGN_OR_RETURN(auto s, ctx.OptString(j, field));
  if (!s) return fallback;
  auto cps = ToCodePoints(*s);
  if (cps.size() != 1 || !IsValidUtf8(*s))
    return ctx.Field(field).Error("expected a single character");
  return cps[0];
}

Result<std::unique_ptr<PreTokenizer>> MakeMetaspace(const Json& j, const JsonCtx& ctx) {
  OPENRL_ASSIGN_OR_RETURN(char32_t repl, SingleChar(j, "replacement", ctx, U'\u2581'));
  OPENRL_ASSIGN_OR_RETURN(bool split, ctx.OptBool(j, "split", true));
  OPENRL_ASSIGN_OR_RETURN(bool legacy_prefix, ctx.OptBool(j, "add_prefix_space", true));
  OPENRL_ASSIGN_OR_RETURN(auto scheme_name, ctx.OptString(j, "prepend_scheme"));
  PrependScheme scheme = legacy_prefix ? PrependScheme::kAlways : PrependScheme::kNever;
  if (scheme_name) {
    if (*scheme_name == "always") scheme = PrependScheme::kAlways;
    else if (*scheme_name == "first") scheme = PrependScheme::kFirst;
    else if (*scheme_name == "never") scheme = PrependScheme::kNever;
    else return ctx.Field("prepend_scheme").Error("unknown prepend_scheme '" + *scheme_name + "'");
  }
  return std::unique_ptr<PreTokenizer>(new MetaspacePre(repl, scheme, split));
}

Result<std::unique_ptr<PreTokenizer>> MakeSequence(const Json& j, const JsonCtx& ctx) {
  auto list_ctx = ctx.Field("pretokenizers");
  if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
    return list_ctx.Error("expected an array");
  std::vector<std::unique_ptr<PreTokenizer>> parts;
  const Json& arr = j["pretokenizers"];
  for (size_t i = 0; i < arr.size(); ++i) {
    OPENRL_ASSIGN_OR_RETURN(auto part, MakePreTokenizer(arr[i], list_ctx.Index(i)));
    if (part) parts.push_back(std::move(part));
  }
  return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parts)));
}

Result<std::unique_ptr<PreTokenizer>> MakeWhitespace() {
  OPENRL_ASSIGN_OR_RETURN(auto re, Regex::Compile(R"(\w+|[^\w\s]+)"));
  return std::unique_ptr<PreTokenizer>(new WhitespacePre(std::move(re)));
}

}  // namespace

Result<std::unique_ptr<PreTokenizer>> MakePreTokenizer(const Json& j, const JsonCtx& ctx) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(j));
  OPENRL_ASSIGN_OR_RETURN(std::string type, ctx.ReqString(j, "type"));
  if (type == "Sequence") return MakeSequence(j, ctx);
  if (type == "Split") {
    if (!j.contains("pattern")) return ctx.Field("pattern").Error("missing required pattern");
    OPENRL_ASSIGN_OR_RETURN(auto re, MakePattern(j["pattern"], ctx.Field("pattern")));
    OPENRL_ASSIGN_OR_RETURN(auto b, ParseBehavior(j, ctx, SplitBehavior::kIsolated));
    OPENRL_ASSIGN_OR_RETURN(bool invert, ctx.OptBool(j, "invert", false));
    return std::unique_ptr<PreTokenizer>(new RegexSplit(std::move(re), b, invert));
  }
  if (type == "ByteLevel") {
    OPENRL_ASSIGN_OR_RETURN(bool prefix, ctx.OptBool(j, "add_prefix_space", true));
    OPENRL_ASSIGN_OR_RETURN(bool use_regex, ctx.OptBool(j, "use_regex", true));
    std::unique_ptr<Regex> re;
    if (use_regex) {
      OPENRL_ASSIGN_OR_RETURN(re, Regex::Compile(kGpt2Pattern));
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPre(prefix, std::move(re)));
  }
  if (type == "Metaspace") return MakeMetaspace(j, ctx);
  if (type == "Digits") {
    OPENRL_ASSIGN_OR_RETURN(bool individual, ctx.OptBool(j, "individual_digits", false));
    return std::unique_ptr<PreTokenizer>(new CharSplit(
        IsNumeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous));
  }
  if (type == "Punctuation") {
    OPENRL_ASSIGN_OR_RETURN(auto b, ParseBehavior(j, ctx, SplitBehavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new CharSplit(IsPunctuation, b));
  }
  if (type == "Whitespace") return MakeWhitespace();
  if (type == "WhitespaceSplit")
    return std::unique_ptr<PreTokenizer>(new CharSplit(IsWhitespace, SplitBehavior::kRemoved));
  if (type == "CharDelimiterSplit") {
    OPENRL_ASSIGN_OR_RETURN(char32_t d, SingleChar(j, "delimiter", ctx, U' '));
    return std::unique_ptr<PreTokenizer>(
        new CharSplit([d](char32_t c) { return c == d; }, SplitBehavior::kRemoved));
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.emplace_back(new CharSplit(IsWhitespace, SplitBehavior::kRemoved));
    parts.emplace_back(new CharSplit(IsPunctuation, SplitBehavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parts)));
  }
  return ctx.Field("type").Error("unsupported pre-tokenizer type '" + type + "'");
}

}  // namespace openrl::tokenizer
