#include "openrl/core/clock.h"

#include <gtest/gtest.h>

#include "openrl/core/ids.h"

namespace openrl {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(Clock, FormatIso8601Utc) {
  EXPECT_EQ(FormatIso8601Utc(Clock::WallTime(seconds(0))), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatIso8601Utc(Clock::WallTime(milliseconds(1'795'778'130'123))), "2026-11-27T11:15:30.123Z");
  EXPECT_EQ(FormatIso8601Utc(Clock::WallTime(milliseconds(951'782'400'000))), "2000-02-29T00:00:00.000Z");
}

TEST(Clock, ParseRoundTripAndOffsets) {
  Clock::WallTime t(milliseconds(1'795'778'130'123));
  Result<Clock::WallTime> back = ParseIso8601(FormatIso8601Utc(t));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, t);
  Result<Clock::WallTime> off = ParseIso8601("2026-11-27T13:15:30.123+02:00");
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(*off, t);
  EXPECT_EQ(*ParseIso8601("1970-01-01T00:00:00Z"), Clock::WallTime(seconds(0)));
}

TEST(Clock, ParseRejectsMalformed) {
  for (const char* bad : {"", "2026-11-27", "2026-11-27T10:22:10", "2026-13-01T00:00:00Z",
                          "2026-02-30T00:00:00Z", "2026-11-27T10:22:10.Z", "2026-11-27T10:22:10Zjunk"}) {
    Result<Clock::WallTime> r = ParseIso8601(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(std::string("'") + bad + "'"), std::string::npos);
    }
  }
}

TEST(Clock, FakeClockMovesOnlyWhenTold) {
  FakeClock clock(Clock::WallTime(seconds(100)));
  auto mono = clock.Monotonic();
  EXPECT_EQ(clock.Now(), Clock::WallTime(seconds(100)));
  clock.Advance(milliseconds(1500));
  EXPECT_EQ(clock.Now(), Clock::WallTime(milliseconds(101500)));
  EXPECT_EQ(clock.Monotonic() - mono, milliseconds(1500));
  clock.SetNow(Clock::WallTime(seconds(5)));  // wall time jumps back; monotonic does not
  EXPECT_EQ(clock.Now(), Clock::WallTime(seconds(5)));
  EXPECT_EQ(clock.Monotonic() - mono, milliseconds(1500));
}

TEST(Ids, NewIdShapeAndUniqueness) {
  std::string a = NewId("run"), b = NewId("run");
  EXPECT_EQ(a.substr(0, 4), "run_");
  EXPECT_EQ(a.size(), 4 + kIdRandomHexChars);
  EXPECT_NE(a, b);
  EXPECT_TRUE(ValidateId(a, "run", "run id").ok());
  Status wrong_prefix = ValidateId(a, "ckpt", "checkpoint id");
  EXPECT_FALSE(wrong_prefix.ok());
  EXPECT_NE(wrong_prefix.message().find("checkpoint id '" + a + "'"), std::string::npos);
  EXPECT_FALSE(ValidateId("run_XYZ", "run", "run id").ok());
  std::string upper = a;
  upper.back() = 'G';
  EXPECT_FALSE(ValidateId(upper, "run", "run id").ok());
}

}  // namespace
}  // namespace openrl
