#include "openrl/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "openrl/tokenizer/unicode.h"

namespace openrl::tokenizer {

namespace {
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 100000;
}  // namespace

Status BpeModel::LoadVocab(const Json& j, const JsonCtx& ctx) {
  auto vctx = ctx.Field("vocab");
  if (!j.contains("vocab") || !j["vocab"].is_object())
    return vctx.Error("expected an object mapping token to id");
  const Json& v = j["vocab"];
  vocab_.reserve(v.size());
  vocab_r_.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > INT32_MAX)
      return vctx.Field(it.key()).Error("expected a non-negative integer id, got " +
                                        std::string(JsonTypeName(it.value())));
    auto id = static_cast<int32_t>(it.value().get<int64_t>());
    vocab_.emplace(it.key(), id);
    vocab_r_.emplace(id, it.key());
  }
  return Status::Ok();
}

Status BpeModel::LoadMerges(const Json& j, const JsonCtx& ctx) {
  auto mctx = ctx.Field("merges");
  if (!j.contains("merges") || j["merges"].is_null()) return Status::Ok();
  if (!j["merges"].is_array()) return mctx.Error("expected an array");
  const Json& m = j["merges"];
  merges_.reserve(m.size());
  size_t prefix_len = continuing_subword_prefix_.size();
  for (size_t i = 0; i < m.size(); ++i) {
    std::string a, b;
    const Json& e = m[i];
    if (e.is_string()) {
      const auto& s = e.get_ref<const std::string&>();
      auto sp = s.find(' ');
      if (sp == std::string::npos) return mctx.Index(i).Error("expected \"a b\", got \"" + s + "\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return mctx.Index(i).Error("expected string or pair");
    }
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    if (ia == vocab_.end()) return mctx.Index(i).Error("token '" + a + "' is not in the vocabulary");
    if (ib == vocab_.end()) return mctx.Index(i).Error("token '" + b + "' is not in the vocabulary");
    std::string merged = a + (b.size() >= prefix_len ? b.substr(prefix_len) : b);
    auto im = vocab_.find(merged);
    if (im == vocab_.end())
      return mctx.Index(i).Error("merged token '" + merged + "' is not in the vocabulary");
    merges_[PairKey(ia->second, ib->second)] = {static_cast<int32_t>(i), im->second};
  }
  return Status::Ok();
}

Result<std::unique_ptr<BpeModel>> BpeModel::FromJson(const Json& j, const JsonCtx& ctx) {
  OPENRL_RETURN_IF_ERROR(ctx.ExpectObject(j));
  std::unique_ptr<BpeModel> m(new BpeModel());
  OPENRL_ASSIGN_OR_RETURN(auto prefix, ctx.OptString(j, "continuing_subword_prefix"));
  OPENRL_ASSIGN_OR_RETURN(auto suffix, ctx.OptString(j, "end_of_word_suffix"));
  OPENRL_ASSIGN_OR_RETURN(m->fuse_unk_, ctx.OptBool(j, "fuse_unk", false));
  OPENRL_ASSIGN_OR_RETURN(m->byte_fallback_, ctx.OptBool(j, "byte_fallback", false));
  OPENRL_ASSIGN_OR_RETURN(m->ignore_merges_, ctx.OptBool(j, "ignore_merges", false));
  OPENRL_ASSIGN_OR_RETURN(auto unk, ctx.OptString(j, "unk_token"));
  m->continuing_subword_prefix_ = prefix.value_or("");
  m->end_of_word_suffix_ = suffix.value_or("");
  OPENRL_RETURN_IF_ERROR(m->LoadVocab(j, ctx));
  OPENRL_RETURN_IF_ERROR(m->LoadMerges(j, ctx));
  if (unk) {
    auto it = m->vocab_.find(*unk);
    if (it == m->vocab_.end())
      return ctx.Field("unk_token").Error("'" + *unk + "' is not in the vocabulary");
    m->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m->vocab_.find(name);
    m->byte_ids_[b] = it == m->vocab_.end() ? -1 : it->second;
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  auto it = vocab_r_.find(id);
  return it == vocab_r_.end() ? nullptr : &it->second;
}

// One symbol per character; unknown characters fall back to <0xNN> bytes or (fused) unk.
void BpeModel::InitialSymbols(std::string_view w, std::vector<int32_t>& ids,
                              std::vector<uint32_t>& lens) const {
  std::optional<std::pair<int32_t, uint32_t>> unk;
  auto flush_unk = [&] {
    if (unk) { ids.push_back(unk->first); lens.push_back(unk->second); unk.reset(); }
  };
  std::string s;
  for (size_t i = 0; i < w.size();) {
    char32_t cp;
    int n = DecodeUtf8(w, i, &cp);
    bool first = i == 0, last = i + n >= w.size();
    s.assign(w.substr(i, n));
    if (!first && !continuing_subword_prefix_.empty()) s.insert(0, continuing_subword_prefix_);
    if (last && !end_of_word_suffix_.empty()) s += end_of_word_suffix_;
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      flush_unk();
      ids.push_back(it->second);
      lens.push_back(n);
    } else {
      bool fell_back = false;
      if (byte_fallback_) {
        fell_back = true;
        for (unsigned char c : s) fell_back = fell_back && byte_ids_[c] >= 0;
        if (fell_back) {
          flush_unk();
          for (unsigned char c : s) { ids.push_back(byte_ids_[c]); lens.push_back(1); }
        }
      }
      if (!fell_back && unk_id_) {
        if (unk && fuse_unk_) {
          unk->second += n;
        } else {
          flush_unk();
          unk = std::make_pair(*unk_id_, static_cast<uint32_t>(n));
        }
      }
    }
    i += n;
  }
  flush_unk();
}

void BpeModel::MergeWord(std::vector<int32_t>& ids) const {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  std::vector<int> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
  struct Cand { int32_t rank; int pos; int32_t new_id; };
  auto cmp = [](const Cand& x, const Cand& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(cmp)> heap(cmp);
  auto push = [&](int pos) {
    if (pos < 0 || next[pos] < 0) return;
    auto it = merges_.find(PairKey(ids[pos], ids[next[pos]]));
    if (it != merges_.end()) heap.push({it->second.rank, pos, it->second.id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    int r = next[c.pos];
    auto it = merges_.find(PairKey(ids[c.pos], ids[r]));
    if (it == merges_.end() || it->second.id != c.new_id || it->second.rank != c.rank) continue;
    ids[c.pos] = c.new_id;
    alive[r] = false;
    next[c.pos] = next[r];
    if (next[r] >= 0) prev[next[r]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  std::vector<int32_t> out;
  for (int i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
  ids = std::move(out);
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) { out.push_back(it->second); return; }
  }
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  std::vector<uint32_t> lens;
  InitialSymbols(word, ids, lens);
  MergeWord(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace openrl::tokenizer
