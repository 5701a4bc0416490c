// The one JSON library of OpenRL: nlohmann::json, with helpers that turn missing or
// mistyped fields into a Status naming the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

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

// The token ids in field `field` of `obj` (Json or nlohmann::ordered_json): a list whose every
// item is an integer in [0, vocab_size) (vocab_size 0: any id that fits an int32). INVALID_ARGUMENT
// naming the field, the index and the value otherwise (a float, a bool or a number past int32 is
// never rounded or cut into some other token). Messages start with "<what>: " (nothing when
// `what` is empty).
template <typename J>
Result<std::vector<int32_t>> TokenIdList(const J& obj, const std::string& field, int64_t vocab_size,
                                         const std::string& what = "request");

}  // namespace openrl

#include "openrl/core/json_inl.h"
