// Jinja2's builtin filters (the subset chat templates use), plus transformers' tojson.
#include <algorithm>
#include <cmath>

#include "openrl/template/builtins.h"
#include "openrl/template/pystr.h"

namespace openrl::tmpl {
namespace {

using Fn = Result<Value> (*)(Interpreter&, const Value&, const CallArgs&);

// Jinja's make_attrgetter: "a.b.0" looks up each part with getitem semantics.
Result<Value> GetPath(Interpreter& in, const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return in.GetItem(item, attribute);
  Value cur = item;
  for (const auto& part : pystr::Split(attribute.str(), std::string("."), -1)) {
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    Value key = digits ? Value(static_cast<int64_t>(std::strtoll(part.c_str(), nullptr, 10))) : Value(part);
    OPENRL_ASSIGN_OR_RETURN(cur, in.GetItem(cur, key));
  }
  return cur;
}

Value IgnoreCase(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value(pystr::Lower(v.str())) : v;
}

Result<std::vector<Value>> SortedItems(Interpreter& in, std::vector<Value> items, bool reverse, bool case_sensitive,
                                       const Value* attribute) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) {
    Value key = item;
    if (attribute && !attribute->is_none()) {
      OPENRL_ASSIGN_OR_RETURN(key, GetPath(in, item, *attribute));
    }
    keyed.emplace_back(IgnoreCase(key, case_sensitive), std::move(item));
  }
  Status err;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    Result<bool> lt = reverse ? ValueLess(b.first, a.first) : ValueLess(a.first, b.first);
    if (!lt.ok()) { err = lt.status(); return false; }
    return *lt;
  });
  OPENRL_RETURN_IF_ERROR(err);
  std::vector<Value> out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return out;
}

Result<Value> Length(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_string()) return Value(static_cast<int64_t>(pystr::Length(v.str())));
  if (v.is_list()) return Value(static_cast<int64_t>(v.list().items.size()));
  if (v.is_mapping()) return Value(static_cast<int64_t>(v.dict().entries.size()));
  if (v.is_undefined()) return Value(0);
  return InvalidArgument("object of type '" + v.TypeName() + "' has no len()");
}

Result<Value> Trim(Interpreter&, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(auto chars, StrArg(a, 0, "chars"));
  return Value(pystr::Strip(v.ToStr(), chars, true, true));
}

Result<Value> Default(Interpreter&, const Value& v, const CallArgs& a) {
  const Value* d = Arg(a, 0, "default_value");
  bool boolean = BoolArg(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !v.Truthy())) return d ? *d : Value("");
  return v;
}

Result<Value> ToJson(Interpreter&, const Value& v, const CallArgs& a) {
  JsonDumpOptions o;
  o.ensure_ascii = BoolArg(a, 0, "ensure_ascii", false);
  if (const Value* indent = Arg(a, 1, "indent"); indent && !indent->is_none()) {
    if (!indent->is_int() && !indent->is_bool()) return InvalidArgument("tojson: indent must be an integer");
    o.indent = static_cast<int>(std::clamp<int64_t>(indent->as_int(), 0, 64));
    if (indent->as_int() < 0) o.indent = 0;
  }
  if (const Value* sep = Arg(a, 2, "separators"); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->list().items.size() != 2 || !sep->list().items[0].is_string() || !sep->list().items[1].is_string()) {
      return InvalidArgument("tojson: separators must be a pair of strings");
    }
    o.custom_separators = true;
    o.item_separator = sep->list().items[0].str();
    o.key_separator = sep->list().items[1].str();
  }
  o.sort_keys = BoolArg(a, 3, "sort_keys", false);
  OPENRL_ASSIGN_OR_RETURN(std::string s, ToJsonText(v, o));
  return Value(std::move(s));
}

Result<Value> First(Interpreter& in, const Value& v, const CallArgs&) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  if (items.empty()) return Value::MakeUndefined("No first item, sequence was empty.");
  return items.front();
}

Result<Value> Last(Interpreter& in, const Value& v, const CallArgs&) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  if (items.empty()) return Value::MakeUndefined("No last item, sequence was empty.");
  return items.back();
}

Result<Value> Join(Interpreter& in, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  const Value* sep = Arg(a, 0, "d");
  const Value* attribute = Arg(a, 1, "attribute");
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (attribute && !attribute->is_none()) {
      OPENRL_ASSIGN_OR_RETURN(item, GetPath(in, item, *attribute));
    }
    if (i && sep) out += sep->ToStr();
    out += item.ToStr();
    if (out.size() > in.limits().max_output_bytes) return ResourceExhausted("join result exceeds the output limit");
  }
  return Value(std::move(out));
}

Result<Value> Items(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::MakeList({});
  if (!v.is_mapping()) return InvalidArgument("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, x] : v.dict().entries) out.push_back(Value::MakeList({k, x}, true));
  return Value::MakeList(std::move(out));
}

Result<Value> DictSort(Interpreter& in, const Value& v, const CallArgs& a) {
  if (!v.is_mapping()) return InvalidArgument("dictsort: expected a mapping, got " + v.TypeName());
  bool case_sensitive = BoolArg(a, 0, "case_sensitive", false);
  OPENRL_ASSIGN_OR_RETURN(auto by, StrArg(a, 1, "by"));
  bool reverse = BoolArg(a, 2, "reverse", false);
  int pos = 0;
  if (by && *by == "value") pos = 1;
  else if (by && *by != "key") return InvalidArgument("You can only sort by either 'key' or 'value'");
  std::vector<Value> pairs;
  for (const auto& [k, x] : v.dict().entries) pairs.push_back(Value::MakeList({k, x}, true));
  Value index(pos);
  OPENRL_ASSIGN_OR_RETURN(auto sorted, SortedItems(in, pairs, reverse, case_sensitive, &index));
  return Value::MakeList(std::move(sorted));
}

Result<Value> List(Interpreter& in, const Value& v, const CallArgs&) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  return Value::MakeList(std::move(items));
}

Result<Value> Reverse(Interpreter& in, const Value& v, const CallArgs&) {
  if (v.is_string()) {
    auto cps = pystr::Decode(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value(pystr::Encode(cps));
  }
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::MakeList(std::move(items));
}

Result<Value> Sort(Interpreter& in, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  OPENRL_ASSIGN_OR_RETURN(auto sorted, SortedItems(in, std::move(items), BoolArg(a, 0, "reverse", false),
                                                   BoolArg(a, 1, "case_sensitive", false), Arg(a, 2, "attribute")));
  return Value::MakeList(std::move(sorted));
}

Result<Value> Unique(Interpreter& in, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  bool case_sensitive = BoolArg(a, 0, "case_sensitive", false);
  const Value* attribute = Arg(a, 1, "attribute");
  std::vector<Value> seen, out;
  for (auto& item : items) {
    Value key = item;
    if (attribute && !attribute->is_none()) {
      OPENRL_ASSIGN_OR_RETURN(key, GetPath(in, item, *attribute));
    }
    key = IgnoreCase(key, case_sensitive);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return ValuesEqual(s, key); })) continue;
    OPENRL_RETURN_IF_ERROR(in.Step(static_cast<int64_t>(seen.size())));
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

Result<Value> Map(Interpreter& in, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  std::vector<Value> out;
  if (const Value* attribute = a.Keyword("attribute")) {
    const Value* dflt = a.Keyword("default");
    for (const auto& item : items) {
      OPENRL_ASSIGN_OR_RETURN(Value x, GetPath(in, item, *attribute));
      out.push_back((x.is_undefined() && dflt) ? *dflt : x);
    }
    return Value::MakeList(std::move(out));
  }
  if (a.positional.empty() || !a.positional[0].is_string()) return InvalidArgument("map: expected a filter name or attribute=");
  CallArgs rest;
  rest.positional.assign(a.positional.begin() + 1, a.positional.end());
  rest.keyword = a.keyword;
  for (const auto& item : items) {
    OPENRL_ASSIGN_OR_RETURN(Value x, in.ApplyFilter(a.positional[0].str(), item, rest));
    out.push_back(std::move(x));
  }
  return Value::MakeList(std::move(out));
}

Result<Value> SelectImpl(Interpreter& in, const Value& v, const CallArgs& a, bool by_attr, bool keep) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  size_t off = 0;
  const Value* attribute = nullptr;
  if (by_attr) {
    if (a.positional.empty()) return InvalidArgument("selectattr/rejectattr: missing attribute");
    attribute = &a.positional[0];
    off = 1;
  }
  std::optional<std::string> test;
  if (a.positional.size() > off) {
    if (!a.positional[off].is_string()) return InvalidArgument("select: test name must be a string");
    test = a.positional[off].str();
  }
  CallArgs rest;
  if (a.positional.size() > off + 1) rest.positional.assign(a.positional.begin() + static_cast<ptrdiff_t>(off + 1), a.positional.end());
  rest.keyword = a.keyword;
  std::vector<Value> out;
  for (const auto& item : items) {
    Value x = item;
    if (attribute) {
      OPENRL_ASSIGN_OR_RETURN(x, GetPath(in, item, *attribute));
    }
    bool pass = x.Truthy();
    if (test) {
      OPENRL_ASSIGN_OR_RETURN(pass, in.ApplyTest(*test, x, rest));
    }
    if (pass == keep) out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

Result<Value> ToInt(Interpreter&, const Value& v, const CallArgs& a) {
  const Value* dflt = Arg(a, 0, "default");
  Value fallback = dflt ? *dflt : Value(0);
  if (v.is_int() || v.is_bool()) return Value(v.as_int());
  if (v.is_float()) {
    double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return fallback;
    return Value(static_cast<int64_t>(d));
  }
  if (!v.is_string()) return fallback;
  OPENRL_ASSIGN_OR_RETURN(int64_t base, IntArg(a, 1, "base", 10));
  std::string s = pystr::Strip(v.str(), std::nullopt, true, true);
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty() || base < 2 || base > 36) return fallback;
  errno = 0;
  char* end = nullptr;
  long long n = std::strtoll(s.c_str(), &end, static_cast<int>(base));
  if (errno == 0 && end && *end == '\0') return Value(static_cast<int64_t>(n));
  double d = std::strtod(s.c_str(), &end);
  if (end && *end == '\0' && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
  return fallback;
}

Result<Value> ToFloat(Interpreter&, const Value& v, const CallArgs& a) {
  const Value* dflt = Arg(a, 0, "default");
  Value fallback = dflt ? *dflt : Value(0.0);
  if (v.is_number()) return Value(v.as_double());
  if (!v.is_string()) return fallback;
  std::string s = pystr::Strip(v.str(), std::nullopt, true, true);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || !end || *end != '\0') return fallback;
  return Value(d);
}

Result<Value> Round(Interpreter&, const Value& v, const CallArgs& a) {
  if (!v.is_number()) return InvalidArgument("round: expected a number, got " + v.TypeName());
  OPENRL_ASSIGN_OR_RETURN(int64_t precision, IntArg(a, 0, "precision", 0));
  OPENRL_ASSIGN_OR_RETURN(auto method, StrArg(a, 1, "method"));
  std::string m = method.value_or("common");
  precision = std::clamp<int64_t>(precision, -300, 300);
  double v0 = v.as_double();
  if (m == "common") {
    // Python's round(): correctly rounded, ties to even on the exact binary value, as glibc's printf does.
    if (precision >= 0 && std::isfinite(v0)) {
      char buf[512];
      snprintf(buf, sizeof buf, "%.*f", static_cast<int>(std::min<int64_t>(precision, 100)), v0);
      return Value(std::strtod(buf, nullptr));
    }
    double scale = std::pow(10.0, static_cast<double>(-precision));
    return Value(std::nearbyint(v0 / scale) * scale);
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v0 * scale;
  if (m == "floor") x = std::floor(x);
  else if (m == "ceil") x = std::ceil(x);
  else return InvalidArgument("method must be common, ceil or floor");
  return Value(x / scale);
}

Result<Value> Abs(Interpreter&, const Value& v, const CallArgs&) {
  if (v.is_float()) return Value(std::fabs(v.as_double()));
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == INT64_MIN) return InvalidArgument("integer overflow");
    return Value(std::abs(v.as_int()));
  }
  return InvalidArgument("bad operand type for abs(): '" + v.TypeName() + "'");
}

Result<Value> Sum(Interpreter& in, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  const Value* attribute = Arg(a, 0, "attribute");
  const Value* start = Arg(a, 1, "start");
  Value total = start ? *start : Value(0);
  for (const auto& item : items) {
    Value x = item;
    if (attribute && !attribute->is_none()) {
      OPENRL_ASSIGN_OR_RETURN(x, GetPath(in, item, *attribute));
    }
    OPENRL_ASSIGN_OR_RETURN(total, BinaryOp("+", total, x));
  }
  return total;
}

Result<Value> MinMax(Interpreter& in, const Value& v, const CallArgs& a, bool want_max) {
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, in.Iterate(v));
  if (items.empty()) return Value::MakeUndefined(std::string("No aggregated item, sequence was empty."));
  OPENRL_ASSIGN_OR_RETURN(auto sorted, SortedItems(in, std::move(items), false, BoolArg(a, 0, "case_sensitive", false), Arg(a, 1, "attribute")));
  return want_max ? sorted.back() : sorted.front();
}

Result<Value> Replace(Interpreter& in, const Value& v, const CallArgs& a) {
  const Value* from = Arg(a, 0, "old");
  const Value* to = Arg(a, 1, "new");
  if (!from || !to) return InvalidArgument("replace: expected old and new strings");
  OPENRL_ASSIGN_OR_RETURN(int64_t count, IntArg(a, 2, "count", -1));
  std::string s = v.ToStr(), f = from->ToStr(), t = to->ToStr();
  if (f.empty() && t.size() * (pystr::Length(s) + 1) > in.limits().max_output_bytes) return ResourceExhausted("replace result exceeds the output limit");
  std::string r = pystr::Replace(s, f, t, count);
  if (r.size() > in.limits().max_output_bytes) return ResourceExhausted("replace result exceeds the output limit");
  return Value(std::move(r));
}

Result<Value> Format(Interpreter&, const Value& v, const CallArgs& a) {
  if (!a.keyword.empty() && !a.positional.empty()) return InvalidArgument("can't handle positional and keyword arguments at the same time");
  if (!a.keyword.empty()) return InvalidArgument("format: keyword arguments are not supported");
  OPENRL_ASSIGN_OR_RETURN(std::string s, PercentFormat(v.ToStr(), a.positional));
  return Value(std::move(s));
}

Result<Value> Indent(Interpreter&, const Value& v, const CallArgs& a) {
  const Value* width = Arg(a, 0, "width");
  std::string pad = width ? (width->is_string() ? width->str() : std::string(static_cast<size_t>(std::clamp<int64_t>(width->as_int(), 0, 1024)), ' ')) : "    ";
  bool first = BoolArg(a, 1, "first", false);
  bool blank = BoolArg(a, 2, "blank", false);
  std::string s = v.ToStr();
  std::vector<std::string> lines = pystr::Split(s, std::string("\n"), -1);
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i) out += "\n";
    bool indent_it = (i > 0 || first) && (blank || !pystr::Strip(lines[i], std::nullopt, true, true).empty());
    if (indent_it) out += pad;
    out += lines[i];
  }
  return Value(std::move(out));
}

Result<Value> Escape(Interpreter&, const Value& v, const CallArgs&) {
  std::string out;
  for (char c : v.ToStr()) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return Value(std::move(out));
}

// Jinja's title filter capitalises after whitespace and -([{< rather than after any non-letter.
Result<Value> JinjaTitle(Interpreter&, const Value& v, const CallArgs&) {
  std::string out;
  bool word_start = true;
  for (char32_t c : pystr::Decode(v.ToStr())) {
    bool sep = pystr::IsSpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    std::string ch;
    pystr::AppendUtf8(ch, c);
    out += sep ? ch : (word_start ? pystr::Upper(ch) : pystr::Lower(ch));
    word_start = sep;
  }
  return Value(std::move(out));
}

Result<Value> Center(Interpreter&, const Value& v, const CallArgs& a) {
  OPENRL_ASSIGN_OR_RETURN(int64_t width, IntArg(a, 0, "width", 80));
  std::string s = v.ToStr();
  int64_t len = static_cast<int64_t>(pystr::Length(s));
  width = std::min<int64_t>(width, 1 << 20);
  if (width <= len) return Value(s);
  int64_t total = width - len;
  int64_t left = total / 2 + (total & width & 1);
  return Value(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(total - left), ' '));
}

Result<Value> WordCount(Interpreter&, const Value& v, const CallArgs&) {
  return Value(static_cast<int64_t>(pystr::Split(v.ToStr(), std::nullopt, -1).size()));
}

struct FilterEntry {
  const char* name;
  Fn fn;
};

const FilterEntry kFilters[] = {
    {"length", Length}, {"count", Length}, {"trim", Trim}, {"default", Default}, {"d", Default},
    {"tojson", ToJson}, {"first", First}, {"last", Last}, {"join", Join}, {"items", Items},
    {"dictsort", DictSort}, {"list", List}, {"reverse", Reverse}, {"sort", Sort}, {"unique", Unique},
    {"map", Map}, {"int", ToInt}, {"float", ToFloat}, {"round", Round}, {"abs", Abs}, {"sum", Sum},
    {"replace", Replace}, {"format", Format}, {"indent", Indent}, {"escape", Escape}, {"e", Escape},
    {"forceescape", Escape}, {"title", JinjaTitle}, {"center", Center}, {"wordcount", WordCount},
    {"select", [](Interpreter& in, const Value& v, const CallArgs& a) { return SelectImpl(in, v, a, false, true); }},
    {"reject", [](Interpreter& in, const Value& v, const CallArgs& a) { return SelectImpl(in, v, a, false, false); }},
    {"selectattr", [](Interpreter& in, const Value& v, const CallArgs& a) { return SelectImpl(in, v, a, true, true); }},
    {"rejectattr", [](Interpreter& in, const Value& v, const CallArgs& a) { return SelectImpl(in, v, a, true, false); }},
    {"max", [](Interpreter& in, const Value& v, const CallArgs& a) { return MinMax(in, v, a, true); }},
    {"min", [](Interpreter& in, const Value& v, const CallArgs& a) { return MinMax(in, v, a, false); }},
    {"string", [](Interpreter&, const Value& v, const CallArgs&) -> Result<Value> { return Value(v.ToStr()); }},
    {"safe", [](Interpreter&, const Value& v, const CallArgs&) -> Result<Value> { return v; }},
    {"pprint", [](Interpreter&, const Value& v, const CallArgs&) -> Result<Value> { return Value(v.Repr()); }},
    {"upper", [](Interpreter&, const Value& v, const CallArgs&) -> Result<Value> { return Value(pystr::Upper(v.ToStr())); }},
    {"lower", [](Interpreter&, const Value& v, const CallArgs&) -> Result<Value> { return Value(pystr::Lower(v.ToStr())); }},
    {"capitalize", [](Interpreter&, const Value& v, const CallArgs&) -> Result<Value> { return Value(pystr::Capitalize(v.ToStr())); }},
    {"attr", [](Interpreter& in, const Value& v, const CallArgs& a) -> Result<Value> {
       OPENRL_ASSIGN_OR_RETURN(auto name, StrArg(a, 0, "name"));
       if (!name) return InvalidArgument("attr: expected an attribute name");
       return in.GetAttr(v, *name);
     }},
};

}  // namespace

Result<Value> CallFilter(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args) {
  for (const auto& f : kFilters) {
    if (name == f.name) {
      // Filters that need a real value fail on Undefined the way Jinja's do.
      return f.fn(in, v, args);
    }
  }
  return InvalidArgument("No filter named '" + name + "'.");
}

}  // namespace openrl::tmpl
