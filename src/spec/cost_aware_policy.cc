#include <algorithm>

#include "specula/spec/draft_policy.h"

namespace specula {

CostAwarePolicy::CostAwarePolicy(const Options& o) : o_(o), acceptance_(o.max_k, o.decay) {
  o_.probe_every = std::max(1, o.probe_every);
  o_.max_probe_every = std::max(o_.probe_every, o.max_probe_every);
  probe_gap_ = o_.probe_every;
}

int CostAwarePolicy::NextLength(const RoundInfo& round) {
  const PassCosts none;
  const PassCosts& c = round.costs != nullptr ? *round.costs : none;
  // Tokens per second of the whole pass: the other sequences gain at least one token each.
  const double others = round.other_sequences;
  const auto rate = [&](int k) {
    return (others + acceptance_.ExpectedTokens(k)) /
           (c.Pass(round.other_rows + 1 + k) + k * c.DraftStep());
  };
  // Reach one position beyond what has been seen: an untried drafter starts at K = 1, and a good
  // one earns longer drafts a round at a time.
  const int known = acceptance_.Known();
  // Drafting must beat plain decoding by a margin: a decision made on noisy timings should not
  // flip-flop at break-even.
  constexpr double kMargin = 1.02;
  int best = 0;
  double best_rate = rate(0) * kMargin;
  for (int k = 1; k <= std::min(o_.max_k, known + 1); ++k) {
    if (const double r = rate(k); r > best_rate) {
      best = k;
      best_rate = r;
    }
  }
  if (best > 0) {
    plain_rounds_ = 0;
    probe_gap_ = o_.probe_every;
    return best;
  }
  // Look again, the text may have changed; a drafter that keeps failing is asked less and less.
  if (++plain_rounds_ >= probe_gap_) {
    plain_rounds_ = 0;
    probing_ = true;
    return 1;
  }
  return 0;
}

void CostAwarePolicy::Observe(int drafted, int accepted) {
  if (drafted <= 0) return;
  if (probing_) {
    probing_ = false;
    probe_gap_ = accepted > 0 ? o_.probe_every : std::min(2 * probe_gap_, o_.max_probe_every);
  }
  acceptance_.Observe(drafted, accepted);
}

}  // namespace specula
