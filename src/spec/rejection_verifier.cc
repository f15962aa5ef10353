#include <vector>

#include "specula/spec/verifier.h"

namespace specula {
namespace {

int SampleFrom(const std::vector<std::pair<int, double>>& dist, double total, double u) {
  double cum = 0.0;
  for (const auto& [tok, w] : dist) {
    cum += w / total;
    if (u < cum) return tok;
  }
  return dist.back().first;
}

}  // namespace

VerifyOutcome VerifyRejection(const float* logits, int vocab, std::span<const int> draft,
                              std::span<const TokenDistribution> q, Sampler& sampler) {
  VerifyOutcome v;
  for (size_t i = 0; i < draft.size(); ++i) {
    const TokenDistribution p =
        sampler.Distribution(logits + i * static_cast<size_t>(vocab), vocab);
    // q(draft): a greedy draft is a point mass.
    double qd = q.empty() ? 1.0 : 0.0;
    if (!q.empty()) {
      for (const auto& [tok, prob] : q[i].probs) {
        if (tok == draft[i]) qd += prob;
      }
    }
    double pd = 0.0;
    for (const auto& [tok, prob] : p.probs) {
      if (tok == draft[i]) pd = prob;
    }
    // Accept with probability min(1, p/q): u * q < p for u in [0, 1).
    if (qd > 0.0 && sampler.Uniform() * qd < pd) {
      ++v.accepted;
      continue;
    }
    // Rejected: resample from the residual max(p - q, 0), which lives on p's support. q is
    // spread over a dense table once, as p may cover the whole vocabulary.
    std::vector<double> qv(static_cast<size_t>(vocab), 0.0);
    if (q.empty()) {
      qv[static_cast<size_t>(draft[i])] = 1.0;
    } else {
      for (const auto& [tok, prob] : q[i].probs) qv[static_cast<size_t>(tok)] += prob;
    }
    std::vector<std::pair<int, double>> residual;
    double total = 0.0;
    for (const auto& [tok, prob] : p.probs) {
      const double r = static_cast<double>(prob) - qv[static_cast<size_t>(tok)];
      if (r > 0.0) {
        residual.push_back({tok, r});
        total += r;
      }
    }
    const double u = sampler.Uniform();
    if (total <= 0.0) {  // p == q up to rounding: the residual is empty, fall back to p itself
      residual.clear();
      total = 0.0;
      for (const auto& [tok, prob] : p.probs) {
        residual.push_back({tok, prob});
        total += prob;
      }
    }
    v.next_token = SampleFrom(residual, total, u);
    return v;
  }
  v.next_token =
      sampler.Sample(logits + draft.size() * static_cast<size_t>(vocab), vocab);  // bonus from p_K
  return v;
}

}  // namespace specula
