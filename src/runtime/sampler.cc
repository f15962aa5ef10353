#include "specula/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace specula {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0) return Error("--temp: must be a number >= 0");
  if (top_k < 0) return Error("--top-k: must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Error("--top-p: must be in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Error("--min-p: must be in [0, 1]");
  return OkStatus();
}

int Argmax(const float* logits, int vocab) {
  int best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

TokenDistribution ProcessedDistribution(const SamplingParams& params, const float* logits, int vocab) {
  TokenDistribution d;
  if (params.greedy()) {
    d.probs.push_back({Argmax(logits, vocab), 1.0f});
    return d;
  }
  const double inv_t = 1.0 / params.temperature;
  std::vector<int> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  // Descending logit, ties by lower id: a total order, so the result never depends on sort details.
  auto better = [&](int a, int b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  size_t keep = idx.size();
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < keep) {
    keep = static_cast<size_t>(params.top_k);
    std::nth_element(idx.begin(), idx.begin() + static_cast<long>(keep) - 1, idx.end(), better);
    idx.resize(keep);
  }
  std::sort(idx.begin(), idx.end(), better);
  const double mx = logits[idx[0]] * inv_t;
  std::vector<double> p(keep);
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp(logits[idx[i]] * inv_t - mx);
    sum += p[i];
  }
  for (double& v : p) v /= sum;
  if (params.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double cum = 0.0;
    size_t n = 0;
    while (n < keep && (n == 0 || cum < params.top_p)) cum += p[n++];
    keep = n;
  }
  if (params.min_p > 0.0f) {
    const double floor = params.min_p * p[0];
    size_t n = 1;
    while (n < keep && p[n] >= floor) ++n;
    keep = n;
  }
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  d.probs.reserve(keep);
  for (size_t i = 0; i < keep; ++i) d.probs.push_back({idx[i], static_cast<float>(p[i] / total)});
  return d;
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int Sampler::Sample(const float* logits, int vocab) {
  if (params_.greedy()) return Argmax(logits, vocab);
  const TokenDistribution d = Distribution(logits, vocab);
  const double u = Uniform();
  double cum = 0.0;
  for (const auto& [tok, p] : d.probs) {
    cum += p;
    if (u < cum) return tok;
  }
  return d.probs.back().first;  // rounding left u above the last cumulative sum
}

}  // namespace specula
