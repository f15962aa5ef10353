#include "specula/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>

#include "specula/kernels/kernels.h"

namespace specula {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0) return Error("--temp: must be a number >= 0");
  if (top_k < 0) return Error("--top-k: must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Error("--top-p: must be in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Error("--min-p: must be in [0, 1]");
  return OkStatus();
}

int Argmax(const float* logits, int vocab) {
  return static_cast<int>(BestKernels().argmax(logits, static_cast<size_t>(vocab)));
}

namespace {

struct Candidate {
  float logit;
  float weight;
  int id;
};

// Descending logit, ties by lower id: a total order, so the result never depends on sort details.
bool Before(const Candidate& a, const Candidate& b) {
  return a.logit != b.logit ? a.logit > b.logit : a.id < b.id;
}

// The processed distribution before it is written out: either every token (`all`: the most
// probable first, then the rest in id order) or the survivors in `kept`.
struct Survivors {
  std::unique_ptr<float[]> weight;  // [vocab] exp((logit - max logit) / T): the top weighs 1
  int top = 0;
  double sum = 0.0;    // of every weight
  double total = 0.0;  // of the survivors' weights
  bool all = false;
  std::vector<Candidate> kept;  // most probable first
};

// A 262,144-token vocabulary is never sorted whole. The filters only ever keep tokens whose weight
// reaches some threshold, so the tokens at or above a threshold theta (a prefix of the ranking,
// as the weight grows with the logit) are gathered, theta lowered until they hold what top-k
// (k tokens) or top-p (its mass) needs, and only they are ranked. min-p alone is a threshold.
Survivors Survive(const SamplingParams& params, const float* logits, int vocab) {
  const KernelTable& k = BestKernels();
  Survivors s;
  const size_t n = static_cast<size_t>(vocab);
  s.weight = std::make_unique_for_overwrite<float[]>(n);  // every entry is written below
  s.top = Argmax(logits, vocab);
  s.sum = k.exp_weights(logits, n, logits[s.top], 1.0f / params.temperature, s.weight.get());
  const bool top_k = params.top_k > 0 && static_cast<size_t>(params.top_k) < n;
  const bool top_p = params.top_p < 1.0f;
  if (!top_k && !top_p && params.min_p <= 0.0f) {
    s.all = true;
    s.total = s.sum;
    return s;
  }
  // Below min_p no token survives; with top-k that floor cannot be used to gather, as top-p then
  // normalises over all k tokens.
  const float floor = top_k ? 0.0f : params.min_p;
  // Gathering thresholds, in nats below the top token: each gather is one pass over the weights.
  static constexpr float kDepths[] = {8.0f, 12.0f, 16.0f, 24.0f, 32.0f, 64.0f};
  std::vector<Candidate>& c = s.kept;
  for (size_t step = 0;; ++step) {
    const bool last = !(top_k || top_p) || step == std::size(kDepths);
    const float theta = last ? floor : std::max(floor, std::exp(-kDepths[step]));
    c.clear();
    double mass = 0.0;
    for (size_t i = 0; i < n; ++i) {
      if (s.weight[i] >= theta) {
        c.push_back({logits[i], s.weight[i], static_cast<int>(i)});
        mass += s.weight[i];
      }
    }
    const bool enough = top_k   ? c.size() >= static_cast<size_t>(params.top_k)
                        : top_p ? mass >= static_cast<double>(params.top_p) * s.sum
                                : true;
    if (enough || last || theta <= floor) break;
  }
  double norm = s.sum;  // what top-p's mass is a share of
  bool ranked = false;
  if (top_k) {
    const size_t kk = std::min(c.size(), static_cast<size_t>(params.top_k));
    std::nth_element(c.begin(), c.begin() + static_cast<long>(kk) - 1, c.end(), Before);
    c.resize(kk);
    std::sort(c.begin(), c.end(), Before);
    ranked = true;
    norm = 0.0;
    for (const Candidate& x : c) norm += x.weight;
  }
  if (top_p) {  // the smallest prefix whose mass reaches top_p (at least one token)
    if (!ranked) std::sort(c.begin(), c.end(), Before);
    ranked = true;
    const double target = static_cast<double>(params.top_p) * norm;
    double cum = 0.0;
    size_t i = 0;
    while (i < c.size() && (i == 0 || cum < target)) cum += c[i++].weight;
    c.resize(i);
  }
  if (!ranked) {  // gathered in id order: the most probable goes first
    const auto it =
        std::find_if(c.begin(), c.end(), [&](const Candidate& x) { return x.id == s.top; });
    std::rotate(c.begin(), it, it + 1);
  }
  size_t kept = 1;  // min-p: weight >= min_p (the top weighs 1)
  for (size_t i = 1; i < c.size(); ++i) {
    if (c[i].weight >= params.min_p) c[kept++] = c[i];
  }
  c.resize(kept);
  for (const Candidate& x : c) s.total += x.weight;
  return s;
}

}  // namespace

TokenDistribution ProcessedDistribution(const SamplingParams& params, const float* logits,
                                        int vocab) {
  TokenDistribution d;
  if (params.greedy()) {
    d.probs.push_back({Argmax(logits, vocab), 1.0f});
    return d;
  }
  const Survivors s = Survive(params, logits, vocab);
  const double inv_total = 1.0 / s.total;
  if (!s.all) {
    d.probs.resize(s.kept.size());
    for (size_t i = 0; i < s.kept.size(); ++i)
      d.probs[i] = {s.kept[i].id, static_cast<float>(s.kept[i].weight * inv_total)};
    return d;
  }
  d.probs.reserve(static_cast<size_t>(vocab));
  d.probs.push_back({s.top, static_cast<float>(s.weight[static_cast<size_t>(s.top)] * inv_total)});
  for (int i = 0; i < vocab; ++i) {
    if (i != s.top)
      d.probs.push_back({i, static_cast<float>(s.weight[static_cast<size_t>(i)] * inv_total)});
  }
  return d;
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

// Walks the survivors in the order Distribution lists them, by their unnormalised weights, without
// writing out 262,144 pairs.
int Sampler::Sample(const float* logits, int vocab) {
  if (params_.greedy()) return Argmax(logits, vocab);
  const Survivors s = Survive(params_, logits, vocab);
  const double u = Uniform() * s.total;
  double cum = 0.0;
  if (!s.all) {
    for (const Candidate& x : s.kept) {
      if (u < (cum += x.weight)) return x.id;
    }
    return s.kept.back().id;  // rounding left u above the last cumulative sum
  }
  if (u < (cum += s.weight[static_cast<size_t>(s.top)])) return s.top;
  int last = s.top;
  for (int i = 0; i < vocab; ++i) {
    if (i == s.top) continue;
    if (u < (cum += s.weight[static_cast<size_t>(i)])) return i;
    last = i;
  }
  return last;
}

}  // namespace specula
