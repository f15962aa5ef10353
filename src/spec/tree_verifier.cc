#include <cstddef>

#include "specula/spec/verifier.h"

namespace specula {

TreeOutcome VerifyTree(const float* logits, int vocab, std::span<const int> tokens,
                       std::span<const int> parents, Sampler& sampler) {
  TreeOutcome v;
  int node = -1;  // x_P
  for (;;) {
    const float* row = logits + static_cast<size_t>(node + 1) * static_cast<size_t>(vocab);
    const int target = sampler.Sample(row, vocab);
    int next = -1;
    for (size_t i = static_cast<size_t>(node + 1); i < tokens.size() && next < 0; ++i) {
      if (parents[i] == node && tokens[i] == target) next = static_cast<int>(i);
    }
    if (next < 0) {
      v.next_token = target;
      return v;
    }
    v.path.push_back(next);
    node = next;
  }
}

}  // namespace specula
