// The one logger of OpenRL (spdlog underneath). Always writes to stderr — stdout belongs to
// JSON-lines CLI commands. Text lines for people, or JSON lines for servers and log shippers.
//
//   OPENRL_LOG_INFO("loaded {} tensors from {}", n, path);
//
// Format strings are checked at compile time (fmt). Arguments are not evaluated when the level is
// disabled. Level comes from SetLevel, or OPENRL_LOG_LEVEL (trace|debug|info|warn|error|off) and
// OPENRL_LOG_FORMAT (text|json) through InitFromEnv().
#pragma once

#include <fmt/core.h>

#include <functional>
#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl::log {

enum class Level : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };
enum class Format { kText, kJson };

Result<Level> ParseLevel(std::string_view name);  // case-insensitive; "warning" accepted
std::string_view LevelName(Level level);

void SetLevel(Level level);
Level GetLevel();
inline bool Enabled(Level level) { return static_cast<int>(level) >= static_cast<int>(GetLevel()); }
void SetFormat(Format format);
Format GetFormat();
// Applies OPENRL_LOG_LEVEL / OPENRL_LOG_FORMAT when set; an invalid value is an error naming the
// variable (the current settings stay).
Status InitFromEnv();

// Emits one record (already formatted). `file` may be null.
void Write(Level level, std::string_view message, const char* file = nullptr, int line = 0);

// Tests: send finished lines (without the trailing newline) to `sink` instead of stderr;
// pass nullptr to restore stderr.
void SetSinkForTesting(std::function<void(std::string_view line)> sink);

template <typename... Args>
void Logf(Level level, const char* file, int line, fmt::format_string<Args...> fmt_str, Args&&... args) {
  if (!Enabled(level)) return;
  Write(level, fmt::format(fmt_str, std::forward<Args>(args)...), file, line);
}

}  // namespace openrl::log

#define OPENRL_LOG_AT_(level, ...)                                             \
  do {                                                                         \
    if (::openrl::log::Enabled(level))                                         \
      ::openrl::log::Logf(level, __FILE__, __LINE__, __VA_ARGS__);             \
  } while (0)
#define OPENRL_LOG_TRACE(...) OPENRL_LOG_AT_(::openrl::log::Level::kTrace, __VA_ARGS__)
#define OPENRL_LOG_DEBUG(...) OPENRL_LOG_AT_(::openrl::log::Level::kDebug, __VA_ARGS__)
#define OPENRL_LOG_INFO(...) OPENRL_LOG_AT_(::openrl::log::Level::kInfo, __VA_ARGS__)
#define OPENRL_LOG_WARN(...) OPENRL_LOG_AT_(::openrl::log::Level::kWarn, __VA_ARGS__)
#define OPENRL_LOG_ERROR(...) OPENRL_LOG_AT_(::openrl::log::Level::kError, __VA_ARGS__)
