#include "openrl/engine/forward.h"

namespace openrl::engine {
namespace {

Status CheckIds(const std::vector<int32_t>& ids, int64_t vocab, size_t row, const char* what) {
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= vocab)
      return InvalidArgument("row " + std::to_string(row) + ": " + what + "[" + std::to_string(t) +
                             "] = " + std::to_string(ids[t]) + " is outside the vocabulary (size " +
                             std::to_string(vocab) + ")");
  return Status::Ok();
}

}  // namespace

Result<TokenBatch> MakeBatch(const std::vector<std::vector<int32_t>>& inputs,
                             const std::vector<std::vector<int32_t>>& targets,
                             const model::ModelConfig& cfg) {
  if (inputs.size() != targets.size())
    return InvalidArgument("inputs and targets hold different numbers of rows");
  if (inputs.empty()) return InvalidArgument("batch is empty");
  int64_t B = inputs.size(), T = 0;
  for (size_t b = 0; b < inputs.size(); ++b) {
    if (inputs[b].empty()) return InvalidArgument("row " + std::to_string(b) + ": no input tokens");
    if (inputs[b].size() != targets[b].size())
      return InvalidArgument("row " + std::to_string(b) + ": " + std::to_string(inputs[b].size()) +
                             " input tokens but " + std::to_string(targets[b].size()) + " targets");
    if (static_cast<int64_t>(inputs[b].size()) > cfg.max_position_embeddings)
      return InvalidArgument("row " + std::to_string(b) + ": " + std::to_string(inputs[b].size()) +
                             " tokens exceed the model's context of " +
                             std::to_string(cfg.max_position_embeddings));
    OPENRL_RETURN_IF_ERROR(CheckIds(inputs[b], cfg.vocab_size, b, "input"));
    OPENRL_RETURN_IF_ERROR(CheckIds(targets[b], cfg.vocab_size, b, "target"));
    T = std::max<int64_t>(T, inputs[b].size());
  }
  TokenBatch out;
  out.input_ids = at::zeros({B, T}, at::kLong);
  out.targets = at::zeros({B, T}, at::kLong);
  out.mask = at::zeros({B, T}, at::kFloat);
  auto in = out.input_ids.accessor<int64_t, 2>();
  auto tg = out.targets.accessor<int64_t, 2>();
  auto mk = out.mask.accessor<float, 2>();
  for (int64_t b = 0; b < B; ++b) {
    for (size_t t = 0; t < inputs[b].size(); ++t) {
      in[b][t] = inputs[b][t];
      tg[b][t] = targets[b][t];
      mk[b][t] = 1.0f;
    }
    out.lengths.push_back(inputs[b].size());
  }
  return out;
}

Result<TokenBatch> MakeBatch(const std::vector<std::vector<int32_t>>& inputs,
                             const std::vector<at::Tensor>& targets, const model::ModelConfig& cfg) {
  if (inputs.size() != targets.size())
    return InvalidArgument("inputs and targets hold different numbers of rows");
  int64_t K = 0;
  std::vector<std::vector<int32_t>> firsts;  // each row's first target column, checked by the other overload
  for (size_t b = 0; b < targets.size(); ++b) {
    const at::Tensor& t = targets[b];
    if (t.dim() < 1 || t.dim() > 2 || t.scalar_type() != at::kLong)
      return InvalidArgument("row " + std::to_string(b) + ": targets must be (T,) or (T, K) int64");
    if (t.dim() == 2) {
      if (t.size(1) < 1) return InvalidArgument("row " + std::to_string(b) + ": targets have no columns");
      K = std::max(K, t.size(1));
      if (t.numel() > 0 && (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= cfg.vocab_size))
        return InvalidArgument("row " + std::to_string(b) + ": a target is outside the vocabulary (size " +
                               std::to_string(cfg.vocab_size) + ")");
    }
    at::Tensor first = (t.dim() == 2 ? t.select(1, 0) : t).to(at::kInt).contiguous();
    firsts.emplace_back(first.data_ptr<int32_t>(), first.data_ptr<int32_t>() + first.numel());
  }
  OPENRL_ASSIGN_OR_RETURN(TokenBatch out, MakeBatch(inputs, firsts, cfg));
  if (K == 0) return out;
  at::Tensor wide = at::zeros({out.targets.size(0), out.targets.size(1), K}, at::kLong);
  for (size_t b = 0; b < targets.size(); ++b) {
    const at::Tensor& t = targets[b];
    int64_t b64 = static_cast<int64_t>(b);
    if (t.dim() == 2)
      wide[b64].narrow(0, 0, t.size(0)).narrow(1, 0, t.size(1)).copy_(t);
    else
      wide[b64].narrow(0, 0, t.size(0)).select(1, 0).copy_(t);
  }
  out.targets = wide;
  return out;
}

Result<TokenBatch> MakeShiftedBatch(const std::vector<std::vector<int32_t>>& sequences,
                                    const model::ModelConfig& cfg) {
  std::vector<std::vector<int32_t>> inputs, targets;
  for (size_t b = 0; b < sequences.size(); ++b) {
    const auto& s = sequences[b];
    if (s.size() < 2) return InvalidArgument("row " + std::to_string(b) + ": a sequence needs at least 2 tokens");
    inputs.emplace_back(s.begin(), s.end() - 1);
    targets.emplace_back(s.begin() + 1, s.end());
  }
  return MakeBatch(inputs, targets, cfg);
}

Result<TokenBatch> MakePackedBatch(const std::vector<std::vector<int32_t>>& rows,
                                   const std::vector<std::vector<int64_t>>& segments,
                                   const model::ModelConfig& cfg) {
  if (segments.size() != rows.size())
    return InvalidArgument("segments has " + std::to_string(segments.size()) + " rows for " +
                           std::to_string(rows.size()) + " packed rows");
  OPENRL_ASSIGN_OR_RETURN(TokenBatch out, MakeShiftedBatch(rows, cfg));
  const int64_t B = out.input_ids.size(0), T = out.input_ids.size(1);
  out.position_ids = at::zeros({B, T}, at::kLong);
  out.segment_ids = at::full({B, T}, -1, at::kLong);  // padding: a segment of its own
  auto pos = out.position_ids.accessor<int64_t, 2>();
  auto seg = out.segment_ids.accessor<int64_t, 2>();
  auto mk = out.mask.accessor<float, 2>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& lengths = segments[static_cast<size_t>(b)];
    int64_t total = 0;
    for (int64_t len : lengths) {
      if (len < 1)
        return InvalidArgument("row " + std::to_string(b) + ": a packed sequence of " + std::to_string(len) +
                               " tokens");
      total += len;
    }
    if (total != static_cast<int64_t>(rows[static_cast<size_t>(b)].size()))
      return InvalidArgument("row " + std::to_string(b) + ": its sequences hold " + std::to_string(total) +
                             " tokens, the row " + std::to_string(rows[static_cast<size_t>(b)].size()));
    const int64_t inputs = out.lengths[static_cast<size_t>(b)];  // the row's tokens but the last
    int64_t start = 0;
    for (size_t s = 0; s < lengths.size(); ++s) {
      for (int64_t t = start; t < start + lengths[s] && t < inputs; ++t) {
        pos[b][t] = t - start;
        seg[b][t] = static_cast<int64_t>(s);
      }
      // Input start - 1 (the previous sequence's last token) would predict this sequence's first.
      if (start > 0) mk[b][start - 1] = 0.0f;
      start += lengths[s];
    }
  }
  return out;
}

at::Tensor TargetLogprobs(const model::Transformer& model, const TokenBatch& batch,
                          const model::LoraBatch* lora, bool checkpoint_layers) {
  model::ForwardArgs args;
  args.input_ids = batch.input_ids.to(model.device());
  args.lora = lora;
  args.checkpoint_layers = checkpoint_layers;
  if (batch.segment_ids.defined()) {
    args.position_ids = batch.position_ids;
    args.segment_ids = batch.segment_ids;
  }
  at::Tensor lp =
      model.TargetLogprobs(model.Hidden(args), batch.targets.to(model.device()), lora);  // (B, T[, K])
  at::Tensor mask = batch.mask.to(model.device());
  return lp * (lp.dim() == 3 ? mask.unsqueeze(-1) : mask);
}

}  // namespace openrl::engine
