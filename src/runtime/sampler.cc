#include "specula/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "specula/base/thread_pool.h"
#include "specula/kernels/kernels.h"

namespace specula {

Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0)
    return Error("temperature: must be a number >= 0");
  // Sampling divides logits by T: below ~3e-39 1/T overflows and every token would weigh the same.
  if (temperature > 0 && !std::isfinite(1.0f / temperature))
    return Error("temperature: too small to divide by (use 0 for greedy decoding)");
  if (top_k < 0) return Error("top_k: must be >= 0");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Error("top_p: must be in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Error("min_p: must be in [0, 1]");
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

// One row's exponentials exp((logit - max logit) / T), summed per block of `block` tokens.
struct ExpRow {
  const float* logits;
  size_t n;
  float max_logit;
  float inv_temperature;
  size_t block;
};

// Fills weight [n] and blocks [ceil(n / block)] (sized by the caller); returns the total, added in
// block order so that a pool's split cannot change it.
double ExpWeights(const ExpRow& row, float* weight, std::vector<double>* blocks, ThreadPool* pool) {
  const KernelTable& k = BestKernels();
  const auto one_block = [&](size_t b, int) {
    const size_t at = b * row.block, len = std::min(row.block, row.n - at);
    (*blocks)[b] =
        k.exp_weights(row.logits + at, len, row.max_logit, row.inv_temperature, weight + at);
  };
  if (pool != nullptr && blocks->size() >= 8) {
    pool->ParallelFor(blocks->size(), one_block);
  } else {
    for (size_t b = 0; b < blocks->size(); ++b) one_block(b, 0);
  }
  double sum = 0.0;
  for (double b : *blocks) sum += b;
  return sum;
}

// The filters `params` turns on for a vocabulary of n tokens.
struct Filters {
  bool top_k = false;  // fewer than n tokens asked for
  bool top_p = false;
  size_t k = 0;
  float p = 1.0f;
  float min_p = 0.0f;
  // Below min_p no token survives; with top-k that floor cannot be used to gather, as top-p then
  // normalises over all k tokens.
  float floor = 0.0f;

  bool none() const { return !top_k && !top_p && min_p <= 0.0f; }
};

Filters FiltersOf(const SamplingParams& params, size_t n) {
  Filters f;
  f.top_k = params.top_k > 0 && static_cast<size_t>(params.top_k) < n;
  f.top_p = params.top_p < 1.0f;
  f.k = params.top_k > 0 ? static_cast<size_t>(params.top_k) : 0;
  f.p = params.top_p;
  f.min_p = params.min_p;
  f.floor = f.top_k ? 0.0f : params.min_p;
  return f;
}

// The tokens at or above the shallowest threshold that holds what top-k or top-p needs, in id
// order. Each threshold is one pass over the weights.
std::vector<Candidate> Gather(const Filters& f, const float* logits,
                              const std::vector<float>& weight, double sum) {
  // Gathering thresholds, in nats below the top token.
  static constexpr float kDepths[] = {8.0f, 12.0f, 16.0f, 24.0f, 32.0f, 64.0f};
  std::vector<Candidate> c;
  for (size_t step = 0;; ++step) {
    const bool last = !(f.top_k || f.top_p) || step == std::size(kDepths);
    const float theta = last ? f.floor : std::max(f.floor, std::exp(-kDepths[step]));
    c.clear();
    double mass = 0.0;
    for (size_t i = 0; i < weight.size(); ++i) {
      if (weight[i] >= theta) {
        c.push_back({logits[i], weight[i], static_cast<int>(i)});
        mass += weight[i];
      }
    }
    const bool enough = f.top_k   ? c.size() >= f.k
                        : f.top_p ? mass >= static_cast<double>(f.p) * sum
                                  : true;
    if (enough || last || theta <= f.floor) break;
  }
  return c;
}

// top-k, then top-p over what it kept (`sum`: the mass of all tokens). Returns whether `c` is now
// ranked; else it is still in id order.
bool RankTopKTopP(const Filters& f, double sum, std::vector<Candidate>* c) {
  double norm = sum;  // what top-p's mass is a share of
  bool ranked = false;
  if (f.top_k) {
    const size_t kk = std::min(c->size(), f.k);
    std::nth_element(c->begin(), c->begin() + static_cast<long>(kk) - 1, c->end(), Before);
    c->resize(kk);
    std::sort(c->begin(), c->end(), Before);
    ranked = true;
    norm = 0.0;
    for (const Candidate& x : *c) norm += x.weight;
  }
  if (f.top_p) {  // the smallest prefix whose mass reaches top_p (at least one token)
    if (!ranked) std::sort(c->begin(), c->end(), Before);
    ranked = true;
    const double target = static_cast<double>(f.p) * norm;
    double cum = 0.0;
    size_t i = 0;
    while (i < c->size() && (i == 0 || cum < target)) cum += (*c)[i++].weight;
    c->resize(i);
  }
  return ranked;
}

}  // namespace

// A 262,144-token vocabulary is never sorted whole. The filters only ever keep tokens whose weight
// reaches some threshold, so the tokens at or above a threshold theta (a prefix of the ranking,
// as the weight grows with the logit) are gathered, theta lowered until they hold what top-k
// (k tokens) or top-p (its mass) needs, and only they are ranked. min-p alone is a threshold.
void TokenWeights::Compute(const SamplingParams& params, const float* logits, int n,
                           ThreadPool* pool) {
  const size_t un = static_cast<size_t>(n);
  n_ = n;
  weight_.resize(un);  // every entry is written below
  top_ = Argmax(logits, n);
  total_ = 0.0;
  order_.clear();
  // Per block of kBlock tokens, so that a draw over the whole vocabulary skips whole blocks.
  blocks_.resize((un + kBlock - 1) / kBlock);
  const double sum = ExpWeights({.logits = logits,
                                 .n = un,
                                 .max_logit = logits[top_],
                                 .inv_temperature = 1.0f / params.temperature,
                                 .block = kBlock},
                                weight_.data(), &blocks_, pool);
  const Filters filters = FiltersOf(params, un);
  all_ = filters.none();
  if (all_) {
    total_ = sum;
    return;
  }
  std::vector<Candidate> c = Gather(filters, logits, weight_, sum);
  if (!RankTopKTopP(filters, sum, &c)) {  // gathered in id order: the most probable goes first
    const auto it =
        std::find_if(c.begin(), c.end(), [&](const Candidate& x) { return x.id == top_; });
    std::rotate(c.begin(), it, it + 1);
  }
  // min-p: weight >= min_p (the top weighs 1). The table then holds only the survivors, so a
  // lookup answers for filtered tokens too.
  std::fill(weight_.begin(), weight_.end(), 0.0f);
  for (size_t i = 0; i < c.size(); ++i) {
    if (i > 0 && c[i].weight < params.min_p) continue;
    order_.push_back(c[i].id);
    weight_[static_cast<size_t>(c[i].id)] = c[i].weight;
    total_ += c[i].weight;
  }
}

template <typename F>
void TokenWeights::Walk(F&& visit) const {
  if (!all_) {
    for (int id : order_) {
      if (visit(id, weight_[static_cast<size_t>(id)])) return;
    }
    return;
  }
  if (visit(top_, weight_[static_cast<size_t>(top_)])) return;
  for (int i = 0; i < n_; ++i) {
    if (i != top_ && visit(i, weight_[static_cast<size_t>(i)])) return;
  }
}

bool TokenWeights::SubtractDistribution(const TokenDistribution& q) {
  // In weight units p_t = w_t / total, so the residual weight is max(w_t - total * q_t, 0).
  // Subtracting a token's entries one at a time gives the same clamp as subtracting their sum.
  std::vector<std::pair<int, float>> undo;
  double removed = 0.0;
  for (const auto& [tok, qp] : q.probs) {
    if (tok < 0 || tok >= n_) continue;  // q's support beyond p's vocabulary carries no p
    float& w = weight_[static_cast<size_t>(tok)];
    const auto r = static_cast<float>(
        std::max(static_cast<double>(w) - total_ * static_cast<double>(qp), 0.0));
    undo.push_back({tok, w});
    removed += static_cast<double>(w) - r;
    if (all_) blocks_[static_cast<size_t>(tok) / kBlock] -= static_cast<double>(w) - r;
    w = r;
  }
  const double rest = total_ - removed;
  // q's float probabilities round each token by ~6e-8 of its mass, so a residual below 1e-6 of the
  // total is rounding, not a distribution: p == q, keep p.
  if (!(rest > total_ * 1e-6)) {
    for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
      float& w = weight_[static_cast<size_t>(it->first)];
      if (all_)
        blocks_[static_cast<size_t>(it->first) / kBlock] += static_cast<double>(it->second) - w;
      w = it->second;
    }
    return false;
  }
  total_ = rest;
  return true;
}

int TokenWeights::Draw(double u) const {
  const double target = u * total_;
  double cum = 0.0;
  int pick = top_;
  const auto step = [&](int id, float w) {
    if (w <= 0.0f) return false;
    pick = id;  // rounding may leave target above the last cumulative sum: the last survivor
    return target < (cum += w);
  };
  if (!all_) {
    Walk(step);
    return pick;
  }
  // The whole vocabulary, top first, then by id: blocks the target lies beyond are skipped by
  // their sums instead of walked (a draw that is not the top token would walk half of 262,144).
  if (step(top_, weight_[static_cast<size_t>(top_)])) return pick;
  const size_t top = static_cast<size_t>(top_);
  for (size_t b = 0; b < blocks_.size(); ++b) {
    const size_t at = b * kBlock, end = std::min(at + kBlock, static_cast<size_t>(n_));
    const double rest = blocks_[b] - (top >= at && top < end ? weight_[top] : 0.0f);
    if (b + 1 < blocks_.size() && target >= cum + rest) {
      cum += rest;
      continue;
    }
    for (size_t i = at; i < end; ++i) {
      if (i != top && step(static_cast<int>(i), weight_[i])) return pick;
    }
  }
  return pick;
}

TokenDistribution TokenWeights::ToDistribution() const {
  TokenDistribution d;
  d.probs.reserve(all_ ? static_cast<size_t>(n_) : order_.size());
  const double inv_total = 1.0 / total_;
  Walk([&](int id, float w) {
    d.probs.push_back({id, static_cast<float>(w * inv_total)});
    return false;
  });
  return d;
}

double Sampler::Uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int Sampler::Sample(const float* logits, int vocab) {
  if (params_.greedy()) return Argmax(logits, vocab);
  return Weigh(logits, vocab).Draw(Uniform());
}

}  // namespace specula
