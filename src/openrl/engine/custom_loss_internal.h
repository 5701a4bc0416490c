// Shared by custom_loss.cc (parsing, validation, evaluation), custom_loss_values.cc (values,
// argument access, the table's registry) and the operation table: custom_loss_ops.cc (operators,
// elementwise math, math.*), custom_loss_ops_tensor.cc (reductions, softmax and norms, selection,
// the losses of torch.nn.functional) and custom_loss_ops_shape.cc (shapes, indexing, attributes,
// creation, conversion).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "openrl/core/status.h"

namespace openrl::engine::custom_loss {

// A value of the graph: a literal argument as the SDK encodes it, or what a node evaluates to.
struct Value {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTensor,
    kList,
    kTuple,
    kDict,
    kSlice,
    kEllipsis,
    kDtype,
    kDevice,
    kLayout,
    kMemoryFormat,
    kRef,  // parsed graphs only: the value of an earlier node
  };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // string; device, layout and memory_format names; kRef: the node's name
  at::Tensor t;
  at::ScalarType dtype = at::kFloat;
  std::vector<Value> items;                         // list, tuple; slice: start, stop, step
  std::vector<std::pair<std::string, Value>> dict;  // in the graph's order
  size_t ref = 0;                                   // kRef: the node's index

  static Value None() { return {}; }
  static Value Bool(bool v);
  static Value Int(int64_t v);
  static Value Float(double v);
  static Value Str(std::string v);
  static Value Of(at::Tensor v);
  static Value Tuple(std::vector<Value> v);
  static Value List(std::vector<Value> v);
  static Value Dtype(at::ScalarType v);

  bool is_none() const { return kind == Kind::kNone; }
  bool is_tensor() const { return kind == Kind::kTensor; }
  bool is_number() const { return kind == Kind::kBool || kind == Kind::kInt || kind == Kind::kFloat; }
  bool is_sequence() const { return kind == Kind::kList || kind == Kind::kTuple; }
  bool contains_ref() const;
  double number() const { return kind == Kind::kFloat ? f : kind == Kind::kInt ? static_cast<double>(i) : b; }
};

// "a float", "a tensor of shape [3, 4] (float32)", "a tuple of 2", ... for error messages.
std::string Describe(const Value& v);
// A Python number as a 0-dim "wrapped number" tensor: it takes part in type promotion the way a
// Python scalar does in torch (0.1 * float32 stays float32).
at::Tensor Wrapped(const Value& number);

// What a parameter accepts. Literals are checked against it when the graph is parsed; values of
// nodes when it runs.
enum class Param {
  kTensor,   // a tensor
  kOperand,  // a tensor or a number
  kNumber,   // a number (a one-element tensor is read as one, as Python's float() would)
  kInt,      // an integer
  kDims,     // an integer, or a list/tuple of them
  kBool,
  kDtype,
  kString,
  kTensors,  // a list/tuple of tensors
  kAny,
};

struct ParamSpec {
  const char* name;
  Param kind;
  bool required = false;
};

struct OpSpec {
  std::vector<ParamSpec> params;
  // When >= 0: the positional arguments from this parameter on are collected into it, as for
  // x.reshape(2, 3) or torch.zeros(2, 3); the parameters after it are keyword-only.
  int varargs_at = -1;
  std::function<Result<Value>(const class Args&)> run;
};

// The arguments of one call, bound to the operation's parameters; accessors check the kind and
// name the parameter in their errors.
class Args {
 public:
  Args(const OpSpec& spec, std::vector<std::optional<Value>> values, at::Device device)
      : spec_(spec), values_(std::move(values)), device_(device) {}

  bool has(size_t i) const { return values_[i].has_value() && !values_[i]->is_none(); }
  const Value& get(size_t i) const { return *values_[i]; }
  at::Device device() const { return device_; }  // where created tensors go

  Result<at::Tensor> Tensor(size_t i) const;
  Result<at::Tensor> Operand(size_t i) const;  // a number becomes a wrapped 0-dim tensor
  Result<at::Scalar> Scalar(size_t i) const;
  Result<double> Number(size_t i, std::optional<double> fallback = std::nullopt) const;
  Result<int64_t> Int(size_t i, std::optional<int64_t> fallback = std::nullopt) const;
  Result<bool> Bool(size_t i, bool fallback) const;
  Result<std::optional<std::vector<int64_t>>> Dims(size_t i) const;  // nullopt when not given
  Result<std::vector<int64_t>> Ints(size_t i) const;
  Result<std::optional<at::ScalarType>> Dtype(size_t i) const;
  Result<std::string> String(size_t i, const std::string& fallback) const;
  Result<std::vector<at::Tensor>> Tensors(size_t i) const;
  Status Error(size_t i, const std::string& what) const;  // "argument 'dim' ..."

 private:
  const OpSpec& spec_;
  std::vector<std::optional<Value>> values_;
  at::Device device_;
};

using OpTable = std::map<std::string, OpSpec>;

// The operations, keyed as a graph names them: "torch.exp", "operator.add", "getattr",
// "math.log", "method:sum" for a call_method node.
const OpTable& Operations();
void AddArithmeticOps(OpTable& table);  // custom_loss_ops.cc
void AddTensorOps(OpTable& table);      // custom_loss_ops_tensor.cc
void AddShapeOps(OpTable& table);       // custom_loss_ops_shape.cc

// Registers `spec` under every name in `names`.
void Def(OpTable& table, const std::vector<std::string>& names, std::vector<ParamSpec> params,
         std::function<Result<Value>(const Args&)> run, int varargs_at = -1);
// "torch.<name>" and "method:<name>": a torch function that is also a Tensor method.
std::vector<std::string> FnAndMethod(const std::string& name);
// `names` and then `more`.
std::vector<std::string> Plus(std::vector<std::string> names, std::initializer_list<std::string> more);
// INVALID_ARGUMENT when a tensor of `sizes` would exceed CustomLossLimits::kMaxElements.
Status CheckElements(const std::vector<int64_t>& sizes, const std::string& what);

}  // namespace openrl::engine::custom_loss
