// Custom losses: the graph a create_custom_loss request carries is parsed into nodes bound to the
// operation table (custom_loss_ops*.cc) once, then run per datum. See custom_loss.h.
#include "openrl/engine/custom_loss.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

#include "openrl/engine/custom_loss_internal.h"

namespace openrl::engine {

using custom_loss::Args;
using custom_loss::OpSpec;
using custom_loss::Param;
using custom_loss::Value;
using K = Value::Kind;

struct CustomLoss::Graph {
  struct Node {
    std::string op, name, target;
    const OpSpec* spec = nullptr;             // call_function / call_method
    std::vector<std::optional<Value>> bound;  // the arguments by parameter; may hold refs
    size_t input = 0;                         // placeholder: its index in inputs
  };
  std::vector<Node> nodes;
  size_t loss = 0;                                      // the node whose value is the loss
  std::vector<std::pair<std::string, size_t>> metrics;  // metric key → node
};

namespace {

const std::regex& InputName() {
  static const std::regex re("[a-z_][a-z0-9_]{0,63}");
  return re;
}
const std::regex& NodeName() {
  static const std::regex re("[A-Za-z_][A-Za-z0-9_]{0,127}");
  return re;
}
const std::regex& MetricKey() {
  static const std::regex re("custom/[a-z0-9_./-]{1,64}:(sum|mean)");
  return re;
}

Result<at::ScalarType> DtypeNamed(const std::string& s) {
  static const std::map<std::string, at::ScalarType> kDtypes = {
      {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
      {"int64", at::kLong},    {"int32", at::kInt},      {"int16", at::kShort},  {"int8", at::kChar},
      {"uint8", at::kByte},    {"bool", at::kBool}};
  auto it = kDtypes.find(s);
  if (it == kDtypes.end()) return InvalidArgument("dtype '" + s + "' is not supported");
  return it->second;
}

// One encoded argument (tinker.types.CustomLossNode.args): JSON scalars, lists, and one-key
// objects for refs, tuples, dicts, slices, Ellipsis, non-finite floats and torch constants.
Result<Value> Decode(const Json& j, const std::map<std::string, size_t>& earlier, const std::string& where,
                     int depth) {
  if (depth > CustomLossLimits::kMaxArgumentDepth)
    return InvalidArgument(where + " nests deeper than " +
                           std::to_string(CustomLossLimits::kMaxArgumentDepth) + " levels");
  if (j.is_null()) return Value::None();
  if (j.is_boolean()) return Value::Bool(j.get<bool>());
  if (j.is_number_integer()) {
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      return InvalidArgument(where + ": integer " + j.dump() + " is out of range");
    return Value::Int(j.get<int64_t>());
  }
  if (j.is_number_float()) return Value::Float(j.get<double>());
  if (j.is_string()) return Value::Str(j.get<std::string>());
  auto items = [&](const Json& arr, const std::string& w) -> Result<std::vector<Value>> {
    std::vector<Value> out;
    for (size_t i = 0; i < arr.size(); ++i) {
      OPENRL_ASSIGN_OR_RETURN(Value v, Decode(arr[i], earlier, w + "[" + std::to_string(i) + "]", depth + 1));
      out.push_back(std::move(v));
    }
    return out;
  };
  if (j.is_array()) {
    OPENRL_ASSIGN_OR_RETURN(auto v, items(j, where));
    return Value::List(std::move(v));
  }
  if (!j.is_object() || j.size() != 1)
    return InvalidArgument(
        where + ": " + (j.is_object() ? "an encoded value is an object with one key" : "unexpected JSON"));
  const std::string key = j.begin().key();
  const Json& body = j.begin().value();
  const std::string w = where + "." + key;
  if (key == "ref") {
    if (!body.is_string()) return InvalidArgument(w + " must be a node name");
    auto it = earlier.find(body.get<std::string>());
    if (it == earlier.end())
      return InvalidArgument(w + " refers to '" + body.get<std::string>() +
                             "', which is not an earlier node (a node may only use nodes before it)");
    Value v;
    v.kind = K::kRef;
    v.s = it->first;
    v.ref = it->second;
    return v;
  }
  if (key == "tuple" || key == "slice") {
    if (!body.is_array()) return InvalidArgument(w + " must be a list");
    if (key == "slice" && body.size() != 3) return InvalidArgument(w + " must be [start, stop, step]");
    OPENRL_ASSIGN_OR_RETURN(auto v, items(body, w));
    Value out = Value::Tuple(std::move(v));
    if (key == "slice") {
      out.kind = K::kSlice;
      for (const Value& p : out.items)
        if (!p.is_none() && p.kind != K::kInt && p.kind != K::kRef)
          return InvalidArgument(w + ": a slice bound must be an int, None or a node, got " + Describe(p));
    }
    return out;
  }
  if (key == "dict") {
    if (!body.is_object()) return InvalidArgument(w + " must be an object");
    Value out;
    out.kind = K::kDict;
    for (const auto& [k, v] : body.items()) {
      OPENRL_ASSIGN_OR_RETURN(Value x, Decode(v, earlier, w + "[\"" + k + "\"]", depth + 1));
      out.dict.emplace_back(k, std::move(x));
    }
    return out;
  }
  if (key == "ellipsis") {
    if (body != true) return InvalidArgument(w + " must be true");
    Value v;
    v.kind = K::kEllipsis;
    return v;
  }
  if (key == "float") {
    const std::string s = body.is_string() ? body.get<std::string>() : "";
    if (s == "inf") return Value::Float(std::numeric_limits<double>::infinity());
    if (s == "-inf") return Value::Float(-std::numeric_limits<double>::infinity());
    if (s == "nan") return Value::Float(std::numeric_limits<double>::quiet_NaN());
    return InvalidArgument(w + " must be \"inf\", \"-inf\" or \"nan\"");
  }
  if (key == "dtype") {
    if (!body.is_string()) return InvalidArgument(w + " must be a dtype name");
    Result<at::ScalarType> t = DtypeNamed(body.get<std::string>());
    if (!t.ok()) return InvalidArgument(w + ": " + t.status().message());
    return Value::Dtype(*t);
  }
  if (key == "device" || key == "layout" || key == "memory_format") {
    if (!body.is_string()) return InvalidArgument(w + " must be a string");
    const std::string s = body.get<std::string>();
    if (key == "layout" && s != "strided")
      return InvalidArgument(w + ": layout '" + s + "' is not supported");
    if (key == "memory_format" && s != "contiguous_format" && s != "preserve_format")
      return InvalidArgument(w + ": memory format '" + s + "' is not supported");
    Value v;
    v.kind = key == "device" ? K::kDevice : key == "layout" ? K::kLayout : K::kMemoryFormat;
    v.s = s;
    return v;
  }
  return InvalidArgument(
      where + ": unknown encoding '" + key +
      "' (expected ref, tuple, dict, slice, ellipsis, float, dtype, device, layout or memory_format)");
}

// A literal (a value holding no node) must fit the parameter it is bound to; nodes are checked
// when the graph runs.
Status CheckLiteral(const Value& v, Param kind, bool required, const std::string& what) {
  if (v.kind == K::kRef) return Status::Ok();
  if (v.is_none()) {
    if (required && kind != Param::kAny) return InvalidArgument(what + " must not be None");
    return Status::Ok();
  }
  auto fail = [&](const std::string& wanted) {
    return InvalidArgument(what + " must be " + wanted + ", got " + Describe(v));
  };
  auto ints = [&](const Value& s) {
    for (const Value& x : s.items)
      if (x.kind != K::kInt && x.kind != K::kRef) return false;
    return true;
  };
  switch (kind) {
    case Param::kTensor:
      return fail("a tensor (the value of a node)");
    case Param::kOperand:
    case Param::kNumber:
      return v.is_number() ? Status::Ok() : fail("a number or a tensor");
    case Param::kInt:
      return v.kind == K::kInt ? Status::Ok() : fail("an int");
    case Param::kDims:
      return v.kind == K::kInt || (v.is_sequence() && ints(v)) ? Status::Ok()
                                                               : fail("an int or a list of ints");
    case Param::kBool:
      return v.kind == K::kBool ? Status::Ok() : fail("a bool");
    case Param::kDtype:
      return v.kind == K::kDtype ? Status::Ok() : fail("a dtype");
    case Param::kString:
      return v.kind == K::kString ? Status::Ok() : fail("a string");
    case Param::kTensors:
      if (!v.is_sequence()) return fail("a list or tuple of tensors");
      for (const Value& x : v.items)
        if (x.kind != K::kRef)
          return InvalidArgument(what + " must hold tensors (values of nodes), got " + Describe(x));
      return Status::Ok();
    case Param::kAny:
      return Status::Ok();
  }
  return Status::Ok();
}

std::string ParamNames(const OpSpec& spec) {
  std::string s;
  for (const auto& p : spec.params) s += (s.empty() ? "" : ", ") + std::string(p.name);
  return s;
}

// Binds a call's positional and keyword arguments to the operation's parameters, as Python would.
Result<std::vector<std::optional<Value>>> Bind(const OpSpec& spec, std::vector<Value> args,
                                               std::vector<std::pair<std::string, Value>> kwargs,
                                               const std::string& where) {
  const size_t n = spec.params.size();
  std::vector<std::optional<Value>> out(n);
  const size_t positional = spec.varargs_at >= 0 ? static_cast<size_t>(spec.varargs_at) : n;
  for (size_t i = 0; i < args.size() && i < positional; ++i) out[i] = std::move(args[i]);
  if (args.size() > positional) {
    if (spec.varargs_at < 0)
      return InvalidArgument(where + " takes at most " + std::to_string(n) + " positional arguments (" +
                             ParamNames(spec) + "), got " + std::to_string(args.size()));
    std::vector<Value> rest(std::make_move_iterator(args.begin() + positional),
                            std::make_move_iterator(args.end()));
    out[positional] = rest.size() == 1 ? std::move(rest[0]) : Value::List(std::move(rest));
  }
  for (auto& [key, v] : kwargs) {
    size_t i = 0;
    while (i < n && spec.params[i].name != key) ++i;
    if (i == n)
      return InvalidArgument(where + " has no parameter '" + key + "' (it takes " + ParamNames(spec) + ")");
    if (out[i]) return InvalidArgument(where + " got argument '" + key + "' twice");
    out[i] = std::move(v);
  }
  for (size_t i = 0; i < n; ++i) {
    const auto& p = spec.params[i];
    if (!out[i]) {
      if (p.required) return InvalidArgument(where + " is missing argument '" + std::string(p.name) + "'");
      continue;
    }
    OPENRL_RETURN_IF_ERROR(CheckLiteral(*out[i], p.kind, p.required, where + " argument '" + p.name + "'"));
  }
  return out;
}

Result<std::vector<CustomLossInput>> ParseInputs(const Json& j) {
  if (!j.is_array() || j.empty()) return InvalidArgument("inputs must be a non-empty list of {name, rank}");
  if (j.size() > CustomLossLimits::kMaxInputs)
    return InvalidArgument("inputs: a custom loss takes at most " +
                           std::to_string(CustomLossLimits::kMaxInputs) + " inputs, logprobs included; got " +
                           std::to_string(j.size()));
  std::vector<CustomLossInput> out;
  std::set<std::string> seen;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string w = "inputs[" + std::to_string(i) + "]";
    const Json& x = j[i];
    if (!x.is_object() || !x.contains("name") || !x["name"].is_string() || !x.contains("rank") ||
        !x["rank"].is_number_integer())
      return InvalidArgument(w + " must be {\"name\": string, \"rank\": 0|1|2}");
    for (const auto& [k, v] : x.items())
      if (k != "name" && k != "rank") return InvalidArgument(w + " has unknown field '" + k + "'");
    CustomLossInput in{x["name"].get<std::string>(), x["rank"].get<int64_t>()};
    if (!std::regex_match(in.name, InputName()))
      return InvalidArgument(w + ".name '" + in.name +
                             "' must be a lowercase name of letters, digits and underscores");
    if (!seen.insert(in.name).second) return InvalidArgument(w + ".name '" + in.name + "' is given twice");
    if (in.rank < 0 || in.rank > 2)
      return InvalidArgument(w + ".rank must be 0, 1 or 2, got " + std::to_string(in.rank));
    if (i == 0 && in.name != "logprobs")
      return InvalidArgument("inputs[0] must be logprobs, got '" + in.name + "'");
    if (i == 0 && in.rank == 0)
      return InvalidArgument(
          "inputs[0]: logprobs has rank 1 ([T]) or 2 ([T, K], for [T, K] target_tokens), got 0");
    out.push_back(std::move(in));
  }
  return out;
}

std::string NodeWhere(size_t i, const Json& node) {
  std::string w = "graph.nodes[" + std::to_string(i) + "]";
  if (node.is_object() && node.contains("name") && node["name"].is_string())
    w += " '" + node["name"].get<std::string>() + "'";
  return w;
}

struct Output {
  size_t loss = 0;
  std::vector<std::pair<std::string, size_t>> metrics;
};

// The output node's one argument: (loss, {metric: node}), as a tuple or a list.
Result<Output> ParseOutput(const Json& node, const std::map<std::string, size_t>& earlier,
                           const std::string& where) {
  if (!node.contains("args") || !node["args"].is_array() || node["args"].size() != 1)
    return InvalidArgument(where + ".args must hold one value, (loss, metrics)");
  if (node.contains("kwargs") && !node["kwargs"].empty())
    return InvalidArgument(where + ".kwargs must be empty");
  OPENRL_ASSIGN_OR_RETURN(Value v, Decode(node["args"][0], earlier, where + ".args[0]", 0));
  if (!v.is_sequence() || v.items.size() != 2 || v.items[1].kind != K::kDict)
    return InvalidArgument(where + ": a custom loss must return (loss, metrics), a tensor and a dict; got " +
                           Describe(v));
  if (v.items[0].kind != K::kRef)
    return InvalidArgument(where + ": the loss must be a tensor (the value of a node), got " +
                           Describe(v.items[0]));
  Output out;
  out.loss = v.items[0].ref;
  for (const auto& [key, m] : v.items[1].dict) {
    if (!std::regex_match(key, MetricKey()))
      return InvalidArgument(where + ": metric '" + key +
                             "' must be named custom/<name>:sum or custom/<name>:mean in lowercase");
    if (m.kind != K::kRef)
      return InvalidArgument(where + ": metric '" + key + "' must be a tensor (the value of a node), got " +
                             Describe(m));
    out.metrics.emplace_back(key, m.ref);
  }
  return out;
}

// A call_function / call_method node's arguments, decoded and bound to the operation's parameters.
Result<std::vector<std::optional<Value>>> ParseCall(const OpSpec& spec, const Json& args, const Json& kwargs,
                                                    const std::map<std::string, size_t>& earlier,
                                                    const std::string& where, const std::string& op) {
  std::vector<Value> a;
  for (size_t k = 0; k < args.size(); ++k) {
    OPENRL_ASSIGN_OR_RETURN(Value v, Decode(args[k], earlier, where + ".args[" + std::to_string(k) + "]", 0));
    a.push_back(std::move(v));
  }
  std::vector<std::pair<std::string, Value>> kw;
  for (const auto& [k, v] : kwargs.items()) {
    OPENRL_ASSIGN_OR_RETURN(Value x, Decode(v, earlier, where + ".kwargs." + k, 0));
    kw.emplace_back(k, std::move(x));
  }
  return Bind(spec, std::move(a), std::move(kw), where + " (" + op + ")");
}

}  // namespace

CustomLoss::CustomLoss(std::string name, std::vector<CustomLossInput> inputs, std::unique_ptr<Graph> graph)
    : name_(std::move(name)), inputs_(std::move(inputs)), graph_(std::move(graph)) {}
CustomLoss::~CustomLoss() = default;

Result<std::shared_ptr<const CustomLoss>> CustomLoss::Parse(const std::string& name, const Json& inputs_json,
                                                            const Json& graph_json) {
  if (name.empty() || name.size() > 128) return InvalidArgument("name must be 1-128 characters");
  OPENRL_ASSIGN_OR_RETURN(std::vector<CustomLossInput> inputs, ParseInputs(inputs_json));
  if (!graph_json.is_object()) return InvalidArgument("graph must be an object {format: 1, nodes: [...]}");
  for (const auto& [k, v] : graph_json.items())
    if (k != "format" && k != "nodes") return InvalidArgument("graph has unknown field '" + k + "'");
  if (graph_json.contains("format") && graph_json["format"] != 1)
    return InvalidArgument("graph.format " + graph_json["format"].dump() + " is not supported (1 is)");
  if (!graph_json.contains("nodes") || !graph_json["nodes"].is_array() || graph_json["nodes"].empty())
    return InvalidArgument("graph.nodes must be a non-empty list");
  const Json& nodes = graph_json["nodes"];
  if (nodes.size() > CustomLossLimits::kMaxNodes)
    return InvalidArgument("graph has " + std::to_string(nodes.size()) + " nodes; at most " +
                           std::to_string(CustomLossLimits::kMaxNodes) + " are allowed");
  auto g = std::make_unique<Graph>();
  std::map<std::string, size_t> earlier;
  size_t placeholders = 0;
  bool output = false;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Json& nj = nodes[i];
    const std::string where = NodeWhere(i, nj);
    if (output) return InvalidArgument(where + " comes after the output node, which must be last");
    if (!nj.is_object()) return InvalidArgument(where + " must be an object");
    for (const auto& [k, v] : nj.items())
      if (k != "op" && k != "name" && k != "target" && k != "args" && k != "kwargs")
        return InvalidArgument(where + " has unknown field '" + k + "'");
    for (const char* f : {"op", "name", "target"})
      if (!nj.contains(f) || !nj[f].is_string())
        return InvalidArgument(where + "." + f + " must be a string");
    Graph::Node node;
    node.op = nj["op"].get<std::string>();
    node.name = nj["name"].get<std::string>();
    node.target = nj["target"].get<std::string>();
    if (!std::regex_match(node.name, NodeName()))
      return InvalidArgument(where + ".name must be a Python identifier");
    if (earlier.count(node.name)) return InvalidArgument(where + ".name is used by an earlier node");
    static const Json kNoArgs = Json::array(), kNoKwargs = Json::object();
    const Json& args = nj.contains("args") ? nj["args"] : kNoArgs;
    const Json& kwargs = nj.contains("kwargs") ? nj["kwargs"] : kNoKwargs;
    if (!args.is_array()) return InvalidArgument(where + ".args must be a list");
    if (!kwargs.is_object()) return InvalidArgument(where + ".kwargs must be an object");
    if (node.op == "placeholder") {
      if (placeholders >= inputs.size() || node.target != inputs[placeholders].name)
        return InvalidArgument(
            where + ": placeholder '" + node.target + "' does not match inputs[" +
            std::to_string(placeholders) + "]" +
            (placeholders < inputs.size() ? " ('" + inputs[placeholders].name + "')" : " (there is none)"));
      if (!args.empty() || !kwargs.empty())
        return InvalidArgument(where + ": a placeholder takes no arguments (no defaults)");
      node.input = placeholders++;
    } else if (node.op == "output") {
      if (placeholders != inputs.size())
        return InvalidArgument(where + ": the graph has " + std::to_string(placeholders) +
                               " placeholders for " + std::to_string(inputs.size()) + " inputs");
      OPENRL_ASSIGN_OR_RETURN(Output o, ParseOutput(nj, earlier, where));
      g->loss = o.loss;
      g->metrics = std::move(o.metrics);
      output = true;
    } else if (node.op == "call_function" || node.op == "call_method") {
      const std::string key = node.op == "call_method" ? "method:" + node.target : node.target;
      auto it = custom_loss::Operations().find(key);
      if (it == custom_loss::Operations().end())
        return InvalidArgument(where + ": " + (node.op == "call_method" ? "method '" : "function '") +
                               node.target +
                               "' is not an operation this server runs (docs/tinker-api.md lists them)");
      node.spec = &it->second;
      if (node.op == "call_method" && args.empty())
        return InvalidArgument(where + ": a method call needs the tensor it is called on as args[0]");
      OPENRL_ASSIGN_OR_RETURN(node.bound, ParseCall(*node.spec, args, kwargs, earlier, where, key));
    } else if (node.op == "get_attr" || node.op == "call_module") {
      return InvalidArgument(where + ": op '" + node.op +
                             "' is not allowed; a custom loss calls torch functions and "
                             "tensor methods on logprobs and its declared inputs only");
    } else {
      return InvalidArgument(where + ".op '" + node.op + "' is not a torch.fx node kind");
    }
    earlier[node.name] = i;
    g->nodes.push_back(std::move(node));
  }
  if (!output) return InvalidArgument("graph has no output node; a custom loss returns (loss, metrics)");
  return std::shared_ptr<const CustomLoss>(new CustomLoss(name, std::move(inputs), std::move(g)));
}

namespace {

Value Resolve(const Value& v, const std::vector<Value>& values) {
  if (v.kind == K::kRef) return values[v.ref];
  if (v.items.empty() && v.dict.empty()) return v;
  Value out = v;
  for (Value& x : out.items) x = Resolve(x, values);
  for (auto& [k, x] : out.dict) x = Resolve(x, values);
  return out;
}

// Checks a node's value against the limits and adds its elements to the evaluation's `total`.
Status CheckSize(const Value& v, int64_t& total) {
  if (v.is_tensor()) {
    if (v.t.numel() > CustomLossLimits::kMaxElements)
      return InvalidArgument("its result holds " + std::to_string(v.t.numel()) + " elements, more than the " +
                             std::to_string(CustomLossLimits::kMaxElements) + " allowed");
    total += v.t.numel();
    if (total > CustomLossLimits::kMaxTotalElements)
      return InvalidArgument("the values of the nodes so far hold more than " +
                             std::to_string(CustomLossLimits::kMaxTotalElements) + " elements");
  }
  for (const Value& x : v.items) OPENRL_RETURN_IF_ERROR(CheckSize(x, total));
  return Status::Ok();
}

Result<double> MetricValue(const Value& v) {
  if (v.is_number()) return v.number();
  if (v.is_tensor() && v.t.numel() == 1) return v.t.detach().to(at::kCPU, at::kDouble).item<double>();
  return InvalidArgument("must be a one-element tensor, got " + Describe(v));
}

}  // namespace

Result<CustomLossResult> CustomLoss::Evaluate(const at::Tensor& logprobs,
                                              const std::map<std::string, at::Tensor>& loss_fn_inputs,
                                              int64_t datum_index) const {
  const std::string where = "data[" + std::to_string(datum_index) + "]";
  const std::string loss = "custom loss '" + name_ + "'";
  if (logprobs.dim() != inputs_[0].rank) {  // logprobs take the rank of the datum's target_tokens
    std::ostringstream s;
    s << where << ".loss_fn_inputs.target_tokens has shape " << logprobs.sizes()
      << ", so its logprobs have rank " << logprobs.dim() << ", but " << loss
      << " declared logprobs with rank " << inputs_[0].rank;
    return InvalidArgument(s.str());
  }
  std::vector<Value> values(graph_->nodes.size());
  int64_t elements = 0;  // in every value made so far (views counted too): bounds an evaluation's memory
  for (size_t i = 0; i < graph_->nodes.size(); ++i) {
    const Graph::Node& node = graph_->nodes[i];
    if (node.op == "placeholder") {
      const CustomLossInput& in = inputs_[node.input];
      if (node.input == 0) {
        values[i] = Value::Of(logprobs);
        continue;
      }
      auto it = loss_fn_inputs.find(in.name);
      const std::string field = where + ".loss_fn_inputs." + in.name;
      if (it == loss_fn_inputs.end() || !it->second.defined())
        return InvalidArgument(field + " is missing; " + loss + " reads it");
      if (it->second.dim() != in.rank) {
        std::ostringstream s;
        s << field << " has rank " << it->second.dim() << " (shape " << it->second.sizes() << "), but "
          << loss << " declared " << in.name << " with rank " << in.rank;
        return InvalidArgument(s.str());
      }
      values[i] = Value::Of(it->second.detach().to(logprobs.device()));
      continue;
    }
    if (node.op == "output") continue;
    const std::string call = where + ": " + loss + ", node '" + node.name + "' (" +
                             (node.op == "call_method" ? "method " : "") + node.target + ")";
    std::vector<std::optional<Value>> bound;
    for (const auto& b : node.bound)
      bound.push_back(b ? std::optional<Value>(Resolve(*b, values)) : std::nullopt);
    Args args(*node.spec, std::move(bound), logprobs.device());
    Result<Value> r = InvalidArgument("");
    try {
      r = node.spec->run(args);
    } catch (const c10::Error& e) {
      r = InvalidArgument(e.what_without_backtrace());
    } catch (const std::exception& e) {
      r = InvalidArgument(e.what());
    }
    if (!r.ok()) return InvalidArgument(call + ": " + r.status().message());
    Status size = CheckSize(*r, elements);
    if (!size.ok()) return InvalidArgument(call + ": " + size.message());
    values[i] = std::move(*r);
  }
  CustomLossResult out;
  const Value& lv = values[graph_->loss];
  if (!lv.is_tensor() || lv.t.dim() != 0 || !lv.t.is_floating_point())
    return InvalidArgument(where + ": " + loss + " must return a scalar floating-point loss, got " +
                           Describe(lv));
  out.loss = lv.t;
  for (const auto& [key, node] : graph_->metrics) {
    Result<double> m = MetricValue(values[node]);
    if (!m.ok())
      return InvalidArgument(where + ": " + loss + " metric '" + key + "' " + m.status().message());
    out.metrics.emplace_back(key, *m);
  }
  return out;
}

std::vector<std::string> CustomLoss::SupportedOperations() {
  std::vector<std::string> out;
  for (const auto& [name, spec] : custom_loss::Operations()) out.push_back(name);
  return out;
}

}  // namespace openrl::engine
