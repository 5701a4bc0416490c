// Template bodies for json.h. Not for direct inclusion.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

namespace openrl::json_detail {

template <typename T>
bool Matches(const Json& j) {
  if constexpr (std::is_same_v<T, bool>) return j.is_boolean();
  else if constexpr (std::is_integral_v<T>) return j.is_number_integer();
  else if constexpr (std::is_floating_point_v<T>) return j.is_number();
  else if constexpr (std::is_same_v<T, std::string>) return j.is_string();
  else if constexpr (std::is_same_v<T, Json>) return true;
  else return true;  // containers: let nlohmann validate and convert
}

template <typename T>
const char* ExpectedName() {
  if constexpr (std::is_same_v<T, bool>) return "boolean";
  else if constexpr (std::is_integral_v<T>) return "integer";
  else if constexpr (std::is_floating_point_v<T>) return "number";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else return "value of the expected type";
}

}  // namespace openrl::json_detail

namespace openrl {

template <typename T>
Result<T> GetField(const Json& obj, std::string_view field, std::string_view source) {
  std::string where = std::string(source) + ": ";
  if (!obj.is_object()) return InvalidArgument(where + "expected a JSON object");
  auto it = obj.find(std::string(field));
  if (it == obj.end() || it->is_null())
    return InvalidArgument(where + "missing field '" + std::string(field) + "'");
  if (!json_detail::Matches<T>(*it))
    return InvalidArgument(where + "field '" + std::string(field) + "' must be " +
                           json_detail::ExpectedName<T>() + ", got " +
                           std::string(JsonTypeName(*it)));
  try {
    return it->template get<T>();
  } catch (const std::exception& e) {
    return InvalidArgument(where + "field '" + std::string(field) + "': " + e.what());
  }
}

template <typename T>
Result<T> GetFieldOr(const Json& obj, std::string_view field, T fallback, std::string_view source) {
  if (obj.is_object()) {
    auto it = obj.find(std::string(field));
    if (it == obj.end() || it->is_null()) return fallback;
  }
  return GetField<T>(obj, field, source);
}

}  // namespace openrl
