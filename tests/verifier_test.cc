// The verifiers on handcrafted logits. Rejection sampling must reproduce the target distribution
// exactly, whatever the draft distribution q: a point mass (greedy draft), q with mass where p has
// none, q on a subset (the centroid head), q == p.
#include "specula/spec/verifier.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

namespace specula {
namespace {

constexpr int kV = 6;
// Two verify rows (K = 1) plus a bonus row (K = 2 uses all three).
const float kLogits[3][kV] = {{2.0f, 1.5f, 0.2f, -1.0f, 0.9f, -3.0f},
                              {0.1f, 0.3f, 2.2f, 1.1f, -0.5f, 0.0f},
                              {1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 1.0f}};

TEST(GreedyVerifier, AcceptsMatchingPrefixAndReturnsCorrection) {
  const float* L = &kLogits[0][0];
  const int both[] = {0, 2};
  EXPECT_EQ(VerifyGreedy(L, kV, both).accepted, 2);
  EXPECT_EQ(VerifyGreedy(L, kV, both).next_token, 0);  // bonus = argmax of row 2 (ties: lowest id)
  const int first_wrong[] = {1, 2};
  EXPECT_EQ(VerifyGreedy(L, kV, first_wrong).accepted, 0);
  EXPECT_EQ(VerifyGreedy(L, kV, first_wrong).next_token, 0);
  const int second_wrong[] = {0, 3};
  EXPECT_EQ(VerifyGreedy(L, kV, second_wrong).accepted, 1);
  EXPECT_EQ(VerifyGreedy(L, kV, second_wrong).next_token, 2);
  EXPECT_EQ(VerifyGreedy(L, kV, {}).next_token, 0);
}

std::map<int, double> AsMap(const TokenDistribution& d) {
  std::map<int, double> m;
  for (const auto& [t, p] : d.probs) m[t] = p;
  return m;
}

double ChiSquare(const std::map<int, int>& counts, const std::map<int, double>& p, int n) {
  double chi2 = 0;
  for (const auto& [t, c] : counts)
    EXPECT_TRUE(p.count(t)) << "emitted token " << t << " outside p's support";
  for (const auto& [t, q] : p) {
    const auto it = counts.find(t);
    chi2 += std::pow((it == counts.end() ? 0 : it->second) - n * q, 2) / (n * q);
  }
  return chi2;
}

TokenDistribution Dist(std::vector<std::pair<int, float>> probs) {
  return TokenDistribution{std::move(probs)};
}

struct QCase {
  std::string name;
  TokenDistribution q0, q1;  // empty probs: greedy point mass on a fixed draft
  int fixed0 = -1, fixed1 = -1;
};

TEST(RejectionVerifier, EmittedTokensFollowTheTargetDistribution) {
  const SamplingParams sp{.temperature = 0.9f, .top_k = 4};  // p has 4 tokens; 2 ids have p = 0
  const auto p0 = AsMap(TokenWeights(sp, kLogits[0], kV).ToDistribution());
  const auto p1 = AsMap(TokenWeights(sp, kLogits[1], kV).ToDistribution());
  ASSERT_EQ(p0.size(), 4u);
  const std::vector<QCase> cases = {
      {"point mass (greedy draft)", {}, {}, 0, 2},
      {"point mass on a token p excludes", {}, {}, 5, 5},
      {"q uniform, mass where p has none",
       Dist({{0, 1 / 6.f}, {1, 1 / 6.f}, {2, 1 / 6.f}, {3, 1 / 6.f}, {4, 1 / 6.f}, {5, 1 / 6.f}}),
       Dist({{0, 1 / 6.f}, {1, 1 / 6.f}, {2, 1 / 6.f}, {3, 1 / 6.f}, {4, 1 / 6.f}, {5, 1 / 6.f}})},
      {"q on a subset (centroid head)", Dist({{1, 0.7f}, {3, 0.3f}}), Dist({{2, 0.5f}, {5, 0.5f}})},
      {"q equals p", TokenWeights(sp, kLogits[0], kV).ToDistribution(),
       TokenWeights(sp, kLogits[1], kV).ToDistribution()},
  };
  for (const QCase& c : cases) {
    Sampler verifier(SamplingParams{.temperature = 0.9f, .top_k = 4, .seed = 99});
    std::mt19937_64 draw(5);
    auto sample = [&](const TokenDistribution& q) {
      double u = std::uniform_real_distribution<double>(0, 1)(draw), cum = 0;
      for (const auto& [t, pr] : q.probs) {
        if (u < (cum += pr)) return t;
      }
      return q.probs.back().first;
    };
    std::map<int, int> first, second;
    int n_second = 0, accepted_any = 0;
    const int n = 60000;
    for (int i = 0; i < n; ++i) {
      const bool greedy = c.q0.probs.empty();
      const int d0 = greedy ? c.fixed0 : sample(c.q0);
      const int d1 = greedy ? c.fixed1 : sample(c.q1);
      const int draft[] = {d0, d1};
      const TokenDistribution qs[] = {c.q0, c.q1};
      const VerifyOutcome v = VerifyRejection(
          &kLogits[0][0], kV, draft,
          greedy ? std::span<const TokenDistribution>() : std::span<const TokenDistribution>(qs),
          verifier);
      first[v.accepted >= 1 ? d0 : v.next_token]++;
      if (v.accepted >= 1) {  // the second emitted token, given the first draft was accepted
        ++n_second;
        second[v.accepted >= 2 ? d1 : v.next_token]++;
        ++accepted_any;
      }
    }
    // 99.9th percentile for 3 degrees of freedom is 16.3.
    EXPECT_LT(ChiSquare(first, p0, n), 16.3) << c.name;
    if (n_second > 2000) {
      EXPECT_LT(ChiSquare(second, p1, n_second), 16.3) << c.name;
    }
    if (c.name == "q equals p") {
      EXPECT_EQ(accepted_any, n);  // q == p: always accepted
    }
    if (c.name == "point mass on a token p excludes") {
      EXPECT_EQ(accepted_any, 0);
    }
  }
}

}  // namespace
}  // namespace specula
