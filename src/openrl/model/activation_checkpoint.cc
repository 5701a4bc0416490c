#include "openrl/model/activation_checkpoint.h"

#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>

#include <mutex>
#include <torch/csrc/autograd/custom_function.h>

namespace openrl::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FnHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
  at::Device device = at::kCPU;  // where the layer runs: its default generator feeds dropout
  at::Tensor rng_state;  // that generator's state at forward time, so dropout masks recompute equal
};

// The default generator of `device` (the CPU one for CPU, the device's own for CUDA: dropout on
// CUDA tensors never touches the CPU generator).
at::Tensor GetRngState(const at::Device& device) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get_state();
}

void SetRngState(const at::Device& device, const at::Tensor& state) {
  at::Generator gen = at::globalContext().defaultGenerator(device);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
}

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<FnHolder> holder) {
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    holder->device = x.device();
    holder->rng_state = GetRngState(holder->device);
    return holder->fn(x);  // grad mode is off inside forward: no activations kept
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    at::Tensor x = ctx->get_saved_variables()[0];
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    at::Tensor xd = x.detach().requires_grad_(true);
    at::Tensor y;
    {
      at::Tensor now = GetRngState(holder->device);
      SetRngState(holder->device, holder->rng_state);
      at::AutoGradMode enable(true);
      y = holder->fn(xd);
      SetRngState(holder->device, now);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {xd.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor CheckpointedCall(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x) {
  auto holder = c10::make_intrusive<FnHolder>();
  holder->fn = std::move(fn);
  // With a frozen base the layer input needs no gradient, yet the adapter weights inside the
  // layer do: make the input require grad so autograd records the checkpointed call.
  if (!x.requires_grad()) return CheckpointFunction::apply(x.detach().requires_grad_(true), holder);
  return CheckpointFunction::apply(x, holder);
}

}  // namespace openrl::model
