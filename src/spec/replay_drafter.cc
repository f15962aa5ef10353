#include "specula/spec/replay_drafter.h"

#include <algorithm>

#include "specula/runtime/generate.h"

namespace specula {

Draft ReplayDrafter::Propose(const DraftRequest& req, ThreadPool&) {
  Draft d;
  const auto it = sequences_.find(req.seq);
  if (it == sequences_.end()) return d;
  const std::vector<int>& sequence = it->second;
  for (int k = 0; k < req.max_tokens; ++k) {
    const size_t at = static_cast<size_t>(req.pos) + 1 + static_cast<size_t>(k);
    if (at >= sequence.size()) break;
    int tok = sequence[at];
    if (corrupt_prob_ > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < corrupt_prob_) {
      tok = static_cast<int>(
          (static_cast<uint64_t>(tok) + 1 + rng_() % static_cast<uint64_t>(vocab_ - 1)) %
          static_cast<uint64_t>(vocab_));
    }
    d.tokens.push_back(tok);
    if (IsStop(req.stop_ids, tok)) break;
  }
  return d;
}

}  // namespace specula
