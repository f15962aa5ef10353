#include <cstddef>

#include "specula/spec/verifier.h"

namespace specula {

// Each row costs one pass over the vocabulary (the weights) and lookups: p(d) is one entry of the
// weight table and the residual only touches q's support, as tokens q never proposes keep p.
VerifyOutcome VerifyRejection(const float* logits, int vocab, std::span<const int> draft,
                              std::span<const TokenDistribution> q, Sampler& sampler) {
  VerifyOutcome v;
  for (size_t i = 0; i < draft.size(); ++i) {
    TokenWeights& p = sampler.Weigh(logits + i * static_cast<size_t>(vocab), vocab);
    // q(draft): a greedy draft is a point mass.
    const TokenDistribution point{{{draft[i], 1.0f}}};
    const TokenDistribution& qi = q.empty() ? point : q[i];
    double qd = 0.0;
    for (const auto& [tok, prob] : qi.probs) {
      if (tok == draft[i]) qd += prob;
    }
    const double pd = draft[i] >= 0 && draft[i] < vocab ? p.Prob(draft[i]) : 0.0;
    // Accept with probability min(1, p/q): u * q < p for u in [0, 1).
    if (qd > 0.0 && sampler.Uniform() * qd < pd) {
      ++v.accepted;
      continue;
    }
    // Rejected: sample from the residual max(p - q, 0), or from p itself when p == q up to
    // rounding leaves it empty.
    const double u = sampler.Uniform();
    p.SubtractDistribution(qi);
    v.next_token = p.Draw(u);
    return v;
  }
  v.next_token =
      sampler.Sample(logits + draft.size() * static_cast<size_t>(vocab), vocab);  // bonus from p_K
  return v;
}

}  // namespace specula
