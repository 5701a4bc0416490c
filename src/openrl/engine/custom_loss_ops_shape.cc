// The custom-loss operation table, part three: shapes, indexing (operator.getitem), attribute reads
// (getattr), sizes, tensor creation and dtype conversion.
// Created tensors go to the device of the datum's logprobs; device arguments are ignored.
#include <ATen/ATen.h>
#include <ATen/TensorIndexing.h>

#include "openrl/engine/custom_loss_internal.h"

namespace openrl::engine::custom_loss {
namespace {

using K = Value::Kind;
constexpr Param T = Param::kTensor, O = Param::kOperand, N = Param::kNumber, I = Param::kInt,
                D = Param::kDims, B = Param::kBool, DT = Param::kDtype, S = Param::kString, A = Param::kAny;

Value Sizes(at::IntArrayRef sizes) {
  std::vector<Value> v;
  for (int64_t s : sizes) v.push_back(Value::Int(s));
  return Value::Tuple(std::move(v));
}

Value Tuple(const std::vector<at::Tensor>& ts) {
  std::vector<Value> v;
  for (const at::Tensor& x : ts) v.push_back(Value::Of(x));
  return Value::Tuple(std::move(v));
}

void AddShapes(OpTable& t) {
  // reshape(input, shape) and x.reshape(*shape); view/expand/repeat/permute/flip likewise.
  auto with_ints = [&t](const std::vector<std::string>& names, const char* what,
                        std::function<Result<at::Tensor>(const at::Tensor&, const std::vector<int64_t>&)> f) {
    Def(
        t, names, {{"input", T, true}, {what, D, true}},
        [f](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> v, a.Ints(1));
          OPENRL_ASSIGN_OR_RETURN(at::Tensor y, f(x, v));
          return Value::Of(y);
        },
        1);
  };
  with_ints(
      FnAndMethod("reshape"), "shape",
      [](const at::Tensor& x, const std::vector<int64_t>& s) -> Result<at::Tensor> { return x.reshape(s); });
  with_ints(
      {"method:view"}, "shape",
      [](const at::Tensor& x, const std::vector<int64_t>& s) -> Result<at::Tensor> { return x.view(s); });
  with_ints({"method:expand", "torch.broadcast_to", "method:broadcast_to"}, "size",
            [](const at::Tensor& x, const std::vector<int64_t>& s) -> Result<at::Tensor> {
              OPENRL_RETURN_IF_ERROR(CheckElements(s, "expand"));
              return x.expand(s);
            });
  with_ints({"method:repeat"}, "repeats",
            [](const at::Tensor& x, const std::vector<int64_t>& s) -> Result<at::Tensor> {
              std::vector<int64_t> sizes = s;
              for (size_t i = 0; i < sizes.size() && i < static_cast<size_t>(x.dim()); ++i)
                sizes[sizes.size() - 1 - i] *= x.size(x.dim() - 1 - static_cast<int64_t>(i));
              OPENRL_RETURN_IF_ERROR(CheckElements(sizes, "repeat"));
              return x.repeat(s);
            });
  with_ints(
      FnAndMethod("permute"), "dims",
      [](const at::Tensor& x, const std::vector<int64_t>& s) -> Result<at::Tensor> { return x.permute(s); });
  with_ints(FnAndMethod("flip"), "dims",
            [](const at::Tensor& x, const std::vector<int64_t>& s) -> Result<at::Tensor> {
              return at::flip(x, s);
            });
  for (const char* op : {"view_as", "reshape_as", "expand_as", "type_as"}) {
    std::string name = op;
    Def(t, {"method:" + name}, {{"input", T, true}, {"other", T, true}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(at::Tensor o, a.Tensor(1));
          if (name == "view_as") return Value::Of(x.view_as(o));
          if (name == "reshape_as") return Value::Of(x.reshape_as(o));
          if (name == "expand_as") return Value::Of(x.expand_as(o));
          return Value::Of(x.type_as(o));
        });
  }
  Def(t, FnAndMethod("flatten"), {{"input", T, true}, {"start_dim", I}, {"end_dim", I}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t start, a.Int(1, 0));
        OPENRL_ASSIGN_OR_RETURN(int64_t end, a.Int(2, -1));
        return Value::Of(at::flatten(x, start, end));
      });
  Def(t, FnAndMethod("squeeze"), {{"input", T, true}, {"dim", D}}, [](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(1));
    return Value::Of(dims ? at::squeeze(x, *dims) : at::squeeze(x));
  });
  Def(t, FnAndMethod("unsqueeze"), {{"input", T, true}, {"dim", I, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
        return Value::Of(at::unsqueeze(x, dim));
      });
  Def(t,
      Plus(FnAndMethod("transpose"),
           {"torch.swapaxes", "method:swapaxes", "torch.swapdims", "method:swapdims"}),
      {{"input", T, true}, {"dim0", I, true}, {"dim1", I, true}}, [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t d0, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t d1, a.Int(2));
        return Value::Of(at::transpose(x, d0, d1));
      });
  Def(t, FnAndMethod("t"), {{"input", T, true}}, [](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    return Value::Of(at::t(x));
  });
  Def(t, FnAndMethod("narrow"),
      {{"input", T, true}, {"dim", I, true}, {"start", I, true}, {"length", I, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t start, a.Int(2));
        OPENRL_ASSIGN_OR_RETURN(int64_t length, a.Int(3));
        return Value::Of(at::narrow(x, dim, start, length));
      });
  Def(t, FnAndMethod("roll"), {{"input", T, true}, {"shifts", D, true}, {"dims", D}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> shifts, a.Ints(1));
        OPENRL_ASSIGN_OR_RETURN(auto dims, a.Dims(2));
        return Value::Of(at::roll(x, shifts, dims.value_or(std::vector<int64_t>{})));
      });
  for (const char* op : {"tril", "triu"}) {
    std::string name = op;
    Def(t, FnAndMethod(name), {{"input", T, true}, {"diagonal", I}}, [name](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
      OPENRL_ASSIGN_OR_RETURN(int64_t diag, a.Int(1, 0));
      return Value::Of(name == "tril" ? at::tril(x, diag) : at::triu(x, diag));
    });
  }
  Def(t, FnAndMethod("chunk"), {{"input", T, true}, {"chunks", I, true}, {"dim", I}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t chunks, a.Int(1));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(2, 0));
        return Tuple(at::chunk(x, chunks, dim));
      });
  Def(t, {"torch.functional.split", "method:split"},
      {{"input", T, true}, {"split_size_or_sections", D, true}, {"dim", I}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(2, 0));
        if (a.get(1).kind == K::kInt) return Tuple(at::split(x, a.get(1).i, dim));
        OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> sections, a.Ints(1));
        return Tuple(at::split_with_sizes(x, sections, dim));
      });
}

// One Python index (int, bool, None, Ellipsis, slice, tensor, list of ints/bools) as a TensorIndex.
Result<at::indexing::TensorIndex> Index(const Value& v) {
  using namespace at::indexing;
  switch (v.kind) {
    case K::kInt:
      return TensorIndex(v.i);
    case K::kBool:
      return TensorIndex(v.b);
    case K::kNone:
      return TensorIndex(None);
    case K::kEllipsis:
      return TensorIndex(Ellipsis);
    case K::kTensor:
      return TensorIndex(v.t);
    case K::kSlice: {
      std::optional<c10::SymInt> part[3];
      for (size_t i = 0; i < 3; ++i) {
        const Value& p = v.items[i];
        if (p.kind == K::kInt) {
          part[i] = c10::SymInt(p.i);
        } else if (!p.is_none()) {
          return InvalidArgument("a slice bound must be an int or None, got " + Describe(p));
        }
      }
      return TensorIndex(Slice(part[0], part[1], part[2]));
    }
    case K::kList: {
      std::vector<int64_t> ints;
      std::vector<uint8_t> bools;
      for (const Value& x : v.items) {
        if (x.kind == K::kInt)
          ints.push_back(x.i);
        else if (x.kind == K::kBool)
          bools.push_back(x.b);
        else
          return InvalidArgument("a list index must hold ints or bools, got " + Describe(x));
      }
      if (!bools.empty() && !ints.empty()) return InvalidArgument("a list index mixes ints and bools");
      if (!bools.empty()) return TensorIndex(at::tensor(bools, at::kByte).to(at::kBool));
      return TensorIndex(at::tensor(ints, at::kLong));
    }
    default:
      return InvalidArgument("cannot index a tensor with " + Describe(v));
  }
}

void AddIndexingAndAttributes(OpTable& t) {
  Def(t, {"operator.getitem"}, {{"a", A, true}, {"b", A, true}}, [](const Args& a) -> Result<Value> {
    const Value &obj = a.get(0), &idx = a.get(1);
    if (obj.is_sequence()) {
      const int64_t n = static_cast<int64_t>(obj.items.size());
      if (idx.kind == K::kInt) {
        int64_t i = idx.i < 0 ? idx.i + n : idx.i;
        if (i < 0 || i >= n)
          return InvalidArgument("index " + std::to_string(idx.i) + " is out of range for " + Describe(obj));
        return obj.items[static_cast<size_t>(i)];
      }
      if (idx.kind == K::kSlice) {  // Python's slice of a sequence
        at::Tensor pos = at::arange(n, at::kLong);
        OPENRL_ASSIGN_OR_RETURN(at::indexing::TensorIndex ti, Index(idx));
        at::Tensor picked = pos.index({ti});
        Value out;
        out.kind = obj.kind;
        for (int64_t k = 0; k < picked.numel(); ++k)
          out.items.push_back(obj.items[picked[k].item<int64_t>()]);
        return out;
      }
      return InvalidArgument("a " + std::string(obj.kind == K::kList ? "list" : "tuple") +
                             " is indexed with an int or a slice, got " + Describe(idx));
    }
    if (!obj.is_tensor()) return InvalidArgument("cannot index " + Describe(obj));
    std::vector<at::indexing::TensorIndex> indices;
    if (idx.kind == K::kTuple) {
      for (const Value& v : idx.items) {
        OPENRL_ASSIGN_OR_RETURN(at::indexing::TensorIndex ti, Index(v));
        indices.push_back(std::move(ti));
      }
    } else {
      OPENRL_ASSIGN_OR_RETURN(at::indexing::TensorIndex ti, Index(idx));
      indices.push_back(std::move(ti));
    }
    return Value::Of(obj.t.index(indices));
  });
  Def(t, {"getattr"}, {{"obj", A, true}, {"name", S, true}}, [](const Args& a) -> Result<Value> {
    const Value& obj = a.get(0);
    OPENRL_ASSIGN_OR_RETURN(std::string name, a.String(1, ""));
    if (obj.kind == K::kTuple && obj.items.size() == 2 && (name == "values" || name == "indices"))
      return obj.items[name == "values" ? 0 : 1];  // torch.return_types of max, min, sort, topk
    if (!obj.is_tensor()) return InvalidArgument("getattr: cannot read '" + name + "' of " + Describe(obj));
    const at::Tensor& x = obj.t;
    if (name == "shape") return Sizes(x.sizes());
    if (name == "dtype") return Value::Dtype(x.scalar_type());
    if (name == "ndim") return Value::Int(x.dim());
    if (name == "T")
      return Value::Of(x.dim() < 2 ? x : x.permute([&] {
        std::vector<int64_t> d;
        for (int64_t i = x.dim() - 1; i >= 0; --i) d.push_back(i);
        return d;
      }()));
    if (name == "mT") return Value::Of(x.transpose(-2, -1));
    if (name == "data") return Value::Of(x.detach());
    if (name == "requires_grad") return Value::Bool(x.requires_grad());
    return InvalidArgument("getattr: tensor attribute '" + name +
                           "' is not supported (shape, dtype, ndim, T, mT, data, requires_grad are)");
  });
  Def(t, {"method:size"}, {{"input", T, true}, {"dim", I}}, [](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    if (!a.has(1)) return Sizes(x.sizes());
    OPENRL_ASSIGN_OR_RETURN(int64_t dim, a.Int(1));
    return Value::Int(x.size(dim));
  });
  Def(t, {"method:dim", "method:ndimension"}, {{"input", T, true}}, [](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    return Value::Int(x.dim());
  });
  Def(t, Plus(FnAndMethod("numel"), {"method:nelement"}), {{"input", T, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        return Value::Int(x.numel());
      });
  Def(t, FnAndMethod("is_floating_point"), {{"input", T, true}}, [](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    return Value::Bool(x.is_floating_point());
  });
}

at::TensorOptions Options(const Args& a, std::optional<at::ScalarType> dtype) {
  at::TensorOptions o = at::TensorOptions().device(a.device());
  return dtype ? o.dtype(*dtype) : o;
}

void AddCreation(OpTable& t) {
  // *_like(input, [fill_value,] dtype=None, layout=None, device=None, requires_grad=False,
  // memory_format=None)
  for (const char* op : {"zeros_like", "ones_like", "full_like"}) {
    std::string name = op;
    std::vector<ParamSpec> params = {{"input", T, true}};
    if (name == "full_like") params.push_back({"fill_value", N, true});
    for (const char* p : {"dtype", "layout", "device", "requires_grad", "memory_format"})
      params.push_back({p, std::string(p) == "dtype" ? DT : A});
    const size_t dtype_at = name == "full_like" ? 2 : 1;
    Def(t, {"torch." + name}, params, [name, dtype_at](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
      OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(dtype_at));
      at::TensorOptions o = dtype ? x.options().dtype(*dtype) : x.options();
      if (name == "zeros_like") return Value::Of(at::zeros_like(x, o));
      if (name == "ones_like") return Value::Of(at::ones_like(x, o));
      OPENRL_ASSIGN_OR_RETURN(at::Scalar v, a.Scalar(1));
      return Value::Of(at::full_like(x, v, o));
    });
  }
  // zeros(*size, out=None, dtype=None, layout=None, device=None, requires_grad=False)
  for (const char* op : {"zeros", "ones"}) {
    std::string name = op;
    Def(
        t, {"torch." + name},
        {{"size", D, true}, {"out", A}, {"dtype", DT}, {"layout", A}, {"device", A}, {"requires_grad", A}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> size, a.Ints(0));
          OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(2));
          if (a.has(1)) return a.Error(1, "is not supported");
          OPENRL_RETURN_IF_ERROR(CheckElements(size, "torch." + name));
          return Value::Of(name == "zeros" ? at::zeros(size, Options(a, dtype))
                                           : at::ones(size, Options(a, dtype)));
        },
        0);
  }
  // x.new_zeros(*size, dtype=None, ...), x.new_ones, x.new_full(size, fill_value): x's dtype and device.
  for (const char* op : {"new_zeros", "new_ones", "new_full"}) {
    std::string name = op;
    std::vector<ParamSpec> params = {{"input", T, true}, {"size", D, true}};
    if (name == "new_full") params.push_back({"fill_value", N, true});
    for (const char* p : {"dtype", "device", "requires_grad", "layout", "pin_memory"})
      params.push_back({p, std::string(p) == "dtype" ? DT : A});
    const size_t dtype_at = name == "new_full" ? 3 : 2;
    Def(
        t, {"method:" + name}, params,
        [name, dtype_at](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> size, a.Ints(1));
          OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(dtype_at));
          OPENRL_RETURN_IF_ERROR(CheckElements(size, name));
          at::TensorOptions o = dtype ? x.options().dtype(*dtype) : x.options();
          if (name == "new_zeros") return Value::Of(at::zeros(size, o));
          if (name == "new_ones") return Value::Of(at::ones(size, o));
          OPENRL_ASSIGN_OR_RETURN(at::Scalar v, a.Scalar(2));
          return Value::Of(at::full(size, v, o));
        },
        name == "new_full" ? -1 : 1);
  }
  Def(t, {"torch.full"},
      {{"size", D, true},
       {"fill_value", N, true},
       {"out", A},
       {"dtype", DT},
       {"layout", A},
       {"device", A},
       {"requires_grad", A}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> size, a.Ints(0));
        OPENRL_ASSIGN_OR_RETURN(at::Scalar v, a.Scalar(1));
        OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(3));
        if (a.has(2)) return a.Error(2, "is not supported");
        OPENRL_RETURN_IF_ERROR(CheckElements(size, "torch.full"));
        return Value::Of(at::full(size, v, Options(a, dtype)));
      });
  // arange(end) or arange(start, end, step=1)
  Def(t, {"torch.arange"},
      {{"start", N, true},
       {"end", N},
       {"step", N},
       {"out", A},
       {"dtype", DT},
       {"layout", A},
       {"device", A},
       {"requires_grad", A}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Scalar first, a.Scalar(0));
        at::Scalar start = 0, end = first, step = 1;
        if (a.has(1)) {
          start = first;
          OPENRL_ASSIGN_OR_RETURN(end, a.Scalar(1));
        }
        if (a.has(2)) {
          OPENRL_ASSIGN_OR_RETURN(step, a.Scalar(2));
        }
        OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(4));
        if (a.has(3)) return a.Error(3, "is not supported");
        if (step.toDouble() == 0) return a.Error(2, "must not be zero");
        double n = std::ceil((end.toDouble() - start.toDouble()) / step.toDouble());
        OPENRL_RETURN_IF_ERROR(CheckElements({static_cast<int64_t>(std::min(n, 1e18))}, "torch.arange"));
        return Value::Of(at::arange(start, end, step, Options(a, dtype)));
      });
  Def(t, {"torch._C._nn.one_hot"}, {{"tensor", T, true}, {"num_classes", I}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(int64_t n, a.Int(1, -1));
        int64_t classes = n >= 0 ? n : (x.numel() ? x.max().item<int64_t>() + 1 : 0);
        OPENRL_RETURN_IF_ERROR(CheckElements({x.numel(), classes}, "one_hot"));
        return Value::Of(at::one_hot(x, n));
      });
}

void AddConversions(OpTable& t) {
  // x.to(dtype), x.to(other), x.to(device[, dtype]), x.to(dtype=...): devices are ignored.
  Def(t, {"method:to"},
      {{"input", T, true},
       {"a", A},
       {"b", A},
       {"non_blocking", A},
       {"copy", A},
       {"dtype", DT},
       {"device", A},
       {"memory_format", A}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        std::optional<at::ScalarType> dtype;
        for (size_t i : {1, 2}) {
          if (!a.has(i)) continue;
          const Value& v = a.get(i);
          if (v.kind == K::kDtype)
            dtype = v.dtype;
          else if (v.is_tensor())
            dtype = v.t.scalar_type();
          else if (v.kind != K::kDevice && v.kind != K::kString && v.kind != K::kBool)
            return a.Error(i, "must be a dtype, a device or a tensor, got " + Describe(v));
        }
        if (a.has(5)) {
          OPENRL_ASSIGN_OR_RETURN(dtype, a.Dtype(5));
        }
        return Value::Of(dtype ? x.to(*dtype) : x);
      });
  const std::vector<std::pair<std::string, at::ScalarType>> casts = {
      {"float", at::kFloat}, {"double", at::kDouble}, {"half", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"long", at::kLong},   {"int", at::kInt},       {"bool", at::kBool}};
  for (const auto& [name, type] : casts) {
    at::ScalarType to = type;
    Def(t, {"method:" + name}, {{"input", T, true}, {"memory_format", A}},
        [to](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
          return Value::Of(x.to(to));
        });
  }
  Def(t, {"method:type"}, {{"input", T, true}, {"dtype", DT, true}, {"non_blocking", A}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(auto dtype, a.Dtype(1));
        return Value::Of(x.to(*dtype));
      });
}

}  // namespace

void AddShapeOps(OpTable& table) {
  AddShapes(table);
  AddIndexingAndAttributes(table);
  AddCreation(table);
  AddConversions(table);
}

}  // namespace openrl::engine::custom_loss
