#include <algorithm>

#include "specula/spec/draft_policy.h"

namespace specula {

int AdaptivePolicy::NextLength(const RoundInfo&) {
  if (paused_ > 0) {
    --paused_;
    return 0;
  }
  return k_;
}

void AdaptivePolicy::Observe(int drafted, int accepted) {
  if (drafted <= 0) return;
  rate_ = (1.0 - o_.smoothing) * rate_ + o_.smoothing * static_cast<double>(accepted) / drafted;
  k_ = accepted == drafted ? std::min(k_ + 1, o_.max_k) : std::max(1, accepted + 1);
  if (rate_ < o_.low_acceptance) {
    paused_ = o_.pause_rounds;
    k_ = 1;                     // probe gently when drafting resumes
    rate_ = o_.low_acceptance;  // one more bad round pauses again
  }
}

}  // namespace specula
