// A naive double-precision reference of one MTP draft step, written from the spec's pseudocode
// (§6.2-6.5). Target K/V come from the reference target forward; source layers are derived here
// independently ("the last non-KV-shared target layer of the same attention type").
#pragma once

#include <vector>

#include "reference_gemma4.h"
#include "specula/models/gemma4_assistant.h"

namespace specula::test {

struct RefDraftStep {
  std::vector<double> h_out, hidden, dense_logits;
  std::vector<int> candidates;  // centroid head: ids of the top clusters, cluster order
  std::vector<double> candidate_logits;
};

RefDraftStep ReferenceDraftStep(const Gemma4AssistantConfig& a, const WeightStore& astore,
                                const Gemma4Config& t, const WeightStore& tstore,
                                const RefOutput& target_run, int token,
                                const std::vector<double>& h_in, int pos);

}  // namespace specula::test
