// Verification of a draft against the target's logits for the K+1 verify rows.
//   row i (0 <= i <= K) holds the target's logits after x_P, d_1 .. d_i.
// Both verifiers return how many drafts were accepted and the token that follows them (the target's
// correction at the first rejection, or the bonus token after K acceptances).
#pragma once

#include <span>
#include <vector>

#include "specula/runtime/sampler.h"

namespace specula {

struct VerifyOutcome {
  int accepted = 0;
  int next_token = 0;
};

// Greedy: accept while d_{i+1} == argmax(row i). Token for token equal to plain greedy decoding.
VerifyOutcome VerifyGreedy(const float* logits, int vocab, std::span<const int> draft);

// Lossless rejection sampling (Leviathan et al.; Chen et al.): accept d_{i+1} with probability
// min(1, p_i(d)/q_i(d)); at the first rejection sample from normalise(max(p_i - q_i, 0)); after K
// acceptances sample the bonus from p_K. p_i is `sampler`'s processed distribution of row i (the
// same processing plain sampling uses); q_i is the distribution d_{i+1} was drawn from (empty span:
// point masses). Sums in double; each row costs one pass over its logits and lookups.
VerifyOutcome VerifyRejection(const float* logits, int vocab, std::span<const int> draft,
                              std::span<const TokenDistribution> q, Sampler& sampler);

// A token tree: draft i follows draft parents[i] (-1: x_P), parents[i] < i; logit row 0 belongs to
// x_P and row i + 1 to draft i. The walk starts at x_P: it takes the target's token for the
// current node's row (argmax when greedy, else a draw from `sampler`'s processed distribution) and
// moves to the first child drafting that token, until no child does; that token is next_token.
// Every emitted token is the target's own choice for its row, so the output is plain decoding's
// (greedy) or has its distribution (sampling): recursive rejection sampling over siblings that are
// point masses reduces to this.
struct TreeOutcome {
  std::vector<int> path;  // the accepted drafts' indices, root first
  int next_token = 0;
};
TreeOutcome VerifyTree(const float* logits, int vocab, std::span<const int> tokens,
                       std::span<const int> parents, Sampler& sampler);

}  // namespace specula
