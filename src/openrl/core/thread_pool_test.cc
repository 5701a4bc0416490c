#include "openrl/core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <stdexcept>

namespace openrl {
namespace {

TEST(ThreadPool, SubmitReturnsResults) {
  ThreadPool pool(3);
  std::vector<std::future<int>> futures;
  for (int i = 0; i < 100; ++i) futures.push_back(pool.Submit([i] { return i * i; }));
  int sum = 0;
  for (auto& f : futures) sum += f.get();
  EXPECT_EQ(sum, 328350);
  EXPECT_EQ(pool.num_threads(), 3u);
}

TEST(ThreadPool, ExceptionsAreCapturedIntoTheFuture) {
  ThreadPool pool(1);
  auto bad = pool.Submit([]() -> int { throw std::invalid_argument("bad shape"); });
  auto good = pool.Submit([] { return 7; });
  EXPECT_THROW(bad.get(), std::invalid_argument);
  EXPECT_EQ(good.get(), 7);  // the worker survived
}

TEST(ThreadPool, ShutdownDrainsQueuedWork) {
  std::atomic<int> done{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 50; ++i) {
      pool.Submit([&done] {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        done.fetch_add(1);
      });
    }
    pool.Shutdown();
    EXPECT_EQ(done.load(), 50);
    auto late = pool.Submit([] { return 1; });
    EXPECT_THROW(late.get(), std::runtime_error);
    EXPECT_FALSE(pool.TrySubmit([] { return 1; }));
  }
  EXPECT_EQ(done.load(), 50);
}

TEST(ThreadPool, BoundedQueueGivesBackPressure) {
  ThreadPool pool(1, /*max_queue=*/2);
  std::latch release(1);
  std::latch started(1);
  auto blocker = pool.Submit([&] {
    started.count_down();
    release.wait();
  });
  started.wait();  // the worker is busy; the queue is empty
  std::future<int> a, b, c;
  EXPECT_TRUE(pool.TrySubmit([] { return 1; }, &a));
  EXPECT_TRUE(pool.TrySubmit([] { return 2; }, &b));
  EXPECT_FALSE(pool.TrySubmit([] { return 3; }, &c));  // full
  EXPECT_FALSE(c.valid());
  EXPECT_EQ(pool.queued(), 2u);
  // A blocking Submit waits for room and completes once the worker moves on.
  std::thread submitter([&] { EXPECT_EQ(pool.Submit([] { return 4; }).get(), 4); });
  release.count_down();
  submitter.join();
  EXPECT_EQ(a.get() + b.get(), 3);
  blocker.get();
}

}  // namespace
}  // namespace openrl
