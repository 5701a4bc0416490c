#include "openrl/tokenizer/json_ctx.h"

namespace openrl::tokenizer {

namespace {
const Json* Find(const Json& obj, std::string_view name) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(std::string(name));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}
std::string Got(const Json& j) { return ", got " + std::string(JsonTypeName(j)); }
}  // namespace

Status JsonCtx::ExpectObject(const Json& j) const {
  if (!j.is_object()) return Error("expected an object" + Got(j));
  return Status::Ok();
}

Result<std::string> JsonCtx::ReqString(const Json& obj, std::string_view name) const {
  const Json* v = Find(obj, name);
  if (!v) return Field(name).Error("missing required string");
  if (!v->is_string()) return Field(name).Error("expected string" + Got(*v));
  return v->get<std::string>();
}

Result<std::optional<std::string>> JsonCtx::OptString(const Json& obj,
                                                      std::string_view name) const {
  const Json* v = Find(obj, name);
  if (!v) return std::optional<std::string>();
  if (!v->is_string()) return Field(name).Error("expected string" + Got(*v));
  return std::optional<std::string>(v->get<std::string>());
}

Result<bool> JsonCtx::OptBool(const Json& obj, std::string_view name, bool fallback) const {
  const Json* v = Find(obj, name);
  if (!v) return fallback;
  if (!v->is_boolean()) return Field(name).Error("expected boolean" + Got(*v));
  return v->get<bool>();
}

Result<int64_t> JsonCtx::OptInt(const Json& obj, std::string_view name, int64_t fallback) const {
  const Json* v = Find(obj, name);
  if (!v) return fallback;
  return ReqInt(obj, name);
}

Result<int64_t> JsonCtx::ReqInt(const Json& obj, std::string_view name) const {
  const Json* v = Find(obj, name);
  if (!v) return Field(name).Error("missing required integer");
  if (v->is_number_unsigned()) {
    auto u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return Field(name).Error("integer out of range");
    return static_cast<int64_t>(u);
  }
  if (!v->is_number_integer()) return Field(name).Error("expected integer" + Got(*v));
  return v->get<int64_t>();
}

}  // namespace openrl::tokenizer
