// Prompt lookup and a model drafter, the better of the two each round: the n-gram continuation
// costs no drafter step, the model's chain costs K of them but drafts text the sequence has not
// seen. Per sequence, each source's acceptance by draft position is tracked (the lookup's per
// matched n-gram length, as a 4-token match predicts more than a 2-token one), and the round takes
// the source and length with the most expected tokens per second of its target pass, measured as
// the cost-aware draft policy measures it.
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
};

class HybridDrafter : public Drafter {
 public:
  HybridDrafter(Drafter& model, const HybridOptions& options);
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;
  Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                          ThreadPool& pool) override;
  void Observe(int seq, const Draft& draft, int accepted) override;
  void Release(int seq) override;

 private:
  struct SeqState {
    AcceptanceModel model;
    std::vector<AcceptanceModel> lookup;  // [match length - min_n]
    int last_lookup = -1;                 // index into lookup of the last draft; -1: the model's
  };
  // The lookup draft to use, or nothing: then the model drafts.
  std::optional<Draft> ChooseLookup(const DraftRequest& request, SeqState& state);
  SeqState& State(int seq);

  Drafter& model_;
  HybridOptions options_;
  std::map<int, SeqState> seqs_;
};

}  // namespace specula
