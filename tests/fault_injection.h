// Models and drafters that fail on demand, standing in front of real ones: for testing that a
// failure ends exactly the sequences it concerns and reaches their clients.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "specula/models/target_model.h"
#include "specula/spec/drafter.h"

namespace specula::test {

// A sequence is marked by the first token of its prompt (seen when its cache is still empty). A
// forward that includes a sequence marked with token m whose cache holds at least fail_from[m]
// positions fails as a whole, before touching any cache, as a real model's validation does.
class FaultyTarget : public TargetModel {
 public:
  FaultyTarget(TargetModel& inner, std::map<int, int> fail_from)
      : inner_(inner), fail_from_(std::move(fail_from)) {}

  const Gemma4Config& config() const override { return inner_.config(); }
  std::unique_ptr<KvCache> NewCache(int context, int headroom) const override {
    return inner_.NewCache(context, rollback_headroom_ >= 0 ? rollback_headroom_ : headroom);
  }
  std::unique_ptr<PassScratch> NewScratch() const override { return inner_.NewScratch(); }
  Status ForwardBatch(std::span<const BatchSeq> seqs, ThreadPool& pool, PassScratch& scratch,
                      BatchOutput* out) const override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const BatchSeq& s : seqs) {
        if (s.cache->length() == 0) first_token_[s.cache] = s.ids[0];
        const auto it = fail_from_.find(first_token_[s.cache]);
        if (it != fail_from_.end() && s.cache->length() >= it->second) {
          ++failures;
          return Error("injected target failure at position " + std::to_string(s.cache->length()));
        }
      }
    }
    return inner_.ForwardBatch(seqs, pool, scratch, out);
  }
  // Caches with this much sliding-window headroom (-1: what the caller asks for). 0 makes a
  // rollback after the ring has wrapped fail, as it really does.
  void set_rollback_headroom(int rows) { rollback_headroom_ = rows; }

  mutable std::atomic<int> failures{0};

 private:
  TargetModel& inner_;
  const std::map<int, int> fail_from_;  // marker token -> first failing cache length
  int rollback_headroom_ = -1;
  mutable std::mutex mu_;
  mutable std::map<const KvCache*, int> first_token_;  // (caches are not reused while a test runs)
};

// Fails every batch that includes a request for one of the given sequence ids.
class FaultyDrafter : public Drafter {
 public:
  FaultyDrafter(Drafter& inner, std::set<int> failing_seqs)
      : inner_(inner), failing_(std::move(failing_seqs)) {}
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override {
    return inner_.Propose(request, pool);
  }
  Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                          ThreadPool& pool) override {
    for (const DraftRequest& r : requests) {
      if (failing_.count(r.seq)) return Error("injected drafter failure");
    }
    return inner_.ProposeBatch(requests, pool);
  }

 private:
  Drafter& inner_;
  std::set<int> failing_;
};

}  // namespace specula::test
