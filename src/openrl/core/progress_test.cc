#include "openrl/core/progress.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace openrl {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(Progress, FormatDuration) {
  EXPECT_EQ(FormatDuration(4), "0:04");
  EXPECT_EQ(FormatDuration(727), "12:07");
  EXPECT_EQ(FormatDuration(3723), "1:02:03");
  EXPECT_EQ(FormatDuration(-1), "?");
}

TEST(Progress, FormatLine) {
  ProgressSnapshot s{.label = "train", .current = 50, .total = 100, .unit = "step", .elapsed_s = 4,
                     .suffix = "loss 2.31", .bar_width = 10};
  EXPECT_EQ(FormatProgress(s), "train [#####     ] 50/100 50% 12.5 step/s ETA 0:04 elapsed 0:04 loss 2.31");
  s.total = 0;  // unknown total: no bar, percent or ETA
  s.suffix = "";
  EXPECT_EQ(FormatProgress(s), "train 50 12.5 step/s elapsed 0:04");
}

struct Capture {
  std::vector<std::string> writes;
  std::function<void(std::string_view)> Sink() {
    return [this](std::string_view t) { writes.emplace_back(t); };
  }
};

TEST(Progress, PlainModePrintsEveryStepOrInterval) {
  FakeClock clock;
  Capture cap;
  ProgressBar bar({.label = "tok", .total = 100, .tty = false, .plain_interval = seconds(5),
                   .plain_percent_step = 25, .clock = &clock, .out = cap.Sink()});
  for (int i = 0; i < 24; ++i) bar.Advance();
  EXPECT_TRUE(cap.writes.empty());  // under 25% and under 5 s
  bar.Advance();
  ASSERT_EQ(cap.writes.size(), 1u);
  EXPECT_EQ(cap.writes[0].find("tok 25/100 25%"), 0u) << cap.writes[0];
  EXPECT_EQ(cap.writes[0].back(), '\n');
  EXPECT_EQ(cap.writes[0].find('\r'), std::string::npos);
  clock.Advance(seconds(6));  // interval passed: a line even without a new step
  bar.Advance();
  ASSERT_EQ(cap.writes.size(), 2u);
  bar.SetSuffix("loss 1.50");
  bar.Update(100);
  bar.Finish();  // the 100% line is already printed: no identical second line
  bar.Finish();  // idempotent
  ASSERT_EQ(cap.writes.size(), 3u);
  EXPECT_NE(cap.writes.back().find("100/100 100%"), std::string::npos);
  EXPECT_NE(cap.writes.back().find("loss 1.50"), std::string::npos);
}

TEST(Progress, TtyModeRedrawsInPlaceAndThrottles) {
  FakeClock clock;
  Capture cap;
  {
    ProgressBar bar({.label = "dl", .total = 10, .tty = true, .tty_interval = milliseconds(100), .clock = &clock,
                     .out = cap.Sink()});
    bar.Advance();
    bar.Advance();  // within 100 ms of the first draw: skipped
    ASSERT_EQ(cap.writes.size(), 1u);
    EXPECT_EQ(cap.writes[0].front(), '\r');
    EXPECT_NE(cap.writes[0].find("dl ["), std::string::npos);
    clock.Advance(milliseconds(150));
    bar.Advance();
    ASSERT_EQ(cap.writes.size(), 2u);
    EXPECT_NE(cap.writes[1].find("3/10"), std::string::npos);
  }  // destructor finishes: final redraw + newline
  ASSERT_EQ(cap.writes.size(), 4u);
  EXPECT_EQ(cap.writes[3], "\n");
}

TEST(Progress, ConcurrentAdvanceCountsEverything) {
  FakeClock clock;
  Capture cap;
  ProgressBar bar({.label = "p", .total = 4000, .tty = false, .clock = &clock, .out = cap.Sink()});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) bar.Advance();
    });
  }
  for (auto& t : threads) t.join();
  bar.Finish();
  EXPECT_NE(cap.writes.back().find("4000/4000 100%"), std::string::npos) << cap.writes.back();
}

}  // namespace
}  // namespace openrl
