// Per-row work between matmuls (norms, RoPE, GELU, routing), split across the pool.
#pragma once

#include <algorithm>
#include <cstddef>

#include "specula/base/thread_pool.h"

namespace specula {

// fn(t) for the rows t = 0 .. T-1, split across the pool when there are several, so the other
// threads do not idle between a forward's matmuls. A row's result does not depend on which thread
// computes it.
template <class Fn>
void ForEachRow(ThreadPool& pool, int T, const Fn& fn) {
  const auto rows = static_cast<size_t>(T);
  const size_t tasks = std::min(rows, static_cast<size_t>(pool.num_threads()));
  if (tasks < 2) {
    for (int t = 0; t < T; ++t) fn(t);
    return;
  }
  pool.ParallelFor(tasks, [&](size_t task, int) {
    for (size_t t = rows * task / tasks; t < rows * (task + 1) / tasks; ++t)
      fn(static_cast<int>(t));
  });
}

}  // namespace specula
