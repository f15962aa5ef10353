// What decoding did and cost (SpecStats), and what one sequence's decoding returns (SpecResult).
#pragma once

#include <vector>

#include "specula/runtime/generate.h"

namespace specula {

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
  long lookup_drafted = 0;                  // of drafted: proposed by prompt lookup
  long lookup_accepted = 0;                 // of accepted: proposed by prompt lookup
  long tree_rounds = 0;                     // of draft_rounds: verified a token tree
  std::vector<long> drafted_per_position;   // [i]: rounds that drafted an i-th token
  std::vector<long> accepted_per_position;  // [i]: rounds whose i-th draft was accepted
  // One verify round that drafted `k` tokens and accepted the first `n` of them.
  void Record(int k, int n);
  // A verify round of a token tree of `nodes` drafts, `depth` deep, that accepted a path of `n`
  // (per position: depths).
  void RecordTree(int nodes, int depth, int n);
  // Of a recorded round: `k` of its drafts came from prompt lookup, `n` of them accepted.
  void RecordLookup(int k, int n) {
    lookup_drafted += k;
    lookup_accepted += n;
  }
  // Adds another scope's counters (positions aligned).
  void Add(const SpecStats& other);
  void GrowPositions(size_t k);  // per-position counters for k positions at least
  double acceptance_rate() const { return drafted ? static_cast<double>(accepted) / drafted : 0.0; }
  double mean_tokens_per_round() const {
    return draft_rounds ? static_cast<double>(round_tokens) / draft_rounds : 0.0;
  }
};

struct SpecResult {
  GenerateResult gen;
  SpecStats spec;
};

}  // namespace specula
