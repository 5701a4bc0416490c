#include "openrl/template/parser.h"

#include <algorithm>
#include <initializer_list>

namespace openrl::tmpl {
namespace {

constexpr int kMaxNesting = 128;

std::string Describe(const Token& t) {
  switch (t.type) {
    case Tok::kName: case Tok::kOp: return t.text;
    case Tok::kString: return "string";
    case Tok::kInt: return "integer";
    case Tok::kFloat: return "float";
    case Tok::kVarBegin: return "begin of print statement";
    case Tok::kVarEnd: return "end of print statement";
    case Tok::kBlockBegin: return "begin of statement block";
    case Tok::kBlockEnd: return "end of statement block";
    case Tok::kData: return "template data";
    case Tok::kEof: return "end of template";
  }
  return "token";
}

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Result<Body> ParseAll() {
    Body body;
    std::string end;
    OPENRL_RETURN_IF_ERROR(ParseBody({}, &body, &end));
    return body;
  }

 private:
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;

  const Token& Cur() const { return t_[i_]; }
  const Token& Look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
  void Next() { if (i_ + 1 < t_.size()) ++i_; }
  bool IsOp(const char* op) const { return Cur().type == Tok::kOp && Cur().text == op; }
  bool IsName(const char* n) const { return Cur().type == Tok::kName && Cur().text == n; }
  bool SkipOp(const char* op) { if (IsOp(op)) { Next(); return true; } return false; }
  bool SkipName(const char* n) { if (IsName(n)) { Next(); return true; } return false; }

  Status Fail(const Token& at, const std::string& msg) const {
    return InvalidArgument(LocationPrefix(at.line, at.col) + msg);
  }
  Status ExpectOp(const char* op) {
    if (!SkipOp(op)) return Fail(Cur(), std::string("expected token '") + op + "', got '" + Describe(Cur()) + "'");
    return Status::Ok();
  }
  Status ExpectBlockEnd() {
    if (Cur().type != Tok::kBlockEnd) return Fail(Cur(), "expected token 'end of statement block', got '" + Describe(Cur()) + "'");
    Next();
    return Status::Ok();
  }
  Result<std::string> ExpectName() {
    if (Cur().type != Tok::kName) return Fail(Cur(), "expected token 'name', got '" + Describe(Cur()) + "'");
    std::string n = Cur().text;
    Next();
    return n;
  }

  ExprPtr Make(ExprKind k, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = at.line;
    e->col = at.col;
    return e;
  }

  Status ParseBody(std::initializer_list<const char*> ends, Body* body, std::string* found_end);
  Status ParseStatement(Body* body);
  Status ParseIf(const Token& at, Body* body);
  Status ParseFor(const Token& at, Body* body);
  Status ParseSet(const Token& at, Body* body);
  Status ParseMacro(const Token& at, Body* body, bool is_call);
  Status ParseFilterBlock(const Token& at, Body* body);
  Status ParseWith(const Token& at, Body* body);
  Status ParseParams(std::vector<std::string>* params, std::vector<ExprPtr>* defaults);

  Result<ExprPtr> ParseAssignTarget(bool with_namespace, bool allow_tuple);
  Result<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parens, std::initializer_list<const char*> extra_ends);
  Result<ExprPtr> ParseExpression(bool with_condexpr = true);
  Result<ExprPtr> ParseCondExpr();
  Result<ExprPtr> ParseOr();
  Result<ExprPtr> ParseAnd();
  Result<ExprPtr> ParseNot();
  Result<ExprPtr> ParseCompare();
  Result<ExprPtr> ParseBinary(int level);
  Result<ExprPtr> ParseUnary(bool with_filter);
  Result<ExprPtr> ParsePrimary();
  Result<ExprPtr> ParsePostfix(ExprPtr node);
  Result<ExprPtr> ParseFilterExpr(ExprPtr node);
  Result<ExprPtr> ParseSubscript(ExprPtr node);
  Result<ExprPtr> ParseSubscribed();
  Result<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);
  Result<ExprPtr> ParseTest(ExprPtr node);
  Status ParseCallArgs(Expr* call);
  bool IsTupleEnd(std::initializer_list<const char*> extra) const {
    if (Cur().type == Tok::kVarEnd || Cur().type == Tok::kBlockEnd || Cur().type == Tok::kEof || IsOp(")")) return true;
    for (const char* e : extra) if (IsName(e)) return true;
    return false;
  }
};

Status Parser::ParseBody(std::initializer_list<const char*> ends, Body* body, std::string* found_end) {
  if (++depth_ > kMaxNesting) return Fail(Cur(), "template nested too deeply");
  while (true) {
    const Token& tok = Cur();
    if (tok.type == Tok::kEof) {
      if (ends.size() == 0) break;
      std::string want;
      for (const char* e : ends) want += (want.empty() ? "'" : " or '") + std::string(e) + "'";
      return Fail(tok, "unexpected end of template; Jinja was looking for the following tags: " + want);
    }
    if (tok.type == Tok::kData) {
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kData;
      s->line = tok.line;
      s->col = tok.col;
      s->text = tok.text;
      body->push_back(std::move(s));
      Next();
    } else if (tok.type == Tok::kVarBegin) {
      Next();
      auto s = std::make_unique<Stmt>();
      s->kind = StmtKind::kPrint;
      s->line = Cur().line;
      s->col = Cur().col;
      OPENRL_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false, {}));
      if (Cur().type != Tok::kVarEnd) return Fail(Cur(), "unexpected '" + Describe(Cur()) + "', expected end of print statement");
      Next();
      body->push_back(std::move(s));
    } else if (tok.type == Tok::kBlockBegin) {
      Next();
      const Token& name = Cur();
      if (name.type == Tok::kName) {
        for (const char* e : ends) {
          if (name.text == e) {
            *found_end = name.text;
            Next();
            --depth_;
            return Status::Ok();
          }
        }
      }
      OPENRL_RETURN_IF_ERROR(ParseStatement(body));
    } else {
      return Fail(tok, "unexpected '" + Describe(tok) + "'");
    }
  }
  --depth_;
  return Status::Ok();
}

Status Parser::ParseStatement(Body* body) {
  Token at = Cur();
  if (at.type != Tok::kName) return Fail(at, "tag name expected");
  const std::string& n = at.text;
  Next();
  if (n == "if") return ParseIf(at, body);
  if (n == "for") return ParseFor(at, body);
  if (n == "set") return ParseSet(at, body);
  if (n == "macro") return ParseMacro(at, body, false);
  if (n == "call") return ParseMacro(at, body, true);
  if (n == "filter") return ParseFilterBlock(at, body);
  if (n == "with") return ParseWith(at, body);
  if (n == "break" || n == "continue") {
    auto s = std::make_unique<Stmt>();
    s->kind = n == "break" ? StmtKind::kBreak : StmtKind::kContinue;
    s->line = at.line;
    s->col = at.col;
    body->push_back(std::move(s));
    return ExpectBlockEnd();
  }
  if (n == "generation") {
    auto s = std::make_unique<Stmt>();
    s->kind = StmtKind::kScope;
    s->line = at.line;
    OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    OPENRL_RETURN_IF_ERROR(ParseBody({"endgeneration"}, &s->body, &end));
    body->push_back(std::move(s));
    return ExpectBlockEnd();
  }
  return Fail(at, "Encountered unknown tag '" + n + "'.");
}

Status Parser::ParseIf(const Token& at, Body* body) {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kIf;
  s->line = at.line;
  s->col = at.col;
  while (true) {
    OPENRL_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false, false, {}));
    OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
    Body b;
    std::string end;
    OPENRL_RETURN_IF_ERROR(ParseBody({"elif", "else", "endif"}, &b, &end));
    s->conds.push_back(std::move(cond));
    s->bodies.push_back(std::move(b));
    if (end == "elif") continue;
    if (end == "else") {
      OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
      OPENRL_RETURN_IF_ERROR(ParseBody({"endif"}, &s->else_body, &end));
    }
    break;
  }
  body->push_back(std::move(s));
  return ExpectBlockEnd();
}

Status Parser::ParseFor(const Token& at, Body* body) {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kFor;
  s->line = at.line;
  s->col = at.col;
  OPENRL_ASSIGN_OR_RETURN(s->target, ParseAssignTarget(false, true));
  if (!SkipName("in")) return Fail(Cur(), "expected token 'in', got '" + Describe(Cur()) + "'");
  OPENRL_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, false, {"recursive"}));
  if (SkipName("if")) {
    OPENRL_ASSIGN_OR_RETURN(s->cond, ParseExpression());
  }
  if (IsName("recursive")) return Fail(Cur(), "recursive for loops are not supported");
  OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  OPENRL_RETURN_IF_ERROR(ParseBody({"endfor", "else"}, &s->body, &end));
  if (end == "else") {
    OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
    OPENRL_RETURN_IF_ERROR(ParseBody({"endfor"}, &s->else_body, &end));
  }
  body->push_back(std::move(s));
  return ExpectBlockEnd();
}

Status Parser::ParseSet(const Token& at, Body* body) {
  auto s = std::make_unique<Stmt>();
  s->line = at.line;
  s->col = at.col;
  OPENRL_ASSIGN_OR_RETURN(s->target, ParseAssignTarget(true, true));
  if (SkipOp("=")) {
    s->kind = StmtKind::kSet;
    OPENRL_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, false, {}));
    body->push_back(std::move(s));
    return ExpectBlockEnd();
  }
  s->kind = StmtKind::kSetBlock;
  if (IsOp("|")) {
    OPENRL_ASSIGN_OR_RETURN(s->filter, ParseFilter(nullptr, false));
  }
  OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  OPENRL_RETURN_IF_ERROR(ParseBody({"endset"}, &s->body, &end));
  body->push_back(std::move(s));
  return ExpectBlockEnd();
}

Status Parser::ParseParams(std::vector<std::string>* params, std::vector<ExprPtr>* defaults) {
  OPENRL_RETURN_IF_ERROR(ExpectOp("("));
  while (!IsOp(")")) {
    if (!params->empty()) OPENRL_RETURN_IF_ERROR(ExpectOp(","));
    if (IsOp(")")) break;
    OPENRL_ASSIGN_OR_RETURN(std::string p, ExpectName());
    params->push_back(p);
    if (SkipOp("=")) {
      OPENRL_ASSIGN_OR_RETURN(ExprPtr d, ParseExpression());
      defaults->push_back(std::move(d));
    } else {
      if (!defaults->empty() && defaults->back()) return Fail(Cur(), "non-default argument follows default argument");
      defaults->push_back(nullptr);
    }
  }
  Next();
  return Status::Ok();
}

Status Parser::ParseMacro(const Token& at, Body* body, bool is_call) {
  auto s = std::make_unique<Stmt>();
  s->kind = is_call ? StmtKind::kCallBlock : StmtKind::kMacro;
  s->line = at.line;
  s->col = at.col;
  std::string end;
  if (is_call) {
    if (IsOp("(")) OPENRL_RETURN_IF_ERROR(ParseParams(&s->params, &s->defaults));
    OPENRL_ASSIGN_OR_RETURN(s->expr, ParseExpression());
    if (s->expr->kind != ExprKind::kCall) return Fail(at, "expected call");
    OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
    OPENRL_RETURN_IF_ERROR(ParseBody({"endcall"}, &s->body, &end));
  } else {
    OPENRL_ASSIGN_OR_RETURN(s->text, ExpectName());
    OPENRL_RETURN_IF_ERROR(ParseParams(&s->params, &s->defaults));
    OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
    OPENRL_RETURN_IF_ERROR(ParseBody({"endmacro"}, &s->body, &end));
  }
  if (Cur().type == Tok::kName && !is_call) Next();  // {% endmacro name %}
  body->push_back(std::move(s));
  return ExpectBlockEnd();
}

Status Parser::ParseFilterBlock(const Token& at, Body* body) {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kFilterBlock;
  s->line = at.line;
  s->col = at.col;
  OPENRL_ASSIGN_OR_RETURN(s->filter, ParseFilter(nullptr, true));
  OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  OPENRL_RETURN_IF_ERROR(ParseBody({"endfilter"}, &s->body, &end));
  body->push_back(std::move(s));
  return ExpectBlockEnd();
}

Status Parser::ParseWith(const Token& at, Body* body) {
  auto s = std::make_unique<Stmt>();
  s->kind = StmtKind::kWith;
  s->line = at.line;
  s->col = at.col;
  while (Cur().type != Tok::kBlockEnd) {
    if (!s->targets.empty()) OPENRL_RETURN_IF_ERROR(ExpectOp(","));
    OPENRL_ASSIGN_OR_RETURN(ExprPtr t, ParseAssignTarget(false, false));
    OPENRL_RETURN_IF_ERROR(ExpectOp("="));
    OPENRL_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
    s->targets.push_back(std::move(t));
    s->values.push_back(std::move(v));
  }
  OPENRL_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string end;
  OPENRL_RETURN_IF_ERROR(ParseBody({"endwith"}, &s->body, &end));
  body->push_back(std::move(s));
  return ExpectBlockEnd();
}

Result<ExprPtr> Parser::ParseAssignTarget(bool with_namespace, bool allow_tuple) {
  Token at = Cur();
  if (with_namespace && at.type == Tok::kName && Look().type == Tok::kOp && Look().text == ".") {
    Next();
    Next();
    OPENRL_ASSIGN_OR_RETURN(std::string attr, ExpectName());
    ExprPtr e = Make(ExprKind::kNsRef, at);
    e->name = at.text + "." + attr;
    e->items.push_back(Make(ExprKind::kName, at));
    e->items[0]->name = at.text;
    e->value = Value(attr);
    return e;
  }
  std::vector<ExprPtr> names;
  bool is_tuple = false;
  while (true) {
    if (Cur().type != Tok::kName) return Fail(Cur(), "can't assign to '" + Describe(Cur()) + "'");
    ExprPtr n = Make(ExprKind::kName, Cur());
    n->name = Cur().text;
    if (n->name == "true" || n->name == "false" || n->name == "none" || n->name == "True" || n->name == "False" || n->name == "None")
      return Fail(Cur(), "can't assign to '" + n->name + "'");
    Next();
    names.push_back(std::move(n));
    if (!allow_tuple || !IsOp(",")) break;
    Next();
    is_tuple = true;
    if (IsName("in") || IsOp("=") || Cur().type == Tok::kBlockEnd) break;
  }
  if (!is_tuple) return std::move(names[0]);
  ExprPtr t = Make(ExprKind::kTuple, at);
  t->items = std::move(names);
  return t;
}

Result<ExprPtr> Parser::ParseTuple(bool with_condexpr, bool explicit_parens, std::initializer_list<const char*> extra_ends) {
  Token at = Cur();
  std::vector<ExprPtr> args;
  bool is_tuple = false;
  while (true) {
    if (!args.empty()) OPENRL_RETURN_IF_ERROR(ExpectOp(","));
    if (IsTupleEnd(extra_ends)) break;
    OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(with_condexpr));
    args.push_back(std::move(e));
    if (IsOp(",")) is_tuple = true;
    else break;
  }
  if (!is_tuple) {
    if (!args.empty()) return std::move(args[0]);
    if (!explicit_parens) return Fail(Cur(), "Expected an expression, got '" + Describe(Cur()) + "'");
  }
  ExprPtr t = Make(ExprKind::kTuple, at);
  t->items = std::move(args);
  return t;
}

Result<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  if (++depth_ > kMaxNesting) return Fail(Cur(), "expression nested too deeply");
  Result<ExprPtr> r = with_condexpr ? ParseCondExpr() : ParseOr();
  --depth_;
  return r;
}

Result<ExprPtr> Parser::ParseCondExpr() {
  OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseOr());
  while (IsName("if")) {
    Token at = Cur();
    Next();
    ExprPtr c = Make(ExprKind::kCond, at);
    OPENRL_ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
    c->items.push_back(std::move(test));
    c->items.push_back(std::move(e));
    if (SkipName("else")) {
      OPENRL_ASSIGN_OR_RETURN(ExprPtr other, ParseCondExpr());
      c->items.push_back(std::move(other));
    } else {
      c->items.push_back(nullptr);
    }
    e = std::move(c);
  }
  return e;
}

Result<ExprPtr> Parser::ParseOr() {
  OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseAnd());
  while (IsName("or")) {
    ExprPtr b = Make(ExprKind::kBinary, Cur());
    Next();
    b->name = "or";
    OPENRL_ASSIGN_OR_RETURN(ExprPtr r, ParseAnd());
    b->items.push_back(std::move(e));
    b->items.push_back(std::move(r));
    e = std::move(b);
  }
  return e;
}

Result<ExprPtr> Parser::ParseAnd() {
  OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseNot());
  while (IsName("and")) {
    ExprPtr b = Make(ExprKind::kBinary, Cur());
    Next();
    b->name = "and";
    OPENRL_ASSIGN_OR_RETURN(ExprPtr r, ParseNot());
    b->items.push_back(std::move(e));
    b->items.push_back(std::move(r));
    e = std::move(b);
  }
  return e;
}

Result<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    ExprPtr n = Make(ExprKind::kNot, Cur());
    Next();
    if (++depth_ > kMaxNesting) return Fail(Cur(), "expression nested too deeply");
    OPENRL_ASSIGN_OR_RETURN(ExprPtr inner, ParseNot());
    --depth_;
    n->items.push_back(std::move(inner));
    return n;
  }
  return ParseCompare();
}

Result<ExprPtr> Parser::ParseCompare() {
  Token at = Cur();
  OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseBinary(0));
  ExprPtr cmp;
  while (true) {
    std::string op;
    if (Cur().type == Tok::kOp && (Cur().text == "==" || Cur().text == "!=" || Cur().text == "<" ||
                                   Cur().text == "<=" || Cur().text == ">" || Cur().text == ">=")) {
      op = Cur().text;
      Next();
    } else if (IsName("in")) {
      op = "in";
      Next();
    } else if (IsName("not") && Look().type == Tok::kName && Look().text == "in") {
      op = "notin";
      Next();
      Next();
    } else {
      break;
    }
    if (!cmp) {
      cmp = Make(ExprKind::kCompare, at);
      cmp->items.push_back(std::move(e));
    }
    OPENRL_ASSIGN_OR_RETURN(ExprPtr r, ParseBinary(0));
    cmp->ops.push_back(op);
    cmp->items.push_back(std::move(r));
  }
  if (cmp) return cmp;
  return e;
}

// Levels: 0 `+ -`, 1 `~`, 2 `* / // %`, 3 `**`.
Result<ExprPtr> Parser::ParseBinary(int level) {
  static const std::vector<std::vector<std::string>> kOps = {{"+", "-"}, {"~"}, {"*", "/", "//", "%"}, {"**"}};
  auto next_level = [&]() -> Result<ExprPtr> { return level == 3 ? ParseUnary(true) : ParseBinary(level + 1); };
  OPENRL_ASSIGN_OR_RETURN(ExprPtr e, next_level());
  while (Cur().type == Tok::kOp &&
         std::find(kOps[static_cast<size_t>(level)].begin(), kOps[static_cast<size_t>(level)].end(), Cur().text) != kOps[static_cast<size_t>(level)].end()) {
    ExprPtr b = Make(ExprKind::kBinary, Cur());
    b->name = Cur().text;
    Next();
    OPENRL_ASSIGN_OR_RETURN(ExprPtr r, next_level());
    b->items.push_back(std::move(e));
    b->items.push_back(std::move(r));
    e = std::move(b);
  }
  return e;
}

Result<ExprPtr> Parser::ParseUnary(bool with_filter) {
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    node = Make(IsOp("-") ? ExprKind::kNeg : ExprKind::kPos, Cur());
    Next();
    if (++depth_ > kMaxNesting) return Fail(Cur(), "expression nested too deeply");
    OPENRL_ASSIGN_OR_RETURN(ExprPtr inner, ParseUnary(false));
    --depth_;
    node->items.push_back(std::move(inner));
  } else {
    OPENRL_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  OPENRL_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    OPENRL_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

Result<ExprPtr> Parser::ParsePrimary() {
  Token tok = Cur();
  if (tok.type == Tok::kName) {
    Next();
    if (tok.text == "true" || tok.text == "True" || tok.text == "false" || tok.text == "False") {
      ExprPtr c = Make(ExprKind::kConst, tok);
      c->value = Value(tok.text == "true" || tok.text == "True");
      return c;
    }
    if (tok.text == "none" || tok.text == "None") {
      ExprPtr c = Make(ExprKind::kConst, tok);
      c->value = Value(nullptr);
      return c;
    }
    ExprPtr n = Make(ExprKind::kName, tok);
    n->name = tok.text;
    return n;
  }
  if (tok.type == Tok::kString) {
    std::string s;
    while (Cur().type == Tok::kString) {
      s += Cur().text;
      Next();
    }
    ExprPtr c = Make(ExprKind::kConst, tok);
    c->value = Value(std::move(s));
    return c;
  }
  if (tok.type == Tok::kInt || tok.type == Tok::kFloat) {
    Next();
    ExprPtr c = Make(ExprKind::kConst, tok);
    c->value = tok.type == Tok::kInt ? Value(tok.int_value) : Value(tok.float_value);
    return c;
  }
  if (tok.type == Tok::kOp && (tok.text == "(" || tok.text == "[" || tok.text == "{")) {
    if (++depth_ > kMaxNesting) return Fail(tok, "expression nested too deeply");
    Next();
    ExprPtr node;
    if (tok.text == "(") {
      OPENRL_ASSIGN_OR_RETURN(node, ParseTuple(true, true, {}));
      OPENRL_RETURN_IF_ERROR(ExpectOp(")"));
    } else {
      bool is_dict = tok.text == "{";
      node = Make(is_dict ? ExprKind::kDict : ExprKind::kList, tok);
      const char* close = is_dict ? "}" : "]";
      while (!IsOp(close)) {
        if (!node->items.empty()) OPENRL_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(close)) break;
        OPENRL_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
        node->items.push_back(std::move(item));
        if (is_dict) {
          OPENRL_RETURN_IF_ERROR(ExpectOp(":"));
          OPENRL_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
          node->items.push_back(std::move(v));
        }
      }
      OPENRL_RETURN_IF_ERROR(ExpectOp(close));
    }
    --depth_;
    return node;
  }
  return Fail(tok, "unexpected '" + Describe(tok) + "'");
}

Result<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (IsOp(".") || IsOp("[")) {
      OPENRL_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
    } else if (IsOp("(")) {
      ExprPtr call = Make(ExprKind::kCall, Cur());
      call->items.push_back(std::move(node));
      OPENRL_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

Result<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      OPENRL_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (IsName("is")) {
      OPENRL_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (IsOp("(")) {
      ExprPtr call = Make(ExprKind::kCall, Cur());
      call->items.push_back(std::move(node));
      OPENRL_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

Result<ExprPtr> Parser::ParseSubscript(ExprPtr node) {
  Token tok = Cur();
  Next();
  if (tok.text == ".") {
    Token attr = Cur();
    Next();
    if (attr.type == Tok::kName) {
      ExprPtr g = Make(ExprKind::kGetAttr, tok);
      g->name = attr.text;
      g->items.push_back(std::move(node));
      return g;
    }
    if (attr.type != Tok::kInt) return Fail(attr, "expected name or number");
    ExprPtr g = Make(ExprKind::kGetItem, tok);
    ExprPtr c = Make(ExprKind::kConst, attr);
    c->value = Value(attr.int_value);
    g->items.push_back(std::move(node));
    g->items.push_back(std::move(c));
    return g;
  }
  std::vector<ExprPtr> args;
  while (!IsOp("]")) {
    if (!args.empty()) OPENRL_RETURN_IF_ERROR(ExpectOp(","));
    OPENRL_ASSIGN_OR_RETURN(ExprPtr a, ParseSubscribed());
    args.push_back(std::move(a));
  }
  OPENRL_RETURN_IF_ERROR(ExpectOp("]"));
  if (args.empty()) return Fail(tok, "expected subscript expression");
  ExprPtr g = Make(ExprKind::kGetItem, tok);
  g->items.push_back(std::move(node));
  if (args.size() == 1) {
    g->items.push_back(std::move(args[0]));
  } else {
    ExprPtr t = Make(ExprKind::kTuple, tok);
    t->items = std::move(args);
    g->items.push_back(std::move(t));
  }
  return g;
}

Result<ExprPtr> Parser::ParseSubscribed() {
  Token at = Cur();
  std::vector<ExprPtr> parts;
  if (IsOp(":")) {
    Next();
    parts.push_back(nullptr);
  } else {
    OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression());
    if (!IsOp(":")) return e;
    Next();
    parts.push_back(std::move(e));
  }
  if (IsOp(":") || IsOp("]") || IsOp(",")) {
    parts.push_back(nullptr);
  } else {
    OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression());
    parts.push_back(std::move(e));
  }
  if (SkipOp(":")) {
    if (IsOp("]") || IsOp(",")) {
      parts.push_back(nullptr);
    } else {
      OPENRL_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression());
      parts.push_back(std::move(e));
    }
  } else {
    parts.push_back(nullptr);
  }
  ExprPtr s = Make(ExprKind::kSlice, at);
  s->items = std::move(parts);
  return s;
}

Status Parser::ParseCallArgs(Expr* call) {
  Token open = Cur();
  OPENRL_RETURN_IF_ERROR(ExpectOp("("));
  bool need_comma = false;
  while (!IsOp(")")) {
    if (need_comma) {
      OPENRL_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(")")) break;
    }
    if (IsOp("*") || IsOp("**")) return Fail(Cur(), "*args and **kwargs in calls are not supported");
    if (Cur().type == Tok::kName && Look().type == Tok::kOp && Look().text == "=") {
      std::string key = Cur().text;
      Next();
      Next();
      OPENRL_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
      call->kwargs.emplace_back(key, std::move(v));
    } else {
      if (!call->kwargs.empty()) return Fail(open, "invalid syntax for function call expression");
      OPENRL_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
      call->items.push_back(std::move(v));
    }
    need_comma = true;
  }
  Next();
  return Status::Ok();
}

Result<ExprPtr> Parser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp("|") || start_inline) {
    if (!start_inline) Next();
    start_inline = false;
    Token at = Cur();
    OPENRL_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (SkipOp(".")) {
      OPENRL_ASSIGN_OR_RETURN(std::string more, ExpectName());
      name += "." + more;
    }
    ExprPtr f = Make(ExprKind::kFilter, at);
    f->name = name;
    f->items.push_back(std::move(node));
    if (IsOp("(")) OPENRL_RETURN_IF_ERROR(ParseCallArgs(f.get()));
    node = std::move(f);
  }
  return node;
}

Result<ExprPtr> Parser::ParseTest(ExprPtr node) {
  Token at = Cur();
  Next();
  bool negated = SkipName("not");
  OPENRL_ASSIGN_OR_RETURN(std::string name, ExpectName());
  while (SkipOp(".")) {
    OPENRL_ASSIGN_OR_RETURN(std::string more, ExpectName());
    name += "." + more;
  }
  ExprPtr t = Make(ExprKind::kTest, at);
  t->name = name;
  t->items.push_back(std::move(node));
  const Token& c = Cur();
  if (IsOp("(")) {
    OPENRL_RETURN_IF_ERROR(ParseCallArgs(t.get()));
  } else if ((c.type == Tok::kName || c.type == Tok::kString || c.type == Tok::kInt || c.type == Tok::kFloat ||
              IsOp("(") || IsOp("[") || IsOp("{")) &&
             !IsName("else") && !IsName("or") && !IsName("and")) {
    if (IsName("is")) return Fail(c, "You cannot chain multiple tests with is");
    OPENRL_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
    OPENRL_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
    t->items.push_back(std::move(arg));
  }
  if (!negated) return t;
  ExprPtr n = Make(ExprKind::kNot, at);
  n->items.push_back(std::move(t));
  return n;
}

}  // namespace

Result<Body> ParseTokens(std::vector<Token> tokens) {
  Parser p(std::move(tokens));
  return p.ParseAll();
}

}  // namespace openrl::tmpl
