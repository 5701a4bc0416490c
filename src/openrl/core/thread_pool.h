// A fixed-size thread pool. Submit returns a std::future; an exception thrown by the task is
// captured into that future (it never escapes a worker). With a bounded queue, Submit waits for
// room and TrySubmit returns false when full (back-pressure for callers that must not block).
// Shutdown stops intake, drains every queued task, then joins; the destructor calls it.
// Tasks submitted after Shutdown are not run: their future holds a std::runtime_error.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

namespace openrl {

class ThreadPool {
 public:
  // max_queue = 0: unbounded. num_threads = 0 is treated as 1.
  explicit ThreadPool(size_t num_threads, size_t max_queue = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  template <typename F>
  auto Submit(F&& fn) -> std::future<std::invoke_result_t<std::decay_t<F>>> {
    auto [task, future] = Package(std::forward<F>(fn));
    if (!Enqueue(std::move(task), /*block=*/true)) RejectAfterShutdown(future);
    return std::move(future);
  }

  // Returns false (and leaves *out untouched) when the bounded queue is full or the pool is shut
  // down; the task is then not run.
  template <typename F>
  bool TrySubmit(F&& fn, std::future<std::invoke_result_t<std::decay_t<F>>>* out = nullptr) {
    auto [task, future] = Package(std::forward<F>(fn));
    if (!Enqueue(std::move(task), /*block=*/false)) return false;
    if (out) *out = std::move(future);
    return true;
  }

  void Shutdown();
  size_t num_threads() const { return workers_.size(); }
  size_t queued() const;

 private:
  template <typename F>
  static auto Package(F&& fn) {
    using R = std::invoke_result_t<std::decay_t<F>>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    std::future<R> future = task->get_future();
    return std::make_pair(std::function<void()>([task] { (*task)(); }), std::move(future));
  }
  template <typename R>
  static void RejectAfterShutdown(std::future<R>& future) {
    std::promise<R> p;
    p.set_exception(std::make_exception_ptr(std::runtime_error("thread pool is shut down")));
    future = p.get_future();
  }
  bool Enqueue(std::function<void()> task, bool block);
  void WorkerLoop();

  const size_t max_queue_;
  mutable std::mutex mu_;
  std::condition_variable has_work_;
  std::condition_variable has_room_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::once_flag shutdown_once_;
};

}  // namespace openrl
