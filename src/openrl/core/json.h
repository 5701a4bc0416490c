// The one JSON library of OpenRL: nlohmann::json, with helpers that turn missing or
// mistyped fields into a Status naming the field.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl {

using Json = nlohmann::json;

// Parses text; the error names `source` (a file name or "request body") and the byte offset.
Result<Json> ParseJson(std::string_view text, std::string_view source);
// Reads and parses a file; errors name the path.
Result<Json> ReadJsonFile(const std::string& path);

// Typed field access: GetField<int64_t>(obj, "hidden_size", "config.json").
// Missing → INVALID_ARGUMENT "config.json: missing field 'hidden_size'";
// wrong type → "config.json: field 'hidden_size' must be integer, got string".
template <typename T>
Result<T> GetField(const Json& obj, std::string_view field, std::string_view source);
// Like GetField but returns `fallback` when the field is absent or null.
template <typename T>
Result<T> GetFieldOr(const Json& obj, std::string_view field, T fallback, std::string_view source);

std::string_view JsonTypeName(const Json& j);

}  // namespace openrl

#include "openrl/core/json_inl.h"
