// Prompt lookup and a model drafter, the better of the two each round: the n-gram continuation
// costs no drafter step, the model's chain costs K of them but drafts text the sequence has not
// seen. Per sequence, each source's acceptance by draft position is tracked (the lookup's per
// matched n-gram length, as a 4-token match predicts more than a 2-token one), and the round takes
// the source and length with the most expected tokens per second of its target pass, measured as
// the cost-aware draft policy measures it. With `tree`, a third choice: both chains as branches of
// one token tree (a shared prefix once), worth the longer of the two accepted prefixes.
#pragma once

#include <map>
#include <optional>
#include <vector>

#include "specula/spec/acceptance_model.h"
#include "specula/spec/ngram_drafter.h"

namespace specula {

struct HybridOptions {
  NgramOptions ngram;
  int max_k = 32;       // deepest draft position tracked (the longest --draft-max)
  double decay = 0.95;  // weight of the past per observed round, per source
  bool tree = true;     // may verify both drafts as one tree (their nodes within max_tokens)
};

// The token tree of two chains: `a`'s tokens, then `b`'s from where it leaves `a` as a branch.
// member[i]: bit 0 when node i is on `a`, bit 1 when on `b`. Sources: `a`'s nodes keep a.source,
// the branch gets b.source.
Draft MergeChains(const Draft& a, const Draft& b, std::vector<uint8_t>* member);

class HybridDrafter : public Drafter {
 public:
  HybridDrafter(Drafter& model, const HybridOptions& options);
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;
  Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                          ThreadPool& pool) override;
  void Observe(int seq, const Draft& draft, std::span<const int> path) override;
  void Release(int seq) override;

 private:
  struct SeqState {
    AcceptanceModel model;
    std::vector<AcceptanceModel> lookup;  // [match length - min_n]
    int last_lookup = -1;                 // index into lookup of the last draft; -1: the model's
    // The last draft when it was a merged tree: node membership (MergeChains) and chain lengths.
    std::vector<uint8_t> last_tree;
    int tree_lookup_k = 0, tree_model_k = 0;
  };
  // A round's choice: the model's chain of model_k (no lookup), the lookup draft alone, or both
  // (model_k > 0 and a lookup draft: merged into a tree).
  struct Choice {
    std::optional<Draft> lookup;
    int model_k = 0;
  };
  Choice Choose(const DraftRequest& request, SeqState& state);
  SeqState& State(int seq);

  Drafter& model_;
  HybridOptions options_;
  std::map<int, SeqState> seqs_;
};

}  // namespace specula
