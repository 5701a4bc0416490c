#include "openrl/model/fused_head.h"

#include <torch/csrc/autograd/autograd.h>

#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <vector>
#include <torch/csrc/autograd/custom_function.h>

namespace openrl::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t ChunkRows(int64_t chunk_rows, int64_t vocab, bool head_grad) {
  if (chunk_rows > 0) return chunk_rows;
  // ~16 MB of fp32 logits; ~64 MB when the head's weights take a gradient, whose matmul sums over a
  // chunk's rows and runs slowly when they are few.
  int64_t elements = head_grad ? int64_t{16} << 20 : int64_t{4} << 20;
  return std::max<int64_t>(head_grad ? 128 : 32, elements / std::max<int64_t>(vocab, 1));
}

// (N) → (N, 1); (N, K) as it is.
at::Tensor Columns(const at::Tensor& t) { return t.dim() == 1 ? t.unsqueeze(1) : t; }

struct ChunkedHeadFunction : torch::autograd::Function<ChunkedHeadFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& head_t,
                            const at::Tensor& targets, int64_t chunk_rows, bool keep) {
    int64_t N = hidden.size(0), V = head_t.size(1);
    int64_t rows = ChunkRows(chunk_rows, V, head_t.requires_grad());
    // keep: each chunk's softmax (fp32) is kept for the backward (chunks small enough to come
    // from the heap, not from fresh page-faulted mappings every step); otherwise the backward
    // recomputes a chunk's logits from the logsumexp.
    at::Tensor out = at::empty(targets.sizes(), hidden.options().dtype(at::kFloat));
    at::Tensor lse = at::empty({N}, hidden.options().dtype(at::kFloat));
    at::Tensor out2 = out.dim() == 1 ? out.unsqueeze(1) : out, targets2 = Columns(targets);  // (N, K)
    std::vector<at::Tensor> saved = {hidden, head_t, targets, lse};
    for (int64_t s = 0; s < N; s += rows) {
      int64_t n = std::min(rows, N - s);
      at::Tensor logits = at::matmul(hidden.narrow(0, s, n), head_t).to(at::kFloat);  // (n, V)
      at::Tensor l = at::logsumexp(logits, -1);
      lse.narrow(0, s, n).copy_(l);
      out2.narrow(0, s, n).copy_(logits.gather(1, targets2.narrow(0, s, n)) - l.unsqueeze(1));
      if (keep) saved.push_back(logits.sub_(l.unsqueeze(1)).exp_());  // softmax of the chunk
    }
    ctx->save_for_backward(saved);
    ctx->saved_data["rows"] = rows;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &hidden = saved[0], &head_t = saved[1], &targets = saved[2], &lse = saved[3];
    bool kept = saved.size() > 4;
    int64_t rows = ctx->saved_data["rows"].toInt();
    at::Tensor g = Columns(grad_out[0].to(at::kFloat)), targets2 = Columns(targets);  // (N, K)
    int64_t N = hidden.size(0);
    bool want_hidden = ctx->needs_input_grad(0), want_head = ctx->needs_input_grad(1);
    at::Tensor grad_hidden = want_hidden ? at::empty_like(hidden) : at::Tensor();
    at::Tensor head = head_t.t();  // (V, H)
    // The head's gradient in its (V, H) layout: Σ over chunks of dᵀ·hidden (summed in the
    // weights' dtype, one rounding per chunk).
    at::Tensor grad_head;
    for (int64_t s = 0, c = 0; s < N; s += rows, ++c) {
      int64_t n = std::min(rows, N - s);
      at::Tensor gc = g.narrow(0, s, n);  // (n, K)
      // d(logit[t] − lse)/d logits = onehot(t) − softmax; times g, summed over a row's K targets.
      at::Tensor d;
      if (kept) {
        d = saved[4 + c];
      } else {
        d = at::matmul(hidden.narrow(0, s, n), head_t).to(at::kFloat);
        d.sub_(lse.narrow(0, s, n).unsqueeze(1)).exp_();
      }
      d.mul_(gc.size(1) == 1 ? gc.neg() : gc.sum(1, true).neg_());
      d.scatter_add_(1, targets2.narrow(0, s, n), gc);
      at::Tensor dl = d.to(hidden.scalar_type());
      if (want_hidden) grad_hidden.narrow(0, s, n).copy_(at::matmul(dl, head));
      if (want_head && c == 0) grad_head = at::mm(dl.t(), hidden.narrow(0, s, n));
      else if (want_head) grad_head.addmm_(dl.t(), hidden.narrow(0, s, n));
    }
    return {grad_hidden, want_head ? grad_head.t() : at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor ChunkedHeadLogprobs(const at::Tensor& hidden, const at::Tensor& head_t, const at::Tensor& targets,
                               int64_t chunk_rows, int64_t keep_bytes) {
  // Decided here: inside the autograd function's forward, grad mode is always off. Past the
  // budget the backward recomputes the logits (one more head matmul) rather than hold them all.
  int64_t N = hidden.size(0), V = head_t.size(1);
  bool grad = at::GradMode::is_enabled() && (hidden.requires_grad() || head_t.requires_grad());
  bool keep = grad && N * V * int64_t{4} <= keep_bytes;
  return ChunkedHeadFunction::apply(hidden, head_t, targets, chunk_rows, keep);
}

}  // namespace openrl::model
