#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "specula/runtime/sampler.h"

namespace specula {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f, -1.0f, 2.5f, 0.0f};

std::map<int, double> Probs(const SamplingParams& p) {
  std::map<int, double> m;
  for (const auto& [t, q] : Sampler(p).Distribution(kLogits.data(), 8).probs) m[t] = q;
  return m;
}

TEST(Sampler, GreedyTakesFirstMaximum) {
  Sampler s({});
  EXPECT_EQ(s.Sample(kLogits.data(), 8), 1);  // ids 1 and 4 tie: the lower id wins
  EXPECT_EQ(Argmax(kLogits.data(), 8), 1);
}

TEST(Sampler, TemperatureSoftmax) {
  const auto m = Probs({.temperature = 2.0f});
  double z = 0;
  for (float l : kLogits) z += std::exp(l / 2.0);
  ASSERT_EQ(m.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(m.at(i), std::exp(kLogits[static_cast<size_t>(i)] / 2.0) / z, 1e-6);
}

TEST(Sampler, TopKTopPMinPKeepTheRightSets) {
  auto keys = [](const std::map<int, double>& m) {
    std::vector<int> k;
    for (const auto& [t, p] : m) k.push_back(t);
    return k;
  };
  EXPECT_EQ(keys(Probs({.temperature = 1.0f, .top_k = 3})), (std::vector<int>{1, 4, 6}));
  // Probabilities at T=1: ids 1,4 0.307 each, 6 0.186, 2 0.113 ...
  EXPECT_EQ(keys(Probs({.temperature = 1.0f, .top_p = 0.7f})), (std::vector<int>{1, 4, 6}));
  EXPECT_EQ(keys(Probs({.temperature = 1.0f, .top_p = 0.6f})), (std::vector<int>{1, 4}));
  EXPECT_EQ(keys(Probs({.temperature = 1.0f, .top_p = 0.3f})), (std::vector<int>{1}));
  // min_p 0.5: keep p >= 0.5 * p_max, i.e. logit >= 3 - ln 2.
  EXPECT_EQ(keys(Probs({.temperature = 1.0f, .min_p = 0.5f})), (std::vector<int>{1, 4, 6}));
  const auto k2 = Probs({.temperature = 1.0f, .top_k = 2});
  EXPECT_NEAR(k2.at(1), 0.5, 1e-6);  // renormalised over the survivors
}

TEST(Sampler, SeededAndReproducible) {
  std::vector<int> a, b, c;
  Sampler s1({.temperature = 1.0f, .seed = 42}), s2({.temperature = 1.0f, .seed = 42}), s3({.temperature = 1.0f, .seed = 43});
  for (int i = 0; i < 200; ++i) {
    a.push_back(s1.Sample(kLogits.data(), 8));
    b.push_back(s2.Sample(kLogits.data(), 8));
    c.push_back(s3.Sample(kLogits.data(), 8));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

// Chi-square goodness of fit of 40k samples against the processed distribution (fixed seed).
TEST(Sampler, EmpiricalDistributionMatches) {
  const SamplingParams p{.temperature = 0.8f, .top_k = 6, .top_p = 0.97f, .seed = 7};
  Sampler s(p);
  const auto want = Probs(p);
  std::map<int, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[s.Sample(kLogits.data(), 8)]++;
  double chi2 = 0;
  for (const auto& [t, q] : want) chi2 += std::pow(counts[t] - n * q, 2) / (n * q);
  for (const auto& [t, k] : counts) EXPECT_TRUE(want.count(t)) << "sampled a filtered token " << t;
  EXPECT_LT(chi2, 20.5);  // 99.9th percentile for <= 5 degrees of freedom
}

TEST(Sampler, ValidateNamesTheFlag) {
  EXPECT_NE(SamplingParams{.temperature = -1}.Validate().message().find("--temp"), std::string::npos);
  EXPECT_NE(SamplingParams{.top_p = 0}.Validate().message().find("--top-p"), std::string::npos);
  EXPECT_NE(SamplingParams{.min_p = 2}.Validate().message().find("--min-p"), std::string::npos);
  EXPECT_NE(SamplingParams{.top_k = -1}.Validate().message().find("--top-k"), std::string::npos);
  const SamplingParams ok{.temperature = 0.7f, .top_k = 40, .top_p = 0.9f, .min_p = 0.05f};
  EXPECT_TRUE(ok.Validate().ok());
}

}  // namespace
}  // namespace specula
