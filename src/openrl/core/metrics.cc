#include "openrl/core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace openrl::metrics {
namespace {

void AtomicAdd(std::atomic<double>& a, double amount) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + amount, std::memory_order_relaxed)) {
  }
}

bool ValidName(std::string_view name, bool allow_colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (allow_colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string_view TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"}` or "" when there are no labels; `extra` is appended last (for `le`).
std::string LabelText(const std::vector<std::string>& names, const LabelValues& values,
                      std::string_view extra_name = {}, std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra_name.empty()) {
    if (!names.empty()) out += ',';
    out += std::string(extra_name) + "=\"" + std::string(extra_value) + "\"";
  }
  out += '}';
  return out;
}

}  // namespace

void Counter::Inc(double amount) {
  if (amount < 0 || std::isnan(amount)) return;
  AtomicAdd(value_, amount);
}

void Gauge::Inc(double amount) { AtomicAdd(value_, amount); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  std::lock_guard lock(mu_);
  ++counts_[i];
  sum_ += value;
  ++count_;
}

Histogram::Snapshot Histogram::Snap() const {
  std::lock_guard lock(mu_);
  Snapshot s;
  s.upper_bounds = bounds_;
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double v = start;
  for (int i = 0; i < count; ++i, v *= factor) out.push_back(v);
  return out;
}

template <typename T>
T& Family<T>::With(const LabelValues& values) {
  if (values.size() != label_names_.size()) {
    throw std::logic_error("metrics: expected " + std::to_string(label_names_.size()) +
                           " label values, got " + std::to_string(values.size()));
  }
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it != children_.end()) return *it->second;
  std::unique_ptr<T> child;
  if constexpr (std::is_same_v<T, metrics::Histogram>) {
    child = std::make_unique<T>(buckets_);
  } else {
    child = std::make_unique<T>();
  }
  return *children_.emplace(values, std::move(child)).first->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  std::string help;
  MetricType type;
  std::vector<std::string> label_names;
  std::vector<double> buckets;
  std::unique_ptr<Family<metrics::Counter>> counter;
  std::unique_ptr<Family<metrics::Gauge>> gauge;
  std::unique_ptr<Family<metrics::Histogram>> histogram;
};

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Entry& Registry::Register(const std::string& name, const std::string& help,
                                    MetricType type, const std::vector<std::string>& label_names,
                                    const std::vector<double>& buckets) {
  if (!ValidName(name, /*allow_colon=*/true)) {
    throw std::logic_error("metrics: invalid metric name '" + name + "'");
  }
  for (const auto& l : label_names) {
    if (!ValidName(l, false) || l.rfind("__", 0) == 0 ||
        (type == MetricType::kHistogram && l == "le")) {
      throw std::logic_error("metrics: invalid label name '" + l + "' for '" + name + "'");
    }
  }
  if (type == MetricType::kHistogram) {
    for (size_t i = 0; i < buckets.size(); ++i) {
      if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
        throw std::logic_error("metrics: buckets of '" + name +
                               "' must be finite and strictly ascending");
      }
    }
  }
  std::lock_guard lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    Entry& e = *it->second;
    if (e.type != type || e.label_names != label_names || e.buckets != buckets) {
      throw std::logic_error("metrics: '" + name +
                             "' already registered with another type, labels or buckets");
    }
    return e;
  }
  auto e = std::make_unique<Entry>();
  e->help = help;
  e->type = type;
  e->label_names = label_names;
  e->buckets = buckets;
  switch (type) {
    case MetricType::kCounter:
      e->counter.reset(new Family<metrics::Counter>(label_names, {}));
      if (label_names.empty()) e->counter->Get();
      break;
    case MetricType::kGauge:
      e->gauge.reset(new Family<metrics::Gauge>(label_names, {}));
      if (label_names.empty()) e->gauge->Get();
      break;
    case MetricType::kHistogram:
      e->histogram.reset(new Family<metrics::Histogram>(label_names, buckets));
      if (label_names.empty()) e->histogram->Get();
      break;
  }
  return *entries_.emplace(name, std::move(e)).first->second;
}

Family<Counter>& Registry::Counter(const std::string& name, const std::string& help,
                                   std::vector<std::string> label_names) {
  return *Register(name, help, MetricType::kCounter, label_names, {}).counter;
}

Family<Gauge>& Registry::Gauge(const std::string& name, const std::string& help,
                               std::vector<std::string> label_names) {
  return *Register(name, help, MetricType::kGauge, label_names, {}).gauge;
}

Family<Histogram>& Registry::Histogram(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names,
                                       std::vector<double> upper_bounds) {
  return *Register(name, help, MetricType::kHistogram, label_names, upper_bounds).histogram;
}

std::string Registry::Expose() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& entry : entries_) {
    const std::string& name = entry.first;  // a plain reference: clang-14 cannot capture bindings
    const auto& e = entry.second;
    std::string body;
    const auto& names = e->label_names;
    auto scalar = [&](const auto& family) {
      std::lock_guard child_lock(family.mu_);
      for (const auto& [values, child] : family.children_) {
        body += name + LabelText(names, values) + " " + FormatValue(child->Value()) + "\n";
      }
    };
    if (e->counter) scalar(*e->counter);
    if (e->gauge) scalar(*e->gauge);
    if (e->histogram) {
      std::lock_guard child_lock(e->histogram->mu_);
      for (const auto& [values, child] : e->histogram->children_) {
        auto snap = child->Snap();
        for (size_t i = 0; i <= snap.upper_bounds.size(); ++i) {
          std::string le = i < snap.upper_bounds.size() ? FormatValue(snap.upper_bounds[i]) : "+Inf";
          body += name + "_bucket" + LabelText(names, values, "le", le) + " " +
                  std::to_string(snap.cumulative[i]) + "\n";
        }
        body += name + "_sum" + LabelText(names, values) + " " + FormatValue(snap.sum) + "\n";
        body += name + "_count" + LabelText(names, values) + " " + std::to_string(snap.count) + "\n";
      }
    }
    if (body.empty()) continue;
    out += "# HELP " + name + " " + EscapeHelp(e->help) + "\n";
    out += "# TYPE " + name + " " + std::string(TypeName(e->type)) + "\n";
    out += body;
  }
  return out;
}

Registry& DefaultRegistry() {
  static Registry* registry = new Registry();  // never destroyed: used from detached threads
  return *registry;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, end);
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace openrl::metrics
