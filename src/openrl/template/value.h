// Value: the dynamic value of the Jinja engine, modelled on the Python objects that Jinja2
// templates see (none, bool, int, float, str, list/tuple, dict, namespace, callables, Undefined).
// Printing follows Python's str()/repr(); ToJson follows json.dumps as transformers' tojson uses it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl::tmpl {

class Value;
class Interpreter;

// Jinja2's default Undefined: prints as "", is falsy, iterates as empty; most other uses fail
// with `hint` ("'foo' is undefined").
struct Undefined {
  std::string hint;
};

struct ListValue {
  std::vector<Value> items;
  bool is_tuple = false;
};

// Insertion-ordered dict (Python semantics). A namespace() is a dict flagged mutable.
struct DictValue {
  std::vector<std::pair<Value, Value>> entries;
  bool is_namespace = false;
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  const Value* Find(const std::string& key) const { return Find(std::string_view(key)); }
  const Value* Find(const char* key) const { return Find(std::string_view(key)); }
  void Set(Value key, Value value);
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
  const Value* Keyword(std::string_view name) const;
};

using NativeFn = std::function<Result<Value>(const CallArgs& args, Interpreter& interp)>;

struct Callable {
  std::string name;
  NativeFn fn;
};

using ListPtr = std::shared_ptr<ListValue>;
using DictPtr = std::shared_ptr<DictValue>;
using CallablePtr = std::shared_ptr<Callable>;

class Value {
 public:
  enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Value() : v_(Undefined{}) {}
  Value(std::nullptr_t) : v_(nullptr) {}                 // NOLINT
  Value(bool b) : v_(b) {}                               // NOLINT
  Value(int64_t i) : v_(i) {}                            // NOLINT
  Value(int i) : v_(static_cast<int64_t>(i)) {}          // NOLINT
  Value(double d) : v_(d) {}                             // NOLINT
  Value(std::string s) : v_(std::move(s)) {}             // NOLINT
  Value(const char* s) : v_(std::string(s)) {}           // NOLINT
  Value(Undefined u) : v_(std::move(u)) {}               // NOLINT
  Value(ListPtr l) : v_(std::move(l)) {}                 // NOLINT
  Value(DictPtr d) : v_(std::move(d)) {}                 // NOLINT
  Value(CallablePtr c) : v_(std::move(c)) {}             // NOLINT

  static Value MakeUndefined(std::string hint) { return Value(Undefined{std::move(hint)}); }
  static Value MakeList(std::vector<Value> items, bool is_tuple = false);
  static Value MakeDict();
  static Value MakeCallable(std::string name, NativeFn fn);

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_namespace() const { return is_dict() && dict().is_namespace; }
  bool is_mapping() const { return is_dict() && !dict().is_namespace; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return is_bool() ? (as_bool() ? 1 : 0) : std::get<int64_t>(v_); }
  double as_double() const { return is_float() ? std::get<double>(v_) : static_cast<double>(as_int()); }
  const std::string& str() const { return std::get<std::string>(v_); }
  const ListValue& list() const { return *std::get<ListPtr>(v_); }
  const DictValue& dict() const { return *std::get<DictPtr>(v_); }
  DictValue& mutable_dict() const { return *std::get<DictPtr>(v_); }
  const DictPtr& dict_ptr() const { return std::get<DictPtr>(v_); }
  const Callable& callable() const { return *std::get<CallablePtr>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }

  // Python truthiness.
  bool Truthy() const;
  // Python str(): strings as-is, everything else as repr; Undefined prints "".
  std::string ToStr() const;
  // Python repr().
  std::string Repr() const;
  // Python type name for messages: "dict object", "str object", ...
  std::string TypeName() const;

 private:
  std::variant<Undefined, std::nullptr_t, bool, int64_t, double, std::string, ListPtr, DictPtr,
               CallablePtr>
      v_;
};

// Python ==.
bool ValuesEqual(const Value& a, const Value& b);
// Python <; fails for unorderable types (e.g. str < int).
Result<bool> ValueLess(const Value& a, const Value& b);

// Python float repr: 1.0, 0.1, 1e+16, 1e-05, inf, nan.
std::string FormatPythonFloat(double d);

// json.dumps(x, ensure_ascii=False, indent=indent, separators=None, sort_keys=false):
// indent < 0 means no indent (separators ", " and ": ").
struct JsonDumpOptions {
  int indent = -1;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::string item_separator;  // empty: Python's default for the indent mode
  std::string key_separator;
  bool custom_separators = false;
};
Result<std::string> ToJsonText(const Value& v, const JsonDumpOptions& options);

// Converts JSON into Values (objects keep the order the JSON type keeps).
Value FromJson(const Json& j);
Value FromJson(const nlohmann::ordered_json& j);

}  // namespace openrl::tmpl
