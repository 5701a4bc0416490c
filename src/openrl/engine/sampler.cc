#include "openrl/engine/sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <map>
#include <random>

namespace openrl::engine {
namespace {

using model::KvCache;
using model::LoraAdapter;
using model::LoraBatch;
using model::Transformer;

std::vector<TokenLogprob> TopK(const at::Tensor& logprobs_row, int64_t k) {
  std::vector<TokenLogprob> out;
  if (k <= 0) return out;
  auto [vals, idx] = logprobs_row.topk(std::min<int64_t>(k, logprobs_row.size(0)));
  vals = vals.cpu();
  idx = idx.cpu();
  auto v = vals.accessor<float, 1>();
  auto i = idx.accessor<int64_t, 1>();
  for (int64_t j = 0; j < vals.size(0); ++j) out.push_back({static_cast<int32_t>(i[j]), v[j]});
  return out;
}

// Draws one token from fp32 logits (V) under the request's controls, for temperature > 0 (greedy
// rows take the batch-wide argmax in GenerationBatch::Step).
int64_t SampleToken(at::Tensor logits, const SamplingParams& p, at::Generator& gen) {
  logits = logits / p.temperature;
  int64_t V = logits.size(0);
  if (p.top_k > 0 && p.top_k < V) {
    auto kth = std::get<0>(logits.topk(p.top_k)).min();
    logits = logits.masked_fill(logits < kth, -INFINITY);
  }
  at::Tensor probs = at::softmax(logits, 0);
  if (p.min_p > 0) {
    probs = probs.masked_fill(probs < probs.max() * p.min_p, 0.0);
  }
  if (p.top_p < 1.0) {
    auto [sorted, order] = probs.sort(/*dim=*/0, /*descending=*/true);
    at::Tensor cum = sorted.cumsum(0);
    // Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    at::Tensor drop = (cum - sorted) >= p.top_p;
    sorted = sorted.masked_fill(drop, 0.0);
    probs = at::zeros_like(probs).scatter(0, order, sorted);
  }
  return at::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
}

bool EndsWith(const std::vector<int32_t>& v, const std::vector<int32_t>& suffix) {
  return !suffix.empty() && v.size() >= suffix.size() &&
         std::equal(suffix.rbegin(), suffix.rend(), v.rbegin());
}

bool HitsStop(const SampleRequest& r, const SampleResult& res, const tokenizer::Tokenizer* tok) {
  int32_t last = res.tokens.back();
  const auto& p = r.params;
  if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), last) != p.stop_token_ids.end()) return true;
  for (const auto& seq : p.stop_token_sequences)
    if (EndsWith(res.tokens, seq)) return true;
  if (!p.stop_strings.empty() && tok != nullptr) {
    std::string text = tok->Decode(res.tokens);
    for (const auto& s : p.stop_strings)
      if (!s.empty() && text.find(s) != std::string::npos) return true;
  }
  return false;
}

// Rows grouped by adapter (row b uses adapters[b]; null = the base alone).
LoraBatch GroupRows(const std::vector<const LoraAdapter*>& adapters, at::Device device) {
  std::map<const LoraAdapter*, std::vector<int64_t>> rows;
  for (size_t b = 0; b < adapters.size(); ++b)
    if (adapters[b]) rows[adapters[b]].push_back(static_cast<int64_t>(b));
  LoraBatch batch;
  for (auto& [adapter, idx] : rows) {
    LoraBatch::Group g{adapter, {}};
    if (idx.size() != adapters.size()) g.rows = at::tensor(idx, at::kLong).to(device);
    batch.groups.push_back(g);
  }
  return batch;
}

// The first prompt position whose next-token distribution a request asks about (n when none).
int64_t FirstScoredPosition(const SampleRequest& r) {
  const SamplingParams& p = r.params;
  int64_t n = static_cast<int64_t>(r.prompt.size()), first = n;
  if (p.prompt_logprobs) first = p.prompt_logprobs_last_n > 0 ? n - p.prompt_logprobs_last_n : 1;
  if (p.prompt_alt_tokens > 0) first = std::min<int64_t>(first, 1);
  for (size_t row = 0; row < p.prompt_target_ids.size() && static_cast<int64_t>(row) + 1 < first; ++row)
    if (std::any_of(p.prompt_target_ids[row].begin(), p.prompt_target_ids[row].end(),
                    [](int32_t id) { return id >= 0; }))
      first = static_cast<int64_t>(row) + 1;
  return std::max<int64_t>(first, 1);
}

// Everything a request asks about its prompt, from the prefill's logits over the padded columns
// [S, P) (B, P - S, V): row b's token t (t >= 1) is scored at column P - n + t - 1 - S.
void ScorePrompts(const at::Tensor& logits, int64_t S, const std::vector<SampleRequest>& reqs, int64_t P,
                  const std::vector<uint64_t>& seeds, std::vector<SampleResult>& out) {
  for (size_t b = 0; b < reqs.size(); ++b) {
    const SampleRequest& r = reqs[b];
    const SamplingParams& p = r.params;
    int64_t n = static_cast<int64_t>(r.prompt.size()), first = FirstScoredPosition(r);
    SampleResult& res = out[b];
    if (first >= n) {  // a one-token prompt: nothing to score
      if (p.prompt_logprobs) {
        res.prompt_logprobs.assign(static_cast<size_t>(n), std::nullopt);
        res.prompt_top_logprobs.assign(static_cast<size_t>(n), {});
      }
      continue;
    }
    at::Tensor rows =
        logits[static_cast<int64_t>(b)].narrow(0, P - n + first - 1 - S, n - first);  // positions first..n-1
    at::Tensor lp = at::log_softmax(rows, -1).cpu().contiguous();
    const int64_t V = lp.size(1);
    const float* lpd = lp.data_ptr<float>();
    auto logprob = [&](int64_t t, int64_t id) { return lpd[(t - first) * V + id]; };
    if (p.prompt_logprobs) {
      int64_t from = p.prompt_logprobs_last_n > 0 ? n - p.prompt_logprobs_last_n : 1;
      res.prompt_logprobs.assign(static_cast<size_t>(from), std::nullopt);
      res.prompt_top_logprobs.assign(static_cast<size_t>(from), {});
      for (int64_t t = from; t < n; ++t) {
        res.prompt_logprobs.push_back(logprob(t, r.prompt[t]));
        res.prompt_top_logprobs.push_back(TopK(lp[t - first], p.prompt_top_logprobs));
      }
    }
    for (size_t row = 0; row < p.prompt_target_ids.size(); ++row) {
      std::vector<float> values;
      for (int32_t id : p.prompt_target_ids[row])
        values.push_back(id >= 0 ? logprob(static_cast<int64_t>(row) + 1, id) : 0.0f);
      res.prompt_target_logprobs.push_back(std::move(values));
    }
    if (p.prompt_alt_tokens > 0) {
      // Drawn from a generator of their own, so the sampled tokens are the same with or without them.
      auto gen = at::make_generator<at::CPUGeneratorImpl>(seeds[b] ^ 0x5DEECE66Dull);
      at::Tensor draws =
          p.temperature > 0
              ? at::multinomial(at::softmax(rows.cpu().to(at::kFloat) / p.temperature, -1),
                                p.prompt_alt_tokens, /*replacement=*/true, gen)
              : rows.argmax(-1, /*keepdim=*/true).cpu().expand({n - 1, p.prompt_alt_tokens}).contiguous();
      auto d = draws.accessor<int64_t, 2>();
      for (int64_t t = 1; t < n; ++t) {
        std::vector<TokenLogprob> alts;
        for (int64_t j = 0; j < p.prompt_alt_tokens; ++j)
          alts.push_back({static_cast<int32_t>(d[t - 1][j]), logprob(t, d[t - 1][j])});
        res.prompt_alt_tokens.push_back(std::move(alts));
      }
    }
  }
}

}  // namespace

Status SamplingParams::Validate(int64_t vocab_size) const {
  if (max_tokens < 0) return InvalidArgument("sampling_params.max_tokens must be >= 0");
  if (temperature < 0) return InvalidArgument("sampling_params.temperature must be >= 0");
  if (!(top_p > 0 && top_p <= 1)) return InvalidArgument("sampling_params.top_p must be in (0, 1]");
  if (min_p < 0 || min_p > 1) return InvalidArgument("sampling_params.min_p must be in [0, 1]");
  if (top_logprobs < 0 || prompt_top_logprobs < 0 || prompt_alt_tokens < 0)
    return InvalidArgument("sampling_params: top logprobs and prompt draw counts must be >= 0");
  if (prompt_logprobs_last_n < 0) return InvalidArgument("prompt_logprobs_last_n must be >= 1");
  if (prompt_logprobs_last_n > 0 && !prompt_logprobs)
    return InvalidArgument("prompt_logprobs_last_n needs prompt_logprobs");
  for (size_t row = 0; row < prompt_target_ids.size(); ++row)
    for (int32_t id : prompt_target_ids[row])
      if (id < -1 || id >= vocab_size)
        return InvalidArgument("target_prompt_logprobs row " + std::to_string(row) + ": token id " +
                               std::to_string(id) + " is outside the vocabulary (size " +
                               std::to_string(vocab_size) + "; -1 asks for nothing)");
  for (auto id : stop_token_ids)
    if (id < 0 || id >= vocab_size) return InvalidArgument("sampling_params.stop: token id out of range");
  return Status::Ok();
}

struct GenerationBatch::Impl {
  Impl(const Transformer& model, const tokenizer::Tokenizer* tok) : model(model), tok(tok) {}
  struct Row {
    int64_t ticket;
    SampleRequest request;
    SampleResult result;
    at::Generator gen;
  };
  const Transformer& model;
  const tokenizer::Tokenizer* tok;
  std::vector<Row> rows;              // in cache order
  std::unique_ptr<KvCache> cache;     // null while empty
  at::Tensor logits;                  // (rows, V): each row's next-token logits, not yet sampled
  LoraBatch lora;
  std::unique_ptr<model::LoraStack> stack;  // the rows' adapters stacked for decode steps (lora.stack)
  int64_t next_ticket = 0;
  std::random_device rd;

  void Regroup() {
    std::vector<const LoraAdapter*> adapters;
    for (const Row& row : rows) adapters.push_back(row.request.adapter);
    lora = GroupRows(adapters, model.device());
    // Decode steps apply every row's adapter at once through a stack of the distinct adapters,
    // rebuilt only when that set changes (rows of the same adapters coming and going keep it).
    std::vector<const LoraAdapter*> distinct;
    std::vector<int64_t> slots;
    for (const LoraAdapter* a : adapters) {
      if (a == nullptr) {
        slots.push_back(-1);
        continue;
      }
      auto it = std::find(distinct.begin(), distinct.end(), a);
      slots.push_back(it - distinct.begin());
      if (it == distinct.end()) distinct.push_back(a);
    }
    if (distinct.empty()) {
      stack.reset();
    } else if (stack && stack->adapters() == distinct) {
      stack->SetRows(slots);
    } else {
      stack = std::make_unique<model::LoraStack>(distinct, slots, model.device());
    }
    lora.stack = stack.get();
  }
  // Keeps only the rows at these indices (in order): their cache rows and pending logits; an
  // emptied batch frees its cache.
  void Keep(const std::vector<int64_t>& keep) {
    std::vector<Row> kept;
    for (int64_t i : keep) kept.push_back(std::move(rows[static_cast<size_t>(i)]));
    rows = std::move(kept);
    if (rows.empty()) {
      cache.reset();
      logits = at::Tensor();
    } else {
      at::Tensor idx = at::tensor(keep, at::kLong).to(model.device());
      cache->SelectRows(idx);
      if (logits.defined()) logits = logits.index_select(0, idx);
      Compact();
    }
    Regroup();
  }
  // Slots left of every row's first real token serve nobody: drop them once they pile up, so a
  // batch that runs for long with rows coming and going does not grow without bound.
  void Compact() {
    if (!cache || cache->batch() == 0) return;
    at::Tensor used = cache->valid().narrow(1, 0, cache->length()).any(0).cpu();
    int64_t first = 0, L = cache->length();
    auto u = used.accessor<bool, 1>();
    while (first < L && !u[first]) ++first;
    if (first >= 64 || (first > 0 && first * 4 >= L)) cache->DropLeading(first);
  }
};

GenerationBatch::GenerationBatch(const Transformer& model, const tokenizer::Tokenizer* tok)
    : impl_(std::make_unique<Impl>(model, tok)) {}
GenerationBatch::~GenerationBatch() = default;

int64_t GenerationBatch::rows() const { return static_cast<int64_t>(impl_->rows.size()); }

int64_t GenerationBatch::CacheBytesAfter(const CacheDemand& newcomers) const {
  const Impl& im = *impl_;
  // As Add sizes the joined cache: every row from the shared slot on, with room for the longest
  // remaining generation.
  int64_t remaining = newcomers.most_new_tokens;
  for (const auto& row : im.rows)
    remaining = std::max<int64_t>(remaining, row.request.params.max_tokens - static_cast<int64_t>(row.result.tokens.size()));
  int64_t length = std::max<int64_t>(newcomers.longest_prompt, im.cache ? im.cache->length() : 0);
  int64_t capacity = std::max<int64_t>(length + remaining, im.cache ? im.cache->capacity() : 0);
  int64_t rows = static_cast<int64_t>(im.rows.size()) + newcomers.rows;
  return rows * capacity * model::KvCache::BytesPerToken(im.model.config(), im.model.dtype(), im.model.device());
}

Result<std::vector<int64_t>> GenerationBatch::Add(const std::vector<SampleRequest>& reqs) {
  Impl& im = *impl_;
  const auto& cfg = im.model.config();
  int64_t B = static_cast<int64_t>(reqs.size());
  std::vector<int64_t> tickets;
  if (B == 0) return tickets;
  int64_t P = 0;
  for (size_t b = 0; b < reqs.size(); ++b) {
    const auto& r = reqs[b];
    std::string where = "request " + std::to_string(b) + ": ";
    if (r.prompt.empty()) return InvalidArgument(where + "prompt is empty");
    for (int32_t id : r.prompt)
      if (id < 0 || id >= cfg.vocab_size)
        return InvalidArgument(where + "prompt token " + std::to_string(id) + " is outside the vocabulary (size " +
                               std::to_string(cfg.vocab_size) + ")");
    OPENRL_RETURN_IF_ERROR(r.params.Validate(cfg.vocab_size).WithContext(where.substr(0, where.size() - 2)));
    int64_t n = static_cast<int64_t>(r.prompt.size());
    if (n + r.params.max_tokens > cfg.max_position_embeddings)
      return InvalidArgument(where + "prompt plus max_tokens (" + std::to_string(n + r.params.max_tokens) +
                             ") exceeds the model's context of " + std::to_string(cfg.max_position_embeddings));
    const SamplingParams& p = r.params;
    if (p.prompt_logprobs_last_n > n - 1)
      return InvalidArgument(where + "prompt_logprobs_last_n = " + std::to_string(p.prompt_logprobs_last_n) +
                             " but the prompt has only " + std::to_string(n - 1) + " tokens to score");
    if (!p.prompt_target_ids.empty() && static_cast<int64_t>(p.prompt_target_ids.size()) != n - 1)
      return InvalidArgument(where + "target_prompt_logprobs has " +
                             std::to_string(p.prompt_target_ids.size()) + " rows; a prompt of " +
                             std::to_string(n) + " tokens needs " + std::to_string(n - 1));
    P = std::max<int64_t>(P, n);
  }
  try {
    at::NoGradGuard no_grad;
    std::vector<SampleResult> fresh(static_cast<size_t>(B));
    // Prefill the newcomers on their own, left-padded to their longest prompt.
    // Built on the host (written element by element), moved to the model's device by Hidden.
    at::Tensor ids = at::zeros({B, P}, at::kLong), valid = at::zeros({B, P}, at::kBool);
    auto id_at = ids.accessor<int64_t, 2>();
    for (int64_t b = 0; b < B; ++b) {
      int64_t n = static_cast<int64_t>(reqs[b].prompt.size());
      for (int64_t t = 0; t < n; ++t) id_at[b][P - n + t] = reqs[b].prompt[t];
      valid[b].narrow(0, P - n, n).fill_(true);
    }
    std::vector<const LoraAdapter*> adapters;
    for (const auto& r : reqs) adapters.push_back(r.adapter);
    KvCache prefill(cfg, B, P, im.model.dtype(), im.model.device());
    LoraBatch lora = GroupRows(adapters, im.model.device());
    model::ForwardArgs args{ids, {}, valid, &prefill, &lora, false, {}};
    at::Tensor hidden = im.model.Hidden(args);
    std::vector<uint64_t> seeds;
    for (const auto& r : reqs)
      seeds.push_back(r.params.seed ? *r.params.seed : (static_cast<uint64_t>(im.rd()) << 32 | im.rd()));
    // The head runs over the columns some request scores (and the last one, which every row samples from).
    int64_t S = P - 1;
    for (const auto& r : reqs) {
      int64_t n = static_cast<int64_t>(r.prompt.size()), first = FirstScoredPosition(r);
      if (first < n) S = std::min(S, P - n + first - 1);
    }
    at::Tensor logits = im.model.Logits(hidden.narrow(1, S, P - S), &lora);
    ScorePrompts(logits, S, reqs, P, seeds, fresh);
    at::Tensor last = logits.select(1, P - S - 1);
    // Join the running batch: room for every row's remaining tokens from the shared slot on.
    int64_t length = std::max<int64_t>(P, im.cache ? im.cache->length() : 0);
    int64_t remaining = 1;
    for (const auto& r : reqs) remaining = std::max(remaining, r.params.max_tokens);
    for (const auto& row : im.rows)
      remaining = std::max<int64_t>(remaining, row.request.params.max_tokens - static_cast<int64_t>(row.result.tokens.size()));
    if (!im.cache) im.cache = std::make_unique<KvCache>(cfg, 0, 0, im.model.dtype(), im.model.device());
    im.cache->Join(prefill, std::max(length + remaining, im.cache->capacity()));
    im.logits = im.logits.defined() && im.logits.size(0) > 0 ? at::cat({im.logits, last}, 0) : last;
    for (int64_t b = 0; b < B; ++b) {
      Impl::Row row{im.next_ticket, reqs[b], std::move(fresh[b]),
                    at::make_generator<at::CPUGeneratorImpl>(seeds[b])};
      row.request.params.prompt_target_ids.clear();  // scored; decode steps never look at them
      im.rows.push_back(std::move(row));
      tickets.push_back(im.next_ticket++);
    }
    im.Regroup();
  } catch (const std::exception& e) {
    return StatusFromException(e, "prefill");
  }
  return tickets;
}

Result<std::vector<std::pair<int64_t, SampleResult>>> GenerationBatch::Step() {
  Impl& im = *impl_;
  std::vector<std::pair<int64_t, SampleResult>> finished;
  if (im.rows.empty()) return finished;
  try {
    at::NoGradGuard no_grad;
    at::Tensor logits = im.logits.cpu();  // per-row sampling uses CPU generators
    // The whole batch at once where rows do the same thing (a decode step's per-row ops cost
    // about as much as its attention on a small model): the greedy choice of every row, and every
    // row's log-softmax at its own temperature (1 for greedy rows).
    int64_t B = static_cast<int64_t>(im.rows.size());
    std::vector<float> temps(static_cast<size_t>(B));
    bool unit = true;  // every row at temperature 1 (or greedy): no division to make
    for (int64_t i = 0; i < B; ++i) {
      double t = im.rows[static_cast<size_t>(i)].request.params.temperature;
      temps[static_cast<size_t>(i)] = t > 0 ? static_cast<float>(t) : 1.0f;
      unit = unit && temps[static_cast<size_t>(i)] == 1.0f;
    }
    at::Tensor lp_all =
        at::log_softmax(unit ? logits : logits / at::tensor(temps, at::kFloat).view({B, 1}), 1);
    at::Tensor greedy = logits.argmax(1);
    auto greedy_at = greedy.accessor<int64_t, 1>();
    std::vector<int64_t> chosen(static_cast<size_t>(B), 0);
    for (int64_t i = 0; i < B; ++i) {
      auto& row = im.rows[static_cast<size_t>(i)];
      const SamplingParams& p = row.request.params;
      if (static_cast<int64_t>(row.result.tokens.size()) >= p.max_tokens) continue;
      chosen[static_cast<size_t>(i)] = p.temperature <= 0 ? greedy_at[i] : SampleToken(logits[i], p, row.gen);
    }
    at::Tensor chosen_lp = lp_all.gather(1, at::tensor(chosen, at::kLong).view({B, 1})).view({B});
    auto chosen_lp_at = chosen_lp.accessor<float, 1>();
    std::vector<int64_t> keep, next_tokens;
    for (size_t i = 0; i < im.rows.size(); ++i) {
      auto& row = im.rows[i];
      const SampleRequest& r = row.request;
      SampleResult& res = row.result;
      std::string reason;
      if (static_cast<int64_t>(res.tokens.size()) >= r.params.max_tokens) {
        reason = "length";
      } else {
        int64_t tokid = chosen[i];
        res.tokens.push_back(static_cast<int32_t>(tokid));
        res.logprobs.push_back(chosen_lp_at[static_cast<int64_t>(i)]);
        if (r.params.top_logprobs > 0)
          res.top_logprobs.push_back(TopK(lp_all[static_cast<int64_t>(i)], r.params.top_logprobs));
        if (HitsStop(r, res, im.tok)) {
          reason = "stop";
        } else if (static_cast<int64_t>(res.tokens.size()) >= r.params.max_tokens) {
          reason = "length";
        } else {
          keep.push_back(static_cast<int64_t>(i));
          next_tokens.push_back(tokid);
        }
      }
      if (!reason.empty()) {
        res.finish_reason = reason;
        finished.emplace_back(row.ticket, std::move(res));
      }
    }
    if (keep.size() != im.rows.size()) {
      im.logits = at::Tensor();  // sampled from already (the host copy above); the step makes new ones
      im.Keep(keep);
      if (im.rows.empty()) return finished;
    }
    at::Tensor step_ids = at::tensor(next_tokens, at::kLong).view({-1, 1}).to(im.model.device());
    model::ForwardArgs args{step_ids,
                            {},
                            at::ones({static_cast<int64_t>(im.rows.size()), 1}, at::kBool),
                            im.cache.get(),
                            &im.lora,
                            false,
                            {}};
    im.logits = im.model.Logits(im.model.Hidden(args), &im.lora).squeeze(1);
  } catch (const std::exception& e) {
    return StatusFromException(e, "generate");
  }
  return finished;
}

Status GenerationBatch::Remove(const std::vector<int64_t>& tickets) {
  Impl& im = *impl_;
  std::vector<int64_t> keep;
  for (size_t i = 0; i < im.rows.size(); ++i)
    if (std::find(tickets.begin(), tickets.end(), im.rows[i].ticket) == tickets.end()) keep.push_back(static_cast<int64_t>(i));
  if (keep.size() == im.rows.size()) return Status::Ok();
  try {
    im.Keep(keep);
  } catch (const std::exception& e) {
    return StatusFromException(e, "remove rows");
  }
  return Status::Ok();
}

Result<std::vector<SampleResult>> Generate(const Transformer& model, const std::vector<SampleRequest>& reqs,
                                           const tokenizer::Tokenizer* tok) {
  std::vector<SampleResult> out(reqs.size());
  GenerationBatch batch(model, tok);
  OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> tickets, batch.Add(reqs));
  std::map<int64_t, size_t> index;
  for (size_t i = 0; i < tickets.size(); ++i) index[tickets[i]] = i;
  while (!batch.empty()) {
    OPENRL_ASSIGN_OR_RETURN(auto done, batch.Step());
    for (auto& [ticket, res] : done) out[index.at(ticket)] = std::move(res);
  }
  return out;
}

}  // namespace openrl::engine
