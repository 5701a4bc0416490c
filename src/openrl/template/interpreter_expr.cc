// Expression evaluation of the interpreter: names, operators, calls, filters and tests,
// attribute / item / slice access and iteration, with Python/Jinja semantics.
#include "openrl/template/interpreter.h"

#include "openrl/template/pystr.h"

namespace openrl::tmpl {

Result<Value> Interpreter::Lookup(const std::string& name) {
  for (Frame* f = frame_; f; f = f->parent) {
    auto it = f->vars.find(name);
    if (it != f->vars.end()) return it->second;
  }
  if (const Value* v = context_.Find(name)) return *v;
  Value g = GlobalFunction(name);
  if (!g.is_undefined()) return g;
  return Value::MakeUndefined("'" + name + "' is undefined");
}

Result<Value> Interpreter::Eval(const Expr& e) {
  if (Status st = Step(); !st.ok()) return st;
  Result<Value> r = EvalImpl(e);
  if (!r.ok() && !located_) {
    located_ = true;
    err_line_ = e.line;
    err_col_ = e.col;
  }
  return r;
}

Result<CallArgs> Interpreter::EvalArgs(const Expr& e, size_t first) {
  CallArgs args;
  for (size_t i = first; i < e.items.size(); ++i) {
    OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*e.items[i]));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [k, x] : e.kwargs) {
    OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*x));
    args.keyword.emplace_back(k, std::move(v));
  }
  return args;
}

static Status UndefinedError(const Value& v) {
  return InvalidArgument(v.undefined_hint().empty() ? "value is undefined" : v.undefined_hint());
}

Result<Value> Interpreter::EvalImpl(const Expr& e) {
  switch (e.kind) {
    case ExprKind::kConst: return e.value;
    case ExprKind::kName: return Lookup(e.name);
    case ExprKind::kNsRef: return InvalidArgument("namespace reference outside of set");
    case ExprKind::kList:
    case ExprKind::kTuple: {
      std::vector<Value> items;
      for (const auto& x : e.items) {
        OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*x));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items), e.kind == ExprKind::kTuple);
    }
    case ExprKind::kDict: {
      auto d = std::make_shared<DictValue>();
      for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
        OPENRL_ASSIGN_OR_RETURN(Value k, Eval(*e.items[i]));
        OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*e.items[i + 1]));
        if (k.is_list() && !k.list().is_tuple) return InvalidArgument("unhashable type: 'list'");
        if (k.is_mapping()) return InvalidArgument("unhashable type: 'dict'");
        d->Set(std::move(k), std::move(v));
      }
      return Value(std::move(d));
    }
    case ExprKind::kGetAttr: {
      OPENRL_ASSIGN_OR_RETURN(Value obj, Eval(*e.items[0]));
      return GetAttr(obj, e.name);
    }
    case ExprKind::kGetItem: {
      OPENRL_ASSIGN_OR_RETURN(Value obj, Eval(*e.items[0]));
      if (e.items[1]->kind == ExprKind::kSlice) {
        std::vector<Value> parts;
        for (const auto& x : e.items[1]->items) {
          if (!x) { parts.emplace_back(nullptr); continue; }
          OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*x));
          parts.push_back(std::move(v));
        }
        return GetSlice(obj, parts);
      }
      OPENRL_ASSIGN_OR_RETURN(Value key, Eval(*e.items[1]));
      return GetItem(obj, key);
    }
    case ExprKind::kSlice: return InvalidArgument("slice outside of a subscript");
    case ExprKind::kCall: {
      OPENRL_ASSIGN_OR_RETURN(Value fn, Eval(*e.items[0]));
      OPENRL_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return Call(fn, args);
    }
    case ExprKind::kFilter: {
      Value target;
      if (e.items[0]) {
        OPENRL_ASSIGN_OR_RETURN(target, Eval(*e.items[0]));
      }
      OPENRL_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return ApplyFilter(e.name, target, args);
    }
    case ExprKind::kTest: {
      OPENRL_ASSIGN_OR_RETURN(Value target, Eval(*e.items[0]));
      OPENRL_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      OPENRL_ASSIGN_OR_RETURN(bool b, ApplyTest(e.name, target, args));
      return Value(b);
    }
    case ExprKind::kNot: {
      OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*e.items[0]));
      return Value(!v.Truthy());
    }
    case ExprKind::kNeg:
    case ExprKind::kPos: {
      OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*e.items[0]));
      if (v.is_undefined()) return UndefinedError(v);
      if (!v.is_number()) return InvalidArgument("bad operand type for unary " + std::string(e.kind == ExprKind::kNeg ? "-" : "+") + ": '" + v.TypeName() + "'");
      if (e.kind == ExprKind::kPos) return v.is_bool() ? Value(v.as_int()) : v;
      if (v.is_float()) return Value(-v.as_double());
      if (v.as_int() == INT64_MIN) return InvalidArgument("integer overflow");
      return Value(-v.as_int());
    }
    case ExprKind::kBinary: return EvalBinary(e);
    case ExprKind::kCompare: return EvalCompare(e);
    case ExprKind::kCond: {
      OPENRL_ASSIGN_OR_RETURN(Value c, Eval(*e.items[0]));
      if (c.Truthy()) return Eval(*e.items[1]);
      if (e.items[2]) return Eval(*e.items[2]);
      return Value::MakeUndefined("the inline if-expression evaluated to false and no else section was defined.");
    }
  }
  return Internal("unknown expression");
}

Result<Value> Interpreter::EvalBinary(const Expr& e) {
  OPENRL_ASSIGN_OR_RETURN(Value a, Eval(*e.items[0]));
  if (e.name == "and") {
    if (!a.Truthy()) return a;
    return Eval(*e.items[1]);
  }
  if (e.name == "or") {
    if (a.Truthy()) return a;
    return Eval(*e.items[1]);
  }
  OPENRL_ASSIGN_OR_RETURN(Value b, Eval(*e.items[1]));
  if (e.name == "~") {
    std::string s = a.ToStr() + b.ToStr();
    if (s.size() > limits_.max_output_bytes) return ResourceExhausted("string exceeds the output limit");
    return Value(std::move(s));
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (e.name == "*") {
    // Bound repetition before it allocates.
    const Value& seq = (a.is_string() || a.is_list()) ? a : b;
    const Value& n = (a.is_string() || a.is_list()) ? b : a;
    if ((seq.is_string() || seq.is_list()) && (n.is_int() || n.is_bool())) {
      size_t unit = seq.is_string() ? seq.str().size() : seq.list().items.size() * 16;
      if (n.as_int() > 0 && unit > 0 && static_cast<uint64_t>(n.as_int()) > limits_.max_output_bytes / unit) {
        return ResourceExhausted("repetition exceeds the output limit");
      }
    }
  }
  Result<Value> r = BinaryOp(e.name, a, b);
  if (r.ok() && r->is_string() && r->str().size() > limits_.max_output_bytes) {
    return ResourceExhausted("string exceeds the output limit");
  }
  return r;
}

Result<Value> Interpreter::EvalCompare(const Expr& e) {
  OPENRL_ASSIGN_OR_RETURN(Value left, Eval(*e.items[0]));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    OPENRL_ASSIGN_OR_RETURN(Value right, Eval(*e.items[i + 1]));
    const std::string& op = e.ops[i];
    bool ok = false;
    if (op == "==") ok = ValuesEqual(left, right);
    else if (op == "!=") ok = !ValuesEqual(left, right);
    else if (op == "in" || op == "notin") {
      CallArgs args;
      args.positional.push_back(right);
      OPENRL_ASSIGN_OR_RETURN(ok, CallTest(*this, "in", left, args));
      if (op == "notin") ok = !ok;
    } else {
      if (left.is_undefined()) return UndefinedError(left);
      if (right.is_undefined()) return UndefinedError(right);
      if (op == "<") { OPENRL_ASSIGN_OR_RETURN(ok, ValueLess(left, right)); }
      else if (op == ">") { OPENRL_ASSIGN_OR_RETURN(ok, ValueLess(right, left)); }
      else if (op == "<=") { OPENRL_ASSIGN_OR_RETURN(bool gt, ValueLess(right, left)); ok = !gt; }
      else { OPENRL_ASSIGN_OR_RETURN(bool lt, ValueLess(left, right)); ok = !lt; }
    }
    if (!ok) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Result<Value> Interpreter::Call(const Value& fn, const CallArgs& args) {
  if (fn.is_undefined()) return UndefinedError(fn);
  if (!fn.is_callable()) return InvalidArgument("'" + fn.TypeName() + "' object is not callable");
  if (call_depth_ >= limits_.max_call_depth) return ResourceExhausted("calls nested too deeply");
  return fn.callable().fn(args, *this);
}

Result<Value> Interpreter::ApplyFilter(const std::string& name, const Value& target, const CallArgs& args) {
  return CallFilter(*this, name, target, args);
}

Result<bool> Interpreter::ApplyTest(const std::string& name, const Value& target, const CallArgs& args) {
  return CallTest(*this, name, target, args);
}

static std::string ObjectTypeRepr(const Value& v) {
  if (v.is_none()) return "None";
  return v.TypeName() + " object";
}

Result<Value> Interpreter::GetAttr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_namespace()) {
    if (const Value* v = obj.dict().Find(name)) return *v;
    return Value::MakeUndefined("'Namespace object' has no attribute '" + name + "'");
  }
  Value m = BoundMethod(obj, name);
  if (!m.is_undefined()) return m;
  if (obj.is_mapping()) {
    if (const Value* v = obj.dict().Find(name)) return *v;
  }
  return Value::MakeUndefined("'" + ObjectTypeRepr(obj) + "' has no attribute '" + name + "'");
}

static int64_t NormalizeIndex(int64_t i, int64_t n) { return i < 0 ? i + n : i; }

// Python slice indices for a sequence of length n.
static std::vector<int64_t> SliceIndices(const ListValue& spec, int64_t n, Status* err) {
  int64_t step = spec.items[2].is_none() ? 1 : spec.items[2].as_int();
  if (step == INT64_MIN) step = -INT64_MAX;
  std::vector<int64_t> out;
  if (step == 0) {
    *err = InvalidArgument("slice step cannot be zero");
    return out;
  }
  auto clamp = [&](const Value& v, int64_t dflt, bool is_start) {
    if (v.is_none()) return dflt;
    int64_t i = v.as_int();
    if (i < 0) i += n;
    if (step > 0) return std::clamp<int64_t>(i, 0, n);
    (void)is_start;
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  int64_t start = clamp(spec.items[0], step > 0 ? 0 : n - 1, true);
  int64_t stop = clamp(spec.items[1], step > 0 ? n : -1, false);
  for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
    out.push_back(i);
    if (step > 0 ? stop - i <= step : i - stop <= -step) break;  // no overflow on huge steps
    i += step;
  }
  return out;
}

Result<Value> Interpreter::GetSlice(const Value& obj, const std::vector<Value>& parts) {
  if (obj.is_undefined()) return UndefinedError(obj);
  ListValue spec;
  spec.items = parts;
  for (const auto& p : spec.items) {
    if (!p.is_none() && !(p.is_int() || p.is_bool())) return InvalidArgument("slice indices must be integers or None");
  }
  if (obj.is_string()) {
    auto cps = pystr::Decode(obj.str());
    Status err;
    std::vector<char32_t> out;
    for (int64_t i : SliceIndices(spec, static_cast<int64_t>(cps.size()), &err)) out.push_back(cps[static_cast<size_t>(i)]);
    if (!err.ok()) return err;
    return Value(pystr::Encode(out));
  }
  if (obj.is_list()) {
    Status err;
    std::vector<Value> out;
    for (int64_t i : SliceIndices(spec, static_cast<int64_t>(obj.list().items.size()), &err)) out.push_back(obj.list().items[static_cast<size_t>(i)]);
    if (!err.ok()) return err;
    return Value::MakeList(std::move(out), obj.list().is_tuple);
  }
  return InvalidArgument("'" + obj.TypeName() + "' object is not subscriptable");
}

Result<Value> Interpreter::GetItem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_mapping()) {
    if (const Value* v = obj.dict().Find(key)) return *v;
  } else if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.list().items.size());
      int64_t i = NormalizeIndex(key.as_int(), n);
      if (i >= 0 && i < n) return obj.list().items[static_cast<size_t>(i)];
    } else {
      auto cps = pystr::Decode(obj.str());
      int64_t n = static_cast<int64_t>(cps.size());
      int64_t i = NormalizeIndex(key.as_int(), n);
      if (i >= 0 && i < n) return Value(pystr::Encode({cps[static_cast<size_t>(i)]}));
    }
    return Value::MakeUndefined("'" + ObjectTypeRepr(obj) + "' has no element " + key.Repr());
  }
  if (key.is_string()) return GetAttr(obj, key.str());
  return Value::MakeUndefined("'" + ObjectTypeRepr(obj) + "' has no element " + key.Repr());
}

Result<std::vector<Value>> Interpreter::Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined: return std::vector<Value>{};
    case Value::Kind::kList: return v.list().items;
    case Value::Kind::kString: {
      std::vector<Value> out;
      for (char32_t c : pystr::Decode(v.str())) out.emplace_back(pystr::Encode({c}));
      return out;
    }
    case Value::Kind::kDict: {
      if (v.dict().is_namespace) break;
      std::vector<Value> out;
      for (const auto& [k, x] : v.dict().entries) out.push_back(k);
      return out;
    }
    default: break;
  }
  return InvalidArgument("'" + v.TypeName() + "' object is not iterable");
}

}  // namespace openrl::tmpl
