// A fork/join pool for data-parallel loops. Workers sleep between calls; each ParallelFor wakes
// them once and the calling thread works too, so a pool of N threads uses N cores.
// Which thread runs a task never changes a result: every kernel computes each output element
// entirely inside one task.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace specula {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // num_threads >= 1, includes the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(task, thread_index) for task in [0, num_tasks). Returns when all tasks are done.
  void ParallelFor(size_t num_tasks, const std::function<void(size_t, int)>& fn);

  // Physical cores of this machine (hyper-threads do not help bandwidth-bound decode).
  static int DefaultThreads();

 private:
  void WorkerLoop(int index);
  void RunTasks(int thread_index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  uint64_t generation_ = 0;  // bumped per ParallelFor, guarded by mu_
  bool stop_ = false;
  int busy_workers_ = 0;

  const std::function<void(size_t, int)>* fn_ = nullptr;
  size_t num_tasks_ = 0;
  std::atomic<size_t> next_task_{0};
};

}  // namespace specula
