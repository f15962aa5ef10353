// What a generation is asked for and what it reports, plain or speculative. Both decode through
// the batch engine (specula/spec/generate_one.h); the prompt rules are in runtime/prompt.h.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/runtime/sampler.h"

namespace specula {

enum class StopReason { kStopToken, kLength, kContext };
const char* StopReasonName(StopReason r);  // "stop", "length", "context"

// Whether `token` ends generation (it is emitted, then decoding stops).
bool IsStop(std::span<const int> stop_ids, int token);

struct GenerateOptions {
  int max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int> stop_ids;  // generation ends after emitting one of these
};

// One sequence's token counts and times; what its passes did is in SpecStats (spec/spec_stats.h).
struct GenerateStats {
  int prompt_tokens = 0;
  int cached_tokens = 0;  // of the prompt, loaded from the prompt cache (not computed)
  int generated_tokens = 0;
  double prefill_s = 0.0;
  double decode_s = 0.0;  // from the first generated token to the last
  double decode_tok_per_s() const;
};

struct GenerateResult {
  std::vector<int> ids;  // generated ids, including a final stop id
  StopReason stop = StopReason::kLength;
  GenerateStats stats;
};

using TokenCallback = std::function<void(int token)>;

// Errors: empty prompt, ids out of range, prompt not shorter than the context.
Status ValidatePrompt(std::span<const int> prompt, int vocab, int context);

}  // namespace specula
