// What a generation is asked for and what it reports, plain or speculative. Both decode through
// the batch engine (specula/spec/spec_loop.h); the prompt rules live here.
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

struct GenerateOptions {
  int max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<int> stop_ids;  // generation ends after emitting one of these
  int prefill_chunk = 256;    // rows per prefill forward (bounds activation memory)
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_s = 0.0;
  double decode_s = 0.0;  // from the first generated token to the last
  int target_forwards = 0;
  int decode_forwards = 0;  // target_forwards after the prompt: decode and verify passes
  long experts_read = 0;    // mixture of experts: distinct experts those passes ran (all layers)
  // Of decode_s, the seconds inside the target passes and the drafter steps this sequence took
  // part in (batched: the whole pass); the rest is the engine's own work per round (sampling,
  // verification, rollback, bookkeeping).
  double forward_s = 0.0;
  double draft_s = 0.0;
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
