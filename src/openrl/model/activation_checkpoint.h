// Activation checkpointing: run a layer without keeping its activations, and recompute it in
// the backward pass (the reentrant scheme of torch.utils.checkpoint). Weight gradients reach
// their .grad through the inner backward. Dropout inside must be zero or it will differ.
#pragma once

#include <ATen/ATen.h>

#include <functional>

namespace openrl::model {

at::Tensor CheckpointedCall(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x);

}  // namespace openrl::model
