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

template <typename J>
Result<std::vector<int32_t>> TokenIdList(const J& obj, const std::string& field, int64_t vocab_size,
                                         const std::string& what) {
  const std::string prefix = what.empty() ? "" : what + ": ";
  auto it = obj.is_object() ? obj.find(field) : obj.end();
  if (it == obj.end() || !it->is_array())
    return InvalidArgument(prefix + "field '" + field + "' must be a list of token ids");
  const J& list = *it;
  std::vector<int32_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const J& v = list[i];
    std::string at = prefix + field + "[" + std::to_string(i) +
                     "] = " + v.dump(-1, ' ', false, J::error_handler_t::replace).substr(0, 40);
    if (!v.is_number_integer()) return InvalidArgument(at + " is not an integer token id");
    if (!v.is_number_unsigned() && v.template get<int64_t>() < 0)
      return InvalidArgument(at + " is negative, not a token id");
    // Non-negative JSON integers are unsigned (up to 2^64 - 1): compare them as such.
    const uint64_t bound = vocab_size > 0 ? static_cast<uint64_t>(vocab_size) : uint64_t{INT32_MAX} + 1;
    const uint64_t id = v.is_number_unsigned() ? v.template get<uint64_t>()
                                               : static_cast<uint64_t>(v.template get<int64_t>());
    if (id >= bound)
      return InvalidArgument(
          at + (vocab_size > 0 ? " is outside the vocabulary (size " + std::to_string(vocab_size) + ")"
                               : std::string(" is past the largest 32-bit token id")));
    ids.push_back(static_cast<int32_t>(v.template get<int64_t>()));
  }
  return ids;
}

}  // namespace openrl
