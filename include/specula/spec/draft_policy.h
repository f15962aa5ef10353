// How many tokens to draft next round. Policies see only counters and measured costs, never the
// model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/spec/acceptance_model.h"
#include "specula/spec/pass_costs.h"

namespace specula {

// What a policy may know of the round it decides for.
struct RoundInfo {
  const PassCosts* costs = nullptr;  // the engine's measured pass costs; nullptr: none
  int other_rows = 0;                // rows the round's target pass carries for other sequences
  int other_sequences = 0;           // sequences those rows belong to (each gains >= 1 token)
};

class DraftPolicy {
 public:
  virtual ~DraftPolicy() = default;
  // K for the next round; 0 = decode one token plainly.
  virtual int NextLength(const RoundInfo& round) = 0;
  // The drafter stops before a token it believes less than this (0 = never).
  virtual float MinConfidence() const { return 0.0f; }
  virtual void Observe(int drafted, int accepted) = 0;
};

// Always K.
class FixedPolicy : public DraftPolicy {
 public:
  explicit FixedPolicy(int k) : k_(k) {}
  int NextLength(const RoundInfo&) override { return k_; }
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
  int NextLength(const RoundInfo& round) override;
  float MinConfidence() const override { return o_.min_confidence; }
  void Observe(int drafted, int accepted) override;

 private:
  Options o_;
  int k_;
  double rate_ = 1.0;
  int paused_ = 0;
};

// Chooses K each round to maximise the expected tokens per second of the round's target pass:
// with a_i the acceptance rate of draft position i given that the ones before it were accepted
// (decayed counts, so it follows the text), K drafts yield 1 + a_1 + a_1 a_2 + ... tokens and
// cost PassCosts::Pass(other_rows + 1 + K) + K draft steps, while the other sequences' tokens are
// spread over the same pass. K = 0, plain decoding, when drafting does not pay; then it drafts one
// token after `probe_every` plain rounds to notice when it would (each failed probe doubles the
// gap, up to `max_probe_every`; an accepted one resets it). K grows at most one position past the
// deepest one observed, so an untried drafter starts at K = 1.
class CostAwarePolicy : public DraftPolicy {
 public:
  struct Options {
    int max_k = 8;
    double decay = 0.98;        // weight of the past per observed round
    int probe_every = 32;       // plain rounds before the first probe
    int max_probe_every = 256;  // each probe the drafter fails doubles the gap, up to this
  };
  explicit CostAwarePolicy(const Options& o);
  int NextLength(const RoundInfo& round) override;
  void Observe(int drafted, int accepted) override;

 private:
  Options o_;
  AcceptanceModel acceptance_;
  int plain_rounds_ = 0;
  int probe_gap_ = 0;     // plain rounds before the next probe
  bool probing_ = false;  // the last length handed out was a probe
};

// "fixed", "adaptive" or "auto" (CostAwarePolicy), drafting at most max_k tokens.
Result<std::unique_ptr<DraftPolicy>> MakeDraftPolicy(const std::string& name, int max_k);

}  // namespace specula
