// The Gemma 4 MTP assistant as a Drafter: K draft steps at the round's fixed position, each fed the
// previous step's token and post-projection state (docs/architecture.md, "The assistant's draft
// step").
#pragma once

#include <memory>
#include <vector>

#include "specula/models/gemma4_assistant.h"
#include "specula/spec/drafter.h"

namespace specula {

class MtpDrafter : public Drafter {
 public:
  explicit MtpDrafter(const Gemma4Assistant& assistant)
      : assistant_(assistant), scratch_(assistant.NewScratch()) {}
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;
  Result<std::vector<Draft>> ProposeBatch(std::span<const DraftRequest> requests,
                                          ThreadPool& pool) override;

 private:
  const Gemma4Assistant& assistant_;
  std::unique_ptr<PassScratch> scratch_;  // this drafter's own step buffers
  std::vector<DraftStepOutput> steps_;
};

}  // namespace specula
