#include "openrl/template/parser.h"

#include <algorithm>
#include <initializer_list>

#include "openrl/template/parser_internal.h"

namespace openrl::tmpl {
namespace parser_internal {

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

}  // namespace parser_internal

Result<Body> ParseTokens(std::vector<Token> tokens) {
  parser_internal::Parser p(std::move(tokens));
  return p.ParseAll();
}

}  // namespace openrl::tmpl
