#include "specula/server/scheduler.h"

#include <algorithm>

#include "specula/base/sysinfo.h"

namespace specula::server {

namespace {
constexpr double kRateWindowSeconds = 5.0;
}  // namespace

Scheduler::Scheduler(TargetModel& target, Drafter* drafter, ThreadPool& pool,
                     const Options& options)
    : prefix_cache_(options.cache_bytes > 0 ? std::make_unique<PrefixCache>(options.cache_bytes)
                                            : nullptr),
      engine_(target, drafter, pool,
              {.max_running = options.parallel,
               .context = options.context,
               .prefill_rows = options.prefill_rows,
               .prefix_cache = prefix_cache_.get()}),
      options_(options),
      thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() {
  Drain();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Scheduler::PublishCounters() {
  metrics_.totals = engine_.counters();
  metrics_.prompt_cache_bytes = prefix_cache_ ? prefix_cache_->bytes() : 0;
}

void Histogram::Observe(double v) {
  const size_t bucket = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) -
                                            bounds.begin());  // le: v <= bound
  ++counts[bucket];
  sum += v;
  ++count;
}

bool Scheduler::Submit(std::shared_ptr<Job> job) {
  job->t_submit = NowSeconds();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_) return false;
    if (in_engine_ >= options_.parallel + options_.queue_max) return false;
    inbox_.push_back(std::move(job));
    ++in_engine_;
    ++metrics_.requests;
    ++metrics_.queue_depth;
  }
  cv_.notify_all();
  return true;
}

void Scheduler::Drain() {
  std::unique_lock<std::mutex> lock(mu_);
  draining_ = true;
  idle_cv_.wait(lock, [&] { return in_engine_ == 0; });
}

MetricsSnapshot Scheduler::Metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  return metrics_;
}

// The error is set before `done`, under the job's lock, so a handler that sees done sees why.
void Scheduler::End(Job& job, const SpecResult& result, const Status& status) {
  {
    // A client that reads /metrics after its answer sees the answer counted.
    std::lock_guard<std::mutex> lock(mu_);
    metrics_.request_duration.Observe(NowSeconds() - job.t_submit);
    PublishCounters();
  }
  {
    std::lock_guard<std::mutex> lock(job.mu);
    job.result = result;
    if (!status.ok()) job.error = status.message();
    job.done = true;
  }
  // The callback holds the handler's waker, which belongs to the server's I/O context: it is
  // dropped here, before Drain can return, because the scheduler may keep the job (and outlive that
  // context) until its next round.
  std::function<void()> notify = std::move(job.on_update);
  job.on_update = nullptr;
  if (notify) notify();
  notify = nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  --in_engine_;
  idle_cv_.notify_all();
}

void Scheduler::Loop() {
  for (;;) {
    std::deque<std::shared_ptr<Job>> adds;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !engine_.idle(); });
      if (stop_ && inbox_.empty() && engine_.idle()) return;
      adds.swap(inbox_);
    }
    for (std::shared_ptr<Job>& job : adds) {
      Job* j = job.get();
      auto on_token = [this, j](int t, TokenOrigin origin) {
        bool first;
        {
          std::lock_guard<std::mutex> lock(j->mu);
          first = j->tokens.empty();
          j->tokens.push_back(t);
          j->origins.push_back(origin);
        }
        const double now = NowSeconds();
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (first) {
            metrics_.time_to_first_token.Observe(now - j->t_submit);
          } else {
            metrics_.inter_token.Observe(now - j->t_last_token);
          }
        }
        j->t_last_token = now;
        if (j->on_update) j->on_update();
      };
      // Runs on this thread, inside Step (Add only validates; a refused job is ended below).
      auto on_done = [this, j](const SpecResult& r, const Status& status) { End(*j, r, status); };
      Result<int> id = engine_.Add(j->prompt, j->options, on_token, on_done);
      if (!id.ok()) {
        End(*j, SpecResult{}, id.status());
        continue;
      }
      live_[*id] = std::move(job);
    }
    for (auto it = live_.begin(); it != live_.end();) {
      bool finished;
      {
        std::lock_guard<std::mutex> lock(it->second->mu);
        finished = it->second->done;
      }
      if (finished) {
        it = live_.erase(it);
        continue;
      }
      if (it->second->cancel.load()) engine_.Cancel(it->first);
      ++it;
    }

    engine_.Step();
    const double now = NowSeconds();
    const SpecStats& c = engine_.counters();
    rate_window_.emplace_back(now, c.generated);
    while (rate_window_.size() > 2 && now - rate_window_.front().first > kRateWindowSeconds)
      rate_window_.pop_front();
    std::lock_guard<std::mutex> lock(mu_);
    PublishCounters();
    metrics_.queue_depth = engine_.waiting() + static_cast<int>(inbox_.size());
    metrics_.running = engine_.running();
    const double span = now - rate_window_.front().first;
    metrics_.decode_tok_per_s =
        engine_.idle() || span <= 0
            ? 0.0
            : static_cast<double>(c.generated - rate_window_.front().second) / span;
    if (engine_.idle()) rate_window_.clear();
  }
}

}  // namespace specula::server
