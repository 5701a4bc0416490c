// Learning-rate schedules by optimizer step, the factors of transformers' schedulers
// (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup with half a cycle), so a run matches the same run under
// transformers' Trainer step for step.
#pragma once

#include <cstdint>
#include <string>

#include "openrl/core/status.h"

namespace openrl::engine {

enum class LrScheduleKind { kConstant, kLinear, kCosine };

// "constant", "linear" or "cosine".
Result<LrScheduleKind> ParseLrSchedule(const std::string& name);

struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::kConstant;
  int64_t warmup_steps = 0;  // the factor rises linearly from 0 over these steps
  int64_t total_steps = 1;   // linear and cosine reach 0 here

  // The factor of the base learning rate for optimizer step `step` (0 for the first step). With
  // warmup, the first step's factor is 0, as in transformers.
  double Factor(int64_t step) const;
};

}  // namespace openrl::engine
