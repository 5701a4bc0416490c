#include <cmath>
#include <cstdarg>
#include <numeric>
#include <random>

#include "openrl/cli/quickstart.h"
#include "openrl/core/progress.h"

namespace openrl::cli::quickstart {

std::string Format(const char* f, ...) {
  va_list ap, ap2;
  va_start(ap, f);
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, f, ap);
  va_end(ap);
  std::string out(static_cast<size_t>(std::max(n, 0)), '\0');
  std::vsnprintf(out.data(), out.size() + 1, f, ap2);
  va_end(ap2);
  return out;
}

Result<LoopResult> TrainLoop(engine::Trainer& trainer, const std::vector<std::vector<int32_t>>& rows,
                             const std::vector<int64_t>& loss_from, const LoopOptions& o) {
  std::mt19937_64 rng(1234);
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  ProgressBar bar({.label = o.label, .total = o.steps, .unit = "step"});
  size_t pos = rows.size();
  LoopResult r;
  for (int64_t s = 0; s < o.steps; ++s) {
    std::vector<std::vector<int32_t>> b;
    std::vector<int64_t> from;
    for (int64_t i = 0; i < o.batch; ++i) {
      if (pos >= rows.size()) {
        std::shuffle(order.begin(), order.end(), rng);
        pos = 0;
      }
      if (!loss_from.empty()) from.push_back(loss_from[order[pos]]);
      b.push_back(rows[order[pos++]]);
    }
    double warm = std::max<double>(1, o.steps * 0.05);
    double f = s < warm ? (s + 1) / warm
                        : 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * (s - warm) / std::max(1.0, o.steps - warm)));
    engine::AdamParams hp{o.lr * f, 0.9, 0.98, 1e-8, 0.01, 1.0};
    OPENRL_ASSIGN_OR_RETURN(auto rep, trainer.Step(b, hp, from));
    r.loss = s == 0 ? rep.loss : 0.95 * r.loss + 0.05 * rep.loss;
    r.tokens_per_second = s == 0 ? rep.tokens_per_second : 0.9 * r.tokens_per_second + 0.1 * rep.tokens_per_second;
    bar.SetSuffix(Format("loss %.3f  %.0f tok/s", r.loss, r.tokens_per_second));
    bar.Advance();
  }
  bar.Finish();
  return r;
}

}  // namespace openrl::cli::quickstart
