// End-to-end check that speculative sampling keeps the target's law: seeded 4-token generations
// through the engine (after the first token, one round verifies two drafts: both accepted, the
// second rejected, or the first), tested token by token against the target's own conditional
// distributions by Pearson's chi-square (chain rule: p(t1), p(t2 | t1), ... p(t4 | t1 t2 t3)).
#pragma once

#include <cmath>
#include <map>
#include <span>
#include <vector>

#include "specula/models/gemma4.h"
#include "specula/runtime/sampler.h"
#include "specula/spec/drafter.h"

namespace specula::test {

// Under the sanitizers the law checks run a tenth of their generations and do not judge the
// statistics: that build looks for memory and undefined-behaviour errors on the same code paths,
// and the full runs, 50 times slower there, would add minutes to it.
#ifdef SPECULA_SANITIZED
inline constexpr bool kJudgeLaw = false;
#else
inline constexpr bool kJudgeLaw = true;
#endif
inline int LawRuns(int runs) { return kJudgeLaw ? runs : runs / 10; }

struct SampledLaw {
  double chi2 = 0.0;
  int dof = 0;
  int outside_support = 0;         // tokens drawn that the target gives no probability
  long drafted = 0, accepted = 0;  // over all runs: the check verified drafts
  long lookup_drafted = 0;         // of drafted: by prompt lookup
  // About the 99.9th percentile of chi-square with `dof` degrees of freedom, for these sizes.
  double Bound() const { return dof + 3.1 * std::sqrt(2.0 * dof) + 10; }
};

// Drafts from a distortion of the target's own law: uniform over the target's support after the
// sampling filters (q != p, yet often accepted), so the check exercises accepted drafts, bonus
// tokens and residual draws alike. A test double: it runs the target on the history each step.
class UniformOverSupportDrafter : public Drafter {
 public:
  explicit UniformOverSupportDrafter(Gemma4Model& target) : target_(target) {}
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;

 private:
  Gemma4Model& target_;
  // The target's filtered support per history: few distinct histories recur over many runs.
  std::map<std::vector<int>, TokenDistribution> support_;
};

// `runs` generations with seeds seed0, seed0 + 1, ... and drafts from `drafter`.
SampledLaw CheckSampledLaw(Gemma4Model& target, Drafter& drafter, std::span<const int> prompt,
                           const SamplingParams& sampling, int runs, uint64_t seed0);

}  // namespace specula::test
