#include "openrl/cli/profiling.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>

namespace openrl::cli {

void StartProfiler() {
  using namespace torch::autograd::profiler;
  ProfilerConfig cfg(torch::profiler::impl::ProfilerState::KINETO, /*report_input_shapes=*/true,
                     /*profile_memory=*/false, /*with_stack=*/false, /*with_flops=*/false, /*with_modules=*/false);
  std::set<torch::profiler::impl::ActivityType> acts{torch::profiler::impl::ActivityType::CPU};
  prepareProfiler(cfg, acts);
  enableProfiler(cfg, acts);
}

Status StopProfiler(const std::string& path) {
  auto result = torch::autograd::profiler::disableProfiler();
  try {
    result->save(path);
  } catch (const std::exception& e) {
    return Internal("--profile " + path + ": " + e.what());
  }
  return Status::Ok();
}

}  // namespace openrl::cli
