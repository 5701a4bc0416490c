// Status and Result<T>: the one error type of OpenRL.
// Expected failures return a Status carrying a code and a message a user can act on
// (naming the file, line or field). Exceptions are not control flow; libtorch throws,
// so engine boundaries catch and convert with StatusFromException().
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace openrl {

enum class ErrorCode : uint8_t {
  kOk = 0,
  kInvalidArgument,    // 400: the caller sent something malformed
  kUnauthenticated,    // 401
  kPermissionDenied,   // 403
  kNotFound,           // 404
  kAlreadyExists,      // 409
  kAborted,            // 409: conflict with concurrent work
  kFailedPrecondition, // 409/422: state does not allow it now
  kPayloadTooLarge,    // 413
  kResourceExhausted,  // 429: back-pressure, quotas
  kCancelled,          // 499
  kInternal,           // 500: a bug on our side
  kUnimplemented,      // 501
  kUnavailable,        // 503: retry later
  kDeadlineExceeded,   // 504
  kDataLoss,           // 500: corrupt stored data
};

std::string_view ErrorCodeName(ErrorCode code);
int HttpStatusFor(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: config.json: field 'hidden_size' must be positive"
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>", for adding a file name or field path.
  Status WithContext(std::string_view context) const;

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {ErrorCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {ErrorCode::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {ErrorCode::kFailedPrecondition, std::move(m)}; }
inline Status PermissionDenied(std::string m) { return {ErrorCode::kPermissionDenied, std::move(m)}; }
inline Status Unauthenticated(std::string m) { return {ErrorCode::kUnauthenticated, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {ErrorCode::kResourceExhausted, std::move(m)}; }
inline Status Internal(std::string m) { return {ErrorCode::kInternal, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {ErrorCode::kUnimplemented, std::move(m)}; }
inline Status Unavailable(std::string m) { return {ErrorCode::kUnavailable, std::move(m)}; }
inline Status DataLoss(std::string m) { return {ErrorCode::kDataLoss, std::move(m)}; }
inline Status OutOfRangeArg(std::string m) { return {ErrorCode::kInvalidArgument, std::move(m)}; }

// Converts an in-flight exception (from libtorch, std, or nlohmann::json) into a Status.
Status StatusFromException(const std::exception& e, std::string_view context = {});

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {}     // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace openrl

#define OPENRL_CONCAT_INNER_(a, b) a##b
#define OPENRL_CONCAT_(a, b) OPENRL_CONCAT_INNER_(a, b)

#define OPENRL_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::openrl::Status openrl_status_ = (expr);        \
    if (!openrl_status_.ok()) return openrl_status_; \
  } while (0)

#define OPENRL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

// OPENRL_ASSIGN_OR_RETURN(auto x, ComputeX());
#define OPENRL_ASSIGN_OR_RETURN(lhs, expr) \
  OPENRL_ASSIGN_OR_RETURN_IMPL_(OPENRL_CONCAT_(openrl_result_, __LINE__), lhs, expr)
