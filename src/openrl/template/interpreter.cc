// Statement execution of the template interpreter (expressions: interpreter_expr.cc).
#include "openrl/template/interpreter.h"

#include "openrl/template/lexer.h"
#include "openrl/template/pystr.h"

namespace openrl::tmpl {

Interpreter::~Interpreter() {
  // Namespaces can hold themselves (`{% set ns.me = ns %}`); clear them so nothing leaks.
  for (auto& ns : namespaces_) ns->entries.clear();
}

Status Interpreter::Step(int64_t n) {
  steps_ += n;
  if (steps_ > limits_.max_steps) {
    return ResourceExhausted("template exceeded " + std::to_string(limits_.max_steps) + " evaluation steps");
  }
  return Status::Ok();
}

Status Interpreter::Write(const std::string& s) {
  if (out_->size() + s.size() > limits_.max_output_bytes) {
    return ResourceExhausted("template output exceeds " + std::to_string(limits_.max_output_bytes) + " bytes");
  }
  out_->append(s);
  return Status::Ok();
}

Result<std::string> Interpreter::Render(const Body& body) {
  auto root = std::make_unique<Frame>();
  root_ = frame_ = root.get();
  frames_.push_back(std::move(root));
  std::string out;
  out_ = &out;
  Result<Flow> r = ExecBody(body);
  if (!r.ok()) {
    const Status& st = r.status();
    if (!located_) return st;
    return Status(st.code(), LocationPrefix(err_line_, err_col_) + st.message());
  }
  return out;
}

Result<Interpreter::Flow> Interpreter::ExecBody(const Body& body) {
  for (const auto& s : body) {
    OPENRL_ASSIGN_OR_RETURN(Flow f, Exec(*s));
    if (f != Flow::kNormal) return f;
  }
  return Flow::kNormal;
}

Result<Interpreter::Flow> Interpreter::Exec(const Stmt& s) {
  if (Status st = Step(); !st.ok()) return st;
  Result<Flow> r = ExecImpl(s);
  if (!r.ok() && !located_) {
    located_ = true;
    err_line_ = s.line;
    err_col_ = s.col;
  }
  return r;
}

Result<Interpreter::Flow> Interpreter::ExecImpl(const Stmt& s) {
  switch (s.kind) {
    case StmtKind::kData:
      OPENRL_RETURN_IF_ERROR(Write(s.text));
      return Flow::kNormal;
    case StmtKind::kPrint: {
      OPENRL_ASSIGN_OR_RETURN(Value v, Eval(*s.expr));
      OPENRL_RETURN_IF_ERROR(Write(v.ToStr()));
      return Flow::kNormal;
    }
    case StmtKind::kIf: return ExecIf(s);
    case StmtKind::kFor: return ExecFor(s);
    case StmtKind::kSet:
    case StmtKind::kSetBlock:
      OPENRL_RETURN_IF_ERROR(ExecSet(s));
      return Flow::kNormal;
    case StmtKind::kMacro:
      frame_->vars[s.text] = MakeMacro(s, s.text, nullptr);
      return Flow::kNormal;
    case StmtKind::kCallBlock: {
      const Expr& call = *s.expr;
      OPENRL_ASSIGN_OR_RETURN(Value fn, Eval(*call.items[0]));
      OPENRL_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1));
      auto alive = std::make_shared<bool>(true);
      args.keyword.emplace_back("caller", MakeMacro(s, "caller", alive));
      Result<Value> called = Call(fn, args);
      *alive = false;  // `caller` may have escaped into a namespace; its frame ends here
      OPENRL_ASSIGN_OR_RETURN(Value v, std::move(called));
      OPENRL_RETURN_IF_ERROR(Write(v.ToStr()));
      return Flow::kNormal;
    }
    case StmtKind::kFilterBlock: {
      OPENRL_ASSIGN_OR_RETURN(std::string text, Capture(s.body, frame_));
      std::vector<const Expr*> chain;
      for (const Expr* f = s.filter.get(); f; f = f->items[0].get()) chain.push_back(f);
      Value v(std::move(text));
      for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        OPENRL_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(**it, 1));
        OPENRL_ASSIGN_OR_RETURN(v, ApplyFilter((*it)->name, v, args));
      }
      OPENRL_RETURN_IF_ERROR(Write(v.ToStr()));
      return Flow::kNormal;
    }
    case StmtKind::kWith: {
      auto f = std::make_unique<Frame>();
      f->parent = frame_;
      std::vector<Value> values;
      for (const auto& v : s.values) {
        OPENRL_ASSIGN_OR_RETURN(Value x, Eval(*v));
        values.push_back(std::move(x));
      }
      Frame* saved = frame_;
      frame_ = f.get();
      Status st;
      for (size_t i = 0; i < values.size() && st.ok(); ++i) st = Assign(*s.targets[i], values[i]);
      Result<Flow> r = st.ok() ? ExecBody(s.body) : Result<Flow>(st);
      frame_ = saved;
      return r;
    }
    case StmtKind::kBreak: return Flow::kBreak;
    case StmtKind::kContinue: return Flow::kContinue;
    case StmtKind::kScope: return ExecBody(s.body);
  }
  return Flow::kNormal;
}

Result<Interpreter::Flow> Interpreter::ExecIf(const Stmt& s) {
  for (size_t i = 0; i < s.conds.size(); ++i) {
    OPENRL_ASSIGN_OR_RETURN(Value c, Eval(*s.conds[i]));
    if (c.Truthy()) return ExecBody(s.bodies[i]);
  }
  return ExecBody(s.else_body);
}

Result<Interpreter::Flow> Interpreter::ExecFor(const Stmt& s) {
  OPENRL_ASSIGN_OR_RETURN(Value seq, Eval(*s.expr));
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(seq));
  Frame* saved = frame_;
  if (s.cond) {
    std::vector<Value> kept;
    for (auto& item : items) {
      OPENRL_RETURN_IF_ERROR(Step());
      Frame probe;
      probe.parent = saved;
      frame_ = &probe;
      Status st = Assign(*s.target, item);
      Result<Value> c = st.ok() ? Eval(*s.cond) : Result<Value>(st);
      frame_ = saved;
      if (!c.ok()) return c.status();
      if (c->Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) return ExecBody(s.else_body);
  const auto n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    OPENRL_RETURN_IF_ERROR(Step());  // empty loop bodies must count too
    auto loop = std::make_shared<DictValue>();
    auto set = [&](const char* k, Value v) { loop->entries.emplace_back(Value(k), std::move(v)); };
    set("index0", Value(i));
    set("index", Value(i + 1));
    set("revindex", Value(n - i));
    set("revindex0", Value(n - i - 1));
    set("first", Value(i == 0));
    set("last", Value(i == n - 1));
    set("length", Value(n));
    set("depth", Value(1));
    set("depth0", Value(0));
    if (i > 0) set("previtem", items[static_cast<size_t>(i - 1)]);
    if (i + 1 < n) set("nextitem", items[static_cast<size_t>(i + 1)]);
    set("cycle", Value::MakeCallable("loop.cycle", [i](const CallArgs& a, Interpreter&) -> Result<Value> {
          if (a.positional.empty()) return InvalidArgument("no items for cycling given");
          return a.positional[static_cast<size_t>(i) % a.positional.size()];
        }));
    Frame iteration;
    iteration.parent = saved;
    iteration.vars["loop"] = Value(std::move(loop));
    frame_ = &iteration;
    Status st = Assign(*s.target, items[static_cast<size_t>(i)]);
    Result<Flow> r = st.ok() ? ExecBody(s.body) : Result<Flow>(st);
    frame_ = saved;
    if (!r.ok()) return r;
    if (*r == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Status Interpreter::ExecSet(const Stmt& s) {
  Value v;
  if (s.kind == StmtKind::kSet) {
    OPENRL_ASSIGN_OR_RETURN(v, Eval(*s.expr));
  } else {
    OPENRL_ASSIGN_OR_RETURN(std::string text, Capture(s.body, frame_));
    v = Value(std::move(text));
    std::vector<const Expr*> chain;
    for (const Expr* f = s.filter.get(); f; f = f->items[0].get()) chain.push_back(f);
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      OPENRL_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(**it, 1));
      OPENRL_ASSIGN_OR_RETURN(v, ApplyFilter((*it)->name, v, args));
    }
  }
  return Assign(*s.target, v);
}

Status Interpreter::Assign(const Expr& target, const Value& v) {
  if (target.kind == ExprKind::kName) {
    frame_->vars[target.name] = v;
    return Status::Ok();
  }
  if (target.kind == ExprKind::kNsRef) {
    OPENRL_ASSIGN_OR_RETURN(Value ns, Lookup(target.items[0]->name));
    if (!ns.is_namespace()) return InvalidArgument("cannot assign attribute on non-namespace object");
    const std::string& attr = target.value.str();
    if (!attr.empty() && attr[0] == '_') {
      return InvalidArgument("Chat templates cannot store underscore-prefixed attributes on a namespace, but got '" + attr + "'");
    }
    ns.mutable_dict().Set(Value(attr), v);
    return Status::Ok();
  }
  // Tuple unpacking.
  OPENRL_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.size() != target.items.size()) {
    return InvalidArgument(items.size() > target.items.size()
                               ? "too many values to unpack (expected " + std::to_string(target.items.size()) + ")"
                               : "not enough values to unpack (expected " + std::to_string(target.items.size()) +
                                     ", got " + std::to_string(items.size()) + ")");
  }
  for (size_t i = 0; i < items.size(); ++i) OPENRL_RETURN_IF_ERROR(Assign(*target.items[i], items[i]));
  return Status::Ok();
}

Result<std::string> Interpreter::Capture(const Body& body, Frame* frame) {
  std::string buf;
  std::string* saved_out = out_;
  Frame* saved_frame = frame_;
  out_ = &buf;
  frame_ = frame;
  Result<Flow> r = ExecBody(body);
  out_ = saved_out;
  frame_ = saved_frame;
  if (!r.ok()) return r.status();
  return buf;
}

Value Interpreter::MakeMacro(const Stmt& s, const std::string& name, std::shared_ptr<bool> alive) {
  const Stmt* stmt = &s;
  // A call block's `caller` renders in the frame where the call block stands.
  Frame* home = (s.kind == StmtKind::kCallBlock) ? frame_ : nullptr;
  return Value::MakeCallable(name, [stmt, name, home, alive](const CallArgs& args, Interpreter& in) -> Result<Value> {
    if (home) {
      if (!alive || !*alive) return InvalidArgument("'caller' called outside of its call block");
      Frame* saved = in.frame_;
      in.frame_ = home;
      Result<Value> r = in.CallMacro(*stmt, name, Value(), args);
      in.frame_ = saved;
      return r;
    }
    return in.CallMacro(*stmt, name, Value(), args);
  });
}

Result<Value> Interpreter::CallMacro(const Stmt& s, const std::string& name, const Value&, const CallArgs& args) {
  if (call_depth_ >= limits_.max_call_depth) {
    return ResourceExhausted("macro calls nested deeper than " + std::to_string(limits_.max_call_depth));
  }
  if (args.positional.size() > s.params.size()) {
    return InvalidArgument("macro '" + name + "' takes not more than " + std::to_string(s.params.size()) +
                           " argument(s)");
  }
  Frame f;
  f.parent = (s.kind == StmtKind::kCallBlock) ? frame_ : root_;
  for (const auto& [k, v] : args.keyword) {
    bool known = k == "caller";
    for (const auto& p : s.params) known = known || p == k;
    if (!known) return InvalidArgument("macro '" + name + "' takes no keyword argument '" + k + "'");
    f.vars[k] = v;
  }
  Frame* saved = frame_;
  frame_ = &f;
  ++call_depth_;
  Status st;
  for (size_t i = 0; i < s.params.size() && st.ok(); ++i) {
    if (i < args.positional.size()) {
      f.vars[s.params[i]] = args.positional[i];
    } else if (!f.vars.count(s.params[i])) {
      if (s.defaults[i]) {
        Result<Value> d = Eval(*s.defaults[i]);
        if (!d.ok()) st = d.status();
        else f.vars[s.params[i]] = *d;
      } else {
        f.vars[s.params[i]] = Value::MakeUndefined("parameter '" + s.params[i] + "' was not provided");
      }
    }
  }
  Result<std::string> text = st.ok() ? Capture(s.body, &f) : Result<std::string>(st);
  --call_depth_;
  frame_ = saved;
  if (!text.ok()) return text.status();
  return Value(std::move(*text));
}

}  // namespace openrl::tmpl
