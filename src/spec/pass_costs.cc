#include "specula/spec/pass_costs.h"

#include <algorithm>
#include <iterator>

namespace specula {
namespace {

// Weight of the newest measurement: recent passes matter (the context grows, other processes
// come and go), but one noisy pass must not swing a decision.
constexpr double kSmoothing = 0.2;
constexpr double kOptimisticPerRow = 0.05;

void Blend(double* average, double sample) {
  *average = *average < 0 ? sample : (1.0 - kSmoothing) * *average + kSmoothing * sample;
}

}  // namespace

void PassCosts::RecordPass(int rows, double seconds) {
  if (rows <= 0 || !(seconds > 0)) return;
  auto [it, fresh] = passes_.try_emplace(rows, -1.0);
  Blend(&it->second, seconds);
}

void PassCosts::RecordDraft(int steps, double seconds) {
  if (steps <= 0 || !(seconds > 0)) return;
  Blend(&draft_step_, seconds / steps);
}

double PassCosts::Pass(int rows) const {
  if (passes_.empty()) return 1.0 + kOptimisticPerRow * (rows - 1);
  // More rows never cost less: a noisy average below a smaller pass's is raised to it, so noise
  // cannot make a draft look free.
  double floor = 0.0;
  for (auto it = passes_.begin(); it != passes_.end() && it->first < rows; ++it)
    floor = std::max(floor, it->second);
  auto above = passes_.lower_bound(rows);
  if (above != passes_.end() && above->first == rows) return std::max(floor, above->second);
  if (above == passes_.begin()) return above->second;  // fewer rows than any measured: no cheaper
  const auto below = std::prev(above);
  if (above == passes_.end()) return floor * (1.0 + kOptimisticPerRow * (rows - below->first));
  const double f = static_cast<double>(rows - below->first) / (above->first - below->first);
  return std::max(floor, below->second + f * (above->second - below->second));
}

double PassCosts::DraftStep() const {
  if (draft_step_ >= 0) return draft_step_;
  return 0.02 * Pass(1);
}

}  // namespace specula
