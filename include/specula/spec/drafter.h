// What a drafter is asked for and what it returns. A drafter proposes up to `max_tokens` tokens
// that follow `token` (at position `pos`); the target then verifies them all in one forward pass.
#pragma once

#include <span>
#include <vector>

#include "specula/base/status.h"
#include "specula/runtime/sampler.h"
#include "specula/spec/draft_policy.h"

namespace specula {

class KvCache;
class ThreadPool;

struct DraftRequest {
  int token = 0;                   // x_P: sampled by the target, not yet in its KV cache
  std::span<const float> hidden;   // [H] target post-final-norm hidden of position pos-1
  int pos = 0;                     // P = number of committed target positions
  const KvCache* cache = nullptr;  // the target's cache (positions 0 .. P-1)
  int max_tokens = 0;              // K: the chain's length, or a tree's number of nodes
  std::span<const int> stop_ids;   // drafting ends after proposing one of these
  float min_confidence = 0.0f;  // stop before a token the drafter gives less probability than this
  const SamplingParams* sampling = nullptr;  // greedy: argmax drafts; otherwise sampled from q
  Sampler* rng = nullptr;                    // the stream sampled drafts draw from
  int seq = 0;                   // the caller's sequence id (for drafters with per-sequence state)
  std::span<const int> history;  // [pos + 1] the tokens at positions 0..pos: prompt, output, token
  RoundInfo round;  // the rest of the round's target pass (what a cost-aware drafter weighs)
};

// The round a drafter weighs its choices with, its `costs` never null. Sampled drafts change which
// tokens a seed yields, so a sampled round must not depend on timings or on the other sequences of
// the batch: it is weighed with `defaults` and no other rows (a seeded request then gives the same
// tokens alone, batched, and again). A greedy round gets the engine's measured costs when it has
// some.
RoundInfo RoundToWeigh(const DraftRequest& r, PassCosts&& defaults) = delete;  // would dangle
inline RoundInfo RoundToWeigh(const DraftRequest& r, const PassCosts& defaults) {
  const bool sampled = r.sampling != nullptr && !r.sampling->greedy();
  RoundInfo round = sampled ? RoundInfo{} : r.round;
  if (round.costs == nullptr) round.costs = &defaults;
  return round;
}

// Where a draft came from (statistics by source).
enum class DraftSource { kModel, kLookup };

struct Draft {
  std::vector<int> tokens;
  // Per token, the exact distribution it was sampled from (processed like the target's). Empty when
  // drafting greedily: the verifier then treats each draft as a point mass.
  std::vector<TokenDistribution> q;
  // Empty: a chain (token i follows token i - 1). Otherwise a token tree: token i follows token
  // parents[i] (< i; -1: the pending token), siblings distinct; the target verifies every node in
  // one pass (VerifyTree). Tree tokens are point masses: `q` stays empty.
  std::vector<int> parents;
  DraftSource source = DraftSource::kModel;
  // Per token, where it came from, when a tree merges sources (empty: all from `source`).
  std::vector<DraftSource> sources;
  // Drafter forward steps this draft took (the engine's cost model times them); -1: one per token
  // for a model draft, none for a lookup draft.
  int steps = -1;
  // The drafter chose this draft's length itself (a hybrid's lookup draft): the draft policy,
  // which sets the length of the drafter's own chains, does not learn from it.
  bool own_length = false;
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual Draft Propose(const DraftRequest& request, ThreadPool& pool) = 0;
  // Drafts for several sequences; draft b is what Propose(requests[b]) returns. Model drafters
  // override this to run one forward per draft step for all sequences. An error fails the whole
  // call; the caller may retry the requests one by one to find the sequence at fault.
  virtual Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                                  ThreadPool& pool) {
    std::vector<Draft> drafts;
    for (const DraftRequest& r : requests) drafts.push_back(Propose(r, pool));
    return drafts;
  }
  // The verdict on the last draft proposed for sequence `seq`: the accepted tokens' indices, root
  // first (a chain's first path.size() tokens).
  virtual void Observe(int /*seq*/, const Draft& /*draft*/, std::span<const int> /*path*/) {}
  // Sequence `seq` has finished: drop whatever was kept for it.
  virtual void Release(int /*seq*/) {}
};

}  // namespace specula
