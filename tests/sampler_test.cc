#include "specula/runtime/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

namespace specula {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f, -1.0f, 2.5f, 0.0f};

std::map<int, double> Probs(const SamplingParams& p) {
  std::map<int, double> m;
  for (const auto& [t, q] : TokenWeights(p, kLogits.data(), 8).ToDistribution().probs) m[t] = q;
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
  for (int i = 0; i < 8; ++i)
    EXPECT_NEAR(m.at(i), std::exp(kLogits[static_cast<size_t>(i)] / 2.0) / z, 1e-6);
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
  Sampler s1({.temperature = 1.0f, .seed = 42}), s2({.temperature = 1.0f, .seed = 42}),
      s3({.temperature = 1.0f, .seed = 43});
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

// The plain definition: sort every token by (logit desc, id asc), softmax at T in fp64, cut the
// top-k, the top-p prefix and the min-p tail, renormalise.
std::map<int, double> NaiveDistribution(const SamplingParams& sp, const std::vector<float>& l) {
  std::vector<int> idx(l.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int>(i);
  std::sort(idx.begin(), idx.end(), [&](int a, int b) {
    return l[static_cast<size_t>(a)] != l[static_cast<size_t>(b)]
               ? l[static_cast<size_t>(a)] > l[static_cast<size_t>(b)]
               : a < b;
  });
  if (sp.top_k > 0 && static_cast<size_t>(sp.top_k) < idx.size())
    idx.resize(static_cast<size_t>(sp.top_k));
  std::vector<double> p;
  double sum = 0;
  for (int t : idx) {
    p.push_back(
        std::exp((static_cast<double>(l[static_cast<size_t>(t)]) - l[static_cast<size_t>(idx[0])]) /
                 sp.temperature));
    sum += p.back();
  }
  size_t keep = idx.size();
  if (sp.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep && (n == 0 || cum < sp.top_p)) cum += p[n++] / sum;
    keep = n;
  }
  size_t n = 1;
  while (n < keep && p[n] >= sp.min_p * p[0]) ++n;
  keep = n;
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  std::map<int, double> m;
  for (size_t i = 0; i < keep; ++i) m[idx[i]] = p[i] / total;
  return m;
}

// The fast path (partial selection, no full sort) keeps exactly the tokens the plain definition
// keeps, with the same probabilities, the most probable first; on a large vocabulary with ties.
TEST(Sampler, MatchesTheNaiveDefinitionOnALargeVocabulary) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(20000);
  for (float& x : logits) x = std::round(normal(rng) * 64.0f) / 64.0f;  // many ties
  logits[777] = logits[778] = 14.0f;                                    // a tied maximum
  const std::vector<SamplingParams> cases = {
      {.temperature = 1.0f},
      {.temperature = 0.7f, .top_p = 0.95f},
      {.temperature = 0.7f, .top_p = 0.5f},
      {.temperature = 2.0f, .top_p = 0.999f},
      {.temperature = 1.0f, .top_k = 40},
      {.temperature = 1.0f, .top_k = 40, .top_p = 0.9f, .min_p = 0.05f},
      {.temperature = 1.0f, .min_p = 0.01f},
      {.temperature = 0.5f, .top_k = 5000, .top_p = 0.99f},
      {.temperature = 1.5f, .top_p = 0.8f, .min_p = 0.001f},
  };
  for (const SamplingParams& sp : cases) {
    const TokenDistribution d =
        TokenWeights(sp, logits.data(), static_cast<int>(logits.size())).ToDistribution();
    const std::map<int, double> want = NaiveDistribution(sp, logits);
    ASSERT_EQ(d.probs.size(), want.size()) << "T " << sp.temperature << " top_k " << sp.top_k
                                           << " top_p " << sp.top_p << " min_p " << sp.min_p;
    EXPECT_EQ(d.probs.front().first, 777);
    double sum = 0;
    for (const auto& [t, q] : d.probs) {
      ASSERT_TRUE(want.count(t)) << "kept token " << t << " the definition cuts";
      EXPECT_NEAR(q, want.at(t), 1e-6 * want.at(t) + 1e-9);
      sum += q;
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
}

// The weight table is the distribution: per-token probabilities equal the written-out pairs for
// tokens kept and cut alike, Draw is the inverse CDF over ToDistribution's order, and the
// rejection residual is normalise(max(p - q, 0)) whatever q covers (including tokens p cut).
TEST(TokenWeights, ProbDrawAndResidualMatchTheDefinitions) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(3000);
  for (float& x : logits) x = normal(rng);
  const int n = static_cast<int>(logits.size());
  const std::vector<SamplingParams> cases = {{.temperature = 1.0f},
                                             {.temperature = 0.7f, .top_k = 50},
                                             {.temperature = 0.9f, .top_p = 0.8f}};
  for (const SamplingParams& sp : cases) {
    TokenWeights w(sp, logits.data(), n);
    const TokenDistribution d = w.ToDistribution();
    std::map<int, double> p;
    for (const auto& [t, q] : d.probs) p[t] = q;
    for (int t = 0; t < n; ++t) EXPECT_NEAR(w.Prob(t), p.count(t) ? p[t] : 0.0, 1e-7) << t;
    // Draw(u) returns the token whose cumulative interval in d's order holds u.
    double cum = 0.0;
    for (const auto& [t, q] : d.probs) {
      if (q < 1e-4) {
        cum += q;
        continue;
      }
      EXPECT_EQ(w.Draw(cum + q / 2), t);
      cum += q;
    }
    // Residual against a q that overlaps p, exceeds it on some tokens and covers cut tokens.
    TokenDistribution q;
    for (int i = 0; i < 40; ++i)
      q.probs.push_back({d.probs[static_cast<size_t>(i % 8)].first, 0.01f});
    q.probs.push_back({n - 1, 0.2f});  // maybe cut by the filter
    q.probs.push_back({d.probs.front().first, 0.4f});
    std::map<int, double> qm;
    for (const auto& [t, x] : q.probs) qm[t] += x;
    std::map<int, double> want;
    double total = 0.0;
    for (const auto& [t, x] : p) {
      const double r = std::max(x - (qm.count(t) ? qm[t] : 0.0), 0.0);
      if (r > 0) want[t] = r;
      total += r;
    }
    ASSERT_TRUE(w.SubtractDistribution(q));
    for (int t = 0; t < n; ++t) {
      const double expect = want.count(t) ? want[t] / total : 0.0;
      EXPECT_NEAR(w.Prob(t), expect, 1e-5) << "token " << t;
    }
    for (int i = 0; i < 200; ++i) EXPECT_TRUE(want.count(w.Draw((i + 0.5) / 200)));
  }
}

// Over a vocabulary of several blocks, Draw skips blocks by their sums: it must still return the
// token whose interval holds u in the walk order (top first, then by id), before and after a
// residual removed mass from some blocks.
TEST(TokenWeights, DrawOverManyBlocksIsTheInverseCdf) {
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> logits(20000);  // 5 blocks, the last one partial
  for (float& x : logits) x = normal(rng);
  logits[9000] = 6.0f;  // the top sits inside a middle block
  const int n = static_cast<int>(logits.size());
  TokenWeights w({.temperature = 1.0f}, logits.data(), n);
  for (int pass = 0; pass < 2; ++pass) {
    const TokenDistribution d = w.ToDistribution();
    ASSERT_EQ(d.probs.size(), logits.size());
    EXPECT_EQ(d.probs.front().first, 9000);
    double cum = 0.0;
    int checked = 0;
    for (size_t i = 0; i < d.probs.size(); ++i) {
      const double q = d.probs[i].second;
      if (q > 1e-5 && i % 7 == 0) {
        EXPECT_EQ(w.Draw(cum + q / 2), d.probs[i].first) << "pass " << pass << " rank " << i;
        ++checked;
      }
      cum += q;
    }
    EXPECT_GT(checked, 100);
    if (pass == 0) {  // the residual below empties 9000 and 19999
      EXPECT_EQ(w.Draw(0.0), 9000);
      EXPECT_EQ(w.Draw(std::nextafter(1.0, 0.0)), d.probs.back().first);
    } else {
      EXPECT_EQ(w.Prob(9000), 0.0);
      EXPECT_EQ(w.Draw(0.0), 0);
      EXPECT_EQ(w.Draw(std::nextafter(1.0, 0.0)), 19998);
    }
    // Remove mass from tokens in three blocks (and the top) for the second pass.
    ASSERT_TRUE(w.SubtractDistribution(
        {{{9000, 0.5f}, {100, 0.01f}, {12345, 0.02f}, {19999, 0.3f}, {4096, 0.001f}}}));
  }
}

TEST(TokenWeights, AnEmptyResidualKeepsP) {
  const SamplingParams sp{.temperature = 1.0f};
  TokenWeights w(sp, kLogits.data(), 8);
  const TokenDistribution p = w.ToDistribution();
  EXPECT_FALSE(w.SubtractDistribution(p));
  for (const auto& [t, x] : p.probs) EXPECT_NEAR(w.Prob(t), x, 1e-7);
}

TEST(Sampler, ValidateNamesTheParameter) {
  EXPECT_NE(SamplingParams{.temperature = -1}.Validate().message().find("temperature:"),
            std::string::npos);
  EXPECT_NE(SamplingParams{.temperature = 1e-40f}.Validate().message().find("too small"),
            std::string::npos);
  EXPECT_TRUE(SamplingParams{.temperature = 1e-30f}.Validate().ok());  // 1/T is finite
  EXPECT_NE(SamplingParams{.top_p = 0}.Validate().message().find("top_p:"), std::string::npos);
  EXPECT_NE(SamplingParams{.min_p = 2}.Validate().message().find("min_p:"), std::string::npos);
  EXPECT_NE(SamplingParams{.top_k = -1}.Validate().message().find("top_k:"), std::string::npos);
  const SamplingParams ok{.temperature = 0.7f, .top_k = 40, .top_p = 0.9f, .min_p = 0.05f};
  EXPECT_TRUE(ok.Validate().ok());
}

}  // namespace
}  // namespace specula
