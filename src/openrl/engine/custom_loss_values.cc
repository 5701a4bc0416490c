// Values, argument access and the registry of the custom-loss operation table (custom_loss_internal.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <sstream>

#include "openrl/engine/custom_loss.h"
#include "openrl/engine/custom_loss_internal.h"

namespace openrl::engine::custom_loss {

Value Value::Bool(bool v) {
  Value x;
  x.kind = Kind::kBool;
  x.b = v;
  return x;
}
Value Value::Int(int64_t v) {
  Value x;
  x.kind = Kind::kInt;
  x.i = v;
  return x;
}
Value Value::Float(double v) {
  Value x;
  x.kind = Kind::kFloat;
  x.f = v;
  return x;
}
Value Value::Str(std::string v) {
  Value x;
  x.kind = Kind::kString;
  x.s = std::move(v);
  return x;
}
Value Value::Of(at::Tensor v) {
  Value x;
  x.kind = Kind::kTensor;
  x.t = std::move(v);
  return x;
}
Value Value::Tuple(std::vector<Value> v) {
  Value x;
  x.kind = Kind::kTuple;
  x.items = std::move(v);
  return x;
}
Value Value::List(std::vector<Value> v) {
  Value x;
  x.kind = Kind::kList;
  x.items = std::move(v);
  return x;
}
Value Value::Dtype(at::ScalarType v) {
  Value x;
  x.kind = Kind::kDtype;
  x.dtype = v;
  return x;
}

bool Value::contains_ref() const {
  if (kind == Kind::kRef) return true;
  for (const Value& v : items)
    if (v.contains_ref()) return true;
  for (const auto& [k, v] : dict)
    if (v.contains_ref()) return true;
  return false;
}

std::string Describe(const Value& v) {
  using K = Value::Kind;
  switch (v.kind) {
    case K::kNone:
      return "None";
    case K::kBool:
      return "a bool";
    case K::kInt:
      return "an int";
    case K::kFloat:
      return "a float";
    case K::kString:
      return "a string";
    case K::kTensor: {
      std::ostringstream s;
      s << "a tensor of shape " << v.t.sizes() << " (" << c10::toString(v.t.scalar_type()) << ")";
      return s.str();
    }
    case K::kList:
      return "a list of " + std::to_string(v.items.size());
    case K::kTuple:
      return "a tuple of " + std::to_string(v.items.size());
    case K::kDict:
      return "a dict";
    case K::kSlice:
      return "a slice";
    case K::kEllipsis:
      return "Ellipsis";
    case K::kDtype:
      return "a dtype";
    case K::kDevice:
      return "a device";
    case K::kLayout:
      return "a layout";
    case K::kMemoryFormat:
      return "a memory format";
    case K::kRef:
      return "the node '" + v.s + "'";
  }
  return "a value";
}

at::Tensor Wrapped(const Value& n) {
  at::Tensor t = n.kind == Value::Kind::kFloat ? at::scalar_tensor(n.f, at::kDouble)
                 : n.kind == Value::Kind::kInt ? at::scalar_tensor(n.i, at::kLong)
                                               : at::scalar_tensor(n.b, at::kBool);
  t.unsafeGetTensorImpl()->set_wrapped_number(true);
  return t;
}

Status Args::Error(size_t i, const std::string& what) const {
  return InvalidArgument("argument '" + std::string(spec_.params[i].name) + "' " + what);
}

Result<at::Tensor> Args::Tensor(size_t i) const {
  if (!has(i)) return Error(i, "is missing");
  if (!get(i).is_tensor()) return Error(i, "must be a tensor, got " + Describe(get(i)));
  return get(i).t;
}

Result<at::Tensor> Args::Operand(size_t i) const {
  if (has(i) && get(i).is_number()) return Wrapped(get(i));
  return Tensor(i);
}

Result<at::Scalar> Args::Scalar(size_t i) const {
  if (!has(i)) return Error(i, "is missing");
  const Value& v = get(i);
  if (v.kind == Value::Kind::kFloat) return at::Scalar(v.f);
  if (v.kind == Value::Kind::kInt) return at::Scalar(v.i);
  if (v.kind == Value::Kind::kBool) return at::Scalar(v.b);
  if (v.is_tensor() && v.t.numel() == 1) return v.t.item();
  return Error(i, "must be a number, got " + Describe(v));
}

Result<double> Args::Number(size_t i, std::optional<double> fallback) const {
  if (!has(i) && fallback) return *fallback;
  OPENRL_ASSIGN_OR_RETURN(at::Scalar s, Scalar(i));
  return s.toDouble();
}

Result<int64_t> Args::Int(size_t i, std::optional<int64_t> fallback) const {
  if (!has(i) && fallback) return *fallback;
  if (!has(i)) return Error(i, "is missing");
  const Value& v = get(i);
  if (v.kind == Value::Kind::kInt) return v.i;
  if (v.kind == Value::Kind::kBool) return static_cast<int64_t>(v.b);
  return Error(i, "must be an int, got " + Describe(v));
}

Result<bool> Args::Bool(size_t i, bool fallback) const {
  if (!has(i)) return fallback;
  const Value& v = get(i);
  if (v.kind == Value::Kind::kBool) return v.b;
  if (v.kind == Value::Kind::kInt) return v.i != 0;
  return Error(i, "must be a bool, got " + Describe(v));
}

Result<std::vector<int64_t>> Args::Ints(size_t i) const {
  if (!has(i)) return Error(i, "is missing");
  const Value& v = get(i);
  if (v.kind == Value::Kind::kInt) return std::vector<int64_t>{v.i};
  if (!v.is_sequence()) return Error(i, "must be an int or a list/tuple of ints, got " + Describe(v));
  std::vector<int64_t> out;
  for (const Value& x : v.items) {
    if (x.kind != Value::Kind::kInt) return Error(i, "must hold ints, got " + Describe(x));
    out.push_back(x.i);
  }
  return out;
}

Result<std::optional<std::vector<int64_t>>> Args::Dims(size_t i) const {
  if (!has(i)) return std::optional<std::vector<int64_t>>();
  OPENRL_ASSIGN_OR_RETURN(std::vector<int64_t> dims, Ints(i));
  return std::optional<std::vector<int64_t>>(std::move(dims));
}

Result<std::optional<at::ScalarType>> Args::Dtype(size_t i) const {
  if (!has(i)) return std::optional<at::ScalarType>();
  if (get(i).kind != Value::Kind::kDtype) return Error(i, "must be a dtype, got " + Describe(get(i)));
  return std::optional<at::ScalarType>(get(i).dtype);
}

Result<std::string> Args::String(size_t i, const std::string& fallback) const {
  if (!has(i)) return fallback;
  if (get(i).kind != Value::Kind::kString) return Error(i, "must be a string, got " + Describe(get(i)));
  return get(i).s;
}

Result<std::vector<at::Tensor>> Args::Tensors(size_t i) const {
  if (!has(i)) return Error(i, "is missing");
  const Value& v = get(i);
  if (!v.is_sequence()) return Error(i, "must be a list or tuple of tensors, got " + Describe(v));
  std::vector<at::Tensor> out;
  for (const Value& x : v.items) {
    if (!x.is_tensor()) return Error(i, "must hold tensors, got " + Describe(x));
    out.push_back(x.t);
  }
  return out;
}

void Def(OpTable& table, const std::vector<std::string>& names, std::vector<ParamSpec> params,
         std::function<Result<Value>(const Args&)> run, int varargs_at) {
  for (const std::string& n : names) table[n] = OpSpec{params, varargs_at, run};
}

std::vector<std::string> FnAndMethod(const std::string& name) { return {"torch." + name, "method:" + name}; }

std::vector<std::string> Plus(std::vector<std::string> names, std::initializer_list<std::string> more) {
  names.insert(names.end(), more.begin(), more.end());
  return names;
}

Status CheckElements(const std::vector<int64_t>& sizes, const std::string& what) {
  double n = 1;
  for (int64_t s : sizes) n *= static_cast<double>(std::max<int64_t>(s, 0));
  if (n > static_cast<double>(CustomLossLimits::kMaxElements))
    return InvalidArgument(what + " would hold more than " + std::to_string(CustomLossLimits::kMaxElements) +
                           " elements");
  return Status::Ok();
}

const OpTable& Operations() {
  static const OpTable* table = [] {
    auto* t = new OpTable;
    AddArithmeticOps(*t);
    AddTensorOps(*t);
    AddShapeOps(*t);
    return t;
  }();
  return *table;
}

}  // namespace openrl::engine::custom_loss
