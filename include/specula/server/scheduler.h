// The engine thread of `specula serve`: the server's one I/O thread submits jobs, this thread owns
// the BatchEngine and runs rounds while there is work, and each job reports back through its own
// fields: the engine thread appends to `Job::tokens`, sets `result`, `error` and `done` at the end,
// and calls `on_update` after each change. Also keeps the counters /metrics exports.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "specula/spec/batch_engine.h"
#include "specula/spec/prefix_cache.h"

namespace specula::server {

// One request's sequence. The handler fills the inputs, then follows the outputs as they arrive.
struct Job {
  std::vector<int> prompt;
  SeqOptions options;
  std::unique_ptr<DraftPolicy> policy;  // options.policy points here (nullptr: always draft_max)
  // Runs on the engine thread, with no lock held, after tokens were added or the job ended; the
  // scheduler destroys it when the job ends, before Drain() can return.
  std::function<void()> on_update;

  std::mutex mu;
  std::vector<int> tokens;           // generated ids so far (guarded by mu)
  std::vector<TokenOrigin> origins;  // how each of `tokens` came (guarded by mu)
  bool done = false;                 // (guarded by mu)
  SpecResult result;                 // valid once done (guarded by mu)
  std::string error;                 // set before done when the engine refused or failed the job
  std::atomic<bool> cancel{false};   // set by the handler: the client left or a stop string matched

  // Engine thread only: when the job was submitted and when its last token came (seconds).
  double t_submit = 0.0, t_last_token = 0.0;
};

// A Prometheus histogram: counts of observations at or below each bound (cumulative on export).
struct Histogram {
  explicit Histogram(std::vector<double> upper_bounds)
      : bounds(std::move(upper_bounds)), counts(bounds.size() + 1, 0) {}
  void Observe(double v);
  std::vector<double> bounds;  // ascending; the last count is the +Inf bucket
  std::vector<long> counts;    // per bucket, not cumulative
  double sum = 0.0;
  long count = 0;
};

struct MetricsSnapshot {
  long requests = 0;
  SpecStats totals;  // the engine's counters
  size_t prompt_cache_bytes = 0;
  // Seconds: from submission to the first generated token, between consecutive tokens of a request
  // (tokens accepted together in one round are ~0 apart), and from submission to the end.
  Histogram time_to_first_token{{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
  Histogram inter_token{{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  Histogram request_duration{{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}};
  int queue_depth = 0;  // submitted, not yet decoding
  int running = 0;
  double decode_tok_per_s = 0.0;  // over the last few seconds of rounds
};

class Scheduler {
 public:
  struct Options {
    int parallel = 4;    // sequences decoding at once
    int queue_max = 64;  // waiting beyond `parallel`; more are refused (503)
    int context = 4096;  // positions per sequence
    int prefill_rows = 256;
    size_t cache_bytes = 0;  // the prompt cache's bound (serve: --cache-ram); 0 turns it off
  };
  Scheduler(TargetModel& target, Drafter* drafter, ThreadPool& pool, const Options& options);
  ~Scheduler();  // finishes every submitted job, then stops the thread

  // False when the queue is full or the scheduler is draining.
  bool Submit(std::shared_ptr<Job> job);
  // Stops accepting jobs and waits until every submitted one has finished.
  void Drain();
  MetricsSnapshot Metrics() const;
  const Options& options() const { return options_; }

 private:
  void Loop();
  void End(Job& job, const SpecResult& result, const Status& status);
  // Copies the engine's counters and the prompt cache's size into metrics_ (mu_ held).
  void PublishCounters();

  std::unique_ptr<PrefixCache> prefix_cache_;  // engine thread only; declared before the engine
  BatchEngine engine_;
  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<std::shared_ptr<Job>> inbox_;           // guarded by mu_
  int in_engine_ = 0;                                // jobs added and not yet done (guarded by mu_)
  bool draining_ = false, stop_ = false;             // guarded by mu_
  MetricsSnapshot metrics_;                          // guarded by mu_
  std::deque<std::pair<double, long>> rate_window_;  // (time, generated) samples, engine thread
  std::map<int, std::shared_ptr<Job>> live_;         // engine id -> job, engine thread only
  std::thread thread_;
};

}  // namespace specula::server
