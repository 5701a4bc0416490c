// The custom-loss operation table, part two: reductions, softmax and norms, selection, and the
// losses of torch.nn.functional. Signatures follow torch's (parameter names and defaults), so
// keyword arguments bind as they do there.
#include <ATen/ATen.h>
#include <ATen/TensorIndexing.h>

#include "openrl/engine/custom_loss_internal.h"

namespace openrl::engine::custom_loss {
namespace {

using K = Value::Kind;
constexpr Param T = Param::kTensor, O = Param::kOperand, N = Param::kNumber, I = Param::kInt,
                D = Param::kDims, B = Param::kBool, DT = Param::kDtype, S = Param::kString,
                TS = Param::kTensors, A = Param::kAny;

Value Tuple2(const std::tuple<at::Tensor, at::Tensor>& t) {
  return Value::Tuple({Value::Of(std::get<0>(t)), Value::Of(std::get<1>(t))});
}

// A tensor's Python-style reduction: no dim reduces everything (keepdim ignored, as torch does).
void AddReductions(OpTable& t) {
  for (const char* op : {"sum", "mean", "nansum", "nanmean"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"dim", D}, {"keepdim", B}, {"dtype", DT}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(1));
          OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
          OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(3));
          at::OptionalIntArrayRef d = dims ? at::OptionalIntArrayRef(*dims) : std::nullopt;
          if (name == "sum") return Value::Of(dims ? at::sum(x, d, keep, dtype) : at::sum(x, dtype));
          if (name == "mean") return Value::Of(dims ? at::mean(x, d, keep, dtype) : at::mean(x, dtype));
          if (name == "nansum") return Value::Of(at::nansum(x, d, keep, dtype));
          return Value::Of(at::nanmean(x, d, keep, dtype));
        });
  }
  Def(t, FnAndMethod("prod"), {{"input", T, true}, {"dim", I}, {"keepdim", B}, {"dtype", DT}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(3));
        if (!a.has(1)) return Value::Of(at::prod(x, dtype));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
        return Value::Of(at::prod(x, dim, keep, dtype));
      });
  for (const char* op : {"amax", "amin"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"dim", D}, {"keepdim", B}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(1));
          OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
          std::vector<int64_t> d = dims.value_or(std::vector<int64_t>{});
          return Value::Of(name == "amax" ? at::amax(x, d, keep) : at::amin(x, d, keep));
        });
  }
  // max/min: of everything; (values, indices) along a dim; or elementwise with another tensor.
  for (const char* op : {"max", "min"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"dim", A}, {"keepdim", B}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          const bool max = name == "max";
          if (!a.has(1)) return Value::Of(max ? at::max(x) : at::min(x));
          if (a.get(1).is_tensor())
            return Value::Of(max ? at::maximum(x, a.get(1).t) : at::minimum(x, a.get(1).t));
          OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
          OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
          return Tuple2(max ? at::max(x, dim, keep) : at::min(x, dim, keep));
        });
  }
  for (const char* op : {"argmax", "argmin"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"dim", I}, {"keepdim", B}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          std::optional<int64_t> dim;
          if (a.has(1)) {
            OPENRL_ASSIGN_OR_RETURN(dim, a.Int(1));
          }
          OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
          return Value::Of(name == "argmax" ? at::argmax(x, dim, keep) : at::argmin(x, dim, keep));
        });
  }
  Def(t, Plus(FnAndMethod("logsumexp"), {"torch._C._special.special_logsumexp"}),
      {{"input", T, true}, {"dim", D, true}, {"keepdim", B}}, [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> dims, a.Ints(1));
        OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
        return Value::Of(at::logsumexp(x, dims, keep));
      });
  // var/std(input, dim=None, unbiased=True, keepdim=False, *, correction=1); var(input, unbiased).
  for (const char* op : {"var", "std"}) {
    std::string name = op;
    Def(t, FnAndMethod(name),
        {{"input", T, true}, {"dim", A}, {"unbiased", B}, {"keepdim", B}, {"correction", N}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          bool unbiased = true;
          std::optional<std::vector<int64_t>> dims;
          if (a.has(1) && a.get(1).kind == K::kBool) {
            unbiased = a.get(1).b;
          } else {
            OPENRL_ASSIGN_OR_RETURN(dims, a.Dims(1));
          }
          OPENRL_ASSIGN_OR_RETURN(unbiased, a.Bool(2, unbiased));
          OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(3, false));
          OPENRL_ASSIGN_OR_RETURN(double correction, a.Number(4, unbiased ? 1.0 : 0.0));
          at::OptionalIntArrayRef d = dims ? at::OptionalIntArrayRef(*dims) : std::nullopt;
          return Value::Of(name == "var" ? at::var(x, d, at::Scalar(correction), keep)
                                         : at::std(x, d, at::Scalar(correction), keep));
        });
  }
  for (const char* op : {"all", "any"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"dim", D}, {"keepdim", B}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(1));
          OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(2, false));
          if (!dims) return Value::Of(name == "all" ? at::all(x) : at::any(x));
          return Value::Of(name == "all" ? at::all(x, at::OptionalIntArrayRef(*dims), keep)
                                         : at::any(x, at::OptionalIntArrayRef(*dims), keep));
        });
  }
  Def(t, FnAndMethod("count_nonzero"), {{"input", T, true}, {"dim", D}}, [](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(1));
    return Value::Of(at::count_nonzero(x, dims.value_or(std::vector<int64_t>{})));
  });
  for (const char* op : {"cumsum", "cumprod"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"dim", I, true}, {"dtype", DT}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
          OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(2));
          return Value::Of(name == "cumsum" ? at::cumsum(x, dim, dtype) : at::cumprod(x, dim, dtype));
        });
  }
  // torch.norm / Tensor.norm with p a number or "fro" (both 2-norms of vectors here), and
  // torch.linalg.vector_norm: all are linalg_vector_norm, as torch.functional.norm does.
  auto norm = [](const Args& a, size_t p_at, size_t dim_at, size_t keep_at,
                 size_t dtype_at) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    double p = 2;
    if (a.has(p_at) && a.get(p_at).kind == K::kString) {
      if (a.get(p_at).s != "fro") return a.Error(p_at, "must be a number or 'fro'");
    } else {
      OPENRL_ASSIGN_OR_RETURN(p, a.Number(p_at, 2.0));
    }
    OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(dim_at));
    OPENRL_ASSIGN_OR_RETURN(bool keep, a.Bool(keep_at, false));
    OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(dtype_at));
    at::OptionalIntArrayRef d = dims ? at::OptionalIntArrayRef(*dims) : std::nullopt;
    return Value::Of(at::linalg_vector_norm(x, p, d, keep, dtype));
  };
  Def(t, {"method:norm"}, {{"input", T, true}, {"p", A}, {"dim", D}, {"keepdim", B}, {"dtype", DT}},
      [norm](const Args& a) { return norm(a, 1, 2, 3, 4); });
  Def(t, {"torch.functional.norm"},
      {{"input", T, true}, {"p", A}, {"dim", D}, {"keepdim", B}, {"out", A}, {"dtype", DT}},
      [norm](const Args& a) -> Result<Value> {
        if (a.has(4)) return a.Error(4, "is not supported");
        return norm(a, 1, 2, 3, 5);
      });
  Def(t, {"torch._C._linalg.linalg_vector_norm"},
      {{"x", T, true}, {"ord", N}, {"dim", D}, {"keepdim", B}, {"dtype", DT}},
      [norm](const Args& a) { return norm(a, 1, 2, 3, 4); });
}

// softmax's implicit dim when none is given (torch.nn.functional._get_softmax_dim).
int64_t SoftmaxDim(const at::Tensor& x) { return (x.dim() == 0 || x.dim() == 1 || x.dim() == 3) ? 0 : 1; }

void AddSoftmaxAndFriends(OpTable& t) {
  for (const char* op : {"softmax", "log_softmax"}) {
    std::string name = op;
    auto run = [name](const Args& a, size_t dtype_at) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
      OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1, SoftmaxDim(x)));
      OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(dtype_at));
      return Value::Of(name == "softmax" ? at::softmax(x, dim, dtype) : at::log_softmax(x, dim, dtype));
    };
    Def(t, Plus(FnAndMethod(name), {"torch._C._special.special_" + name}),
        {{"input", T, true}, {"dim", I, true}, {"dtype", DT}}, [run](const Args& a) { return run(a, 2); });
    Def(t, {"torch.nn.functional." + name},
        {{"input", T, true}, {"dim", I}, {"_stacklevel", I}, {"dtype", DT}},
        [run](const Args& a) { return run(a, 3); });
  }
  Def(t, FnAndMethod("diff"), {{"input", T, true}, {"n", I}, {"dim", I}, {"prepend", T}, {"append", T}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t n, a.Int(1, 1));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(2, -1));
        std::optional<at::Tensor> pre, post;
        if (a.has(3)) {
          OPENRL_ASSIGN_OR_RETURN(pre, a.Tensor(3));
        }
        if (a.has(4)) {
          OPENRL_ASSIGN_OR_RETURN(post, a.Tensor(4));
        }
        return Value::Of(at::diff(x, n, dim, pre, post));
      });
  Def(t, {"torch.cosine_similarity"}, {{"x1", T, true}, {"x2", T, true}, {"dim", I}, {"eps", N}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Tensor(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(2, 1));
        OPENRL_ASSIGN_OR_RETURN(double eps, a.Number(3, 1e-8));
        return Value::Of(at::cosine_similarity(x, y, dim, eps));
      });
  Def(t, {"torch.nn.functional.normalize"},
      {{"input", T, true}, {"p", N}, {"dim", I}, {"eps", N}, {"out", A}}, [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(double p, a.Number(1, 2.0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(2, 1));
        OPENRL_ASSIGN_OR_RETURN(double eps, a.Number(3, 1e-12));
        if (a.has(4)) return a.Error(4, "is not supported");
        at::Tensor denom =
            at::linalg_vector_norm(x, p, std::vector<int64_t>{dim}, true).clamp_min(eps).expand_as(x);
        return Value::Of(x / denom);
      });
}

void AddSelection(OpTable& t) {
  auto where = [](const at::Tensor& cond, const Value& x, const Value& y) -> Result<Value> {
    if (x.is_tensor() && y.is_tensor()) return Value::Of(at::where(cond, x.t, y.t));
    if (x.is_tensor() && y.is_number()) return Value::Of(at::where(cond, x.t, Wrapped(y).item()));
    if (x.is_number() && y.is_tensor()) return Value::Of(at::where(cond, Wrapped(x).item(), y.t));
    if (x.is_number() && y.is_number())
      return Value::Of(at::where(cond, Wrapped(x).item(), Wrapped(y).item()));
    return InvalidArgument("torch.where takes tensors or numbers, got " + Describe(x) + " and " +
                           Describe(y));
  };
  Def(t, {"torch.where"}, {{"condition", T, true}, {"input", O, true}, {"other", O, true}},
      [where](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor cond, a.Tensor(0));
        return where(cond, a.get(1), a.get(2));
      });
  Def(t, {"method:where"}, {{"input", T, true}, {"condition", T, true}, {"other", O, true}},
      [where](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor cond, a.Tensor(1));
        return where(cond, a.get(0), a.get(2));
      });
  auto clamp = [](const Args& a, std::optional<size_t> lo_at, std::optional<size_t> hi_at) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    const bool lo = lo_at && a.has(*lo_at), hi = hi_at && a.has(*hi_at);
    if (!lo && !hi) return InvalidArgument("clamp needs at least one of 'min' and 'max'");
    if ((lo && a.get(*lo_at).is_tensor()) || (hi && a.get(*hi_at).is_tensor())) {
      std::optional<at::Tensor> l, h;
      if (lo) {
        OPENRL_ASSIGN_OR_RETURN(l, a.Operand(*lo_at));
      }
      if (hi) {
        OPENRL_ASSIGN_OR_RETURN(h, a.Operand(*hi_at));
      }
      return Value::Of(at::clamp(x, l, h));
    }
    std::optional<at::Scalar> l, h;
    if (lo) {
      OPENRL_ASSIGN_OR_RETURN(l, a.Scalar(*lo_at));
    }
    if (hi) {
      OPENRL_ASSIGN_OR_RETURN(h, a.Scalar(*hi_at));
    }
    return Value::Of(at::clamp(x, l, h));
  };
  Def(t, Plus(FnAndMethod("clamp"), {"torch.clip", "method:clip"}),
      {{"input", T, true}, {"min", O}, {"max", O}}, [clamp](const Args& a) { return clamp(a, 1, 2); });
  Def(t, FnAndMethod("clamp_min"), {{"input", T, true}, {"min", O, true}},
      [clamp](const Args& a) { return clamp(a, 1, std::nullopt); });
  Def(t, FnAndMethod("clamp_max"), {{"input", T, true}, {"max", O, true}},
      [clamp](const Args& a) { return clamp(a, std::nullopt, 1); });
  Def(t, FnAndMethod("masked_fill"), {{"input", T, true}, {"mask", T, true}, {"value", O, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor mask, a.Tensor(1));
        if (a.get(2).is_tensor()) return Value::Of(at::masked_fill(x, mask, a.get(2).t));
        OPENRL_ASSIGN_OR_RETURN(at::Scalar v, a.Scalar(2));
        return Value::Of(at::masked_fill(x, mask, v));
      });
  Def(t, FnAndMethod("lerp"), {{"input", T, true}, {"end", T, true}, {"weight", O, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor end, a.Tensor(1));
        if (a.get(2).is_tensor()) return Value::Of(at::lerp(x, end, a.get(2).t));
        OPENRL_ASSIGN_OR_RETURN(at::Scalar w, a.Scalar(2));
        return Value::Of(at::lerp(x, end, w));
      });
  Def(t, FnAndMethod("gather"),
      {{"input", T, true}, {"dim", I, true}, {"index", T, true}, {"sparse_grad", B}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor idx, a.Tensor(2));
        return Value::Of(at::gather(x, dim, idx));
      });
  Def(t, FnAndMethod("index_select"), {{"input", T, true}, {"dim", I, true}, {"index", T, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor idx, a.Tensor(2));
        return Value::Of(at::index_select(x, dim, idx));
      });
  Def(t, FnAndMethod("take_along_dim"), {{"input", T, true}, {"indices", T, true}, {"dim", I}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor idx, a.Tensor(1));
        std::optional<int64_t> dim;
        if (a.has(2)) {
          OPENRL_ASSIGN_OR_RETURN(dim, a.Int(2));
        }
        return Value::Of(at::take_along_dim(x, idx, dim));
      });
  Def(t, FnAndMethod("topk"), {{"input", T, true}, {"k", I, true}, {"dim", I}, {"largest", B}, {"sorted", B}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t k, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(2, -1));
        OPENRL_ASSIGN_OR_RETURN(bool largest, a.Bool(3, true));
        OPENRL_ASSIGN_OR_RETURN(bool sorted, a.Bool(4, true));
        return Tuple2(at::topk(x, k, dim, largest, sorted));
      });
  Def(t, FnAndMethod("sort"), {{"input", T, true}, {"dim", I}, {"descending", B}, {"stable", B}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1, -1));
        OPENRL_ASSIGN_OR_RETURN(bool descending, a.Bool(2, false));
        OPENRL_ASSIGN_OR_RETURN(bool stable, a.Bool(3, false));
        return Tuple2(at::sort(x, stable, dim, descending));
      });
  for (const char* op : {"stack", "cat", "concat", "concatenate"}) {
    std::string name = op;
    Def(t, {"torch." + name}, {{"tensors", TS, true}, {"dim", I}}, [name](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(std::vector<at::Tensor> xs, a.Tensors(0));
      OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1, 0));
      return Value::Of(name == "stack" ? at::stack(xs, dim) : at::cat(xs, dim));
    });
  }
}

// reduction='none'|'mean'|'sum' as ATen's enum; size_average and reduce (deprecated) must be None.
Result<int64_t> Reduction(const Args& a, size_t at, std::initializer_list<size_t> legacy) {
  for (size_t i : legacy)
    if (a.has(i)) return a.Error(i, "is deprecated in torch and not supported; use reduction=");
  OPENRL_ASSIGN_OR_RETURN(std::string r, a.String(at, "mean"));
  if (r == "none") return int64_t{0};
  if (r == "mean") return int64_t{1};
  if (r == "sum") return int64_t{2};
  return a.Error(at, "must be 'none', 'mean' or 'sum', got '" + r + "'");
}

void AddFunctionalLosses(OpTable& t) {
  // mse_loss / l1_loss(input, target, size_average=None, reduce=None, reduction='mean', weight=None)
  for (const char* op : {"mse_loss", "l1_loss"}) {
    std::string name = op;
    Def(t, {"torch.nn.functional." + name},
        {{"input", T, true},
         {"target", T, true},
         {"size_average", A},
         {"reduce", A},
         {"reduction", S},
         {"weight", A}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Tensor(1));
          OPENRL_ASSIGN_OR_RETURN(int64_t red, Reduction(a, 4, {2, 3}));
          if (a.has(5)) return a.Error(5, "is not supported");
          auto xy = at::broadcast_tensors({x, y});
          return Value::Of(name == "mse_loss" ? at::mse_loss(xy[0], xy[1], red)
                                              : at::l1_loss(xy[0], xy[1], red));
        });
  }
  Def(t, {"torch.nn.functional.smooth_l1_loss"},
      {{"input", T, true},
       {"target", T, true},
       {"size_average", A},
       {"reduce", A},
       {"reduction", S},
       {"beta", N}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Tensor(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t red, Reduction(a, 4, {2, 3}));
        OPENRL_ASSIGN_OR_RETURN(double beta, a.Number(5, 1.0));
        auto xy = at::broadcast_tensors({x, y});
        return Value::Of(beta == 0 ? at::l1_loss(xy[0], xy[1], red)
                                   : at::smooth_l1_loss(xy[0], xy[1], red, beta));
      });
  Def(t, {"torch.nn.functional.huber_loss"},
      {{"input", T, true}, {"target", T, true}, {"reduction", S}, {"delta", N}, {"weight", A}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Tensor(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t red, Reduction(a, 2, {}));
        OPENRL_ASSIGN_OR_RETURN(double delta, a.Number(3, 1.0));
        if (a.has(4)) return a.Error(4, "is not supported");
        auto xy = at::broadcast_tensors({x, y});
        return Value::Of(at::huber_loss(xy[0], xy[1], red, delta));
      });
  Def(t, {"torch.nn.functional.kl_div"},
      {{"input", T, true},
       {"target", T, true},
       {"size_average", A},
       {"reduce", A},
       {"reduction", S},
       {"log_target", B}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Tensor(1));
        OPENRL_ASSIGN_OR_RETURN(bool log_target, a.Bool(5, false));
        OPENRL_ASSIGN_OR_RETURN(std::string r, a.String(4, "mean"));
        if (r == "batchmean") {
          for (size_t i : {2, 3})
            if (a.has(i)) return a.Error(i, "is deprecated in torch and not supported; use reduction=");
          at::Tensor sum = at::kl_div(x, y, 2, log_target);
          return Value::Of(x.dim() != 0 ? sum / x.size(0) : sum);
        }
        OPENRL_ASSIGN_OR_RETURN(int64_t red, Reduction(a, 4, {2, 3}));
        return Value::Of(at::kl_div(x, y, red, log_target));
      });
  Def(t, {"torch.nn.functional.binary_cross_entropy_with_logits"},
      {{"input", T, true},
       {"target", T, true},
       {"weight", T},
       {"size_average", A},
       {"reduce", A},
       {"reduction", S},
       {"pos_weight", T}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Tensor(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t red, Reduction(a, 5, {3, 4}));
        if (x.sizes() != y.sizes()) return a.Error(1, "must have the size of 'input'");
        std::optional<at::Tensor> w, pw;
        if (a.has(2)) {
          OPENRL_ASSIGN_OR_RETURN(w, a.Tensor(2));
        }
        if (a.has(6)) {
          OPENRL_ASSIGN_OR_RETURN(pw, a.Tensor(6));
        }
        return Value::Of(at::binary_cross_entropy_with_logits(x, y, w, pw, red));
      });
}

}  // namespace

void AddTensorOps(OpTable& table) {
  AddReductions(table);
  AddSoftmaxAndFriends(table);
  AddSelection(table);
  AddFunctionalLosses(table);
}

}  // namespace openrl::engine::custom_loss
