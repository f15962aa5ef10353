// What the engine's own passes cost, measured as they run: target forwards by the number of rows
// they carried, and drafter steps. A cost-aware draft policy weighs expected accepted tokens
// against these (verifying K+1 rows costs more on a mixture-of-experts target, whose rows reach
// more experts, than on a dense one).
#pragma once

#include <map>

namespace specula {

class PassCosts {
 public:
  // A target forward over `rows` rows (all sequences) that took `seconds`.
  void RecordPass(int rows, double seconds);
  // A drafter call that ran `steps` draft steps in `seconds`.
  void RecordDraft(int steps, double seconds);

  bool empty() const { return passes_.empty(); }
  // Seconds of a target forward over `rows` rows: the moving average where measured, linear
  // between measured row counts, and beyond them an optimistic 5 % per row more than the nearest
  // measured one, so that a policy tries longer drafts before it knows their cost. Without any
  // measurement: 1 + 0.05 (rows - 1), in units of an unknown one-row pass.
  double Pass(int rows) const;
  // Seconds of one draft step (a guess of 2 % of a one-row pass until measured).
  double DraftStep() const;

 private:
  std::map<int, double> passes_;  // rows -> moving-average seconds
  double draft_step_ = -1.0;
};

}  // namespace specula
