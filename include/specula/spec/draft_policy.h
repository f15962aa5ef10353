// How many tokens to draft next round. Policies see only counters, never the model.
#pragma once

#include <memory>
#include <string>

#include "specula/base/status.h"

namespace specula {

class DraftPolicy {
 public:
  virtual ~DraftPolicy() = default;
  virtual int NextLength() = 0;  // K for the next round; 0 = decode one token plainly
  // The drafter stops before a token it believes less than this (0 = never).
  virtual float MinConfidence() const { return 0.0f; }
  virtual void Observe(int drafted, int accepted) = 0;
};

// Always K.
class FixedPolicy : public DraftPolicy {
 public:
  explicit FixedPolicy(int k) : k_(k) {}
  int NextLength() override { return k_; }
  void Observe(int, int) override {}

 private:
  int k_;
};

// Grows K after a fully accepted round and shrinks it to what was accepted otherwise; stops the
// drafter early when it is unsure (its probability below `min_confidence`); and when the recent
// acceptance rate collapses, stops drafting for a while and then probes again with K = 1.
class AdaptivePolicy : public DraftPolicy {
 public:
  struct Options {
    int max_k = 4;
    float min_confidence = 0.2f;
    double low_acceptance = 0.15;  // below this (moving average) drafting pauses
    int pause_rounds = 16;
    double smoothing = 0.3;  // weight of the latest round in the moving average
  };
  explicit AdaptivePolicy(const Options& o) : o_(o), k_(o.max_k) {}
  int NextLength() override;
  float MinConfidence() const override { return o_.min_confidence; }
  void Observe(int drafted, int accepted) override;

 private:
  Options o_;
  int k_;
  double rate_ = 1.0;
  int paused_ = 0;
};

Result<std::unique_ptr<DraftPolicy>> MakeDraftPolicy(const std::string& name, int max_k);

}  // namespace specula
