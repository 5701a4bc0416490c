// Tree-walking evaluator for parsed templates (internal to the template module).
// Scoping follows Jinja2: each for-loop iteration, macro call and `with` block gets a fresh
// frame; `set` writes the innermost frame; namespaces carry state out of loops.
// Limits (steps, output size, call depth) turn runaway templates into errors.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "openrl/template/ast.h"
#include "openrl/template/value.h"

namespace openrl::tmpl {

struct RenderLimits {
  size_t max_output_bytes = size_t{32} << 20;
  int max_call_depth = 64;
  int64_t max_steps = 20'000'000;
  int64_t max_range = 100'000;  // Jinja's sandbox MAX_RANGE
};

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, const DictValue& context) : limits_(limits), context_(context) {}
  ~Interpreter();

  // Renders `body`; errors read "line L, column C: message".
  Result<std::string> Render(const Body& body);

  // Used by filters, tests and builtins.
  Result<Value> Call(const Value& fn, const CallArgs& args);
  Result<Value> ApplyFilter(const std::string& name, const Value& target, const CallArgs& args);
  Result<bool> ApplyTest(const std::string& name, const Value& target, const CallArgs& args);
  Result<Value> GetAttr(const Value& obj, const std::string& name);
  Result<Value> GetItem(const Value& obj, const Value& key);
  Result<Value> GetSlice(const Value& obj, const std::vector<Value>& start_stop_step);
  // Items of an iterable in Python order (dict keys, string code points); undefined → empty.
  Result<std::vector<Value>> Iterate(const Value& v);
  Status Step(int64_t n = 1);
  const RenderLimits& limits() const { return limits_; }
  // Every namespace made during a render, so their cycles can be broken at the end.
  void TrackNamespace(const Value& ns) { namespaces_.push_back(ns.dict_ptr()); }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  struct Frame {
    std::unordered_map<std::string, Value> vars;
    Frame* parent = nullptr;
  };

  Result<Flow> ExecBody(const Body& body);
  Result<Flow> Exec(const Stmt& s);
  Result<Flow> ExecImpl(const Stmt& s);
  Result<Flow> ExecIf(const Stmt& s);
  Result<Flow> ExecFor(const Stmt& s);
  Status ExecSet(const Stmt& s);
  Status Assign(const Expr& target, const Value& v);
  Result<std::string> Capture(const Body& body, Frame* frame);
  Value MakeMacro(const Stmt& s, const std::string& name, std::shared_ptr<bool> alive);
  Result<Value> CallMacro(const Stmt& s, const std::string& name, const Value& caller, const CallArgs& args);

  Result<Value> Eval(const Expr& e);
  Result<Value> EvalImpl(const Expr& e);
  Result<Value> EvalBinary(const Expr& e);
  Result<Value> EvalCompare(const Expr& e);
  Result<CallArgs> EvalArgs(const Expr& e, size_t first);
  Result<Value> Lookup(const std::string& name);
  Status Write(const std::string& s);
  Status Fail(const Expr* e, const Stmt* s);

  RenderLimits limits_;
  const DictValue& context_;
  std::vector<std::unique_ptr<Frame>> frames_;
  Frame* frame_ = nullptr;
  Frame* root_ = nullptr;
  std::string* out_ = nullptr;
  int64_t steps_ = 0;
  int call_depth_ = 0;
  bool located_ = false;
  int err_line_ = 0;
  int err_col_ = 0;
  std::vector<DictPtr> namespaces_;
};

// Builtins (builtins.cc / filters.cc).
Result<Value> CallFilter(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args);
Result<bool> CallTest(Interpreter& in, const std::string& name, const Value& v, const CallArgs& args);
// A method of a str, dict or list (e.g. "strip"), bound to `self`; Undefined when there is none.
Value BoundMethod(const Value& self, const std::string& name);
// Global functions: range, namespace, dict, raise_exception, strftime_now, ...; Undefined if none.
Value GlobalFunction(const std::string& name);

// Python arithmetic on Values.
Result<Value> BinaryOp(const std::string& op, const Value& a, const Value& b);

}  // namespace openrl::tmpl
