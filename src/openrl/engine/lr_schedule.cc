#include "openrl/engine/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace openrl::engine {

Result<LrScheduleKind> ParseLrSchedule(const std::string& name) {
  if (name == "constant") return LrScheduleKind::kConstant;
  if (name == "linear") return LrScheduleKind::kLinear;
  if (name == "cosine") return LrScheduleKind::kCosine;
  return InvalidArgument("lr-schedule: '" + name + "' is not one of constant, linear, cosine");
}

double LrSchedule::Factor(int64_t step) const {
  if (step < warmup_steps)
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  double rest = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  switch (kind) {
    case LrScheduleKind::kConstant:
      return 1.0;
    case LrScheduleKind::kLinear:
      return std::max(0.0, static_cast<double>(total_steps - step) / rest);
    case LrScheduleKind::kCosine: {
      double progress = static_cast<double>(step - warmup_steps) / rest;
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
    }
  }
  return 1.0;
}

}  // namespace openrl::engine
