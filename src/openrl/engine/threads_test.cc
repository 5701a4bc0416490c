// Threads of tensor work in the server: a request handler's tensor ops stay on its own thread
// (SerialTensorWorkOnThisThread), while a thread that sets its own count after that (the engine,
// a model load) still splits its work.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "openrl/engine/scheduler.h"

namespace openrl::engine {
namespace {

// The threads that ran chunks of one at::parallel_for on a fresh thread, which first runs `setup`.
template <typename Setup>
std::set<std::thread::id> ParallelForThreads(Setup setup) {
  std::set<std::thread::id> ids;
  std::mutex mu;
  std::thread([&] {
    setup();
    at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::lock_guard<std::mutex> lock(mu);
      ids.insert(std::this_thread::get_id());
    });
  }).join();
  return ids;
}

TEST(SerialTensorWork, HandlerThreadsStartNoWorkersWhileTheEngineKeepsItsThreads) {
  const int threads = at::get_num_threads();
  if (threads < 2) GTEST_SKIP() << "one thread of tensor work on this machine";
  // A fresh thread splits its work by default (the control: without the call, work spreads)...
  EXPECT_EQ(ParallelForThreads([] {}).size(), 2u);
  // ...not after SerialTensorWorkOnThisThread.
  std::set<std::thread::id> serial = ParallelForThreads([] {
    SerialTensorWorkOnThisThread();
    EXPECT_EQ(at::get_num_threads(), 1);
  });
  EXPECT_EQ(serial.size(), 1u);
  // The engine sets its count when it starts; a handler that goes serial after that, before the
  // engine's first parallel op, must not take the engine's threads (ATen's lazy per-thread
  // initialization would hand it the count the handler set last).
  std::set<std::thread::id> engine = ParallelForThreads([&] {
    SetTensorThreadsOfThisThread(threads);
    std::thread([] { SerialTensorWorkOnThisThread(); }).join();
  });
  EXPECT_EQ(engine.size(), 2u);
}

}  // namespace
}  // namespace openrl::engine
