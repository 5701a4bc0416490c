#include "openrl/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace openrl {
namespace {

constexpr int kTtyBarWidth = 24;

std::string FormatRate(double per_s) {
  char buf[32];
  if (per_s >= 100) {
    std::snprintf(buf, sizeof(buf), "%.0f", per_s);
  } else if (per_s >= 1) {
    std::snprintf(buf, sizeof(buf), "%.1f", per_s);
  } else {
    std::snprintf(buf, sizeof(buf), "%.3f", per_s);
  }
  return buf;
}

}  // namespace

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto total = static_cast<int64_t>(seconds + 0.5);
  int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  char buf[48];
  if (h > 0) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(h), static_cast<long long>(m),
                  static_cast<long long>(s));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(m), static_cast<long long>(s));
  }
  return buf;
}

std::string FormatProgress(const ProgressSnapshot& s) {
  std::string out(s.label);
  const bool known = s.total > 0;
  const double frac = known ? std::clamp(static_cast<double>(s.current) / static_cast<double>(s.total), 0.0, 1.0) : 0;
  if (known && s.bar_width > 0) {
    int filled = static_cast<int>(frac * s.bar_width);
    out += " [" + std::string(filled, '#') + std::string(s.bar_width - filled, ' ') + "]";
  }
  out += " " + std::to_string(s.current);
  if (known) out += "/" + std::to_string(s.total) + " " + std::to_string(static_cast<int>(frac * 100)) + "%";
  if (s.elapsed_s > 0 && s.current > 0) {
    double rate = static_cast<double>(s.current) / s.elapsed_s;
    out += " " + FormatRate(rate) + " " + std::string(s.unit) + "/s";
    if (known && s.current < s.total) out += " ETA " + FormatDuration(static_cast<double>(s.total - s.current) / rate);
  }
  out += " elapsed " + FormatDuration(s.elapsed_s);
  if (!s.suffix.empty()) out += " " + std::string(s.suffix);
  return out;
}

ProgressBar::ProgressBar(ProgressOptions options)
    : opt_(std::move(options)),
      clock_(opt_.clock ? *opt_.clock : SystemClock()),
      tty_(opt_.tty.value_or(::isatty(STDERR_FILENO) == 1)),
      start_(clock_.Monotonic()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() { Finish(); }

void ProgressBar::Update(int64_t current) {
  std::lock_guard<std::mutex> lock(mu_);
  current_ = current;
  MaybeDrawLocked(false);
}

void ProgressBar::Advance(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  current_ += n;
  MaybeDrawLocked(false);
}

void ProgressBar::SetSuffix(std::string suffix) {
  std::lock_guard<std::mutex> lock(mu_);
  suffix_ = std::move(suffix);
}

void ProgressBar::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  // A plain log already holding the final count needs no second, identical line.
  if (tty_ || drawn_current_ != current_) MaybeDrawLocked(true);
  if (tty_) Emit("\n");
}

std::string ProgressBar::LineLocked() const {
  ProgressSnapshot s;
  s.label = opt_.label;
  s.current = current_;
  s.total = opt_.total;
  s.unit = opt_.unit;
  s.elapsed_s = std::chrono::duration<double>(clock_.Monotonic() - start_).count();
  s.suffix = suffix_;
  s.bar_width = tty_ ? kTtyBarWidth : 0;
  return FormatProgress(s);
}

void ProgressBar::MaybeDrawLocked(bool force) {
  if (finished_ && !force) return;
  const auto now = clock_.Monotonic();
  const auto since = now - last_draw_;
  if (tty_) {
    if (!force && drawn_ && since < opt_.tty_interval) return;
    Emit("\r" + LineLocked() + "\x1b[K");
  } else {
    double percent = opt_.total > 0 ? 100.0 * static_cast<double>(current_) / static_cast<double>(opt_.total) : -1;
    bool step = opt_.total > 0 && percent >= last_percent_ + opt_.plain_percent_step;
    if (!force && !step && since < opt_.plain_interval) return;
    if (opt_.total > 0) last_percent_ = std::floor(percent / opt_.plain_percent_step) * opt_.plain_percent_step;
    Emit(LineLocked() + "\n");
  }
  last_draw_ = now;
  drawn_ = true;
  drawn_current_ = current_;
}

void ProgressBar::Emit(std::string_view text) {
  if (opt_.out) {
    opt_.out(text);
    return;
  }
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace openrl
