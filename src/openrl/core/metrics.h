// Prometheus metrics: a thread-safe registry of counters, gauges and histograms with label sets,
// rendered in the text exposition format 0.0.4 (what `/metrics` serves).
//
//   auto& requests = metrics::DefaultRegistry().Counter("openrl_requests_total", "Requests.",
//                                                        {"method", "status"});
//   requests.With({"GET", "200"}).Inc();
//
// Registering a name again with the same type and label names returns the same family; a
// conflicting registration, an invalid name or a wrong number of label values is a programmer
// error and throws std::logic_error. Children live as long as the registry, so references
// returned by With() may be cached.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace openrl::metrics {

using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void Inc(double amount = 1.0);  // amount must be >= 0 (negative amounts are ignored)
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Inc(double amount = 1.0);
  void Dec(double amount = 1.0) { Inc(-amount); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;      // finite bounds, ascending
    std::vector<uint64_t> cumulative;      // one per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Default buckets for request latencies in seconds (the Prometheus client defaults).
std::vector<double> DefaultLatencyBuckets();
// `count` buckets: start, start*factor, start*factor^2, ...
std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric name with its children, one child per distinct label value tuple.
template <typename T>
class Family {
 public:
  // Returns the child for these label values (created on first use). The number of values must
  // equal the number of label names.
  T& With(const LabelValues& values);
  // The child of a family without labels.
  T& Get() { return With({}); }

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names, std::vector<double> buckets)
      : label_names_(std::move(label_names)), buckets_(std::move(buckets)) {}
  std::vector<std::string> label_names_;
  std::vector<double> buckets_;  // histograms only
  mutable std::mutex mu_;
  std::map<LabelValues, std::unique_ptr<T>> children_;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Family<metrics::Counter>& Counter(const std::string& name, const std::string& help,
                                    std::vector<std::string> label_names = {});
  Family<metrics::Gauge>& Gauge(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names = {});
  // Bounds must be finite and strictly ascending; +Inf is implicit.
  Family<metrics::Histogram>& Histogram(const std::string& name, const std::string& help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> upper_bounds);

  // Text exposition format 0.0.4; families sorted by name, children by label values.
  std::string Expose() const;

 private:
  struct Entry;
  Entry& Register(const std::string& name, const std::string& help, MetricType type,
                  const std::vector<std::string>& label_names, const std::vector<double>& buckets);
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
};

// The process-wide registry served by `/metrics`.
Registry& DefaultRegistry();

// Formatting helpers of the exposition format, exposed for tests and other writers.
std::string FormatValue(double v);             // "1", "0.25", "+Inf", "NaN"
std::string EscapeLabelValue(std::string_view v);  // backslash, double quote, newline
std::string EscapeHelp(std::string_view v);        // backslash, newline
// Content-Type of Expose()'s output.
inline constexpr std::string_view kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace openrl::metrics
