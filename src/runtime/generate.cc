#include "specula/runtime/generate.h"

#include <algorithm>
#include <string>

namespace specula {
bool IsStop(std::span<const int> stop_ids, int token) {
  return std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end();
}

const char* StopReasonName(StopReason r) {
  switch (r) {
    case StopReason::kStopToken:
      return "stop";
    case StopReason::kLength:
      return "length";
    case StopReason::kContext:
      return "context";
  }
  return "?";
}

double GenerateStats::decode_tok_per_s() const {
  // The first token comes from the prefill forward; decode time covers the rest.
  return decode_s > 0 && generated_tokens > 1 ? (generated_tokens - 1) / decode_s : 0.0;
}

Status ValidatePrompt(std::span<const int> prompt, int vocab, int context) {
  if (prompt.empty()) return Error("prompt: empty prompt (no tokens to condition on)");
  for (int id : prompt) {
    if (id < 0 || id >= vocab) {
      return Error("prompt: token id " + std::to_string(id) + " is out of range [0, " +
                   std::to_string(vocab) + ")");
    }
  }
  if (static_cast<int>(prompt.size()) >= context) {
    return Error("prompt: " + std::to_string(prompt.size()) + " tokens do not fit the context of " +
                 std::to_string(context) + " (need at least one free position)");
  }
  return OkStatus();
}

}  // namespace specula
