#include "specula/spec/verifier.h"

namespace specula {

VerifyOutcome VerifyGreedy(const float* logits, int vocab, std::span<const int> draft) {
  VerifyOutcome v;
  for (;;) {
    const int target =
        Argmax(logits + static_cast<size_t>(v.accepted) * static_cast<size_t>(vocab), vocab);
    if (v.accepted == static_cast<int>(draft.size()) ||
        draft[static_cast<size_t>(v.accepted)] != target) {
      v.next_token = target;
      return v;
    }
    ++v.accepted;
  }
}

}  // namespace specula
