#include "openrl/core/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "openrl/core/clock.h"
#include "openrl/core/json.h"

namespace openrl::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kText)};

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

Level FromSpd(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return Level::kTrace;
    case spdlog::level::debug: return Level::kDebug;
    case spdlog::level::info: return Level::kInfo;
    case spdlog::level::warn: return Level::kWarn;
    case spdlog::level::err:
    case spdlog::level::critical: return Level::kError;
    default: return Level::kOff;
  }
}

std::string_view BaseName(const char* file) {
  std::string_view f(file);
  size_t slash = f.rfind('/');
  return slash == std::string_view::npos ? f : f.substr(slash + 1);
}

// Formats each record itself (text or JSON) so JSON escaping is exact, and writes whole lines
// to stderr (or a test sink). base_sink's mutex makes each line atomic across threads.
class OpenRlSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  void SetTestSink(std::function<void(std::string_view)> sink) {
    std::lock_guard<std::mutex> lock(mutex_);
    test_sink_ = std::move(sink);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string line = Render(msg);
    if (test_sink_) {
      test_sink_(line);
      return;
    }
    line.push_back('\n');
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  static std::string Render(const spdlog::details::log_msg& msg) {
    std::string ts = FormatIso8601Utc(msg.time);
    std::string_view level = LevelName(FromSpd(msg.level));
    std::string_view text(msg.payload.data(), msg.payload.size());
    if (static_cast<Format>(g_format.load()) == Format::kJson) {
      Json j = {{"ts", ts}, {"level", level}, {"msg", text}};
      if (msg.source.filename) {
        j["file"] = BaseName(msg.source.filename);
        j["line"] = msg.source.line;
      }
      j["thread"] = msg.thread_id;
      return j.dump(-1, ' ', false, Json::error_handler_t::replace);
    }
    std::string out = ts + " " + std::string(level) + " ";
    if (msg.source.filename) out += std::string(BaseName(msg.source.filename)) + ":" + std::to_string(msg.source.line) + " ";
    out.append(text);
    return out;
  }

  std::function<void(std::string_view)> test_sink_;
};

struct Logger {
  std::shared_ptr<OpenRlSink> sink = std::make_shared<OpenRlSink>();
  spdlog::logger logger{"openrl", sink};
  Logger() { logger.set_level(spdlog::level::trace); }  // filtering happens in Enabled()
};

Logger& TheLogger() {
  static Logger* l = new Logger();  // never destroyed: logging from static destructors stays safe
  return *l;
}

}  // namespace

Result<Level> ParseLevel(std::string_view name) {
  std::string n(name);
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (n == "trace") return Level::kTrace;
  if (n == "debug") return Level::kDebug;
  if (n == "info") return Level::kInfo;
  if (n == "warn" || n == "warning") return Level::kWarn;
  if (n == "error") return Level::kError;
  if (n == "off" || n == "none") return Level::kOff;
  return InvalidArgument("unknown log level '" + std::string(name) + "' (expected trace, debug, info, warn, error or off)");
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kTrace: return "trace";
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
    case Level::kOff: return "off";
  }
  return "info";
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }
Level GetLevel() { return static_cast<Level>(g_level.load(std::memory_order_relaxed)); }
void SetFormat(Format format) { g_format.store(static_cast<int>(format)); }
Format GetFormat() { return static_cast<Format>(g_format.load()); }

Status InitFromEnv() {
  if (const char* lv = std::getenv("OPENRL_LOG_LEVEL"); lv && *lv) {
    Result<Level> level = ParseLevel(lv);
    if (!level.ok()) return level.status().WithContext("environment variable OPENRL_LOG_LEVEL");
    SetLevel(*level);
  }
  if (const char* fm = std::getenv("OPENRL_LOG_FORMAT"); fm && *fm) {
    std::string_view f(fm);
    if (f == "json") {
      SetFormat(Format::kJson);
    } else if (f == "text") {
      SetFormat(Format::kText);
    } else {
      return InvalidArgument("environment variable OPENRL_LOG_FORMAT: unknown format '" + std::string(f) +
                             "' (expected text or json)");
    }
  }
  return Status::Ok();
}

void Write(Level level, std::string_view message, const char* file, int line) {
  if (!Enabled(level) || level == Level::kOff) return;
  spdlog::source_loc loc = file ? spdlog::source_loc{file, line, nullptr} : spdlog::source_loc{};
  TheLogger().logger.log(loc, ToSpd(level), spdlog::string_view_t(message.data(), message.size()));
}

void SetSinkForTesting(std::function<void(std::string_view line)> sink) { TheLogger().sink->SetTestSink(std::move(sink)); }

}  // namespace openrl::log
