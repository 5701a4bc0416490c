#include "openrl/template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "openrl/template/pystr.h"

namespace openrl::tmpl {

const Value* DictValue::Find(const Value& key) const {
  for (const auto& [k, v] : entries) {
    if (ValuesEqual(k, key)) return &v;
  }
  return nullptr;
}

const Value* DictValue::Find(std::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.str() == key) return &v;
  }
  return nullptr;
}

void DictValue::Set(Value key, Value value) {
  for (auto& [k, v] : entries) {
    if (ValuesEqual(k, key)) {
      v = std::move(value);
      return;
    }
  }
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::Keyword(std::string_view name) const {
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

Value Value::MakeList(std::vector<Value> items, bool is_tuple) {
  auto l = std::make_shared<ListValue>();
  l->items = std::move(items);
  l->is_tuple = is_tuple;
  return Value(std::move(l));
}

Value Value::MakeDict() { return Value(std::make_shared<DictValue>()); }

Value Value::MakeCallable(std::string name, NativeFn fn) {
  return Value(std::make_shared<Callable>(Callable{std::move(name), std::move(fn)}));
}

bool Value::Truthy() const {
  switch (kind()) {
    case Kind::kUndefined: case Kind::kNone: return false;
    case Kind::kBool: return as_bool();
    case Kind::kInt: return as_int() != 0;
    case Kind::kFloat: return as_double() != 0.0;
    case Kind::kString: return !str().empty();
    case Kind::kList: return !list().items.empty();
    case Kind::kDict: return dict().is_namespace || !dict().entries.empty();
    case Kind::kCallable: return true;
  }
  return false;
}

std::string Value::ToStr() const {
  if (is_string()) return str();
  if (is_undefined()) return "";
  return Repr();
}

std::string FormatPythonFloat(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits;
  for (size_t i = 0; i < epos; ++i) {
    if (sci[i] != '.') digits += sci[i];
  }
  std::string out = neg ? "-" : "";
  if (exp >= -5 + 1 && exp < 16) {  // Python repr: fixed for -4 <= exp < 16
    if (exp >= 0) {
      if (static_cast<int>(digits.size()) <= exp + 1) {
        out += digits + std::string(static_cast<size_t>(exp + 1) - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, static_cast<size_t>(exp + 1)) + "." + digits.substr(static_cast<size_t>(exp + 1));
      }
    } else {
      out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char ebuf[16];
  snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + ebuf;
}

static std::string ReprDict(const DictValue& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : d.entries) {
    if (!first) out += ", ";
    first = false;
    out += k.Repr() + ": " + v.Repr();
  }
  return out + "}";
}

std::string Value::Repr() const {
  switch (kind()) {
    case Kind::kUndefined: return "";
    case Kind::kNone: return "None";
    case Kind::kBool: return as_bool() ? "True" : "False";
    case Kind::kInt: return std::to_string(as_int());
    case Kind::kFloat: return FormatPythonFloat(as_double());
    case Kind::kString: return pystr::Repr(str());
    case Kind::kList: {
      const ListValue& l = list();
      std::string out = l.is_tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        out += l.items[i].Repr();
      }
      if (l.is_tuple && l.items.size() == 1) out += ",";
      return out + (l.is_tuple ? ")" : "]");
    }
    case Kind::kDict:
      // A namespace may hold itself, so its contents are not printed.
      return dict().is_namespace ? "<Namespace>" : ReprDict(dict());
    case Kind::kCallable: return "<function " + callable().name + ">";
  }
  return "";
}

std::string Value::TypeName() const {
  switch (kind()) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return list().is_tuple ? "tuple" : "list";
    case Kind::kDict: return dict().is_namespace ? "Namespace" : "dict";
    case Kind::kCallable: return "function";
  }
  return "object";
}

bool ValuesEqual(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined: case Value::Kind::kNone: return true;
    case Value::Kind::kString: return a.str() == b.str();
    case Value::Kind::kList: {
      const auto& x = a.list();
      const auto& y = b.list();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!ValuesEqual(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().is_namespace || b.dict().is_namespace) return &a.dict() == &b.dict();
      const auto& x = a.dict();
      const auto& y = b.dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& [k, v] : x.entries) {
        const Value* other = y.Find(k);
        if (!other || !ValuesEqual(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kCallable: return &a.callable() == &b.callable();
    default: return false;
  }
}

Result<bool> ValueLess(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.list().is_tuple == b.list().is_tuple) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (ValuesEqual(x[i], y[i])) continue;
      return ValueLess(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  return InvalidArgument("'<' not supported between instances of '" + a.TypeName() + "' and '" +
                         b.TypeName() + "'");
}

static void AppendJsonString(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (char32_t c : pystr::Decode(s)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default: {
        char buf[16];
        if (c < 0x20 || (ensure_ascii && c > 0x7E && c < 0x10000)) {
          snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else if (ensure_ascii && c >= 0x10000) {
          unsigned v = static_cast<unsigned>(c) - 0x10000;
          snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
          out += buf;
        } else {
          pystr::AppendUtf8(out, c);
        }
      }
    }
  }
  out += '"';
}

namespace {
struct JsonWriter {
  const JsonDumpOptions& opt;
  std::string item_sep;
  std::string key_sep;
  std::string out;

  void Newline(int level) {
    out += '\n';
    out.append(static_cast<size_t>(opt.indent) * static_cast<size_t>(level), ' ');
  }

  Result<std::string> KeyText(const Value& k) {
    if (k.is_string()) return k.str();
    if (k.is_bool()) return std::string(k.as_bool() ? "true" : "false");
    if (k.is_int()) return std::to_string(k.as_int());
    if (k.is_float()) return FormatPythonFloat(k.as_double());
    if (k.is_none()) return std::string("null");
    return InvalidArgument("keys must be str, int, float, bool or None, not " + k.TypeName());
  }

  Status Write(const Value& v, int level) {
    if (level > 512) return InvalidArgument("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::kNone: out += "null"; return Status::Ok();
      case Value::Kind::kBool: out += v.as_bool() ? "true" : "false"; return Status::Ok();
      case Value::Kind::kInt: out += std::to_string(v.as_int()); return Status::Ok();
      case Value::Kind::kFloat: {
        double d = v.as_double();
        out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : FormatPythonFloat(d);
        return Status::Ok();
      }
      case Value::Kind::kString: AppendJsonString(out, v.str(), opt.ensure_ascii); return Status::Ok();
      case Value::Kind::kList: return WriteList(v.list(), level);
      case Value::Kind::kDict:
        if (!v.dict().is_namespace) return WriteDict(v.dict(), level);
        [[fallthrough]];
      default:
        return InvalidArgument("Object of type " + v.TypeName() + " is not JSON serializable");
    }
  }

  Status WriteList(const ListValue& l, int level) {
    if (l.items.empty()) { out += "[]"; return Status::Ok(); }
    out += '[';
    for (size_t i = 0; i < l.items.size(); ++i) {
      if (i) out += item_sep;
      if (opt.indent >= 0) Newline(level + 1);
      OPENRL_RETURN_IF_ERROR(Write(l.items[i], level + 1));
    }
    if (opt.indent >= 0) Newline(level);
    out += ']';
    return Status::Ok();
  }

  Status WriteDict(const DictValue& d, int level) {
    if (d.entries.empty()) { out += "{}"; return Status::Ok(); }
    std::vector<std::pair<std::string, const Value*>> items;
    for (const auto& [k, val] : d.entries) {
      OPENRL_ASSIGN_OR_RETURN(std::string key, KeyText(k));
      items.emplace_back(std::move(key), &val);
    }
    if (opt.sort_keys) {
      std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    out += '{';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += item_sep;
      if (opt.indent >= 0) Newline(level + 1);
      AppendJsonString(out, items[i].first, opt.ensure_ascii);
      out += key_sep;
      OPENRL_RETURN_IF_ERROR(Write(*items[i].second, level + 1));
    }
    if (opt.indent >= 0) Newline(level);
    out += '}';
    return Status::Ok();
  }
};
}  // namespace

Result<std::string> ToJsonText(const Value& v, const JsonDumpOptions& options) {
  JsonWriter w{options, options.item_separator, options.key_separator, {}};
  if (!options.custom_separators) {
    w.item_sep = options.indent >= 0 ? "," : ", ";
    w.key_sep = ": ";
  }
  OPENRL_RETURN_IF_ERROR(w.Write(v, 0));
  return std::move(w.out);
}

template <typename J>
static Value FromJsonImpl(const J& j) {
  switch (j.type()) {
    case J::value_t::null: return Value(nullptr);
    case J::value_t::boolean: return Value(j.template get<bool>());
    case J::value_t::number_integer: return Value(j.template get<int64_t>());
    case J::value_t::number_unsigned: {
      auto u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case J::value_t::number_float: return Value(j.template get<double>());
    case J::value_t::string: return Value(j.template get<std::string>());
    case J::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJsonImpl(e));
      return Value::MakeList(std::move(items));
    }
    case J::value_t::object: {
      auto d = std::make_shared<DictValue>();
      d->entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) d->entries.emplace_back(Value(it.key()), FromJsonImpl(it.value()));
      return Value(std::move(d));
    }
    default: return Value(nullptr);
  }
}

Value FromJson(const Json& j) { return FromJsonImpl(j); }
Value FromJson(const nlohmann::ordered_json& j) { return FromJsonImpl(j); }

}  // namespace openrl::tmpl
