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
  SeqState st{.model = fresh,
              .lookup = {lengths, fresh},
              .last_lookup = -1,
              .last_tree = {},
              .tree_lookup_k = 0,
              .tree_model_k = 0};
  return seqs_.emplace(seq, std::move(st)).first->second;
}

Draft MergeChains(const Draft& a, const Draft& b, std::vector<uint8_t>* member) {
  Draft t;
  t.own_length = true;
  member->assign(a.tokens.size(), 1);
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    t.tokens.push_back(a.tokens[i]);
    t.parents.push_back(static_cast<int>(i) - 1);
    t.sources.push_back(a.source);
  }
  int node = -1;
  bool shared = true;
  for (int token : b.tokens) {
    const int next = node + 1;  // a's node at this depth
    if (shared && next < static_cast<int>(a.tokens.size()) &&
        a.tokens[static_cast<size_t>(next)] == token) {
      (*member)[static_cast<size_t>(next)] |= 2;
      node = next;
      continue;
    }
    shared = false;
    t.tokens.push_back(token);
    t.parents.push_back(node);
    t.sources.push_back(b.source);
    member->push_back(2);
    node = static_cast<int>(t.tokens.size()) - 1;
  }
  return t;
}

HybridDrafter::Choice HybridDrafter::Choose(const DraftRequest& req, SeqState& st) {
  st.last_lookup = -1;
  st.last_tree.clear();
  const int model_k = std::max(0, req.max_tokens);
  const NgramMatch match = FindNgram(req.history, options_.ngram);
  if (match.length == 0 || model_k == 0) return {.lookup = std::nullopt, .model_k = model_k};
  Draft lookup = NgramContinuation(req.history, match, req.max_tokens, req.stop_ids);
  lookup.own_length = true;
  // Sampled rounds weigh acceptance against the default cost model alone (RoundToWeigh).
  const PassCosts defaults;
  const RoundInfo round = RoundToWeigh(req, defaults);
  const PassCosts& c = *round.costs;
  // Tokens per second of the round's pass; the other sequences gain at least one token each.
  const auto rate = [&](double tokens, int rows, int draft_steps) {
    return (round.other_sequences + tokens) /
           (c.Pass(round.other_rows + 1 + rows) + draft_steps * c.DraftStep());
  };
  const int index = match.length - options_.ngram.min_n;
  AcceptanceModel& by_length = st.lookup[static_cast<size_t>(index)];
  const int n_lookup = static_cast<int>(lookup.tokens.size());
  // Each candidate: (tokens per second, lookup tokens, model tokens).
  struct Option {
    double rate = 0.0;
    int lookup_k = 0, model_k = 0;
  };
  // The lookup first: on a tie (untried sources look alike) it wins, as it costs no draft step.
  Option best;
  for (int k = 1; k <= n_lookup; ++k) {
    if (const double r = rate(by_length.ExpectedTokens(k), k, 0); r > best.rate)
      best = {.rate = r, .lookup_k = k, .model_k = 0};
  }
  if (const double r = rate(st.model.ExpectedTokens(model_k), model_k, model_k); r > best.rate)
    best = {.rate = r, .lookup_k = 0, .model_k = model_k};
  if (options_.tree) {
    // Both, as branches: the longer accepted prefix counts. Assuming the two fail independently,
    // depth i is reached unless both chains fail before it.
    for (int m = 1; m < model_k; ++m) {
      for (int k = 1; k <= std::min(n_lookup, model_k - m); ++k) {
        double tokens = 1.0;
        for (int i = 1; i <= std::max(k, m); ++i) {
          const double l = i <= k ? by_length.Reach(i) : 0.0;
          const double d = i <= m ? st.model.Reach(i) : 0.0;
          tokens += 1.0 - (1.0 - l) * (1.0 - d);
        }
        if (const double r = rate(tokens, k + m, m); r > best.rate)
          best = {.rate = r, .lookup_k = k, .model_k = m};
      }
    }
  }
  if (best.lookup_k == 0) {
    by_length.Fade();
    return {.lookup = std::nullopt, .model_k = model_k};
  }
  if (best.model_k == 0) st.model.Fade();
  lookup.tokens.resize(static_cast<size_t>(best.lookup_k));
  st.last_lookup = index;
  return {.lookup = std::move(lookup), .model_k = best.model_k};
}

Draft HybridDrafter::Propose(const DraftRequest& req, ThreadPool& pool) {
  // (The model drafters in use cannot fail; ProposeBatch reports what one would.)
  return std::move(ProposeBatch(std::span<const DraftRequest>(&req, 1), pool).value()[0]);
}

Result<std::vector<Draft>> HybridDrafter::ProposeBatch(std::span<const DraftRequest> reqs,
                                                       ThreadPool& pool) {
  std::vector<Draft> drafts(reqs.size());
  std::vector<Choice> choices;
  std::vector<DraftRequest> to_model;
  std::vector<size_t> model_index;
  for (size_t i = 0; i < reqs.size(); ++i) {
    choices.push_back(Choose(reqs[i], State(reqs[i].seq)));
    if (choices[i].model_k > 0) {
      to_model.push_back(reqs[i]);
      to_model.back().max_tokens = choices[i].model_k;
      model_index.push_back(i);
    } else if (choices[i].lookup) {
      drafts[i] = *std::move(choices[i].lookup);
    }  // (nothing to draft: max_tokens 0)
  }
  if (to_model.empty()) return drafts;
  // One batched model call for every sequence the lookup alone did not serve.
  Result<std::vector<Draft>> from_model = model_.ProposeBatch(to_model, pool);
  if (!from_model.ok()) return from_model.status();
  for (size_t j = 0; j < model_index.size(); ++j) {
    const size_t i = model_index[j];
    Draft& model = (*from_model)[j];
    if (!choices[i].lookup) {
      drafts[i] = std::move(model);
      continue;
    }
    SeqState& st = State(reqs[i].seq);
    drafts[i] = MergeChains(*choices[i].lookup, model, &st.last_tree);
    drafts[i].steps = model.steps >= 0 ? model.steps : static_cast<int>(model.tokens.size());
    st.tree_lookup_k = static_cast<int>(choices[i].lookup->tokens.size());
    st.tree_model_k = static_cast<int>(model.tokens.size());
  }
  return drafts;
}

void HybridDrafter::Observe(int seq, const Draft& draft, std::span<const int> path) {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  SeqState& st = it->second;
  if (!st.last_tree.empty()) {
    // A merged tree: each chain accepted the path's nodes that lie on it.
    int lookup = 0, model = 0;
    for (int i : path) {
      lookup += st.last_tree[static_cast<size_t>(i)] & 1;
      model += (st.last_tree[static_cast<size_t>(i)] >> 1) & 1;
    }
    if (st.last_lookup >= 0)
      st.lookup[static_cast<size_t>(st.last_lookup)].Observe(st.tree_lookup_k, lookup);
    st.model.Observe(st.tree_model_k, model);
    st.last_tree.clear();
    return;
  }
  const int drafted = static_cast<int>(draft.tokens.size());
  const int accepted = static_cast<int>(path.size());
  if (draft.source == DraftSource::kLookup) {
    if (st.last_lookup >= 0)
      st.lookup[static_cast<size_t>(st.last_lookup)].Observe(drafted, accepted);
  } else {
    st.model.Observe(drafted, accepted);
    model_.Observe(seq, draft, path);
  }
}

void HybridDrafter::Release(int seq) {
  seqs_.erase(seq);
  model_.Release(seq);
}

}  // namespace specula
