// Syntax tree of a parsed Jinja template: expressions (Expr) and statements (Stmt).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "openrl/template/value.h"

namespace openrl::tmpl {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind : uint8_t {
  kConst,     // value
  kName,      // name
  kNsRef,     // name.attr as an assignment target
  kList,      // items
  kTuple,     // items
  kDict,      // items: key0, value0, key1, value1, ...
  kGetAttr,   // items[0].name
  kGetItem,   // items[0][items[1]]
  kSlice,     // items[0..2] start/stop/step, each may be null
  kCall,      // items[0](items[1..]; kwargs)
  kFilter,    // items[0] | name(items[1..]; kwargs); items[0] null inside filter blocks
  kTest,      // items[0] is name(items[1..]; kwargs)
  kNot, kNeg, kPos,  // items[0]
  kBinary,    // items[0] name items[1]: + - * / // % ** ~ and or
  kCompare,   // items[0] ops[i] items[i+1]: == != < <= > >= in notin
  kCond,      // items[1] if items[0] else items[2] (items[2] may be null)
};

struct Expr {
  ExprKind kind;
  int line = 0;
  int col = 0;
  std::string name;
  Value value;
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

enum class StmtKind : uint8_t {
  kData,        // text
  kPrint,       // expr
  kIf,          // conds[i] -> bodies[i]; else_body
  kFor,         // target in expr [if cond]: body; else_body
  kSet,         // target = expr
  kSetBlock,    // target = body rendered, piped through filter (may be null)
  kMacro,       // name(params = defaults): body
  kCallBlock,   // expr (a call) with `caller` bound to body (params)
  kFilterBlock, // filter (chain with null innermost target) applied to body
  kWith,        // targets = values: body
  kBreak, kContinue,
  kScope,       // body rendered in place ({% generation %})
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  int col = 0;
  std::string text;
  ExprPtr expr;
  ExprPtr target;
  ExprPtr cond;
  ExprPtr filter;
  std::vector<ExprPtr> conds;
  std::vector<Body> bodies;
  Body body;
  Body else_body;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // aligned with params; null where none
  std::vector<ExprPtr> targets;
  std::vector<ExprPtr> values;
};

}  // namespace openrl::tmpl
