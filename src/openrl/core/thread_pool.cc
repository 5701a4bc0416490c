#include "openrl/core/thread_pool.h"

namespace openrl {

ThreadPool::ThreadPool(size_t num_threads, size_t max_queue) : max_queue_(max_queue) {
  if (num_threads == 0) num_threads = 1;
  workers_.reserve(num_threads);
  for (size_t i = 0; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() { Shutdown(); }

bool ThreadPool::Enqueue(std::function<void()> task, bool block) {
  std::unique_lock<std::mutex> lock(mu_);
  if (max_queue_ > 0) {
    if (block) {
      has_room_.wait(lock, [this] { return stopping_ || queue_.size() < max_queue_; });
    } else if (queue_.size() >= max_queue_) {
      return false;
    }
  }
  if (stopping_) return false;
  queue_.push_back(std::move(task));
  lock.unlock();
  has_work_.notify_one();
  return true;
}

void ThreadPool::WorkerLoop() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      has_work_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    has_room_.notify_one();
    task();  // packaged_task stores any exception in the future
  }
}

void ThreadPool::Shutdown() {
  std::call_once(shutdown_once_, [this] {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    has_work_.notify_all();
    has_room_.notify_all();
    for (std::thread& t : workers_) {
      if (t.joinable()) t.join();
    }
  });
}

size_t ThreadPool::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

}  // namespace openrl
