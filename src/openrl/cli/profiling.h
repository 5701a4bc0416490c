// `--profile FILE` of the engine commands: the libtorch (Kineto) profiler over the CPU ops of the
// work the command does (one training step, or every request of generate/logprobs), written as
// Chrome-trace JSON. bench/profile_report.py sums a trace per op, as it does a peer's.
#pragma once

#include <string>

#include "openrl/core/status.h"

namespace openrl::cli {

void StartProfiler();
Status StopProfiler(const std::string& path);

}  // namespace openrl::cli
