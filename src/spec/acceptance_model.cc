#include "specula/spec/acceptance_model.h"

#include <algorithm>

namespace specula {

AcceptanceModel::AcceptanceModel(int positions, double decay)
    : decay_(decay),
      reached_(static_cast<size_t>(std::max(1, positions)), 0.0),
      accepted_(reached_.size(), 0.0) {}

void AcceptanceModel::Fade() {
  for (size_t i = 0; i < reached_.size(); ++i) {
    reached_[i] *= decay_;
    accepted_[i] *= decay_;
  }
}

void AcceptanceModel::Observe(int drafted, int accepted) {
  if (drafted <= 0) return;
  Fade();
  // Positions up to the first rejection were reached; those before it were accepted.
  const int reached = std::min(drafted, accepted + 1);
  for (int i = 0; i < reached && i < static_cast<int>(reached_.size()); ++i) {
    reached_[static_cast<size_t>(i)] += 1.0;
    if (i < accepted) accepted_[static_cast<size_t>(i)] += 1.0;
  }
}

double AcceptanceModel::ExpectedTokens(int k) const {
  double tokens = 1.0;
  for (int i = 1; i <= k && i <= static_cast<int>(reached_.size()); ++i) tokens += Reach(i);
  return tokens;
}

double AcceptanceModel::Reach(int i) const {
  double reach = 1.0;
  for (int j = 0; j < i && j < static_cast<int>(reached_.size()); ++j)
    reach *= (accepted_[static_cast<size_t>(j)] + 1.0) / (reached_[static_cast<size_t>(j)] + 2.0);
  return reach;
}

int AcceptanceModel::Known() const {
  int known = 0;
  while (known < static_cast<int>(reached_.size()) && reached_[static_cast<size_t>(known)] >= 0.5)
    ++known;
  return known;
}

}  // namespace specula
