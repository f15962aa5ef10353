// Generation of one sequence, plain or speculative, through the batch engine (the path a server
// batch takes). Plain: prefill, then one target forward per token. Speculative: prefill, first
// token, then rounds of
//   draft K -> verify K+1 rows in one target forward -> accept -> roll back rejected KV -> bonus.
// Greedy speculative output is token for token the plain output; sampled output has the target's
// distribution (rejection sampling).
#pragma once

#include <ostream>
#include <span>
#include <vector>

#include "specula/runtime/generate.h"
#include "specula/spec/draft_policy.h"
#include "specula/spec/drafter.h"

namespace specula {

class Gemma4Model;
class KvCache;
class ThreadPool;

// What decoding did and what it cost, for one sequence (SpecResult::spec), for an engine since it
// started (BatchEngine::counters) or for a server (MetricsSnapshot::totals); printing and exporting
// read them. A batched pass counts once for the engine and once for each sequence in it. A decode
// pass is one in which the scope had a row past its prompt (a decode or verify row). "Accepted"
// counts draft tokens only: a round emits accepted + 1 tokens (the target's own token last).
struct SpecStats {
  long target_forwards = 0;  // every target pass, prompt chunks included
  long decode_forwards = 0;  // of those, the decode passes
  long experts_read = 0;     // mixture of experts: distinct experts the decode passes ran
  double forward_s = 0.0;    // inside the decode passes
  double draft_s = 0.0;      // inside drafter steps
  long prompt_tokens = 0;
  long prompt_cached = 0;  // of those, loaded from the prompt cache instead of computed
  long generated = 0;
  long draft_rounds = 0;  // verify rounds that checked drafts (one per sequence and pass)
  long drafted = 0;
  long accepted = 0;
  long round_tokens = 0;                    // tokens emitted by those rounds
  std::vector<long> drafted_per_position;   // [i]: rounds that drafted an i-th token
  std::vector<long> accepted_per_position;  // [i]: rounds whose i-th draft was accepted
  // One verify round that drafted `k` tokens and accepted the first `n` of them.
  void Record(int k, int n);
  // Adds another scope's counters (positions aligned).
  void Add(const SpecStats& other);
  double acceptance_rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  double mean_tokens_per_round() const {
    return draft_rounds ? static_cast<double>(round_tokens) / draft_rounds : 0.0;
  }
};

struct SpecOptions {
  GenerateOptions base;
  int draft_max = 3;
  DraftPolicy* policy = nullptr;  // nullptr: always draft_max
  std::ostream* trace = nullptr;  // one JSON line per round
};

struct SpecResult {
  GenerateResult gen;
  SpecStats spec;
};

// Prefills `prompt` into `cache` (which must be empty) and generates until a stop id, the token
// budget or the context is reached. Errors: the prompt (ValidatePrompt), sampling settings.
Result<SpecResult> GeneratePlain(Gemma4Model& model, ThreadPool& pool, KvCache& cache,
                                 std::span<const int> prompt, const GenerateOptions& options,
                                 const TokenCallback& on_token);

// `cache` must be empty and have at least draft_max + 1 rows of sliding-window headroom.
Result<SpecResult> GenerateSpeculative(Gemma4Model& target, Drafter& drafter, ThreadPool& pool,
                                       KvCache& cache, std::span<const int> prompt,
                                       const SpecOptions& options, const TokenCallback& on_token);

}  // namespace specula
