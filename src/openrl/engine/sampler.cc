#include "openrl/engine/sampler.h"

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <map>
#include <random>

namespace openrl::engine {
namespace {

using model::KvCache;
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

// Draws one token from fp32 logits (V) under the request's controls.
int64_t SampleToken(at::Tensor logits, const SamplingParams& p, at::Generator& gen) {
  if (p.temperature <= 0) return logits.argmax().item<int64_t>();
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

LoraBatch GroupRows(const std::vector<SampleRequest>& reqs, const std::vector<int64_t>& live,
                    at::Device device) {
  std::map<const model::LoraAdapter*, std::vector<int64_t>> rows;
  for (size_t b = 0; b < live.size(); ++b)
    if (reqs[live[b]].adapter) rows[reqs[live[b]].adapter].push_back(static_cast<int64_t>(b));
  LoraBatch batch;
  for (auto& [adapter, idx] : rows) {
    LoraBatch::Group g{adapter, {}};
    if (idx.size() != live.size()) g.rows = at::tensor(idx, at::kLong).to(device);
    batch.groups.push_back(g);
  }
  return batch;
}

void FillPromptLogprobs(const at::Tensor& logits, const std::vector<SampleRequest>& reqs,
                        int64_t P, std::vector<SampleResult>& out) {
  at::Tensor lp = at::log_softmax(logits, -1).cpu();  // (B, P, V)
  for (size_t b = 0; b < reqs.size(); ++b) {
    const auto& r = reqs[b];
    if (!r.params.prompt_logprobs) continue;
    int64_t n = static_cast<int64_t>(r.prompt.size()), pad = P - n;
    auto& res = out[b];
    res.prompt_logprobs.push_back(std::nullopt);
    res.prompt_top_logprobs.emplace_back();
    for (int64_t t = 1; t < n; ++t) {
      at::Tensor row = lp[b][pad + t - 1];
      res.prompt_logprobs.push_back(row[r.prompt[t]].item<float>());
      res.prompt_top_logprobs.push_back(TopK(row, r.params.prompt_top_logprobs));
    }
  }
}

}  // namespace

Status SamplingParams::Validate(int64_t vocab_size) const {
  if (max_tokens < 0) return InvalidArgument("sampling_params.max_tokens must be >= 0");
  if (temperature < 0) return InvalidArgument("sampling_params.temperature must be >= 0");
  if (!(top_p > 0 && top_p <= 1)) return InvalidArgument("sampling_params.top_p must be in (0, 1]");
  if (min_p < 0 || min_p > 1) return InvalidArgument("sampling_params.min_p must be in [0, 1]");
  if (top_logprobs < 0 || prompt_top_logprobs < 0)
    return InvalidArgument("sampling_params: top logprobs counts must be >= 0");
  for (auto id : stop_token_ids)
    if (id < 0 || id >= vocab_size) return InvalidArgument("sampling_params.stop: token id out of range");
  return Status::Ok();
}

Result<std::vector<SampleResult>> Generate(const Transformer& model,
                                           const std::vector<SampleRequest>& reqs,
                                           const tokenizer::Tokenizer* tok) {
  const auto& cfg = model.config();
  int64_t B = static_cast<int64_t>(reqs.size());
  std::vector<SampleResult> out(B);
  if (B == 0) return out;
  int64_t P = 0, max_new = 0;
  for (size_t b = 0; b < reqs.size(); ++b) {
    const auto& r = reqs[b];
    std::string where = "request " + std::to_string(b) + ": ";
    if (r.prompt.empty()) return InvalidArgument(where + "prompt is empty");
    for (int32_t id : r.prompt)
      if (id < 0 || id >= cfg.vocab_size)
        return InvalidArgument(where + "prompt token " + std::to_string(id) + " is outside the vocabulary (size " +
                               std::to_string(cfg.vocab_size) + ")");
    OPENRL_RETURN_IF_ERROR(r.params.Validate(cfg.vocab_size).WithContext(where.substr(0, where.size() - 2)));
    P = std::max<int64_t>(P, r.prompt.size());
    max_new = std::max(max_new, r.params.max_tokens);
  }
  if (P + max_new > cfg.max_position_embeddings)
    return InvalidArgument("prompt plus max_tokens (" + std::to_string(P + max_new) +
                           ") exceeds the model's context of " + std::to_string(cfg.max_position_embeddings));
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Generator> gens;
    std::random_device rd;
    for (const auto& r : reqs)
      gens.push_back(at::make_generator<at::CPUGeneratorImpl>(r.params.seed ? *r.params.seed : rd()));

    // Prefill, left-padded so every row's next token lands in the same cache slot.
    at::Tensor ids = at::zeros({B, P}, at::kLong), valid = at::zeros({B, P}, at::kBool);
    for (int64_t b = 0; b < B; ++b) {
      int64_t n = reqs[b].prompt.size();
      for (int64_t t = 0; t < n; ++t) ids[b][P - n + t] = reqs[b].prompt[t];
      valid[b].narrow(0, P - n, n).fill_(true);
    }
    std::vector<int64_t> live(B);
    for (int64_t b = 0; b < B; ++b) live[b] = b;
    KvCache cache(cfg, B, P + std::max<int64_t>(max_new, 1), model.dtype(), model.device());
    LoraBatch lora = GroupRows(reqs, live, model.device());
    model::ForwardArgs args{ids, {}, valid, &cache, &lora, false};
    at::Tensor hidden = model.Hidden(args);
    bool any_prompt_lp = std::any_of(reqs.begin(), reqs.end(), [](auto& r) { return r.params.prompt_logprobs; });
    at::Tensor last_logits;
    if (any_prompt_lp) {
      at::Tensor all = model.Logits(hidden, &lora);
      FillPromptLogprobs(all, reqs, P, out);
      last_logits = all.select(1, P - 1);
    } else {
      last_logits = model.Logits(hidden.narrow(1, P - 1, 1), &lora).squeeze(1);
    }

    for (int64_t step = 0; !live.empty(); ++step) {
      last_logits = last_logits.cpu();  // per-row sampling uses CPU generators
      std::vector<int64_t> next_tokens, still;
      for (size_t i = 0; i < live.size(); ++i) {
        int64_t b = live[i];
        const auto& r = reqs[b];
        auto& res = out[b];
        if (step >= r.params.max_tokens) {
          res.finish_reason = "length";
          continue;
        }
        at::Tensor row = last_logits[i];
        int64_t tokid = SampleToken(row, r.params, gens[b]);
        at::Tensor lp = at::log_softmax(r.params.temperature > 0 ? row / r.params.temperature : row, 0);
        res.tokens.push_back(static_cast<int32_t>(tokid));
        res.logprobs.push_back(lp[tokid].item<float>());
        if (r.params.top_logprobs > 0) res.top_logprobs.push_back(TopK(lp, r.params.top_logprobs));
        if (HitsStop(r, res, tok)) {
          res.finish_reason = "stop";
          continue;
        }
        if (static_cast<int64_t>(res.tokens.size()) >= r.params.max_tokens) {
          res.finish_reason = "length";
          continue;
        }
        still.push_back(static_cast<int64_t>(i));
        next_tokens.push_back(tokid);
      }
      if (still.empty()) break;
      if (still.size() != live.size()) {
        cache.SelectRows(at::tensor(still, at::kLong).to(model.device()));
        std::vector<int64_t> kept;
        for (int64_t i : still) kept.push_back(live[i]);
        live = kept;
        lora = GroupRows(reqs, live, model.device());
      }
      at::Tensor step_ids = at::tensor(next_tokens, at::kLong).view({-1, 1}).to(model.device());
      model::ForwardArgs dargs{step_ids, {}, at::ones({static_cast<int64_t>(live.size()), 1}, at::kBool),
                               &cache, &lora, false};
      last_logits = model.Logits(model.Hidden(dargs), &lora).squeeze(1);
    }
  } catch (const std::exception& e) {
    return StatusFromException(e, "generate");
  }
  return out;
}

}  // namespace openrl::engine
