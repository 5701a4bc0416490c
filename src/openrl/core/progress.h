// Progress bars for long work (downloads, tokenization, training steps), written to stderr.
// On a terminal the line is redrawn in place with '\r' (at most ~10 times a second); elsewhere
// (CI logs, files) a plain line is printed every `plain_interval` or `plain_percent_step` percent,
// and once at the end, so logs stay readable. Update/Advance/SetSuffix are thread-safe.
//
//   ProgressBar bar({.label = "train", .total = steps, .unit = "step"});
//   for (...) { ...; bar.SetSuffix(fmt::format("loss {:.2f}", loss)); bar.Advance(); }
//   bar.Finish();
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "openrl/core/clock.h"

namespace openrl {

struct ProgressOptions {
  std::string label;
  int64_t total = 0;  // 0 = unknown: no bar, percentage or ETA
  std::string unit = "it";
  // nullopt = detect with isatty(stderr).
  std::optional<bool> tty = std::nullopt;
  std::chrono::milliseconds plain_interval{5000};
  double plain_percent_step = 10.0;
  std::chrono::milliseconds tty_interval{100};
  Clock* clock = nullptr;  // nullptr = SystemClock()
  // Receives text to write ("\r…" redraws or "…\n" lines); nullptr = stderr.
  std::function<void(std::string_view)> out = nullptr;
};

// What one progress line shows; FormatProgress is pure, for tests and custom displays.
struct ProgressSnapshot {
  std::string_view label;
  int64_t current = 0;
  int64_t total = 0;
  std::string_view unit;
  double elapsed_s = 0;
  std::string_view suffix;
  int bar_width = 0;  // 0 = no bar
};
// "train [#####     ] 50/100 50% 12.5 step/s ETA 0:04 loss 2.31"
std::string FormatProgress(const ProgressSnapshot& s);
// "0:04", "12:07", "1:02:03"; "?" for negative or non-finite input.
std::string FormatDuration(double seconds);

class ProgressBar {
 public:
  explicit ProgressBar(ProgressOptions options);
  ~ProgressBar();  // calls Finish()
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void Update(int64_t current);
  void Advance(int64_t n = 1);
  void SetSuffix(std::string suffix);
  // Prints the final state (once) and ends the line.
  void Finish();

 private:
  void MaybeDrawLocked(bool force);
  void Emit(std::string_view text);
  std::string LineLocked() const;

  ProgressOptions opt_;
  Clock& clock_;
  bool tty_;
  std::mutex mu_;
  int64_t current_ = 0;
  std::string suffix_;
  Clock::MonoTime start_;
  Clock::MonoTime last_draw_;
  double last_percent_ = 0;
  bool drawn_ = false;
  int64_t drawn_current_ = -1;  // `current` as last printed, so Finish does not repeat it
  bool finished_ = false;
};

}  // namespace openrl
