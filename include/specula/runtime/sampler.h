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

// The distribution sampling with `params` draws from (pure: no random state). Greedy params give
// a point mass on the argmax.
TokenDistribution ProcessedDistribution(const SamplingParams& params, const float* logits,
                                        int vocab);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  int Sample(const float* logits, int vocab);
  // The distribution Sample draws from (for speculative verification and tests).
  TokenDistribution Distribution(const float* logits, int vocab) const {
    return ProcessedDistribution(params_, logits, vocab);
  }
  // A uniform double in [0, 1) from this sampler's stream.
  double Uniform();

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

int Argmax(const float* logits, int vocab);  // first index of the maximum

}  // namespace specula
