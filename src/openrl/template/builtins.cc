// Tests (`is ...`), Python arithmetic, str/dict/list methods and global functions.
#include "openrl/template/builtins.h"

#include <cmath>
#include <ctime>

#include "openrl/template/pystr.h"

namespace openrl::tmpl {

const Value* Arg(const CallArgs& args, size_t index, const char* name) {
  if (index < args.positional.size()) return &args.positional[index];
  return name ? args.Keyword(name) : nullptr;
}

Result<int64_t> IntArg(const CallArgs& args, size_t index, const char* name, int64_t fallback) {
  const Value* v = Arg(args, index, name);
  if (!v || v->is_none()) return fallback;
  if (!v->is_int() && !v->is_bool()) return InvalidArgument(std::string("argument '") + (name ? name : "?") + "' must be an integer, got " + v->TypeName());
  return v->as_int();
}

Result<std::optional<std::string>> StrArg(const CallArgs& args, size_t index, const char* name) {
  const Value* v = Arg(args, index, name);
  if (!v || v->is_none()) return std::optional<std::string>();
  if (!v->is_string()) return InvalidArgument(std::string("argument '") + (name ? name : "?") + "' must be a string, got " + v->TypeName());
  return std::optional<std::string>(v->str());
}

bool BoolArg(const CallArgs& args, size_t index, const char* name, bool fallback) {
  const Value* v = Arg(args, index, name);
  return v ? v->Truthy() : fallback;
}

static std::string TypePair(const char* op, const Value& a, const Value& b) {
  return std::string("unsupported operand type(s) for ") + op + ": '" + a.TypeName() + "' and '" + b.TypeName() + "'";
}

// Checked int64 arithmetic; Python ints never overflow, so we fail rather than wrap.
template <typename Op>
static Result<Value> IntResult(Op op, int64_t x, int64_t y) {
  int64_t r = 0;
  if (op(x, y, &r)) return InvalidArgument("integer overflow");
  return Value(r);
}

Result<Value> BinaryOp(const std::string& op, const Value& a, const Value& b) {
  bool nums = a.is_number() && b.is_number();
  bool ints = nums && !a.is_float() && !b.is_float();
  if (op == "+") {
    if (ints) return IntResult([](int64_t x, int64_t y, int64_t* r) { return __builtin_add_overflow(x, y, r); }, a.as_int(), b.as_int());
    if (nums) return Value(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) return Value(a.str() + b.str());
    if (a.is_list() && b.is_list() && a.list().is_tuple == b.list().is_tuple) {
      std::vector<Value> items = a.list().items;
      items.insert(items.end(), b.list().items.begin(), b.list().items.end());
      return Value::MakeList(std::move(items), a.list().is_tuple);
    }
    return InvalidArgument(TypePair("+", a, b));
  }
  if (op == "-") {
    if (ints) return IntResult([](int64_t x, int64_t y, int64_t* r) { return __builtin_sub_overflow(x, y, r); }, a.as_int(), b.as_int());
    if (nums) return Value(a.as_double() - b.as_double());
    return InvalidArgument(TypePair("-", a, b));
  }
  if (op == "*") {
    if (ints) return IntResult([](int64_t x, int64_t y, int64_t* r) { return __builtin_mul_overflow(x, y, r); }, a.as_int(), b.as_int());
    if (nums) return Value(a.as_double() * b.as_double());
    const Value& seq = a.is_number() ? b : a;
    const Value& n = a.is_number() ? a : b;
    if (n.is_float() || !n.is_number()) return InvalidArgument(TypePair("*", a, b));
    int64_t times = std::max<int64_t>(0, n.as_int());
    if (seq.is_string()) {
      std::string out;
      for (int64_t i = 0; i < times; ++i) out += seq.str();
      return Value(std::move(out));
    }
    if (seq.is_list()) {
      std::vector<Value> out;
      for (int64_t i = 0; i < times; ++i) out.insert(out.end(), seq.list().items.begin(), seq.list().items.end());
      return Value::MakeList(std::move(out), seq.list().is_tuple);
    }
    return InvalidArgument(TypePair("*", a, b));
  }
  if (op == "/") {
    if (!nums) return InvalidArgument(TypePair("/", a, b));
    if (b.as_double() == 0) return InvalidArgument("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) {
      std::vector<Value> fargs = (b.is_list() && b.list().is_tuple) ? b.list().items : std::vector<Value>{b};
      OPENRL_ASSIGN_OR_RETURN(std::string s, PercentFormat(a.str(), fargs));
      return Value(std::move(s));
    }
    if (!nums) return InvalidArgument(TypePair(op.c_str(), a, b));
    if (b.as_double() == 0) return InvalidArgument(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (x == INT64_MIN && y == -1) return InvalidArgument("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) { --q; m += y; }
      return Value(op == "//" ? q : m);
    }
    double x = a.as_double(), y = b.as_double();
    if (op == "//") return Value(std::floor(x / y));
    double m = std::fmod(x, y);
    if (m != 0 && ((m < 0) != (y < 0))) m += y;
    return Value(m);
  }
  if (op == "**") {
    if (!nums) return InvalidArgument(TypePair("**", a, b));
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int();
      if (base == 0) return Value(static_cast<int64_t>(e == 0 ? 1 : 0));
      if (base == 1) return Value(static_cast<int64_t>(1));
      if (base == -1) return Value(static_cast<int64_t>(e % 2 ? -1 : 1));
      int64_t result = 1;
      for (; e > 0; --e) {  // |base| >= 2 overflows within 64 steps
        if (__builtin_mul_overflow(result, base, &result)) return InvalidArgument("integer overflow");
      }
      return Value(result);
    }
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  return InvalidArgument("unknown operator '" + op + "'");
}

Result<std::string> PercentFormat(const std::string& fmt, const std::vector<Value>& args) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') { out += fmt[i]; continue; }
    if (++i >= fmt.size()) return InvalidArgument("incomplete format");
    std::string spec = "%";
    while (i < fmt.size() && std::strchr("-+ #0123456789.", fmt[i])) spec += fmt[i++];
    if (i >= fmt.size()) return InvalidArgument("incomplete format");
    char c = fmt[i];
    if (c == '%') { out += '%'; continue; }
    if (next >= args.size()) return InvalidArgument("not enough arguments for format string");
    const Value& v = args[next++];
    char buf[512];
    if (c == 's' || c == 'r') {
      out += c == 's' ? v.ToStr() : v.Repr();
    } else if (c == 'd' || c == 'i') {
      if (!v.is_number()) return InvalidArgument("%d format: a number is required, not " + v.TypeName());
      if (spec.size() > 8) return InvalidArgument("format spec too long");
      snprintf(buf, sizeof buf, (spec + "lld").c_str(), static_cast<long long>(v.is_float() ? static_cast<int64_t>(v.as_double()) : v.as_int()));
      out += buf;
    } else if (std::strchr("feEgGxX", c)) {
      if (!v.is_number()) return InvalidArgument(std::string("%") + c + " format: a number is required, not " + v.TypeName());
      if (spec.size() > 8) return InvalidArgument("format spec too long");
      if (c == 'x' || c == 'X') snprintf(buf, sizeof buf, (spec + "ll" + c).c_str(), static_cast<long long>(v.as_int()));
      else snprintf(buf, sizeof buf, (spec + c).c_str(), v.as_double());
      out += buf;
    } else {
      return InvalidArgument(std::string("unsupported format character '") + c + "'");
    }
  }
  if (next < args.size()) return InvalidArgument("not all arguments converted during string formatting");
  return out;
}

Result<std::string> BraceFormat(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}' ) {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') { out += '}'; ++i; continue; }
      return InvalidArgument("Single '}' encountered in format string");
    }
    if (c != '{') { out += c; continue; }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') { out += '{'; ++i; continue; }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos) return InvalidArgument("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    i = close;
    if (field.find_first_of(":!") != std::string::npos) return InvalidArgument("format specs are not supported");
    const Value* v = nullptr;
    if (field.empty()) {
      v = auto_index < args.positional.size() ? &args.positional[auto_index] : nullptr;
      ++auto_index;
    } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
      size_t k = std::strtoul(field.c_str(), nullptr, 10);
      v = k < args.positional.size() ? &args.positional[k] : nullptr;
    } else {
      v = args.Keyword(field);
    }
    if (!v) return InvalidArgument("format: no argument for field '{" + field + "}'");
    out += v->ToStr();
  }
  return out;
}

// ---- tests ----

static Result<bool> InTest(const Value& v, const Value& seq) {
  if (seq.is_string()) {
    if (!v.is_string()) return InvalidArgument("'in <string>' requires string as left operand, not " + v.TypeName());
    return seq.str().find(v.str()) != std::string::npos;
  }
  if (seq.is_list()) {
    for (const auto& x : seq.list().items) if (ValuesEqual(x, v)) return true;
    return false;
  }
  if (seq.is_mapping()) return seq.dict().Find(v) != nullptr;
  if (seq.is_undefined()) return false;
  return InvalidArgument("argument of type '" + seq.TypeName() + "' is not iterable");
}

Result<bool> CallTest(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args) {
  const Value* a0 = Arg(args, 0, nullptr);
  auto need_arg = [&]() -> Status {
    return a0 ? Status::Ok() : InvalidArgument("test '" + name + "' needs an argument");
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_mapping();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "callable") return v.is_callable();
  if (name == "iterable") return v.is_string() || v.is_list() || v.is_mapping() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.is_mapping() || v.is_undefined();
  if (name == "lower") return v.is_string() && pystr::Lower(v.str()) == v.str();
  if (name == "upper") return v.is_string() && pystr::Upper(v.str()) == v.str();
  if (name == "escaped") return false;
  if (name == "even" || name == "odd") {
    if (!v.is_int() && !v.is_bool()) return InvalidArgument("test '" + name + "' needs an integer, got " + v.TypeName());
    bool even = v.as_int() % 2 == 0;
    return name == "even" ? even : !even;
  }
  if (name == "divisibleby") {
    OPENRL_RETURN_IF_ERROR(need_arg());
    OPENRL_ASSIGN_OR_RETURN(Value m, BinaryOp("%", v, *a0));
    return ValuesEqual(m, Value(0));
  }
  if (name == "eq" || name == "equalto" || name == "==") { OPENRL_RETURN_IF_ERROR(need_arg()); return ValuesEqual(v, *a0); }
  if (name == "ne" || name == "!=") { OPENRL_RETURN_IF_ERROR(need_arg()); return !ValuesEqual(v, *a0); }
  if (name == "sameas") {
    OPENRL_RETURN_IF_ERROR(need_arg());
    return v.kind() == a0->kind() && ValuesEqual(v, *a0);
  }
  if (name == "lt" || name == "lessthan" || name == "<") { OPENRL_RETURN_IF_ERROR(need_arg()); return ValueLess(v, *a0); }
  if (name == "gt" || name == "greaterthan" || name == ">") { OPENRL_RETURN_IF_ERROR(need_arg()); return ValueLess(*a0, v); }
  if (name == "le" || name == "<=") { OPENRL_RETURN_IF_ERROR(need_arg()); OPENRL_ASSIGN_OR_RETURN(bool gt, ValueLess(*a0, v)); return !gt; }
  if (name == "ge" || name == ">=") { OPENRL_RETURN_IF_ERROR(need_arg()); OPENRL_ASSIGN_OR_RETURN(bool lt, ValueLess(v, *a0)); return !lt; }
  if (name == "in") { OPENRL_RETURN_IF_ERROR(need_arg()); return InTest(v, *a0); }
  if (name == "filter" || name == "test") return InvalidArgument("test '" + name + "' is not supported");
  (void)in;
  return InvalidArgument("No test named '" + name + "'.");
}

// ---- methods ----

static Value Method(const Value& self, const std::string& name,
                    std::function<Result<Value>(const Value&, const CallArgs&, Interpreter&)> fn) {
  return Value::MakeCallable(name, [self, fn = std::move(fn)](const CallArgs& a, Interpreter& in) { return fn(self, a, in); });
}

static Result<Value> StartsEnds(const Value& s, const CallArgs& a, bool starts) {
  const Value* p = Arg(a, 0, nullptr);
  if (!p) return InvalidArgument(std::string(starts ? "startswith" : "endswith") + "() takes at least 1 argument");
  std::vector<Value> options = (p->is_list() && p->list().is_tuple) ? p->list().items : std::vector<Value>{*p};
  for (const auto& o : options) {
    if (!o.is_string()) return InvalidArgument("startswith/endswith arg must be str or a tuple of str, not " + o.TypeName());
    const std::string& x = s.str();
    const std::string& y = o.str();
    if (y.size() <= x.size() && (starts ? x.compare(0, y.size(), y) == 0 : x.compare(x.size() - y.size(), y.size(), y) == 0)) return Value(true);
  }
  return Value(false);
}

static Value StringMethod(const Value& self, const std::string& name) {
  using A = const CallArgs&;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return Method(self, name, [l, r](const Value& s, A a, Interpreter&) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(auto chars, StrArg(a, 0, "chars"));
      return Value(pystr::Strip(s.str(), chars, l, r));
    });
  }
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return Method(self, name, [right](const Value& s, A a, Interpreter&) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(auto sep, StrArg(a, 0, "sep"));
      OPENRL_ASSIGN_OR_RETURN(int64_t maxsplit, IntArg(a, 1, "maxsplit", -1));
      if (sep && sep->empty()) return InvalidArgument("empty separator");
      std::vector<Value> out;
      for (auto& p : right ? pystr::RSplit(s.str(), sep, maxsplit) : pystr::Split(s.str(), sep, maxsplit)) out.emplace_back(std::move(p));
      return Value::MakeList(std::move(out));
    });
  }
  if (name == "splitlines") {
    return Method(self, name, [](const Value& s, A, Interpreter&) -> Result<Value> {
      std::vector<Value> out;
      std::string cur;
      const std::string& x = s.str();
      for (size_t i = 0; i < x.size(); ++i) {
        if (x[i] == '\n' || x[i] == '\r') {
          out.emplace_back(cur);
          cur.clear();
          if (x[i] == '\r' && i + 1 < x.size() && x[i + 1] == '\n') ++i;
        } else {
          cur += x[i];
        }
      }
      if (!cur.empty()) out.emplace_back(cur);
      return Value::MakeList(std::move(out));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool starts = name == "startswith";
    return Method(self, name, [starts](const Value& s, A a, Interpreter&) { return StartsEnds(s, a, starts); });
  }
  if (name == "upper") return Method(self, name, [](const Value& s, A, Interpreter&) -> Result<Value> { return Value(pystr::Upper(s.str())); });
  if (name == "lower") return Method(self, name, [](const Value& s, A, Interpreter&) -> Result<Value> { return Value(pystr::Lower(s.str())); });
  if (name == "title") return Method(self, name, [](const Value& s, A, Interpreter&) -> Result<Value> { return Value(pystr::Title(s.str())); });
  if (name == "capitalize") return Method(self, name, [](const Value& s, A, Interpreter&) -> Result<Value> { return Value(pystr::Capitalize(s.str())); });
  if (name == "replace") {
    return Method(self, name, [](const Value& s, A a, Interpreter& in) -> Result<Value> {
      const Value* from = Arg(a, 0, nullptr);
      const Value* to = Arg(a, 1, nullptr);
      if (!from || !to || !from->is_string() || !to->is_string()) return InvalidArgument("replace() takes two strings");
      OPENRL_ASSIGN_OR_RETURN(int64_t count, IntArg(a, 2, "count", -1));
      if (from->str().empty() && to->str().size() * (pystr::Length(s.str()) + 1) > in.limits().max_output_bytes) {
        return ResourceExhausted("replace() result exceeds the output limit");
      }
      std::string r = pystr::Replace(s.str(), from->str(), to->str(), count);
      if (r.size() > in.limits().max_output_bytes) return ResourceExhausted("replace() result exceeds the output limit");
      return Value(std::move(r));
    });
  }
  if (name == "find" || name == "rfind" || name == "count" || name == "index") {
    return Method(self, name, [name](const Value& s, A a, Interpreter&) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(auto sub, StrArg(a, 0, nullptr));
      if (!sub) return InvalidArgument(name + "() takes a string argument");
      const std::string& x = s.str();
      if (name == "count") {
        if (sub->empty()) return Value(static_cast<int64_t>(pystr::Length(x) + 1));
        int64_t n = 0;
        for (size_t p = x.find(*sub); p != std::string::npos; p = x.find(*sub, p + sub->size())) ++n;
        return Value(n);
      }
      size_t p = name == "rfind" ? x.rfind(*sub) : x.find(*sub);
      if (p == std::string::npos) {
        if (name == "index") return InvalidArgument("substring not found");
        return Value(-1);
      }
      return Value(static_cast<int64_t>(pystr::Length(std::string_view(x).substr(0, p))));
    });
  }
  if (name == "join") {
    return Method(self, name, [](const Value& s, A a, Interpreter& in) -> Result<Value> {
      const Value* seq = Arg(a, 0, nullptr);
      if (!seq) return InvalidArgument("join() takes exactly one argument");
      OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(*seq));
      std::string out;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string()) return InvalidArgument("sequence item " + std::to_string(i) + ": expected str instance, " + items[i].TypeName() + " found");
        if (i) out += s.str();
        out += items[i].str();
        if (out.size() > in.limits().max_output_bytes) return ResourceExhausted("join() result exceeds the output limit");
      }
      return Value(std::move(out));
    });
  }
  if (name == "format") {
    return Method(self, name, [](const Value& s, A a, Interpreter&) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(std::string r, BraceFormat(s.str(), a));
      return Value(std::move(r));
    });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" || name == "isupper") {
    return Method(self, name, [name](const Value& s, A, Interpreter&) -> Result<Value> {
      const std::string& x = s.str();
      if (name == "islower" || name == "isupper") {
        bool cased = pystr::Upper(x) != pystr::Lower(x);
        return Value(cased && (name == "islower" ? pystr::Lower(x) == x : pystr::Upper(x) == x));
      }
      if (x.empty()) return Value(false);
      for (char32_t c : pystr::Decode(x)) {
        bool ok = name == "isspace" ? pystr::IsSpace(c)
                  : name == "isdigit" ? (c >= '0' && c <= '9')
                  : name == "isalpha" ? (c < 128 ? std::isalpha(static_cast<int>(c)) != 0 : true)
                                      : (c < 128 ? std::isalnum(static_cast<int>(c)) != 0 : true);
        if (!ok) return Value(false);
      }
      return Value(true);
    });
  }
  return Value();
}

static Value DictMethod(const Value& self, const std::string& name) {
  using A = const CallArgs&;
  if (name == "items" || name == "keys" || name == "values") {
    return Method(self, name, [name](const Value& d, A, Interpreter&) -> Result<Value> {
      std::vector<Value> out;
      for (const auto& [k, v] : d.dict().entries) {
        if (name == "items") out.push_back(Value::MakeList({k, v}, true));
        else out.push_back(name == "keys" ? k : v);
      }
      return Value::MakeList(std::move(out));
    });
  }
  if (name == "get") {
    return Method(self, name, [](const Value& d, A a, Interpreter&) -> Result<Value> {
      const Value* k = Arg(a, 0, nullptr);
      if (!k) return InvalidArgument("get expected at least 1 argument, got 0");
      if (const Value* v = d.dict().Find(*k)) return *v;
      const Value* dflt = Arg(a, 1, nullptr);
      return dflt ? *dflt : Value(nullptr);
    });
  }
  return Value();
}

static Value ListMethod(const Value& self, const std::string& name) {
  if (name == "index" || name == "count") {
    return Method(self, name, [name](const Value& l, const CallArgs& a, Interpreter&) -> Result<Value> {
      const Value* x = Arg(a, 0, nullptr);
      if (!x) return InvalidArgument(name + "() takes exactly one argument");
      int64_t n = 0;
      for (size_t i = 0; i < l.list().items.size(); ++i) {
        if (!ValuesEqual(l.list().items[i], *x)) continue;
        if (name == "index") return Value(static_cast<int64_t>(i));
        ++n;
      }
      if (name == "index") return InvalidArgument(x->Repr() + " is not in list");
      return Value(n);
    });
  }
  return Value();
}

Value BoundMethod(const Value& self, const std::string& name) {
  if (self.is_string()) return StringMethod(self, name);
  if (self.is_mapping()) return DictMethod(self, name);
  if (self.is_list()) return ListMethod(self, name);
  return Value();
}

// ---- globals ----

static Result<Value> Range(const CallArgs& a, Interpreter& in) {
  std::vector<int64_t> n;
  for (const auto& v : a.positional) {
    if (!v.is_int() && !v.is_bool()) return InvalidArgument("range() arguments must be integers, got " + v.TypeName());
    n.push_back(v.as_int());
  }
  if (n.empty() || n.size() > 3) return InvalidArgument("range expected 1 to 3 arguments");
  int64_t start = n.size() == 1 ? 0 : n[0];
  int64_t stop = n.size() == 1 ? n[0] : n[1];
  int64_t step = n.size() == 3 ? n[2] : 1;
  if (step == 0) return InvalidArgument("range() arg 3 must not be zero");
  long double count = step > 0 ? (static_cast<long double>(stop) - start) / step : (static_cast<long double>(start) - stop) / -static_cast<long double>(step);
  if (count > in.limits().max_range) {
    return InvalidArgument("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" + std::to_string(in.limits().max_range) + ").");
  }
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
  return Value::MakeList(std::move(out));
}

static Result<Value> MakeDictFrom(const CallArgs& a, Interpreter& in, bool is_namespace) {
  auto d = std::make_shared<DictValue>();
  d->is_namespace = is_namespace;
  if (a.positional.size() > 1) return InvalidArgument("expected at most 1 positional argument");
  if (!a.positional.empty()) {
    const Value& src = a.positional[0];
    if (src.is_mapping()) {
      d->entries = src.dict().entries;
    } else {
      OPENRL_ASSIGN_OR_RETURN(std::vector<Value> pairs, in.Iterate(src));
      for (const auto& p : pairs) {
        if (!p.is_list() || p.list().items.size() != 2) return InvalidArgument("dictionary update sequence element has wrong length");
        d->Set(p.list().items[0], p.list().items[1]);
      }
    }
  }
  for (const auto& [k, v] : a.keyword) d->Set(Value(k), v);
  if (is_namespace) {
    for (const auto& [k, v] : d->entries) {
      if (k.is_string() && !k.str().empty() && k.str()[0] == '_') {
        return InvalidArgument("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '" + k.str() + "'");
      }
    }
  }
  Value out(std::move(d));
  if (is_namespace) in.TrackNamespace(out);
  return out;
}

Value GlobalFunction(const std::string& name) {
  if (name == "range") return Value::MakeCallable(name, Range);
  if (name == "namespace") return Value::MakeCallable(name, [](const CallArgs& a, Interpreter& in) { return MakeDictFrom(a, in, true); });
  if (name == "dict") return Value::MakeCallable(name, [](const CallArgs& a, Interpreter& in) { return MakeDictFrom(a, in, false); });
  if (name == "raise_exception") {
    return Value::MakeCallable(name, [](const CallArgs& a, Interpreter&) -> Result<Value> {
      const Value* m = Arg(a, 0, "message");
      return InvalidArgument(m ? m->ToStr() : "raise_exception called");
    });
  }
  if (name == "strftime_now") {
    return Value::MakeCallable(name, [](const CallArgs& a, Interpreter&) -> Result<Value> {
      OPENRL_ASSIGN_OR_RETURN(auto fmt, StrArg(a, 0, "format"));
      if (!fmt) return InvalidArgument("strftime_now() takes a format string");
      std::time_t t = std::time(nullptr);
      std::tm tm{};
      localtime_r(&t, &tm);
      char buf[512];
      size_t n = fmt->size() < 200 ? std::strftime(buf, sizeof buf, fmt->c_str(), &tm) : 0;
      if (n == 0 && !fmt->empty()) return InvalidArgument("strftime_now: format too long or invalid");
      return Value(std::string(buf, n));
    });
  }
  return Value();
}

}  // namespace openrl::tmpl
