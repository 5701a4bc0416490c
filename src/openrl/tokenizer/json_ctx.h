// Field-path aware access to tokenizer.json: every error names the file and the JSON path,
// e.g. "tokenizer.json: model.merges[12]: expected string or pair".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl::tokenizer {

class JsonCtx {
 public:
  JsonCtx(std::string_view source, std::string path) : source_(source), path_(std::move(path)) {}

  JsonCtx Field(std::string_view name) const {
    return JsonCtx(source_, path_.empty() ? std::string(name) : path_ + "." + std::string(name));
  }
  JsonCtx Index(size_t i) const { return JsonCtx(source_, path_ + "[" + std::to_string(i) + "]"); }
  Status Error(std::string_view message) const {
    return InvalidArgument(source_ + ": " + (path_.empty() ? "<root>" : path_) + ": " +
                           std::string(message));
  }
  const std::string& path() const { return path_; }
  const std::string& source() const { return source_; }

  // Typed reads of obj[name]. Missing or null → fallback (Opt*) or an error (Req*).
  Result<std::string> ReqString(const Json& obj, std::string_view name) const;
  Result<std::optional<std::string>> OptString(const Json& obj, std::string_view name) const;
  Result<bool> OptBool(const Json& obj, std::string_view name, bool fallback) const;
  Result<int64_t> OptInt(const Json& obj, std::string_view name, int64_t fallback) const;
  Result<int64_t> ReqInt(const Json& obj, std::string_view name) const;
  // Requires `j` (this context's value) to be an object.
  Status ExpectObject(const Json& j) const;

 private:
  std::string source_;
  std::string path_;
};

}  // namespace openrl::tokenizer
