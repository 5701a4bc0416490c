// Post-processors of tokenizer.json: TemplateProcessing, BertProcessing, RobertaProcessing,
// ByteLevel (offsets only: ids unchanged) and Sequence.
#include "openrl/tokenizer/components.h"

namespace openrl::tokenizer {
namespace {

// One step of a template: the input sequence, or a run of special-token ids.
struct TemplateStep {
  bool is_sequence = false;
  std::vector<int32_t> ids;
};

class Template : public PostProcessor {
 public:
  explicit Template(std::vector<TemplateStep> steps) : steps_(std::move(steps)) {}
  void Process(std::vector<int32_t>& ids, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    std::vector<int32_t> out;
    for (const auto& s : steps_) {
      if (s.is_sequence) out.insert(out.end(), ids.begin(), ids.end());
      else out.insert(out.end(), s.ids.begin(), s.ids.end());
    }
    ids = std::move(out);
  }

 private:
  std::vector<TemplateStep> steps_;
};

class NoOp : public PostProcessor {
 public:
  void Process(std::vector<int32_t>&, bool) const override {}
};

class SequencePost : public PostProcessor {
 public:
  explicit SequencePost(std::vector<std::unique_ptr<PostProcessor>> p) : parts_(std::move(p)) {}
  void Process(std::vector<int32_t>& ids, bool add) const override {
    for (const auto& p : parts_) p->Process(ids, add);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

// Resolves a template special-token name through the "special_tokens" map.
Result<std::vector<int32_t>> SpecialIds(const Json& specials, const std::string& name,
                                        const JsonCtx& ctx) {
  auto sctx = ctx.Field("special_tokens").Field(name);
  if (!specials.is_object() || !specials.contains(name))
    return sctx.Error("template names special token '" + name + "' missing from special_tokens");
  const Json& entry = specials[name];
  if (!entry.is_object() || !entry.contains("ids") || !entry["ids"].is_array())
    return sctx.Field("ids").Error("expected an array of ids");
  std::vector<int32_t> ids;
  for (size_t i = 0; i < entry["ids"].size(); ++i) {
    const Json& v = entry["ids"][i];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      return sctx.Field("ids").Index(i).Error("expected a non-negative id");
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

Result<std::unique_ptr<PostProcessor>> MakeTemplate(const Json& j, const JsonCtx& ctx) {
  auto sctx = ctx.Field("single");
  if (!j.contains("single") || !j["single"].is_array()) return sctx.Error("expected an array");
  const Json& specials = j.contains("special_tokens") ? j["special_tokens"] : Json::object();
  std::vector<TemplateStep> steps;
  for (size_t i = 0; i < j["single"].size(); ++i) {
    const Json& piece = j["single"][i];
    auto pctx = sctx.Index(i);
    std::string special;
    if (piece.is_string()) {  // legacy "$A" / "[CLS]" / "$A:0"
      std::string s = piece.get<std::string>();
      s = s.substr(0, s.find(':'));
      if (!s.empty() && s[0] == '$') { steps.push_back({true, {}}); continue; }
      special = s;
    } else if (piece.is_object() && piece.contains("Sequence")) {
      steps.push_back({true, {}});
      continue;
    } else if (piece.is_object() && piece.contains("SpecialToken")) {
      OPENRL_ASSIGN_OR_RETURN(special, pctx.Field("SpecialToken").ReqString(piece["SpecialToken"], "id"));
    } else {
      return pctx.Error("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    OPENRL_ASSIGN_OR_RETURN(auto ids, SpecialIds(specials, special, ctx));
    steps.push_back({false, std::move(ids)});
  }
  return std::unique_ptr<PostProcessor>(new Template(std::move(steps)));
}

// BertProcessing / RobertaProcessing: cls A sep, with "cls"/"sep" given as [token, id].
Result<std::unique_ptr<PostProcessor>> MakeClsSep(const Json& j, const JsonCtx& ctx) {
  std::vector<TemplateStep> steps(3);
  const char* names[2] = {"cls", "sep"};
  for (int k = 0; k < 2; ++k) {
    auto fctx = ctx.Field(names[k]);
    if (!j.contains(names[k]) || !j[names[k]].is_array() || j[names[k]].size() != 2 ||
        !j[names[k]][1].is_number_integer())
      return fctx.Error("expected [token, id]");
    steps[k == 0 ? 0 : 2].ids = {static_cast<int32_t>(j[names[k]][1].get<int64_t>())};
  }
  steps[1].is_sequence = true;
  return std::unique_ptr<PostProcessor>(new Template(std::move(steps)));
}

}  // namespace

Result<std::unique_ptr<PostProcessor>> MakePostProcessor(const Json& j, const JsonCtx& ctx) {
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(j));
  OPENRL_ASSIGN_OR_RETURN(std::string type, ctx.ReqString(j, "type"));
  if (type == "TemplateProcessing") return MakeTemplate(j, ctx);
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>(new NoOp());
  if (type == "BertProcessing" || type == "RobertaProcessing") return MakeClsSep(j, ctx);
  if (type == "Sequence") {
    auto lctx = ctx.Field("processors");
    if (!j.contains("processors") || !j["processors"].is_array()) return lctx.Error("expected an array");
    std::vector<std::unique_ptr<PostProcessor>> parts;
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      OPENRL_ASSIGN_OR_RETURN(auto p, MakePostProcessor(j["processors"][i], lctx.Index(i)));
      if (p) parts.push_back(std::move(p));
    }
    return std::unique_ptr<PostProcessor>(new SequencePost(std::move(parts)));
  }
  return ctx.Field("type").Error("unsupported post-processor type '" + type + "'");
}

}  // namespace openrl::tokenizer
