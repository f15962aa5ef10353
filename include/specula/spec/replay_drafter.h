// A drafter that replays a known continuation (e.g. the output of a plain greedy run). With
// corrupt_prob 0 it is the perfect drafter: every draft is accepted, which measures the ceiling of
// speculative decoding and catches off-by-one errors in positions, hidden rows and rollback. With
// corrupt_prob > 0 some drafts are replaced by other tokens, exercising partial acceptance.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "specula/spec/drafter.h"

namespace specula {

class ReplayDrafter : public Drafter {
 public:
  // `sequence` holds the whole expected sequence by absolute position (prompt + generation).
  ReplayDrafter(std::vector<int> sequence, int vocab, double corrupt_prob = 0.0, uint64_t seed = 0)
      : sequences_{{0, std::move(sequence)}},
        vocab_(vocab),
        corrupt_prob_(corrupt_prob),
        rng_(seed) {}
  // The expected sequence of another caller sequence id (DraftRequest::seq); the constructor's is
  // id 0.
  void SetSequence(int seq, std::vector<int> sequence) { sequences_[seq] = std::move(sequence); }
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;

 private:
  std::map<int, std::vector<int>> sequences_;
  int vocab_;
  double corrupt_prob_;
  std::mt19937_64 rng_;
};

}  // namespace specula
