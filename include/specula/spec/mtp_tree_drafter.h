// The MTP assistant drafting a token tree instead of a chain: at each depth it steps the `width`
// most probable open nodes (one batched assistant forward for every node of every sequence), gives
// each its `width` most probable next tokens, and finally keeps the max_tokens nodes whose paths
// the drafter finds most probable (the product of its probabilities along the path). On a CPU
// one verify pass of 8 rows costs ~1.5 one-row passes, so second choices are cheap to check.
#pragma once

#include <memory>
#include <vector>

#include "specula/models/gemma4_assistant.h"
#include "specula/spec/drafter.h"

namespace specula {

struct TreeOptions {
  int width = 2;  // children per expanded node, and nodes expanded per depth (1: a chain)
  int depth = 0;  // deepest node, i.e. drafter steps per round (0: max_tokens)
  Status Validate() const;
};

class MtpTreeDrafter : public Drafter {
 public:
  MtpTreeDrafter(const Gemma4Assistant& assistant, const TreeOptions& options)
      : assistant_(assistant), options_(options), scratch_(assistant.NewScratch()) {}
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;
  Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                          ThreadPool& pool) override;

 private:
  const Gemma4Assistant& assistant_;
  const TreeOptions options_;
  std::unique_ptr<PassScratch> scratch_;  // this drafter's own step buffers
  std::vector<DraftStepOutput> steps_;
};

}  // namespace specula
