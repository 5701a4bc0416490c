#include "openrl/core/clock.h"

#include <cstdio>
#include <ctime>

namespace openrl {
namespace {

class RealClock final : public Clock {
 public:
  WallTime Now() const override { return std::chrono::system_clock::now(); }
  MonoTime Monotonic() const override { return std::chrono::steady_clock::now(); }
};

// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's civil algorithm).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int64_t y, int m) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// Reads exactly `n` digits at text[*pos]; false if any is not a digit.
bool ReadDigits(std::string_view text, size_t* pos, size_t n, int64_t* out) {
  if (*pos + n > text.size()) return false;
  int64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = text[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *out = v;
  return true;
}

bool Expect(std::string_view text, size_t* pos, char c) {
  if (*pos >= text.size() || text[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

Clock& SystemClock() {
  static RealClock clock;
  return clock;
}

FakeClock::FakeClock(WallTime start) : wall_(start), mono_(std::chrono::hours(1)) {}

Clock::WallTime FakeClock::Now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wall_;
}

Clock::MonoTime FakeClock::Monotonic() const {
  std::lock_guard<std::mutex> lock(mu_);
  return mono_;
}

void FakeClock::Advance(std::chrono::nanoseconds d) {
  std::lock_guard<std::mutex> lock(mu_);
  wall_ += std::chrono::duration_cast<WallTime::duration>(d);
  mono_ += std::chrono::duration_cast<MonoTime::duration>(d);
}

void FakeClock::SetNow(WallTime t) {
  std::lock_guard<std::mutex> lock(mu_);
  wall_ = t;
}

std::string FormatIso8601Utc(Clock::WallTime t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  int64_t secs = ms / 1000;
  int64_t millis = ms % 1000;
  if (millis < 0) {
    millis += 1000;
    secs -= 1;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return buf;
}

Result<Clock::WallTime> ParseIso8601(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("invalid ISO 8601 timestamp '" + std::string(text) + "': " + std::string(why));
  };
  size_t pos = 0;
  int64_t y, mo, d, h, mi, s;
  if (!ReadDigits(text, &pos, 4, &y) || !Expect(text, &pos, '-') || !ReadDigits(text, &pos, 2, &mo) ||
      !Expect(text, &pos, '-') || !ReadDigits(text, &pos, 2, &d))
    return bad("expected YYYY-MM-DD");
  if (!Expect(text, &pos, 'T') && !Expect(text, &pos, 't')) return bad("expected 'T' after the date");
  if (!ReadDigits(text, &pos, 2, &h) || !Expect(text, &pos, ':') || !ReadDigits(text, &pos, 2, &mi) ||
      !Expect(text, &pos, ':') || !ReadDigits(text, &pos, 2, &s))
    return bad("expected HH:MM:SS");
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, static_cast<int>(mo)) || h > 23 || mi > 59 || s > 60)
    return bad("field out of range");
  int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (digits < 9) nanos = nanos * 10 + (text[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return bad("expected digits after '.'");
    for (size_t i = digits; i < 9; ++i) nanos *= 10;
  }
  int64_t offset_s = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int64_t oh, om;
    if (!ReadDigits(text, &pos, 2, &oh) || !Expect(text, &pos, ':') || !ReadDigits(text, &pos, 2, &om) ||
        oh > 23 || om > 59)
      return bad("expected a UTC offset like +02:00");
    offset_s = sign * (oh * 3600 + om * 60);
  } else {
    return bad("expected 'Z' or a UTC offset");
  }
  if (pos != text.size()) return bad("unexpected trailing characters");
  int64_t epoch_s = DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset_s;
  auto dur = std::chrono::seconds(epoch_s) + std::chrono::nanoseconds(nanos);
  return Clock::WallTime(std::chrono::duration_cast<Clock::WallTime::duration>(dur));
}

}  // namespace openrl
