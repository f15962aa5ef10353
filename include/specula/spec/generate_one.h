// Generation of one sequence, plain or speculative, through the batch engine (the path a server
// batch takes). Plain: prefill, then one target forward per token. Speculative: prefill, first
// token, then rounds of
//   draft K -> verify K+1 rows in one target forward -> accept -> roll back rejected KV -> bonus.
// Greedy speculative output is token for token the plain output; sampled output has the target's
// distribution (rejection sampling).
#pragma once

#include <span>

#include "specula/spec/batch_engine.h"

namespace specula {

// Prefills `prompt` into `cache` (which must be empty) and generates until a stop id, the token
// budget or the context is reached. Errors: the prompt (ValidatePrompt), sampling settings.
Result<SpecResult> GeneratePlain(TargetModel& model, ThreadPool& pool, KvCache& cache,
                                 std::span<const int> prompt, const GenerateOptions& options,
                                 const TokenCallback& on_token);

// As GeneratePlain, drafting up to options.draft_max (>= 1) tokens a round. `cache` must have at
// least draft_max + 1 rows of sliding-window headroom; options.cache is ignored.
Result<SpecResult> GenerateSpeculative(TargetModel& target, Drafter& drafter, ThreadPool& pool,
                                       KvCache& cache, std::span<const int> prompt,
                                       const SeqOptions& options, const TokenCallback& on_token);

}  // namespace specula
