// Token selection: greedy, or sampling after temperature -> top-k -> top-p -> min-p (the order
// Hugging Face applies its logits warpers). Probabilities are computed in fp32/fp64, never in the
// weight dtype. Seeded: the same seed and logits always give the same token.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "specula/base/status.h"

namespace specula {

class ThreadPool;

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  uint64_t seed = 0;

  bool greedy() const { return temperature <= 0.0f; }
  Status Validate() const;  // errors name the flag
};

// The processed distribution over the surviving tokens: the most probable first (lowest id among
// equals), the rest in a deterministic order (descending where top-k or top-p ranked them).
struct TokenDistribution {
  std::vector<std::pair<int, float>> probs;  // (token, p), sum to 1
};

// One row's processed distribution kept as unnormalised weights over all n tokens (0 where a
// filter removed the token). Plain sampling, sampled drafting and rejection-sampling verification
// all draw from it, so a token's probability is one lookup and no 262,144 (token, p) pairs are
// written out per row. `params` must not be greedy.
class TokenWeights {
 public:
  TokenWeights() = default;
  TokenWeights(const SamplingParams& params, const float* logits, int n) {
    Compute(params, logits, n);
  }
  // Recomputes for another row, reusing the table (a fresh 1 MB table per row costs page faults).
  // With a pool, the blocks' exponentials are split over its threads (the same values: each
  // block's sum is computed alone and the sums are added in order).
  void Compute(const SamplingParams& params, const float* logits, int n,
               ThreadPool* pool = nullptr);

  int top() const { return top_; }  // the most probable token (lowest id among equals)
  double Prob(int token) const { return weight_[static_cast<size_t>(token)] / total_; }
  // Replaces p by the rejection-sampling residual max(p - q, 0), unnormalised. Returns false and
  // keeps p when the residual is empty (q covers p up to rounding).
  bool SubtractDistribution(const TokenDistribution& q);
  // Inverse CDF for u in [0, 1): walks the tokens in ToDistribution's order and returns the first
  // whose cumulative weight exceeds u times the total.
  int Draw(double u) const;
  // The surviving tokens, normalised: the most probable first, then the rest in id order (or
  // descending where top-k or top-p ranked them).
  TokenDistribution ToDistribution() const;

 private:
  template <typename F>
  void Walk(F&& visit) const;  // visit(token, weight) in Draw's order until it returns true

  std::vector<float> weight_;  // [n] exp((logit - max logit) / T), 0 off the survivors
  int n_ = 0;
  int top_ = 0;
  double total_ = 0.0;      // of the survivors' weights
  bool all_ = false;        // no filter: every token survives, walked top first then by id
  std::vector<int> order_;  // !all_: the survivors in walk order
  static constexpr size_t kBlock = 4096;
  // all_ only: [n / kBlock] sums of the weights of consecutive ids (a filter rewrites the table
  // after the sums are taken, and its draws walk order_ instead).
  std::vector<double> blocks_;
};

class Sampler {
 public:
  // `pool` (optional, borrowed) spreads each row's exponentials over its threads.
  explicit Sampler(const SamplingParams& params, ThreadPool* pool = nullptr)
      : params_(params), rng_(params.seed), pool_(pool) {}

  int Sample(const float* logits, int vocab);
  // A uniform double in [0, 1) from this sampler's stream.
  double Uniform();
  // This sampler's processed distribution of one row, in a table the sampler reuses: valid until
  // the next Sample or Weigh. Not for greedy params.
  TokenWeights& Weigh(const float* logits, int vocab) {
    weights_.Compute(params_, logits, vocab, pool_);
    return weights_;
  }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  ThreadPool* pool_ = nullptr;
  TokenWeights weights_;
};

int Argmax(const float* logits, int vocab);  // first index of the maximum

}  // namespace specula
