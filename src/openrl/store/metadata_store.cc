#include "openrl/store/metadata_store.h"

namespace openrl::store {
namespace {

std::string ShortSql(std::string_view sql) {
  std::string s(sql.substr(0, 120));
  for (char& c : s) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return sql.size() > 120 ? s + "…" : s;
}

}  // namespace

std::string_view ValueTypeName(Value::Type type) {
  switch (type) {
    case Value::Type::kNull: return "NULL";
    case Value::Type::kInt64: return "INTEGER";
    case Value::Type::kDouble: return "REAL";
    case Value::Type::kText: return "TEXT";
    case Value::Type::kBlob: return "BLOB";
  }
  return "?";
}

Row::Row(std::shared_ptr<const std::vector<std::string>> names, std::vector<Value> values)
    : names_(std::move(names)), values_(std::move(values)) {}

Result<const Value*> Row::Get(std::string_view column) const {
  for (size_t i = 0; i < values_.size(); ++i) {
    if ((*names_)[i] == column) return &values_[i];
  }
  std::string cols;
  for (const std::string& n : *names_) cols += (cols.empty() ? "" : ", ") + n;
  return Internal("no column '" + std::string(column) + "' in result (columns: " + cols + ")");
}

namespace {

Status TypeError(std::string_view column, std::string_view want, const Value& got) {
  return Internal("column '" + std::string(column) + "': expected " + std::string(want) + ", got " +
                  std::string(ValueTypeName(got.type())));
}

}  // namespace

Result<bool> Row::IsNull(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  return v->is_null();
}

Result<int64_t> Row::Int64(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  if (v->type() != Value::Type::kInt64) return TypeError(column, "INTEGER", *v);
  return v->int64();
}

Result<double> Row::Double(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  if (v->type() == Value::Type::kInt64) return static_cast<double>(v->int64());
  if (v->type() != Value::Type::kDouble) return TypeError(column, "REAL", *v);
  return v->real();
}

Result<std::string> Row::Text(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  if (v->type() != Value::Type::kText) return TypeError(column, "TEXT", *v);
  return v->text();
}

Result<std::string> Row::Bytes(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  if (v->type() != Value::Type::kBlob) return TypeError(column, "BLOB", *v);
  return v->blob();
}

Result<std::optional<int64_t>> Row::OptionalInt64(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  if (v->is_null()) return std::optional<int64_t>();
  if (v->type() != Value::Type::kInt64) return TypeError(column, "INTEGER or NULL", *v);
  return std::optional<int64_t>(v->int64());
}

Result<std::optional<std::string>> Row::OptionalText(std::string_view column) const {
  OPENRL_ASSIGN_OR_RETURN(const Value* v, Get(column));
  if (v->is_null()) return std::optional<std::string>();
  if (v->type() != Value::Type::kText) return TypeError(column, "TEXT or NULL", *v);
  return std::optional<std::string>(v->text());
}

Status Statement::BindAll(const std::vector<Value>& params) {
  if (static_cast<int>(params.size()) != ParameterCount())
    return InvalidArgument("statement has " + std::to_string(ParameterCount()) + " parameters, " +
                           std::to_string(params.size()) + " values given");
  for (size_t i = 0; i < params.size(); ++i) OPENRL_RETURN_IF_ERROR(Bind(static_cast<int>(i) + 1, params[i]));
  return Status::Ok();
}

Result<int64_t> Tx::Exec(std::string_view sql, const std::vector<Value>& params) {
  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<Statement> stmt, Prepare(sql));
  Status bound = stmt->BindAll(params);
  if (!bound.ok()) return bound.WithContext("`" + ShortSql(sql) + "`");
  while (true) {
    OPENRL_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
  }
  return stmt->ChangedRows();
}

Result<std::vector<Row>> Tx::Query(std::string_view sql, const std::vector<Value>& params) {
  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<Statement> stmt, Prepare(sql));
  Status bound = stmt->BindAll(params);
  if (!bound.ok()) return bound.WithContext("`" + ShortSql(sql) + "`");
  std::vector<Row> rows;
  while (true) {
    OPENRL_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) break;
    rows.push_back(stmt->ReadRow());
  }
  return rows;
}

Result<std::optional<Row>> Tx::QueryOne(std::string_view sql, const std::vector<Value>& params) {
  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<Statement> stmt, Prepare(sql));
  Status bound = stmt->BindAll(params);
  if (!bound.ok()) return bound.WithContext("`" + ShortSql(sql) + "`");
  OPENRL_ASSIGN_OR_RETURN(bool row, stmt->Step());
  if (!row) return std::optional<Row>();
  return std::optional<Row>(stmt->ReadRow());
}

}  // namespace openrl::store
