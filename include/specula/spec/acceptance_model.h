// How often a drafter's tokens are accepted, by draft position, following the text: decayed counts
// of rounds that reached position i and of those that accepted it. Cost-aware choices (the draft
// length, the drafter of a hybrid round) weigh expected tokens from here against measured costs.
#pragma once

#include <vector>

namespace specula {

class AcceptanceModel {
 public:
  // `positions`: the deepest draft position tracked; `decay`: weight of the past per round.
  AcceptanceModel(int positions, double decay);
  // One verify round that drafted `drafted` tokens and accepted the first `accepted`.
  void Observe(int drafted, int accepted);
  // A round this drafter sat out: old evidence fades, so a source that failed once is tried again.
  void Fade();
  // Tokens a round with k drafts yields: the target's own token, then each draft that survives,
  // 1 + a_1 + a_1 a_2 + ... with a_i estimated as (accepted + 1) / (reached + 2) (one success in
  // two tries as the prior: an unknown drafter is worth trying).
  double ExpectedTokens(int k) const;
  // The chance that drafts 1 .. i are all accepted: a_1 a_2 ... a_i (1 for i = 0).
  double Reach(int i) const;
  // Positions observed so far, counted from the first (decayed weight >= 0.5).
  int Known() const;

 private:
  double decay_;
  std::vector<double> reached_, accepted_;  // per position
};

}  // namespace specula
