// Expression parsing of the template parser (precedence climbing down to primaries, filters,
// tests, subscripts and calls). Statements are in parser.cc.
#include <algorithm>
#include <initializer_list>

#include "openrl/template/parser_internal.h"

namespace openrl::tmpl {
namespace parser_internal {

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

Result<ExprPtr> Parser::ParseOr() { return ParseLogical("or", &Parser::ParseAnd); }

Result<ExprPtr> Parser::ParseAnd() { return ParseLogical("and", &Parser::ParseNot); }

// Left-associative `a <op> b <op> c` where each operand is parsed by `operand`.
Result<ExprPtr> Parser::ParseLogical(const char* op, Result<ExprPtr> (Parser::*operand)()) {
  OPENRL_ASSIGN_OR_RETURN(ExprPtr e, (this->*operand)());
  while (IsName(op)) {
    ExprPtr b = Make(ExprKind::kBinary, Cur());
    Next();
    b->name = op;
    OPENRL_ASSIGN_OR_RETURN(ExprPtr r, (this->*operand)());
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

}  // namespace parser_internal
}  // namespace openrl::tmpl
