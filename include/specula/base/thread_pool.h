// A fork/join pool for data-parallel loops. The calling thread works too, so a pool of N threads
// uses N cores. Between calls, workers spin briefly on an atomic generation counter (a decode step
// issues ~350 parallel regions separated by microseconds of serial work, and a futex wake-up per
// region costs more than that), then sleep on a condition variable.
//
// Which thread runs a task never changes a result: every kernel computes each output element
// entirely inside one task.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
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
  // Not reentrant: one ParallelFor at a time.
  void ParallelFor(size_t num_tasks, const std::function<void(size_t, int)>& fn);

  // Physical cores of this machine (hyper-threads do not help bandwidth-bound decode).
  static int DefaultThreads();

  // At least `floats` floats of memory owned by thread `thread_index` (the index ParallelFor
  // passes), 64-byte aligned, kept for the pool's lifetime and reused: kernels take their
  // per-call buffers from here, since a fresh multi-megabyte buffer per matmul was page-faulted
  // and zeroed every time (~3% of a batched forward). Valid until the next call for that index.
  float* Scratch(int thread_index, size_t floats);

 private:
  void WorkerLoop(int index);
  void RunTasks(int thread_index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};  // bumped (under mu_) per ParallelFor
  std::atomic<bool> stop_{false};
  std::atomic<int> busy_workers_{0};

  std::vector<std::vector<float>> scratch_;  // per thread index

  const std::function<void(size_t, int)>* fn_ = nullptr;
  size_t num_tasks_ = 0;
  std::atomic<size_t> next_task_{0};
};

}  // namespace specula
