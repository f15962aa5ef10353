#include "specula/spec/spec_stats.h"

namespace specula {

void SpecStats::GrowPositions(size_t k) {
  if (drafted_per_position.size() >= k) return;
  drafted_per_position.resize(k, 0);
  accepted_per_position.resize(k, 0);
}

void SpecStats::Record(int k, int n) {
  ++draft_rounds;
  drafted += k;
  accepted += n;
  round_tokens += n + 1;
  GrowPositions(static_cast<size_t>(k));
  for (int j = 0; j < k; ++j) drafted_per_position[static_cast<size_t>(j)]++;
  for (int j = 0; j < n; ++j) accepted_per_position[static_cast<size_t>(j)]++;
}

void SpecStats::RecordTree(int nodes, int depth, int n) {
  Record(depth, n);
  drafted += nodes - depth;
  ++tree_rounds;
}

void SpecStats::Add(const SpecStats& o) {
  target_forwards += o.target_forwards;
  decode_forwards += o.decode_forwards;
  experts_read += o.experts_read;
  forward_s += o.forward_s;
  draft_s += o.draft_s;
  prompt_tokens += o.prompt_tokens;
  prompt_cached += o.prompt_cached;
  generated += o.generated;
  draft_rounds += o.draft_rounds;
  drafted += o.drafted;
  accepted += o.accepted;
  round_tokens += o.round_tokens;
  lookup_drafted += o.lookup_drafted;
  lookup_accepted += o.lookup_accepted;
  tree_rounds += o.tree_rounds;
  GrowPositions(o.drafted_per_position.size());
  for (size_t p = 0; p < o.drafted_per_position.size(); ++p) {
    drafted_per_position[p] += o.drafted_per_position[p];
    accepted_per_position[p] += o.accepted_per_position[p];
  }
}

}  // namespace specula
