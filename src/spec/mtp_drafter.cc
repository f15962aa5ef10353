#include "specula/spec/mtp_drafter.h"

#include <algorithm>
#include <cmath>

namespace specula {
namespace {

// Softmax probability of logits[best] at temperature 1 (the drafter's confidence in its argmax).
float TopProbability(const std::vector<float>& logits, size_t best) {
  double sum = 0.0;
  const float mx = logits[best];
  for (float l : logits) sum += std::exp(static_cast<double>(l - mx));
  return static_cast<float>(1.0 / sum);
}

}  // namespace

Draft MtpDrafter::Propose(const DraftRequest& req, ThreadPool& pool) {
  Draft d;
  const bool greedy = req.sampling == nullptr || req.sampling->greedy();
  h_.assign(req.hidden.begin(), req.hidden.end());
  int token = req.token;
  for (int k = 0; k < req.max_tokens; ++k) {
    assistant_.Step({.token = token, .h_in = h_.data(), .pos = req.pos, .cache = req.cache}, pool, &step_);
    const std::vector<int>& cand = step_.candidates;  // empty: dense head, index == token id
    const auto to_id = [&](int i) { return cand.empty() ? i : cand[static_cast<size_t>(i)]; };
    const int n = static_cast<int>(step_.logits.size());
    int next;
    if (greedy) {
      const int best = Argmax(step_.logits.data(), n);
      if (req.min_confidence > 0 && TopProbability(step_.logits, static_cast<size_t>(best)) < req.min_confidence) break;
      next = to_id(best);
    } else {
      // q = the target's logit processing applied to the drafter's scores; non-candidates of the
      // centroid head have probability 0.
      TokenDistribution q = ProcessedDistribution(*req.sampling, step_.logits.data(), n);
      for (auto& [tok, p] : q.probs) tok = to_id(tok);
      if (req.min_confidence > 0 && q.probs.front().second < req.min_confidence) break;
      const double u = req.rng->Uniform();
      double cum = 0.0;
      next = q.probs.back().first;  // if rounding leaves u above the last cumulative sum
      for (const auto& [tok, p] : q.probs) {
        if (u < (cum += p)) {
          next = tok;
          break;
        }
      }
      d.q.push_back(std::move(q));
    }
    d.tokens.push_back(next);
    if (std::find(req.stop_ids.begin(), req.stop_ids.end(), next) != req.stop_ids.end()) break;
    token = next;
    h_ = step_.h_out;
  }
  return d;
}

}  // namespace specula
