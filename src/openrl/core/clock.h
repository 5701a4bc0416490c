// Clock: the one source of time. Production code takes a `Clock&` (SystemClock() by default) so
// tests can inject a FakeClock that only moves when told (including jumps backwards in wall time).
// Also ISO 8601 UTC formatting/parsing ("2026-11-27T10:15:30.123Z").
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl {

class Clock {
 public:
  using WallTime = std::chrono::system_clock::time_point;
  using MonoTime = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Wall-clock time, for timestamps shown to people and stored in records.
  virtual WallTime Now() const = 0;
  // Monotonic time, for measuring durations (rates, timeouts); never goes backwards.
  virtual MonoTime Monotonic() const = 0;
};

// The process-wide real clock.
Clock& SystemClock();

// A clock for tests: starts at `start` and moves only through Advance/SetNow.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(WallTime start = WallTime(std::chrono::seconds(1'800'000'000)));
  WallTime Now() const override;
  MonoTime Monotonic() const override;
  // Moves both wall and monotonic time forward by `d` (d >= 0).
  void Advance(std::chrono::nanoseconds d);
  // Sets wall time only (may jump backwards, as NTP can); monotonic time is unaffected.
  void SetNow(WallTime t);

 private:
  mutable std::mutex mu_;
  WallTime wall_;
  MonoTime mono_;
};

// "2026-11-27T10:15:30.123Z" (UTC, millisecond precision).
std::string FormatIso8601Utc(Clock::WallTime t);
// Accepts "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)"; errors quote the input.
Result<Clock::WallTime> ParseIso8601(std::string_view text);

}  // namespace openrl
