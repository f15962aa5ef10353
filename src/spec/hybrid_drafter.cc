#include "specula/spec/hybrid_drafter.h"

#include <algorithm>

namespace specula {

HybridDrafter::HybridDrafter(Drafter& model, const HybridOptions& options)
    : model_(model), options_(options) {
  // (Callers validate NgramOptions; this only keeps the per-length table well formed.)
  options_.ngram.min_n = std::max(1, options_.ngram.min_n);
  options_.ngram.max_n = std::max(options_.ngram.min_n, options_.ngram.max_n);
}

HybridDrafter::SeqState& HybridDrafter::State(int seq) {
  auto it = seqs_.find(seq);
  if (it != seqs_.end()) return it->second;
  const AcceptanceModel fresh(options_.max_k, options_.decay);
  const size_t lengths = static_cast<size_t>(options_.ngram.max_n - options_.ngram.min_n + 1);
  return seqs_.emplace(seq, SeqState{.model = fresh, .lookup = {lengths, fresh}, .last_lookup = -1})
      .first->second;
}

std::optional<Draft> HybridDrafter::ChooseLookup(const DraftRequest& req, SeqState& st) {
  st.last_lookup = -1;
  const NgramMatch match = FindNgram(req.history, options_.ngram);
  if (match.length == 0) return std::nullopt;
  Draft lookup = NgramContinuation(req.history, match, req.max_tokens, req.stop_ids);
  lookup.own_length = true;
  // Sampled drafts change which tokens a seed yields, so when sampling the choice must not depend
  // on timings or on the other sequences of the batch: it then weighs acceptance alone, against
  // the default cost model (a seeded request gives the same tokens alone, batched, and again).
  const bool sampled = req.sampling != nullptr && !req.sampling->greedy();
  const PassCosts none;
  const PassCosts& c = req.round.costs != nullptr && !sampled ? *req.round.costs : none;
  const RoundInfo round = sampled ? RoundInfo{} : req.round;
  // Tokens per second of the round's pass; the other sequences gain at least one token each.
  const auto rate = [&](const AcceptanceModel& a, int k, double draft_s) {
    return (round.other_sequences + a.ExpectedTokens(k)) /
           (c.Pass(round.other_rows + 1 + k) + draft_s);
  };
  const int index = match.length - options_.ngram.min_n;
  AcceptanceModel& by_length = st.lookup[static_cast<size_t>(index)];
  int best_k = 0;
  double best = 0.0;
  for (int k = 1; k <= static_cast<int>(lookup.tokens.size()); ++k) {
    if (const double r = rate(by_length, k, 0.0); r > best) {
      best = r;
      best_k = k;
    }
  }
  const int model_k = req.max_tokens;
  if (best < rate(st.model, model_k, model_k * c.DraftStep())) {
    by_length.Fade();
    return std::nullopt;
  }
  st.model.Fade();
  lookup.tokens.resize(static_cast<size_t>(best_k));
  st.last_lookup = index;
  return lookup;
}

Draft HybridDrafter::Propose(const DraftRequest& req, ThreadPool& pool) {
  if (std::optional<Draft> lookup = ChooseLookup(req, State(req.seq))) return *std::move(lookup);
  return model_.Propose(req, pool);
}

Result<std::vector<Draft>> HybridDrafter::ProposeBatch(std::span<const DraftRequest> reqs,
                                                       ThreadPool& pool) {
  std::vector<Draft> drafts(reqs.size());
  std::vector<DraftRequest> to_model;
  std::vector<size_t> model_index;
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (std::optional<Draft> lookup = ChooseLookup(reqs[i], State(reqs[i].seq))) {
      drafts[i] = *std::move(lookup);
    } else {
      to_model.push_back(reqs[i]);
      model_index.push_back(i);
    }
  }
  if (to_model.empty()) return drafts;
  // One batched model call for every sequence the lookup did not serve.
  Result<std::vector<Draft>> from_model = model_.ProposeBatch(to_model, pool);
  if (!from_model.ok()) return from_model.status();
  for (size_t j = 0; j < model_index.size(); ++j)
    drafts[model_index[j]] = std::move((*from_model)[j]);
  return drafts;
}

void HybridDrafter::Observe(int seq, const Draft& draft, int accepted) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  SeqState& st = it->second;
  const int drafted = static_cast<int>(draft.tokens.size());
  if (draft.source == DraftSource::kLookup) {
    if (st.last_lookup >= 0)
      st.lookup[static_cast<size_t>(st.last_lookup)].Observe(drafted, accepted);
  } else {
    st.model.Observe(drafted, accepted);
    model_.Observe(seq, draft, accepted);
  }
}

void HybridDrafter::Release(int seq) {
  seqs_.erase(seq);
  model_.Release(seq);
}

}  // namespace specula
