#include <algorithm>

#include "specula/spec/draft_policy.h"

namespace specula {

CostAwarePolicy::CostAwarePolicy(const Options& o)
    : o_(o),
      reached_(static_cast<size_t>(std::max(1, o.max_k)), 0.0),
      accepted_(reached_.size(), 0.0) {
  o_.probe_every = std::max(1, o.probe_every);
  o_.max_probe_every = std::max(o_.probe_every, o.max_probe_every);
  probe_gap_ = o_.probe_every;
}

double CostAwarePolicy::ExpectedTokens(int k) const {
  double tokens = 1.0, reach = 1.0;  // the target's own token, then each draft that survives
  for (int i = 0; i < k && i < static_cast<int>(reached_.size()); ++i) {
    // One success in two tries as the prior: an unknown drafter is worth trying.
    const double a =
        (accepted_[static_cast<size_t>(i)] + 1.0) / (reached_[static_cast<size_t>(i)] + 2.0);
    reach *= a;
    tokens += reach;
  }
  return tokens;
}

int CostAwarePolicy::NextLength(const RoundInfo& round) {
  const PassCosts none;
  const PassCosts& c = round.costs != nullptr ? *round.costs : none;
  // Tokens per second of the whole pass: the other sequences gain at least one token each.
  const double others = round.other_sequences;
  const auto rate = [&](int k) {
    return (others + ExpectedTokens(k)) / (c.Pass(round.other_rows + 1 + k) + k * c.DraftStep());
  };
  // Reach one position beyond what has been seen: an untried drafter starts at K = 1, and a good
  // one earns longer drafts a round at a time.
  int known = 0;
  while (known < o_.max_k && reached_[static_cast<size_t>(known)] >= 0.5) ++known;
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
  for (size_t i = 0; i < reached_.size(); ++i) {
    reached_[i] *= o_.decay;
    accepted_[i] *= o_.decay;
  }
  // Positions up to the first rejection were reached; those before it were accepted.
  const int reached = std::min(drafted, accepted + 1);
  for (int i = 0; i < reached && i < static_cast<int>(reached_.size()); ++i) {
    reached_[static_cast<size_t>(i)] += 1.0;
    if (i < accepted) accepted_[static_cast<size_t>(i)] += 1.0;
  }
}

}  // namespace specula
