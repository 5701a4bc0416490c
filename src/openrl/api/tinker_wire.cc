#include "openrl/api/tinker_wire.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "tinker_public.pb.h"

namespace openrl::api {
namespace {

namespace pb = tinker_public;

std::string Field(const std::string& datum, const std::string& name) {
  return datum + ".loss_fn_inputs." + name;
}

template <typename T>
Result<std::vector<T>> Unpack(const std::string& bytes, const std::string& where) {
  if (bytes.size() % sizeof(T) != 0)
    return InvalidArgument(where + ": " + std::to_string(bytes.size()) + " bytes is not a whole number of " +
                           std::to_string(sizeof(T)) + "-byte values");
  std::vector<T> v(bytes.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
  return v;
}

// A sparse tensor is rebuilt dense: its rows are the datum's input tokens, and at most this many
// columns (targets per position) are accepted, so a small request cannot ask for a huge tensor.
constexpr int64_t kMaxColumns = 1024;

// A dense tensor from a proto Tensor: int64/int32 → int64, float32/bf16 → float32. `rows` is the
// datum's number of input tokens, the first dimension a sparse CSR tensor must have.
Result<at::Tensor> TensorFromProto(const pb::Tensor& t, const std::string& where, int64_t rows) {
  int64_t numel = 1;
  std::vector<int64_t> shape(t.shape().begin(), t.shape().end());
  for (int64_t d : shape) {
    if (d < 0) return InvalidArgument(where + ": negative dimension in shape");
    if (d > 0 && numel > std::numeric_limits<int64_t>::max() / d)
      return InvalidArgument(where + ": shape is too large");
    numel *= d;
  }
  at::ScalarType type;
  size_t item = 0;
  switch (t.dtype()) {
    case pb::DTYPE_FLOAT32: type = at::kFloat; item = 4; break;
    case pb::DTYPE_INT64: type = at::kLong; item = 8; break;
    case pb::DTYPE_INT32: type = at::kInt; item = 4; break;
    case pb::DTYPE_BFLOAT16: type = at::kBFloat16; item = 2; break;
    default: return InvalidArgument(where + ": unsupported dtype " + std::to_string(t.dtype()));
  }
  at::Tensor out;
  if (t.has_sparse_csr()) {
    if (shape.size() != 2) return InvalidArgument(where + ": a sparse CSR tensor must be 2-D");
    if (shape[0] != rows)
      return InvalidArgument(where + ": a sparse CSR tensor of " + std::to_string(shape[0]) +
                             " rows; the datum has " + std::to_string(rows) + " input tokens");
    if (shape[1] > kMaxColumns)
      return InvalidArgument(where + ": " + std::to_string(shape[1]) + " columns; at most " +
                             std::to_string(kMaxColumns) + " values per position are accepted");
    const auto& csr = t.sparse_csr();
    OPENRL_ASSIGN_OR_RETURN(auto crow, Unpack<int64_t>(csr.crow_indices(), where + ".crow_indices"));
    OPENRL_ASSIGN_OR_RETURN(auto col, Unpack<int64_t>(csr.col_indices(), where + ".col_indices"));
    if (static_cast<int64_t>(crow.size()) != shape[0] + 1 || csr.values().size() != col.size() * item ||
        (!crow.empty() && (crow.front() != 0 || crow.back() != static_cast<int64_t>(col.size()))))
      return InvalidArgument(where + ": sparse CSR indices do not match the shape and values");
    std::vector<int64_t> row_of(col.size());
    for (int64_t r = 0; r < shape[0]; ++r) {
      if (crow[r] > crow[r + 1]) return InvalidArgument(where + ": crow_indices decrease");
      for (int64_t k = crow[r]; k < crow[r + 1]; ++k) {
        if (col[k] < 0 || col[k] >= shape[1]) return InvalidArgument(where + ": column index out of range");
        row_of[k] = r;
      }
    }
    int64_t nnz = static_cast<int64_t>(col.size());
    at::Tensor values = at::empty({nnz}, at::TensorOptions().dtype(type));
    if (nnz) std::memcpy(values.data_ptr(), csr.values().data(), csr.values().size());
    out = at::zeros(shape, at::TensorOptions().dtype(type));
    if (nnz) out.index_put_({at::tensor(row_of, at::kLong), at::tensor(col, at::kLong)}, values);
  } else {
    if (t.dense().size() % item != 0 || t.dense().size() / item != static_cast<size_t>(numel))
      return InvalidArgument(where + ": " + std::to_string(t.dense().size()) + " bytes do not hold shape [" +
                             [&] {
                               std::string s;
                               for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
                               return s;
                             }() +
                             "]");
    out = at::empty(shape, at::TensorOptions().dtype(type));
    if (numel) std::memcpy(out.data_ptr(), t.dense().data(), t.dense().size());
  }
  if (type == at::kInt) out = out.to(at::kLong);
  if (type == at::kBFloat16) out = out.to(at::kFloat);
  return out;
}

// A per-token loss input: (T,), or (T, 1) taken as (T,).
Result<at::Tensor> PerToken(at::Tensor t, const std::string& where) {
  if (t.dim() == 2 && t.size(1) == 1) t = t.reshape({t.size(0)});
  if (t.dim() != 1) return InvalidArgument(where + " must be a 1-D tensor with one value per input token");
  return t;
}

// Shapes a datum's loss inputs and checks its targets. Tinker's loss inputs are per token: (T,), or
// (T, 1) taken as (T,). target_tokens may also be (T, K), K targets per position (top-K
// distillation, which cross_entropy takes): its weights are then (T, K) too, which the loss checks.
// A custom loss declares the ranks of its other inputs itself.
Status CheckDatum(engine::TrainDatum& d, bool custom, const std::string& where) {
  auto it = d.loss_inputs.find("target_tokens");
  if (it == d.loss_inputs.end()) return InvalidArgument(where + ".loss_fn_inputs.target_tokens is missing");
  const bool several = it->second.dim() == 2 && it->second.size(1) > 1;
  for (auto& [name, t] : d.loss_inputs) {
    if (several && (name == "target_tokens" || name == "weights")) continue;
    if (custom && name != "target_tokens") continue;
    OPENRL_ASSIGN_OR_RETURN(t, PerToken(t, Field(where, name)));
  }
  if (it->second.scalar_type() != at::kLong)
    return InvalidArgument(where + ".loss_fn_inputs.target_tokens must hold integers (int64)");
  if (it->second.size(0) != static_cast<int64_t>(d.tokens.size()))
    return InvalidArgument(where + ".loss_fn_inputs.target_tokens has " + std::to_string(it->second.size(0)) +
                           " entries, expected one per input token (" + std::to_string(d.tokens.size()) + ")");
  if (d.tokens.empty()) return InvalidArgument(where + ".model_input is empty");
  return Status::Ok();
}

Result<std::map<std::string, double>> NumberConfig(const std::map<std::string, double>& numbers,
                                                   const std::map<std::string, std::string>& texts) {
  if (!texts.empty())
    return InvalidArgument("loss_fn_config." + texts.begin()->first + ": text values are not supported by the "
                           "built-in losses");
  return numbers;
}

// A custom loss (SDK 0.38's create_custom_loss) is named by its one text setting, loss_id.
Result<std::string> CustomLossId(const std::map<std::string, double>& numbers,
                                 const std::map<std::string, std::string>& texts) {
  const char* takes = " is not a setting of the custom loss (it takes loss_id)";
  if (!numbers.empty()) return InvalidArgument("loss_fn_config." + numbers.begin()->first + takes);
  for (const auto& [k, v] : texts)
    if (k != "loss_id") return InvalidArgument("loss_fn_config." + k + takes);
  auto it = texts.find("loss_id");
  if (it == texts.end() || it->second.empty())
    return InvalidArgument(
        "loss_fn 'custom' needs loss_fn_config.loss_id, the id create_custom_loss returned");
  return it->second;
}

Status MakeWork(std::string loss_fn, const std::map<std::string, double>& numbers,
                const std::map<std::string, std::string>& texts, std::vector<engine::TrainDatum> data,
                bool forward_only, ForwardBackwardCall& call) {
  engine::ForwardBackwardWork work;
  if (loss_fn == "custom") {
    OPENRL_ASSIGN_OR_RETURN(call.custom_loss_id, CustomLossId(numbers, texts));
    work.loss.name = "custom";
  } else {
    OPENRL_ASSIGN_OR_RETURN(auto config, NumberConfig(numbers, texts));
    OPENRL_ASSIGN_OR_RETURN(work.loss, engine::LossSpec::Make(std::move(loss_fn), config));
  }
  if (data.empty()) return InvalidArgument("forward_backward: data is empty");
  work.data = std::move(data);
  work.forward_only = forward_only;
  call.work = std::move(work);
  return Status::Ok();
}

}  // namespace

Status DecodeForwardBackwardProto(const std::string& body, ForwardBackwardCall& call) {
  pb::ForwardBackwardRequest req;
  if (!req.ParseFromString(body))
    return InvalidArgument("request body is not a valid protobuf tinker_public.ForwardBackwardRequest");
  call.model_id = req.model_id();
  call.seq_id = req.seq_id();
  if (call.model_id.empty()) return InvalidArgument("forward_backward: model_id is missing");
  const bool custom = req.loss_fn() == "custom";
  std::vector<engine::TrainDatum> data;
  for (int i = 0; i < req.data_size(); ++i) {
    const pb::Datum& d = req.data(i);
    std::string where = "data[" + std::to_string(i) + "]";
    engine::TrainDatum td;
    for (int c = 0; c < d.model_input_size(); ++c) {
      const pb::Chunk& chunk = d.model_input(c);
      if (!chunk.has_encoded_text())
        return InvalidArgument(where + ".model_input[" + std::to_string(c) +
                               "]: only encoded_text chunks are supported (this server serves text models)");
      OPENRL_ASSIGN_OR_RETURN(auto toks, Unpack<int32_t>(chunk.encoded_text().tokens(),
                                                         where + ".model_input[" + std::to_string(c) + "].tokens"));
      td.tokens.insert(td.tokens.end(), toks.begin(), toks.end());
    }
    for (const auto& [name, tensor] : d.loss_fn_inputs()) {
      OPENRL_ASSIGN_OR_RETURN(td.loss_inputs[name], TensorFromProto(tensor, Field(where, name),
                                                                    static_cast<int64_t>(td.tokens.size())));
    }
    OPENRL_RETURN_IF_ERROR(CheckDatum(td, custom, where));
    data.push_back(std::move(td));
  }
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> texts;
  if (req.loss_fn_config_v2_size() > 0) {
    for (const auto& [k, v] : req.loss_fn_config_v2()) {
      if (v.has_text()) {
        texts[k] = v.text();
      } else {
        numbers[k] = v.number();
      }
    }
  } else {
    for (const auto& [k, v] : req.loss_fn_config()) numbers[k] = v;
  }
  return MakeWork(req.loss_fn(), numbers, texts, std::move(data), req.forward_only(), call);
}

Result<std::vector<int32_t>> DecodeModelInput(const Json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("chunks") || !j["chunks"].is_array())
    return InvalidArgument(where + " must be an object with a 'chunks' list");
  std::vector<int32_t> out;
  size_t c = 0;
  for (const Json& chunk : j["chunks"]) {
    std::string w = where + ".chunks[" + std::to_string(c++) + "]";
    std::string type = chunk.is_object() && chunk.contains("type") && chunk["type"].is_string()
                           ? chunk["type"].get<std::string>()
                           : "encoded_text";
    if (type != "encoded_text") return InvalidArgument(w + ": chunk type '" + type + "' is not supported (text only)");
    if (!chunk.contains("tokens") || !chunk["tokens"].is_array()) return InvalidArgument(w + ".tokens must be a list");
    for (const Json& t : chunk["tokens"]) {
      if (!t.is_number_integer()) return InvalidArgument(w + ".tokens must hold integers");
      int64_t v = t.get<int64_t>();
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        return InvalidArgument(w + ".tokens: " + std::to_string(v) + " is out of range");
      out.push_back(static_cast<int32_t>(v));
    }
  }
  return out;
}

namespace {

Result<at::Tensor> TensorFromJson(const Json& j, const std::string& where) {
  if (j.is_array()) {
    std::vector<double> v;
    for (const Json& x : j) {
      if (!x.is_number()) return InvalidArgument(where + " must hold numbers");
      v.push_back(x.get<double>());
    }
    return at::tensor(v, at::kDouble).to(at::kFloat);
  }
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
    return InvalidArgument(where + " must be a TensorData object {data, dtype, shape}");
  OPENRL_ASSIGN_OR_RETURN(std::string dtype, GetFieldOr<std::string>(j, "dtype", "float32", where));
  std::vector<double> v;
  for (const Json& x : j["data"]) {
    if (!x.is_number()) return InvalidArgument(where + ".data must hold numbers");
    v.push_back(x.get<double>());
  }
  if (j.contains("sparse_crow_indices") && !j["sparse_crow_indices"].is_null())
    return InvalidArgument(where + ": sparse TensorData over JSON is not supported; use the protobuf request");
  at::Tensor t = at::tensor(v, at::kDouble);
  if (dtype == "int64") {
    t = t.to(at::kLong);
  } else if (dtype == "float32") {
    t = t.to(at::kFloat);
  } else {
    return InvalidArgument(where + ".dtype '" + dtype + "' is not float32 or int64");
  }
  if (j.contains("shape") && j["shape"].is_array()) {
    std::vector<int64_t> shape;
    for (const Json& d : j["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        return InvalidArgument(where + ".shape must hold non-negative integers");
      shape.push_back(d.get<int64_t>());
    }
    int64_t n = 1;
    for (int64_t d : shape) {
      if (d > 0 && n > std::numeric_limits<int64_t>::max() / d)
        return InvalidArgument(where + ": shape is too large");
      n *= d;
    }
    if (n != t.numel()) return InvalidArgument(where + ": data does not fill its shape");
    t = t.reshape(shape);
  }
  return t;
}

}  // namespace

Status DecodeForwardBackwardJson(const Json& body, ForwardBackwardCall& call) {
  if (!body.is_object()) return InvalidArgument("request body must be a JSON object");
  if (!body.contains("model_id") || !body["model_id"].is_string())
    return InvalidArgument("field 'model_id' is missing or not a string");
  call.model_id = body["model_id"].get<std::string>();
  if (body.contains("seq_id") && body["seq_id"].is_number_integer()) call.seq_id = body["seq_id"].get<int64_t>();
  const char* key = "forward_backward_input";
  if (!body.contains(key) || !body[key].is_object()) return InvalidArgument(std::string("field '") + key + "' is missing");
  const Json& in = body[key];
  if (!in.contains("loss_fn") || !in["loss_fn"].is_string()) return InvalidArgument(std::string(key) + ".loss_fn is missing");
  const bool custom = in["loss_fn"] == "custom";
  std::map<std::string, double> numbers;
  std::map<std::string, std::string> texts;
  if (in.contains("loss_fn_config") && in["loss_fn_config"].is_object()) {
    for (auto& [k, v] : in["loss_fn_config"].items()) {
      if (v.is_number()) {
        numbers[k] = v.get<double>();
      } else {
        texts[k] = v.is_string() ? v.get<std::string>() : v.dump();
      }
    }
  }
  if (!in.contains("data") || !in["data"].is_array()) return InvalidArgument(std::string(key) + ".data must be a list");
  std::vector<engine::TrainDatum> data;
  size_t i = 0;
  for (const Json& d : in["data"]) {
    std::string where = "data[" + std::to_string(i++) + "]";
    engine::TrainDatum td;
    OPENRL_ASSIGN_OR_RETURN(td.tokens, DecodeModelInput(d.contains("model_input") ? d["model_input"] : Json(), where + ".model_input"));
    if (!d.contains("loss_fn_inputs") || !d["loss_fn_inputs"].is_object())
      return InvalidArgument(where + ".loss_fn_inputs must be an object");
    for (auto& [name, v] : d["loss_fn_inputs"].items()) {
      OPENRL_ASSIGN_OR_RETURN(at::Tensor t, TensorFromJson(v, Field(where, name)));
      if (name == "target_tokens") t = t.to(at::kLong);
      td.loss_inputs[name] = t;
    }
    OPENRL_RETURN_IF_ERROR(CheckDatum(td, custom, where));
    data.push_back(std::move(td));
  }
  OPENRL_ASSIGN_OR_RETURN(bool forward_only, GetFieldOr<bool>(in, "forward_only", false, key));
  return MakeWork(in["loss_fn"].get<std::string>(), numbers, texts, std::move(data), forward_only, call);
}

namespace {

std::string FloatBytes(const at::Tensor& t) {
  at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();  // the bytes are read on the host
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * 4);
}

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace

std::string EncodeForwardBackwardProto(const engine::ForwardBackwardOutput& out) {
  pb::ForwardBackwardOutput msg;
  msg.set_loss_fn_output_type("ArrayRecord");
  for (const auto& [k, v] : out.metrics) (*msg.mutable_metrics())[k] = v;
  // One ArrayRecord per run of datums whose fields have the same trailing shapes (the SDK reshapes a
  // datum's field to [leading, *trailing_shape]): the (T, K) logprobs of K targets per position
  // have [K]. No datums: one empty record.
  using Shapes = std::map<std::string, std::vector<int64_t>>;  // field → its trailing shape
  const size_t n = out.outputs.size();
  auto trailing = [&](size_t i) {
    Shapes shapes;
    for (const auto& [name, t] : out.outputs[i]) shapes[name] = std::vector<int64_t>(t.sizes().begin() + 1, t.sizes().end());
    return shapes;
  };
  size_t first = 0;
  do {
    Shapes shapes = first < n ? trailing(first) : Shapes();
    size_t last = first;
    while (last < n && trailing(last) == shapes) ++last;
    pb::ArrayRecord* rec = msg.add_loss_fn_outputs();
    rec->set_type_tag("ArrayRecord");
    rec->set_num_datums(static_cast<int64_t>(last - first));
    std::map<std::string, std::pair<std::string, std::vector<int64_t>>> fields;  // name → (data, offsets)
    for (size_t i = first; i < last; ++i) {
      for (const auto& [name, t] : out.outputs[i]) {
        auto& [data, offsets] = fields[name];
        if (offsets.empty()) offsets.push_back(0);
        data += FloatBytes(t);
        offsets.push_back(static_cast<int64_t>(data.size()));
      }
    }
    for (auto& [name, f] : fields) {
      pb::BatchedTensor& bt = (*rec->mutable_fields())[name];
      bt.set_dtype(pb::DTYPE_FLOAT32);
      bt.set_data(std::move(f.first));
      bt.set_offsets(Bytes(f.second));
      for (int64_t d : shapes[name]) bt.add_trailing_shape(d);
    }
    first = last;
  } while (first < n);
  return msg.SerializeAsString();
}

namespace {

void TopkToProto(const std::vector<std::vector<engine::TokenLogprob>>& rows, pb::TopkLogprobs* msg) {
  size_t k = 0;
  for (const auto& r : rows) k = std::max(k, r.size());
  std::vector<int32_t> ids;
  std::vector<float> lps;
  for (const auto& r : rows) {
    for (size_t j = 0; j < k; ++j) {
      ids.push_back(j < r.size() ? r[j].id : 0);
      lps.push_back(j < r.size() ? r[j].logprob : -99999.0f);
    }
  }
  msg->set_k(static_cast<uint32_t>(k));
  msg->set_length(static_cast<uint32_t>(rows.size()));
  msg->set_token_ids(Bytes(ids));
  msg->set_logprobs(Bytes(lps));
}

}  // namespace

Result<PromptTargets> DecodePromptTargets(const Json& j, int64_t vocab_size, int64_t max_distinct,
                                          const std::string& where) {
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array())
    return InvalidArgument(where + " must be a TensorData object {data, dtype, shape}");
  OPENRL_ASSIGN_OR_RETURN(std::string dtype, GetFieldOr<std::string>(j, "dtype", "int64", where));
  if (dtype != "int64")
    return InvalidArgument(where + ".dtype must be int64 (token ids), got '" + dtype + "'");
  if (!j.contains("shape") || !j["shape"].is_array() || j["shape"].size() != 2)
    return InvalidArgument(where + ".shape must be 2-D, [len(prompt) - 1, K]");
  PromptTargets t;
  for (size_t d = 0; d < 2; ++d) {
    const Json& v = j["shape"][d];
    if (!v.is_number_integer() || v.get<int64_t>() < 0)
      return InvalidArgument(where + ".shape[" + std::to_string(d) + "] must be a non-negative integer");
    (d == 0 ? t.rows : t.cols) = v.get<int64_t>();
  }
  auto indices = [&](const char* name, std::vector<int64_t>& out) -> Status {
    if (!j[name].is_array()) return InvalidArgument(where + "." + name + " must be a list of integers");
    for (const Json& x : j[name]) {
      if (!x.is_number_integer()) return InvalidArgument(where + "." + name + " must hold integers");
      out.push_back(x.get<int64_t>());
    }
    return Status::Ok();
  };
  const Json& data = j["data"];
  const bool sparse = j.contains("sparse_crow_indices") && !j["sparse_crow_indices"].is_null();
  if (sparse) {
    if (!j.contains("sparse_col_indices") || j["sparse_col_indices"].is_null())
      return InvalidArgument(where + ": sparse_crow_indices needs sparse_col_indices");
    OPENRL_RETURN_IF_ERROR(indices("sparse_crow_indices", t.crow));
    OPENRL_RETURN_IF_ERROR(indices("sparse_col_indices", t.col));
    if (static_cast<int64_t>(t.crow.size()) != t.rows + 1 || t.crow.front() != 0 ||
        t.crow.back() != static_cast<int64_t>(t.col.size()) || t.col.size() != data.size())
      return InvalidArgument(where + ": sparse CSR indices do not match the shape [" +
                             std::to_string(t.rows) + ", " + std::to_string(t.cols) + "] and " +
                             std::to_string(data.size()) + " values");
    for (int64_t r = 0; r < t.rows; ++r)
      if (t.crow[r] > t.crow[r + 1])
        return InvalidArgument(where + ".sparse_crow_indices decrease at row " + std::to_string(r));
    for (size_t k = 0; k < t.col.size(); ++k)
      if (t.col[k] < 0 || t.col[k] >= t.cols)
        return InvalidArgument(where + ".sparse_col_indices[" + std::to_string(k) + "] = " +
                               std::to_string(t.col[k]) + " is outside [0, " + std::to_string(t.cols) + ")");
  } else if (t.cols != 0 && (t.rows > static_cast<int64_t>(data.size()) / t.cols ||
                             t.rows * t.cols != static_cast<int64_t>(data.size()))) {
    return InvalidArgument(where + ": " + std::to_string(data.size()) + " values do not fill the shape [" +
                           std::to_string(t.rows) + ", " + std::to_string(t.cols) + "]");
  } else if (t.cols == 0 && !data.empty()) {
    return InvalidArgument(where + ": values for a shape with no columns");
  }
  std::vector<int32_t> distinct;
  t.ids.resize(static_cast<size_t>(t.rows));
  for (int64_t r = 0; r < t.rows; ++r) {
    size_t begin = sparse ? static_cast<size_t>(t.crow[r]) : static_cast<size_t>(r * t.cols);
    size_t end = sparse ? static_cast<size_t>(t.crow[r + 1]) : begin + static_cast<size_t>(t.cols);
    for (size_t k = begin; k < end; ++k) {
      const Json& x = data[k];
      std::string at = where + ".data[" + std::to_string(k) + "] = " + x.dump();
      if (!x.is_number_integer()) return InvalidArgument(at + " is not an integer token id");
      if (x.is_number_unsigned() ? x.get<uint64_t>() >= static_cast<uint64_t>(vocab_size)
                                 : x.get<int64_t>() < -1 || x.get<int64_t>() >= vocab_size)
        return InvalidArgument(at + " is outside the vocabulary (size " + std::to_string(vocab_size) +
                               "; -1 asks for nothing)");
      int32_t id = static_cast<int32_t>(x.get<int64_t>());
      t.ids[static_cast<size_t>(r)].push_back(id);
      if (id >= 0) distinct.push_back(id);
    }
  }
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  if (distinct.empty()) return InvalidArgument(where + " names no token id (every cell is -1)");
  if (static_cast<int64_t>(distinct.size()) > max_distinct)
    return InvalidArgument(where + " names " + std::to_string(distinct.size()) +
                           " distinct token ids; at most " + std::to_string(max_distinct) +
                           " are scored per request");
  return t;
}

namespace {

void DenseToProto(const std::vector<int64_t>& shape, pb::DType dtype, std::string bytes, pb::Tensor* msg) {
  msg->set_dtype(dtype);
  for (int64_t d : shape) msg->add_shape(d);
  msg->set_dense(std::move(bytes));
}

}  // namespace

std::string EncodeSampleProto(const engine::SampleOutput& out, const PromptTargets* targets,
                              int64_t alt_tokens_k) {
  pb::SampleResponse msg;
  for (const engine::SampleResult& s : out.sequences) {
    pb::SampledSequence* seq = msg.add_sequences();
    seq->set_stop_reason(s.finish_reason == "length" ? pb::STOP_REASON_LENGTH : pb::STOP_REASON_STOP);
    seq->set_tokens(Bytes(s.tokens));
    seq->set_logprobs(Bytes(s.logprobs));
    if (!s.top_logprobs.empty()) TopkToProto(s.top_logprobs, seq->mutable_topk_sampled_logprobs());
  }
  if (!out.prompt_logprobs.empty()) {
    std::vector<float> lp;
    for (const auto& x : out.prompt_logprobs) lp.push_back(x ? *x : std::numeric_limits<float>::quiet_NaN());
    msg.set_prompt_logprobs(Bytes(lp));
  }
  if (!out.prompt_top_logprobs.empty()) TopkToProto(out.prompt_top_logprobs, msg.mutable_topk_prompt_logprobs());
  if (targets != nullptr) {
    std::vector<float> values;
    for (const auto& row : out.prompt_target_logprobs) values.insert(values.end(), row.begin(), row.end());
    pb::Tensor* t = msg.mutable_target_prompt_logprobs();
    if (targets->crow.empty()) {
      DenseToProto({targets->rows, targets->cols}, pb::DTYPE_FLOAT32, Bytes(values), t);
    } else {
      t->set_dtype(pb::DTYPE_FLOAT32);
      t->add_shape(targets->rows);
      t->add_shape(targets->cols);
      t->mutable_sparse_csr()->set_values(Bytes(values));
      t->mutable_sparse_csr()->set_crow_indices(Bytes(targets->crow));
      t->mutable_sparse_csr()->set_col_indices(Bytes(targets->col));
    }
  }
  if (alt_tokens_k > 0) {
    std::vector<int64_t> ids;
    std::vector<float> lps;
    for (const auto& row : out.prompt_alt_tokens)
      for (const engine::TokenLogprob& x : row) {
        ids.push_back(x.id);
        lps.push_back(x.logprob);
      }
    std::vector<int64_t> shape{static_cast<int64_t>(out.prompt_alt_tokens.size()), alt_tokens_k};
    DenseToProto(shape, pb::DTYPE_INT64, Bytes(ids), msg.mutable_prompt_alt_tokens()->mutable_tokens());
    DenseToProto(shape, pb::DTYPE_FLOAT32, Bytes(lps), msg.mutable_prompt_alt_tokens()->mutable_logprobs());
  }
  return msg.SerializeAsString();
}

}  // namespace openrl::api
