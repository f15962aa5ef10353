// The MTP assistant drafting a token tree instead of a chain: at each depth it steps the `width`
// most probable open nodes (one batched assistant forward for every node of every sequence), gives
// each its `width` most probable next tokens, and finally keeps the max_tokens nodes whose paths
// the drafter finds most probable (the product of its probabilities along the path). On a CPU
// one verify pass of 8 rows costs ~1.5 one-row passes, so second choices are cheap to check.
//
// Sized by cost (the default): a node's path probability, scaled by how well this sequence's past
// predictions matched what the target accepted, is the tokens it is expected to add; the tree
// stops growing when its best open node is worth less than an assistant step, and keeps the n best
// nodes that maximise expected tokens per second of the verify pass (measured pass costs, as the
// cost-aware draft policy uses; when sampling, the default costs, so that a seed's tokens do not
// depend on timings). Where second choices do not pay, that leaves the assistant's chain.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "specula/models/gemma4_assistant.h"
#include "specula/spec/drafter.h"
#include "specula/spec/pass_costs.h"

namespace specula {

struct TreeOptions {
  int width = 2;        // children per expanded node, and nodes expanded per depth (1: a chain)
  int depth = 0;        // deepest node, i.e. drafter steps per round (0: max_tokens)
  bool by_cost = true;  // false: always max_tokens nodes, grown to `depth`
  Status Validate() const;
};

class MtpTreeDrafter : public Drafter {
 public:
  MtpTreeDrafter(const Gemma4Assistant& assistant, const TreeOptions& options)
      : assistant_(assistant), options_(options), scratch_(assistant.NewScratch()) {}
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;
  Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                          ThreadPool& pool) override;
  void Observe(int seq, const Draft& draft, std::span<const int> path) override;
  void Release(int seq) override { calibration_.erase(seq); }

 private:
  // Per sequence: decayed sums of the accepted tokens the verified trees were expected to yield
  // (their nodes' path probabilities) and of those they did yield.
  struct Calibration {
    double expected = 0.0, accepted = 0.0;
    double last_expected = 0.0;  // the last tree's, until observed
    double Scale() const { return (accepted + 1.0) / (expected + 1.0); }
  };
  std::map<int, Calibration> calibration_;
  const PassCosts defaults_;  // what sampled rounds are weighed with
  const Gemma4Assistant& assistant_;
  const TreeOptions options_;
  std::unique_ptr<PassScratch> scratch_;  // this drafter's own step buffers
  std::vector<DraftStepOutput> steps_;
};

}  // namespace specula
