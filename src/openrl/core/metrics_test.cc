#include "openrl/core/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <thread>
#include <vector>

namespace openrl::metrics {
namespace {

TEST(MetricsTest, CounterWithLabelsExactText) {
  Registry r;
  auto& c = r.Counter("http_requests_total", "Requests served.", {"method", "code"});
  c.With({"GET", "200"}).Inc();
  c.With({"GET", "200"}).Inc(2);
  c.With({"POST", "500"}).Inc(0.5);
  EXPECT_EQ(r.Expose(),
            "# HELP http_requests_total Requests served.\n"
            "# TYPE http_requests_total counter\n"
            "http_requests_total{method=\"GET\",code=\"200\"} 3\n"
            "http_requests_total{method=\"POST\",code=\"500\"} 0.5\n");
}

TEST(MetricsTest, UnlabeledMetricsAppearAtZeroAndSortByName) {
  Registry r;
  r.Gauge("b_gauge", "A gauge.");
  r.Counter("a_total", "A counter.");
  r.Counter("labeled_total", "Not shown until a child exists.", {"x"});
  EXPECT_EQ(r.Expose(),
            "# HELP a_total A counter.\n"
            "# TYPE a_total counter\n"
            "a_total 0\n"
            "# HELP b_gauge A gauge.\n"
            "# TYPE b_gauge gauge\n"
            "b_gauge 0\n");
}

TEST(MetricsTest, GaugeSetIncDec) {
  Registry r;
  auto& g = r.Gauge("in_flight", "In flight.").Get();
  g.Inc();
  g.Inc();
  g.Dec();
  EXPECT_EQ(g.Value(), 1);
  g.Set(-2.5);
  EXPECT_NE(r.Expose().find("in_flight -2.5\n"), std::string::npos);
}

TEST(MetricsTest, CounterIgnoresNegative) {
  Registry r;
  auto& c = r.Counter("c_total", "C.").Get();
  c.Inc(-5);
  EXPECT_EQ(c.Value(), 0);
}

TEST(MetricsTest, HistogramExactText) {
  Registry r;
  auto& h = r.Histogram("latency_seconds", "Latency.", {"route"}, {0.25, 1, 2.5});
  h.With({"/a"}).Observe(0.125);
  h.With({"/a"}).Observe(0.25);  // le is inclusive
  h.With({"/a"}).Observe(2);
  h.With({"/a"}).Observe(7);
  EXPECT_EQ(r.Expose(),
            "# HELP latency_seconds Latency.\n"
            "# TYPE latency_seconds histogram\n"
            "latency_seconds_bucket{route=\"/a\",le=\"0.25\"} 2\n"
            "latency_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
            "latency_seconds_bucket{route=\"/a\",le=\"2.5\"} 3\n"
            "latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 4\n"
            "latency_seconds_sum{route=\"/a\"} 9.375\n"
            "latency_seconds_count{route=\"/a\"} 4\n");
}

TEST(MetricsTest, HistogramWithoutLabels) {
  Registry r;
  r.Histogram("h", "H.", {}, {1}).Get().Observe(3);
  EXPECT_EQ(r.Expose(),
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n");
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  Registry r;
  r.Counter("e_total", "Line one\nback\\slash", {"v"}).With({"a\"b\\c\nd"}).Inc();
  EXPECT_EQ(r.Expose(),
            "# HELP e_total Line one\\nback\\\\slash\n"
            "# TYPE e_total counter\n"
            "e_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, FormatValueSpecials) {
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(0.005), "0.005");
}

TEST(MetricsTest, ReRegistrationReturnsSameFamilyConflictThrows) {
  Registry r;
  auto& a = r.Counter("x_total", "X.", {"l"});
  auto& b = r.Counter("x_total", "X.", {"l"});
  EXPECT_EQ(&a, &b);
  EXPECT_THROW(r.Gauge("x_total", "X.", {"l"}), std::logic_error);
  EXPECT_THROW(r.Counter("x_total", "X.", {"other"}), std::logic_error);
  EXPECT_THROW(r.Counter("bad-name", "X."), std::logic_error);
  EXPECT_THROW(r.Counter("ok_total", "X.", {"__reserved"}), std::logic_error);
  EXPECT_THROW(r.Histogram("h", "H.", {"le"}, {1}), std::logic_error);
  EXPECT_THROW(r.Histogram("h2", "H.", {}, {2, 1}), std::logic_error);
  EXPECT_THROW(a.With({"1", "2"}), std::logic_error);
}

TEST(MetricsTest, ConcurrentIncrementsAreNotLost) {
  Registry r;
  auto& fam = r.Counter("n_total", "N.", {"t"});
  auto& h = r.Histogram("d", "D.", {}, {0.5}).Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        fam.With({std::to_string(t % 2)}).Inc();
        h.Observe(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(fam.With({"0"}).Value() + fam.With({"1"}).Value(), 40000);
  EXPECT_EQ(h.Snap().count, 40000u);
  EXPECT_EQ(h.Snap().cumulative.back(), 40000u);
  EXPECT_EQ(h.Snap().cumulative.front(), 0u);
}

TEST(MetricsTest, DefaultRegistryIsShared) {
  EXPECT_EQ(&DefaultRegistry(), &DefaultRegistry());
  auto& c = DefaultRegistry().Counter("openrl_metrics_test_total", "Test.").Get();
  c.Inc();
  EXPECT_NE(DefaultRegistry().Expose().find("openrl_metrics_test_total 1\n"), std::string::npos);
}

TEST(MetricsTest, ExponentialBuckets) {
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(DefaultLatencyBuckets().size(), 11u);
}

}  // namespace
}  // namespace openrl::metrics
