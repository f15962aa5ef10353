#include "specula/spec/mtp_drafter.h"

#include <algorithm>
#include <cmath>

#include "specula/runtime/generate.h"

namespace specula {
namespace {

// Softmax probability of logits[best] at temperature 1 (the drafter's confidence in its argmax).
float TopProbability(const std::vector<float>& logits, size_t best) {
  double sum = 0.0;
  const float mx = logits[best];
  for (float l : logits) sum += std::exp(static_cast<double>(l - mx));
  return static_cast<float>(1.0 / sum);
}

// Picks the next draft token from one step's head output, or -1 when the drafter is too unsure.
// Sampled drafts record the exact distribution q they were drawn from.
int NextDraftToken(const DraftRequest& req, const DraftStepOutput& step, Draft* d) {
  const std::vector<int>& cand = step.candidates;  // empty: dense head, index == token id
  const auto to_id = [&](int i) { return cand.empty() ? i : cand[static_cast<size_t>(i)]; };
  const int n = static_cast<int>(step.logits.size());
  if (req.sampling == nullptr || req.sampling->greedy()) {
    const int best = Argmax(step.logits.data(), n);
    if (req.min_confidence > 0 &&
        TopProbability(step.logits, static_cast<size_t>(best)) < req.min_confidence)
      return -1;
    return to_id(best);
  }
  // q = the target's logit processing applied to the drafter's scores; non-candidates of the
  // centroid head have probability 0.
  const TokenWeights w(*req.sampling, step.logits.data(), n);
  if (req.min_confidence > 0 && w.Prob(w.top()) < req.min_confidence) return -1;
  const int next = to_id(w.Draw(req.rng->Uniform()));
  TokenDistribution q = w.ToDistribution();
  for (auto& [tok, p] : q.probs) tok = to_id(tok);
  d->q.push_back(std::move(q));
  return next;
}

}  // namespace

Draft MtpDrafter::Propose(const DraftRequest& req, ThreadPool& pool) {
  // The assistant's forward cannot fail (the engine validated positions and caches).
  return std::move(ProposeBatch(std::span<const DraftRequest>(&req, 1), pool).value()[0]);
}

Result<std::vector<Draft>> MtpDrafter::ProposeBatch(std::span<const DraftRequest> reqs,
                                                    ThreadPool& pool) {
  const size_t B = reqs.size();
  std::vector<Draft> drafts(B);
  steps_.resize(B);
  // Per sequence: the token and state the next step consumes, and whether it still drafts.
  std::vector<int> token(B);
  std::vector<std::vector<float>> h(B);
  std::vector<size_t> active;
  for (size_t b = 0; b < B; ++b) {
    token[b] = reqs[b].token;
    h[b].assign(reqs[b].hidden.begin(), reqs[b].hidden.end());
    if (reqs[b].max_tokens > 0) active.push_back(b);
  }
  std::vector<Gemma4Assistant::StepArgs> args;
  std::vector<DraftStepOutput*> outs;
  while (!active.empty()) {
    args.clear();
    outs.clear();
    for (size_t b : active) {
      args.push_back(
          {.token = token[b], .h_in = h[b].data(), .pos = reqs[b].pos, .cache = reqs[b].cache});
      outs.push_back(&steps_[b]);
    }
    assistant_.StepBatch(args, pool, *scratch_,
                         outs);  // one assistant forward for every drafting sequence
    std::vector<size_t> still;
    for (size_t b : active) {
      const DraftRequest& req = reqs[b];
      const int next = NextDraftToken(req, steps_[b], &drafts[b]);
      if (next < 0) continue;
      drafts[b].tokens.push_back(next);
      if (IsStop(req.stop_ids, next) || static_cast<int>(drafts[b].tokens.size()) >= req.max_tokens)
        continue;
      token[b] = next;
      h[b] = steps_[b].h_out;
      still.push_back(b);
    }
    active.swap(still);
  }
  return drafts;
}

}  // namespace specula
