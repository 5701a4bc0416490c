// MetadataStore: the one interface to OpenRL's metadata database (SQLite by default, PostgreSQL
// later), with transactions, prepared statements with typed binding, and row reading.
//
// SQL dialect — write portable SQL so one migration list serves both backends:
//  * `?` placeholders only (positional, numbered from 1); the PostgreSQL backend rewrites them
//    to $1, $2, ….
//  * Column types INTEGER (int64), REAL (double), TEXT, BLOB; the PG backend maps BLOB → BYTEA
//    and REAL → DOUBLE PRECISION. Timestamps are TEXT in ISO 8601 UTC (FormatIso8601Utc).
//  * Generate ids in the application (NewId) rather than relying on rowid/SERIAL; to read back
//    generated values use `INSERT … RETURNING …` (SQLite ≥ 3.35 and PG both support it).
//  * Standard SQL otherwise: no `INSERT OR REPLACE` (use `INSERT … ON CONFLICT (…) DO UPDATE`),
//    no backend-specific functions in migrations or queries.
//
//   OPENRL_RETURN_IF_ERROR(store.Transaction([&](Tx& tx) -> Status {
//     OPENRL_ASSIGN_OR_RETURN(int64_t n, tx.Exec("UPDATE runs SET state = ? WHERE id = ?", {"done", id}));
//     if (n == 0) return NotFound("run " + id);
//     return tx.Exec("INSERT INTO audit (id, what) VALUES (?, ?)", {NewId("evt"), "run done"}).status();
//   }));
#pragma once

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "openrl/core/status.h"

namespace openrl::store {

// Wraps bytes so they bind as BLOB rather than TEXT.
struct Blob {
  std::string bytes;
  bool operator==(const Blob&) const = default;
};

// One SQL value: NULL, INTEGER (int64), REAL (double), TEXT or BLOB.
class Value {
 public:
  enum class Type : uint8_t { kNull, kInt64, kDouble, kText, kBlob };

  Value() = default;
  Value(std::nullptr_t) {}  // NOLINT(google-explicit-constructor): reads naturally in param lists
  template <std::integral I>
  Value(I v) : v_(static_cast<int64_t>(v)) {}  // NOLINT
  Value(double v) : v_(v) {}                  // NOLINT
  Value(std::string v) : v_(std::move(v)) {}  // NOLINT
  Value(std::string_view v) : v_(std::string(v)) {}  // NOLINT
  Value(const char* v) : v_(std::string(v)) {}       // NOLINT
  Value(Blob v) : v_(std::move(v)) {}                // NOLINT

  Type type() const { return static_cast<Type>(v_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  // Accessors require the matching type (checked with assert); Row offers checked getters.
  int64_t int64() const { return std::get<int64_t>(v_); }
  double real() const { return std::get<double>(v_); }
  const std::string& text() const { return std::get<std::string>(v_); }
  const std::string& blob() const { return std::get<Blob>(v_).bytes; }
  bool operator==(const Value&) const = default;

 private:
  std::variant<std::monostate, int64_t, double, std::string, Blob> v_;
};

std::string_view ValueTypeName(Value::Type type);  // "NULL", "INTEGER", "REAL", "TEXT", "BLOB"

// One result row, with checked typed access by column name.
class Row {
 public:
  Row(std::shared_ptr<const std::vector<std::string>> names, std::vector<Value> values);
  size_t size() const { return values_.size(); }
  const std::string& name(size_t i) const { return (*names_)[i]; }
  const Value& value(size_t i) const { return values_[i]; }

  // Errors (INTERNAL: a query/code mismatch) name the column and the types involved.
  Result<const Value*> Get(std::string_view column) const;
  Result<bool> IsNull(std::string_view column) const;
  Result<int64_t> Int64(std::string_view column) const;
  Result<double> Double(std::string_view column) const;  // INTEGER values convert
  Result<std::string> Text(std::string_view column) const;
  Result<std::string> Bytes(std::string_view column) const;  // BLOB
  Result<std::optional<int64_t>> OptionalInt64(std::string_view column) const;
  Result<std::optional<std::string>> OptionalText(std::string_view column) const;

 private:
  std::shared_ptr<const std::vector<std::string>> names_;
  std::vector<Value> values_;
};

// A prepared statement; valid only inside the transaction that prepared it.
class Statement {
 public:
  virtual ~Statement() = default;
  // `index` is 1-based: the first `?` is parameter 1.
  virtual Status Bind(int index, const Value& value) = 0;
  virtual int ParameterCount() const = 0;
  // True when a row is ready (read it with ReadRow), false when the statement is done.
  virtual Result<bool> Step() = 0;
  virtual Row ReadRow() const = 0;
  // Rows changed by the last completed INSERT/UPDATE/DELETE.
  virtual int64_t ChangedRows() const = 0;
  // Rewinds for another execution and clears the bindings.
  virtual Status Reset() = 0;

  Status BindInt64(int index, int64_t v) { return Bind(index, Value(v)); }
  Status BindDouble(int index, double v) { return Bind(index, Value(v)); }
  Status BindText(int index, std::string_view v) { return Bind(index, Value(v)); }
  Status BindBlob(int index, std::string_view v) { return Bind(index, Value(Blob{std::string(v)})); }
  Status BindNull(int index) { return Bind(index, Value()); }
  // Binds params[i] to parameter i+1; the count must match the statement's.
  Status BindAll(const std::vector<Value>& params);
};

// A transaction handed to Transaction/Read callbacks.
class Tx {
 public:
  virtual ~Tx() = default;
  // One SQL statement; errors name the database and the SQL.
  virtual Result<std::unique_ptr<Statement>> Prepare(std::string_view sql) = 0;
  // Several ';'-separated statements without parameters (migrations).
  virtual Status ExecScript(std::string_view sql) = 0;
  virtual Result<bool> TableExists(std::string_view table) = 0;
  virtual bool read_only() const = 0;

  // Runs a statement to completion; returns the number of rows changed.
  Result<int64_t> Exec(std::string_view sql, const std::vector<Value>& params = {});
  Result<std::vector<Row>> Query(std::string_view sql, const std::vector<Value>& params = {});
  // The first row, or nullopt when there is none.
  Result<std::optional<Row>> QueryOne(std::string_view sql, const std::vector<Value>& params = {});
};

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;
  // Runs `fn` in one read-write transaction: committed if `fn` returns OK, rolled back otherwise
  // (and `fn`'s status is returned unchanged). Writers are serialized. Calling Transaction again
  // from inside `fn` is an error (FAILED_PRECONDITION): pass the Tx down instead.
  virtual Status Transaction(const std::function<Status(Tx&)>& fn) = 0;
  // Runs `fn` against a consistent read-only snapshot; runs concurrently with a writer.
  virtual Status Read(const std::function<Status(Tx&)>& fn) = 0;
  // Where the data lives (file path or connection string without secrets), for messages.
  virtual const std::string& location() const = 0;
  virtual std::string_view backend() const = 0;
};

}  // namespace openrl::store
