// The custom-loss operation table, part one: Python operators with Python's number semantics,
// elementwise torch math, and math.* on numbers. Every operation calls the ATen function its torch
// counterpart calls, so a loss gives here what it gives in torch.
#include <ATen/ATen.h>

#include <cmath>

#include "openrl/engine/custom_loss_internal.h"

namespace openrl::engine::custom_loss {

namespace {

using K = Value::Kind;
using TensorFn = std::function<at::Tensor(const at::Tensor&)>;
using Tensor2Fn = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;

// Python arithmetic on two numbers (bools count as ints); INVALID_ARGUMENT for a zero divisor.
Result<Value> NumberOp(const std::string& op, const Value& a, const Value& b) {
  const bool ints = a.kind != K::kFloat && b.kind != K::kFloat;
  const int64_t x = a.kind == K::kInt ? a.i : a.b, y = b.kind == K::kInt ? b.i : b.b;
  const double u = a.number(), v = b.number();
  if ((op == "truediv" || op == "floordiv" || op == "mod") && v == 0)
    return InvalidArgument("division by zero");
  if (op == "add") return ints ? Value::Int(x + y) : Value::Float(u + v);
  if (op == "sub") return ints ? Value::Int(x - y) : Value::Float(u - v);
  if (op == "mul") return ints ? Value::Int(x * y) : Value::Float(u * v);
  if (op == "truediv") return Value::Float(u / v);
  if (op == "floordiv") {
    if (!ints) return Value::Float(std::floor(u / v));
    int64_t q = x / y;
    return Value::Int((x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q);
  }
  if (op == "mod") {
    if (!ints) return Value::Float(u - v * std::floor(u / v));
    int64_t r = x % y;
    return Value::Int((r != 0 && ((r < 0) != (y < 0))) ? r + y : r);
  }
  if (op == "pow") {
    if (ints && y >= 0)
      return Value::Int(static_cast<int64_t>(std::llround(std::pow(static_cast<double>(x), y))));
    if (u == 0 && v < 0) return InvalidArgument("0.0 cannot be raised to a negative power");
    return Value::Float(std::pow(u, v));
  }
  if (op == "lt") return Value::Bool(u < v);
  if (op == "le") return Value::Bool(u <= v);
  if (op == "gt") return Value::Bool(u > v);
  if (op == "ge") return Value::Bool(u >= v);
  if (op == "eq") return Value::Bool(u == v);
  if (op == "ne") return Value::Bool(u != v);
  if (op == "and_" || op == "or_" || op == "xor") {
    if (!ints) return InvalidArgument("operator." + op + " takes integers or bools");
    const int64_t r = op == "and_" ? (x & y) : op == "or_" ? (x | y) : (x ^ y);
    return a.kind == K::kBool && b.kind == K::kBool ? Value::Bool(r != 0) : Value::Int(r);
  }
  return InvalidArgument("operator." + op + " does not take two numbers");
}

// Python's a <op> b where at least one side is a tensor, as torch.Tensor's operators do it
// (the reflected forms included: 2 / x is x.reciprocal() * 2, 1 - x is rsub(x, 1)).
Result<at::Tensor> TensorOp(const std::string& op, const Value& a, const Value& b) {
  if (!a.is_tensor()) {  // b.__rop__(a)
    const at::Tensor& t = b.t;
    const at::Tensor w = Wrapped(a);
    if (op == "add") return at::add(t, w);
    if (op == "mul") return at::mul(t, w);
    if (op == "sub") return at::rsub(t, w);
    if (op == "truediv") return at::mul(at::reciprocal(t), w);
    if (op == "floordiv") return at::floor_divide(w, t);
    if (op == "mod") return at::remainder(w, t);
    if (op == "pow") return at::pow(w.item(), t);
    if (op == "and_") return at::bitwise_and(t, w);
    if (op == "or_") return at::bitwise_or(t, w);
    if (op == "xor") return at::bitwise_xor(t, w);
    if (op == "lt") return at::gt(t, w);
    if (op == "le") return at::ge(t, w);
    if (op == "gt") return at::lt(t, w);
    if (op == "ge") return at::le(t, w);
    if (op == "eq") return at::eq(t, w);
    if (op == "ne") return at::ne(t, w);
    return InvalidArgument("operator." + op + " needs a tensor on its left");
  }
  const at::Tensor& t = a.t;
  if (op == "pow" && b.is_number()) return at::pow(t, Wrapped(b).item());
  const at::Tensor o = b.is_tensor() ? b.t : Wrapped(b);
  if (op == "add") return at::add(t, o);
  if (op == "sub") return at::sub(t, o);
  if (op == "mul") return at::mul(t, o);
  if (op == "truediv") return at::div(t, o);
  if (op == "floordiv") return at::floor_divide(t, o);
  if (op == "mod") return at::remainder(t, o);
  if (op == "pow") return at::pow(t, o);
  if (op == "matmul") return at::matmul(t, o);
  if (op == "and_") return at::bitwise_and(t, o);
  if (op == "or_") return at::bitwise_or(t, o);
  if (op == "xor") return at::bitwise_xor(t, o);
  if (op == "lt") return at::lt(t, o);
  if (op == "le") return at::le(t, o);
  if (op == "gt") return at::gt(t, o);
  if (op == "ge") return at::ge(t, o);
  if (op == "eq") return at::eq(t, o);
  if (op == "ne") return at::ne(t, o);
  return InvalidArgument("operator." + op + " is not defined for tensors");
}

void AddOperators(OpTable& t) {
  for (const char* op : {"add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_", "or_",
                         "xor", "lt", "le", "gt", "ge", "eq", "ne"}) {
    std::string name = op;
    Def(t, {"operator." + name}, {{"a", Param::kAny, true}, {"b", Param::kAny, true}},
        [name](const Args& a) -> Result<Value> {
          const Value &x = a.get(0), &y = a.get(1);
          if (x.is_number() && y.is_number()) return NumberOp(name, x, y);
          if ((x.is_tensor() && (y.is_tensor() || y.is_number())) || (y.is_tensor() && x.is_number())) {
            OPENRL_ASSIGN_OR_RETURN(at::Tensor r, TensorOp(name, x, y));
            return Value::Of(r);
          }
          if ((name == "eq" || name == "ne") && x.kind == y.kind &&
              (x.kind == K::kDtype || x.kind == K::kString || x.kind == K::kNone)) {
            bool same = x.kind == K::kDtype ? x.dtype == y.dtype : x.s == y.s;
            return Value::Bool(name == "eq" ? same : !same);
          }
          return InvalidArgument("operator." + name + " cannot combine " + Describe(x) + " and " +
                                 Describe(y));
        });
  }
  auto unary = [&t](const std::string& op, std::function<Result<Value>(const Value&)> f) {
    Def(t, {"operator." + op}, {{"a", Param::kOperand, true}}, [f](const Args& a) { return f(a.get(0)); });
  };
  unary("neg", [](const Value& v) -> Result<Value> {
    if (v.is_tensor()) return Value::Of(at::neg(v.t));
    return v.kind == K::kFloat ? Value::Float(-v.f) : Value::Int(-(v.kind == K::kInt ? v.i : v.b));
  });
  unary("pos", [](const Value& v) -> Result<Value> {
    if (v.is_tensor()) return Value::Of(at::positive(v.t));
    return v.kind == K::kBool ? Value::Int(v.b) : v;
  });
  unary("abs", [](const Value& v) -> Result<Value> {
    if (v.is_tensor()) return Value::Of(at::abs(v.t));
    return v.kind == K::kFloat ? Value::Float(std::fabs(v.f))
                               : Value::Int(std::abs(v.kind == K::kInt ? v.i : v.b));
  });
  unary("invert", [](const Value& v) -> Result<Value> {
    if (v.is_tensor()) return Value::Of(at::bitwise_not(v.t));
    if (v.kind == K::kFloat) return InvalidArgument("operator.invert takes an int, a bool or a tensor");
    return Value::Int(~(v.kind == K::kInt ? v.i : static_cast<int64_t>(v.b)));
  });
}

void DefUnary(OpTable& t, const std::vector<std::string>& names, TensorFn f) {
  Def(t, names, {{"input", Param::kTensor, true}}, [f](const Args& a) -> Result<Value> {
    OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
    return Value::Of(f(x));
  });
}

void DefBinary(OpTable& t, const std::vector<std::string>& names, Tensor2Fn f, const char* second = "other") {
  Def(t, names, {{"input", Param::kOperand, true}, {second, Param::kOperand, true}},
      [f](const Args& a) -> Result<Value> {
        if (!a.get(0).is_tensor() && !a.get(1).is_tensor())
          return InvalidArgument("one of 'input' and 'other' must be a tensor");
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Operand(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Operand(1));
        return Value::Of(f(x, y));
      });
}

void AddElementwise(OpTable& t) {
  const std::vector<std::pair<std::string, TensorFn>> unary = {
      {"abs", [](const at::Tensor& x) { return at::abs(x); }},
      {"absolute", [](const at::Tensor& x) { return at::abs(x); }},
      {"neg", [](const at::Tensor& x) { return at::neg(x); }},
      {"negative", [](const at::Tensor& x) { return at::neg(x); }},
      {"exp", [](const at::Tensor& x) { return at::exp(x); }},
      {"exp2", [](const at::Tensor& x) { return at::exp2(x); }},
      {"expm1", [](const at::Tensor& x) { return at::expm1(x); }},
      {"log", [](const at::Tensor& x) { return at::log(x); }},
      {"log2", [](const at::Tensor& x) { return at::log2(x); }},
      {"log10", [](const at::Tensor& x) { return at::log10(x); }},
      {"log1p", [](const at::Tensor& x) { return at::log1p(x); }},
      {"sqrt", [](const at::Tensor& x) { return at::sqrt(x); }},
      {"rsqrt", [](const at::Tensor& x) { return at::rsqrt(x); }},
      {"square", [](const at::Tensor& x) { return at::square(x); }},
      {"sin", [](const at::Tensor& x) { return at::sin(x); }},
      {"cos", [](const at::Tensor& x) { return at::cos(x); }},
      {"tanh", [](const at::Tensor& x) { return at::tanh(x); }},
      {"atan", [](const at::Tensor& x) { return at::atan(x); }},
      {"sigmoid", [](const at::Tensor& x) { return at::sigmoid(x); }},
      {"relu", [](const at::Tensor& x) { return at::relu(x); }},
      {"sign", [](const at::Tensor& x) { return at::sign(x); }},
      {"sgn", [](const at::Tensor& x) { return at::sgn(x); }},
      {"floor", [](const at::Tensor& x) { return at::floor(x); }},
      {"ceil", [](const at::Tensor& x) { return at::ceil(x); }},
      {"trunc", [](const at::Tensor& x) { return at::trunc(x); }},
      {"frac", [](const at::Tensor& x) { return at::frac(x); }},
      {"reciprocal", [](const at::Tensor& x) { return at::reciprocal(x); }},
      {"erf", [](const at::Tensor& x) { return at::erf(x); }},
      {"erfc", [](const at::Tensor& x) { return at::erfc(x); }},
      {"lgamma", [](const at::Tensor& x) { return at::lgamma(x); }},
      {"digamma", [](const at::Tensor& x) { return at::digamma(x); }},
      {"isnan", [](const at::Tensor& x) { return at::isnan(x); }},
      {"isinf", [](const at::Tensor& x) { return at::isinf(x); }},
      {"isfinite", [](const at::Tensor& x) { return at::isfinite(x); }},
      {"logical_not", [](const at::Tensor& x) { return at::logical_not(x); }},
      {"bitwise_not", [](const at::Tensor& x) { return at::bitwise_not(x); }},
      {"detach", [](const at::Tensor& x) { return x.detach(); }},
  };
  for (const auto& [name, f] : unary) DefUnary(t, FnAndMethod(name), f);
  DefUnary(t, {"torch._C._special.special_expit", "torch.nn.functional.sigmoid"},
           [](const at::Tensor& x) { return at::sigmoid(x); });
  DefUnary(t, {"torch.nn.functional.tanh"}, [](const at::Tensor& x) { return at::tanh(x); });
  DefUnary(t, {"torch._C._nn.log_sigmoid"}, [](const at::Tensor& x) { return at::log_sigmoid(x); });
  DefUnary(t, {"torch._C._special.special_entr"}, [](const at::Tensor& x) { return at::special_entr(x); });
  DefUnary(t, {"torch._C._special.special_log1p"}, [](const at::Tensor& x) { return at::log1p(x); });
  DefUnary(t, {"torch._C._special.special_expm1"}, [](const at::Tensor& x) { return at::expm1(x); });
  DefUnary(t, {"torch._C._special.special_exp2"}, [](const at::Tensor& x) { return at::exp2(x); });
  DefUnary(t, {"torch._C._special.special_erf"}, [](const at::Tensor& x) { return at::erf(x); });
  DefUnary(t, {"method:clone", "torch.clone"}, [](const at::Tensor& x) { return x.clone(); });
  DefUnary(t, {"method:contiguous"}, [](const at::Tensor& x) { return x.contiguous(); });

  // Activations of torch.nn.functional with an inplace flag: computed out of place either way.
  auto with_inplace = [&t](const std::vector<std::string>& names, std::vector<ParamSpec> extra,
                           std::function<Result<at::Tensor>(const at::Tensor&, const Args&)> f) {
    std::vector<ParamSpec> params = {{"input", Param::kTensor, true}};
    params.insert(params.end(), extra.begin(), extra.end());
    Def(t, names, params, [f](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Tensor(0));
      OPENRL_ASSIGN_OR_RETURN(at::Tensor y, f(x, a));
      return Value::Of(y);
    });
  };
  with_inplace({"torch.nn.functional.relu"}, {{"inplace", Param::kBool}},
               [](const at::Tensor& x, const Args&) -> Result<at::Tensor> { return at::relu(x); });
  with_inplace({"torch.nn.functional.silu"}, {{"inplace", Param::kBool}},
               [](const at::Tensor& x, const Args&) -> Result<at::Tensor> { return at::silu(x); });
  with_inplace({"torch.nn.functional.elu"}, {{"alpha", Param::kNumber}, {"inplace", Param::kBool}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 OPENRL_ASSIGN_OR_RETURN(double alpha, a.Number(1, 1.0));
                 return at::elu(x, alpha);
               });
  with_inplace({"torch.nn.functional.leaky_relu"},
               {{"negative_slope", Param::kNumber}, {"inplace", Param::kBool}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 OPENRL_ASSIGN_OR_RETURN(double slope, a.Number(1, 0.01));
                 return at::leaky_relu(x, slope);
               });
  with_inplace({"torch._C._nn.softplus"}, {{"beta", Param::kNumber}, {"threshold", Param::kNumber}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 OPENRL_ASSIGN_OR_RETURN(double beta, a.Number(1, 1.0));
                 OPENRL_ASSIGN_OR_RETURN(double threshold, a.Number(2, 20.0));
                 return at::softplus(x, beta, threshold);
               });
  with_inplace({"torch._C._nn.gelu"}, {{"approximate", Param::kString}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 OPENRL_ASSIGN_OR_RETURN(std::string approximate, a.String(1, "none"));
                 return at::gelu(x, approximate);
               });
  with_inplace(Plus(FnAndMethod("logit"), {"torch._C._special.special_logit"}), {{"eps", Param::kNumber}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 if (!a.has(1)) return at::logit(x);
                 OPENRL_ASSIGN_OR_RETURN(double eps, a.Number(1));
                 return at::logit(x, eps);
               });
  with_inplace(FnAndMethod("round"), {{"decimals", Param::kInt}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 OPENRL_ASSIGN_OR_RETURN(int64_t decimals, a.Int(1, 0));
                 return decimals == 0 ? at::round(x) : at::round(x, decimals);
               });
  with_inplace(FnAndMethod("nan_to_num"),
               {{"nan", Param::kNumber}, {"posinf", Param::kNumber}, {"neginf", Param::kNumber}},
               [](const at::Tensor& x, const Args& a) -> Result<at::Tensor> {
                 OPENRL_ASSIGN_OR_RETURN(double nan, a.Number(1, 0.0));
                 std::optional<double> pos, neg;
                 if (a.has(2)) {
                   OPENRL_ASSIGN_OR_RETURN(pos, a.Number(2));
                 }
                 if (a.has(3)) {
                   OPENRL_ASSIGN_OR_RETURN(neg, a.Number(3));
                 }
                 return at::nan_to_num(x, nan, pos, neg);
               });

  const std::vector<std::pair<std::vector<std::string>, Tensor2Fn>> binary = {
      {Plus(FnAndMethod("mul"), {"torch.multiply", "method:multiply"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::mul(x, y); }},
      {Plus(FnAndMethod("true_divide"), {}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::div(x, y); }},
      {FnAndMethod("floor_divide"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::floor_divide(x, y); }},
      {FnAndMethod("remainder"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::remainder(x, y); }},
      {FnAndMethod("fmod"), [](const at::Tensor& x, const at::Tensor& y) { return at::fmod(x, y); }},
      {FnAndMethod("maximum"), [](const at::Tensor& x, const at::Tensor& y) { return at::maximum(x, y); }},
      {FnAndMethod("minimum"), [](const at::Tensor& x, const at::Tensor& y) { return at::minimum(x, y); }},
      {FnAndMethod("fmax"), [](const at::Tensor& x, const at::Tensor& y) { return at::fmax(x, y); }},
      {FnAndMethod("fmin"), [](const at::Tensor& x, const at::Tensor& y) { return at::fmin(x, y); }},
      {Plus(FnAndMethod("atan2"), {"torch.arctan2", "method:arctan2"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::atan2(x, y); }},
      {FnAndMethod("logaddexp"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::logaddexp(x, y); }},
      {FnAndMethod("logaddexp2"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::logaddexp2(x, y); }},
      {Plus(FnAndMethod("xlogy"), {"torch._C._special.special_xlogy"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::xlogy(x, y); }},
      {FnAndMethod("hypot"), [](const at::Tensor& x, const at::Tensor& y) { return at::hypot(x, y); }},
      {Plus(FnAndMethod("eq"), {}), [](const at::Tensor& x, const at::Tensor& y) { return at::eq(x, y); }},
      {Plus(FnAndMethod("ne"), {"torch.not_equal", "method:not_equal"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::ne(x, y); }},
      {Plus(FnAndMethod("lt"), {"torch.less", "method:less"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::lt(x, y); }},
      {Plus(FnAndMethod("le"), {"torch.less_equal", "method:less_equal"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::le(x, y); }},
      {Plus(FnAndMethod("gt"), {"torch.greater", "method:greater"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::gt(x, y); }},
      {Plus(FnAndMethod("ge"), {"torch.greater_equal", "method:greater_equal"}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::ge(x, y); }},
      {FnAndMethod("logical_and"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::logical_and(x, y); }},
      {FnAndMethod("logical_or"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::logical_or(x, y); }},
      {FnAndMethod("logical_xor"),
       [](const at::Tensor& x, const at::Tensor& y) { return at::logical_xor(x, y); }},
      {Plus(FnAndMethod("matmul"), {}),
       [](const at::Tensor& x, const at::Tensor& y) { return at::matmul(x, y); }},
      {FnAndMethod("dot"), [](const at::Tensor& x, const at::Tensor& y) { return at::dot(x, y); }},
      {FnAndMethod("outer"), [](const at::Tensor& x, const at::Tensor& y) { return at::outer(x, y); }},
  };
  for (const auto& [names, f] : binary) DefBinary(t, names, f);

  // add/sub with alpha; div with rounding_mode; pow, whose base may be a number.
  for (const char* op : {"add", "sub", "subtract", "rsub"}) {
    std::string name = op;
    Def(t, Plus(FnAndMethod(name), {}),
        {{"input", Param::kOperand, true}, {"other", Param::kOperand, true}, {"alpha", Param::kNumber}},
        [name](const Args& a) -> Result<Value> {
          OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Operand(0));
          OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Operand(1));
          at::Scalar alpha = 1;
          if (a.has(2)) {
            OPENRL_ASSIGN_OR_RETURN(alpha, a.Scalar(2));
          }
          if (name == "add") return Value::Of(at::add(x, y, alpha));
          if (name == "rsub") return Value::Of(at::rsub(x, y, alpha));
          return Value::Of(at::sub(x, y, alpha));
        });
  }
  Def(t, Plus(FnAndMethod("div"), {"torch.divide", "method:divide"}),
      {{"input", Param::kOperand, true}, {"other", Param::kOperand, true}, {"rounding_mode", Param::kString}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(at::Tensor x, a.Operand(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor y, a.Operand(1));
        if (!a.has(2)) return Value::Of(at::div(x, y));
        OPENRL_ASSIGN_OR_RETURN(std::string mode, a.String(2, ""));
        if (mode != "trunc" && mode != "floor") return a.Error(2, "must be 'trunc', 'floor' or None");
        return Value::Of(at::div(x, y, mode));
      });
  Def(t, FnAndMethod("pow"), {{"input", Param::kOperand, true}, {"exponent", Param::kOperand, true}},
      [](const Args& a) -> Result<Value> {
        const Value &x = a.get(0), &y = a.get(1);
        if (x.is_tensor() && y.is_number()) return Value::Of(at::pow(x.t, Wrapped(y).item()));
        if (x.is_number() && y.is_tensor()) return Value::Of(at::pow(Wrapped(x).item(), y.t));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor base, a.Tensor(0));
        OPENRL_ASSIGN_OR_RETURN(at::Tensor e, a.Tensor(1));
        return Value::Of(at::pow(base, e));
      });
}

void AddMath(OpTable& t) {
  const std::vector<std::pair<std::string, std::function<double(double)>>> real = {
      {"sqrt", [](double x) { return std::sqrt(x); }},   {"exp", [](double x) { return std::exp(x); }},
      {"expm1", [](double x) { return std::expm1(x); }}, {"log2", [](double x) { return std::log2(x); }},
      {"log10", [](double x) { return std::log10(x); }}, {"log1p", [](double x) { return std::log1p(x); }},
      {"fabs", [](double x) { return std::fabs(x); }},   {"tanh", [](double x) { return std::tanh(x); }},
      {"sin", [](double x) { return std::sin(x); }},     {"cos", [](double x) { return std::cos(x); }},
  };
  for (const auto& [name, f] : real) {
    Def(t, {"math." + name}, {{"x", Param::kNumber, true}}, [f, name](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(double x, a.Number(0));
      double y = f(x);
      if (std::isnan(y) && !std::isnan(x)) return InvalidArgument("math." + name + ": math domain error");
      return Value::Float(y);
    });
  }
  Def(t, {"math.log"}, {{"x", Param::kNumber, true}, {"base", Param::kNumber}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(double x, a.Number(0));
        if (x <= 0) return InvalidArgument("math.log: math domain error");
        if (!a.has(1)) return Value::Float(std::log(x));
        OPENRL_ASSIGN_OR_RETURN(double base, a.Number(1));
        return Value::Float(std::log(x) / std::log(base));
      });
  Def(t, {"math.pow"}, {{"x", Param::kNumber, true}, {"y", Param::kNumber, true}},
      [](const Args& a) -> Result<Value> {
        OPENRL_ASSIGN_OR_RETURN(double x, a.Number(0));
        OPENRL_ASSIGN_OR_RETURN(double y, a.Number(1));
        return Value::Float(std::pow(x, y));
      });
  for (const char* op : {"floor", "ceil", "trunc"}) {
    std::string name = op;
    Def(t, {"math." + name}, {{"x", Param::kNumber, true}}, [name](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(double x, a.Number(0));
      if (!std::isfinite(x)) return InvalidArgument("math." + name + " of a value that is not finite");
      double y = name == "floor" ? std::floor(x) : name == "ceil" ? std::ceil(x) : std::trunc(x);
      return Value::Int(static_cast<int64_t>(y));
    });
  }
  for (const char* op : {"isfinite", "isnan", "isinf"}) {
    std::string name = op;
    Def(t, {"math." + name}, {{"x", Param::kNumber, true}}, [name](const Args& a) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(double x, a.Number(0));
      return Value::Bool(name == "isfinite" ? std::isfinite(x)
                         : name == "isnan"  ? std::isnan(x)
                                            : std::isinf(x));
    });
  }
}

}  // namespace

void AddArithmeticOps(OpTable& table) {
  AddOperators(table);
  AddElementwise(table);
  AddMath(table);
}

}  // namespace openrl::engine::custom_loss
