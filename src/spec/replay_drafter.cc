#include "specula/spec/replay_drafter.h"

#include <algorithm>

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
    if (std::find(req.stop_ids.begin(), req.stop_ids.end(), tok) != req.stop_ids.end()) break;
  }
  return d;
}

}  // namespace specula
