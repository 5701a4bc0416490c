#include "openrl/model/activation_checkpoint.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

namespace openrl::model {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FnHolder : torch::CustomClassHolder {
  std::function<at::Tensor(const at::Tensor&)> fn;
};

struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            c10::intrusive_ptr<FnHolder> holder) {
    ctx->save_for_backward({x});
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    return holder->fn(x);  // grad mode is off inside forward: no activations kept
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    at::Tensor x = ctx->get_saved_variables()[0];
    auto holder = c10::static_intrusive_pointer_cast<FnHolder>(ctx->saved_data["fn"].toCapsule());
    at::Tensor xd = x.detach().requires_grad_(true);
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      y = holder->fn(xd);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {xd.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor CheckpointedCall(std::function<at::Tensor(const at::Tensor&)> fn, const at::Tensor& x) {
  auto holder = c10::make_intrusive<FnHolder>();
  holder->fn = std::move(fn);
  return CheckpointFunction::apply(x, holder);
}

}  // namespace openrl::model
