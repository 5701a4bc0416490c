// Internal to the template parser: the recursive-descent Parser shared by parser.cc
// (statements) and parser_expr.cc (expressions). Not for use outside template/.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "openrl/template/parser.h"

namespace openrl::tmpl {
namespace parser_internal {

inline constexpr int kMaxNesting = 128;

inline std::string Describe(const Token& t) {
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
  Result<ExprPtr> ParseLogical(const char* op, Result<ExprPtr> (Parser::*operand)());
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
}  // namespace parser_internal
}  // namespace openrl::tmpl
