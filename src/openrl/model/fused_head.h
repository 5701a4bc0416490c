// log p(target) through the output head without materializing the logits of the whole
// batch (a "fused linear cross-entropy"): rows go through the head in chunks; the forward keeps
// each row's logsumexp and, while they fit a budget, each chunk's softmax; past the budget the
// backward recomputes a chunk's logits to form (onehot − softmax)·g. On a 49k
// vocabulary this saves the (N, V) fp32 logits, their gradient, the casts between them and the
// page faults of allocating them every step.
#pragma once

#include <ATen/ATen.h>

namespace openrl::model {

// hidden (N, H) in the model's dtype; head_t (H, V) the transposed head weights (a contiguous
// copy of a frozen head, or `head.t()` of a trained one); targets (N) int64, or (N, K) for K targets
// per row (top-K distillation). Returns fp32 log-probabilities of the targets' shape,
// differentiable with respect to `hidden` and, when it requires grad, to
// `head_t` (full fine-tuning: the head's gradient is summed chunk by chunk, so the logits of the
// whole batch are never held). `chunk_rows` 0 picks chunks of about 16 MB of fp32 logits (64 MB
// when the head takes a gradient). The softmax is
// kept for the backward when all of it takes at most `keep_bytes` in fp32 (a 256 MiB default:
// 4×128 tokens of a 49k vocabulary is 100 MB), and recomputed otherwise.
at::Tensor ChunkedHeadLogprobs(const at::Tensor& hidden, const at::Tensor& head_t, const at::Tensor& targets,
                               int64_t chunk_rows = 0, int64_t keep_bytes = int64_t{256} << 20);

}  // namespace openrl::model
