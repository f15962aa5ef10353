// The grouped attention kernel on every SIMD target: against a double-precision scalar reference
// (causal, sliding, GQA, the drafter's single query row, odd head sizes, keys split over ring
// runs), and bit-exact invariance: a query vector's output never depends on which other rows or
// heads share the call, nor on how the keys are split into runs; a tree-masked row equals the
// chain of its visible keys.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "hwy/targets.h"
#include "specula/kernels/kernels.h"

namespace specula {
namespace {

std::vector<float> RandomVec(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// One KV head's keys/values [keys, ld] (the head at column offset `off`) and queries
// [rows, heads, hd] with each row's visible key range.
struct Case {
  size_t keys, ld, off, rows, heads, hd;
  std::vector<float> k, v, q;
  std::vector<int> first, last;
};

Case MakeCase(size_t keys, size_t rows, size_t heads, size_t hd, int window, uint32_t seed) {
  Case c{keys, hd + 3, 2, rows, heads, hd, {}, {}, {}, {}, {}};
  // Scores of size ~3 make softmax neither flat nor one-hot.
  c.k = RandomVec(keys * c.ld, seed, 1.0f);
  c.v = RandomVec(keys * c.ld, seed + 1, 1.0f);
  c.q = RandomVec(rows * heads * hd, seed + 2, 6.0f / std::sqrt(static_cast<float>(hd)));
  for (size_t t = 0; t < rows; ++t) {
    const int p = static_cast<int>(keys - rows + t);  // causal: the last rows are this call's
    c.last.push_back(p);
    c.first.push_back(window > 0 ? std::max(0, p - window + 1) : 0);
  }
  return c;
}

// Runs over the case's keys, cut at the given key indices (a ring's wrap, the new rows).
std::vector<KvRun> Runs(const Case& c, std::vector<size_t> cuts) {
  std::vector<KvRun> runs;
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(c.keys);
  for (size_t i = 0; i + 1 < cuts.size(); ++i) {
    if (cuts[i] == cuts[i + 1]) continue;
    runs.push_back({.k = c.k.data() + cuts[i] * c.ld + c.off,
                    .v = c.v.data() + cuts[i] * c.ld + c.off,
                    .ld = c.ld,
                    .n = cuts[i + 1] - cuts[i]});
  }
  return runs;
}

// Rows [r0, r0 + nr) and heads [h0, h0 + nh) of the case, in one call.
std::vector<float> Attend(const KernelTable& k, const Case& c, const std::vector<KvRun>& runs,
                          size_t r0, size_t nr, size_t h0, size_t nh) {
  const size_t qd = c.heads * c.hd;
  std::vector<float> o(c.rows * qd, -7.0f);
  std::vector<float> scratch(AttentionScratchFloats(nr, nh, c.hd, c.keys));
  k.attention({.runs = runs,
               .q = c.q.data() + r0 * qd + h0 * c.hd,
               .ldq = qd,
               .rows = nr,
               .heads = nh,
               .head_dim = c.hd,
               .first = c.first.data() + r0,
               .last = c.last.data() + r0,
               .o = o.data() + r0 * qd + h0 * c.hd,
               .ldo = qd,
               .scratch = scratch.data()});
  return o;
}

class AttentionTest : public ::testing::TestWithParam<int64_t> {
 protected:
  KernelTable k_ = KernelsForTarget(GetParam());
};

TEST_P(AttentionTest, MatchesDoubleReference) {
  struct Shape {
    size_t keys, rows, heads, hd;
    int window;
  };
  // decode, verify, GQA groups, sliding windows narrower than the call, odd head sizes (vector
  // tails), the drafter's single row with every key in the cache.
  for (const Shape s : {Shape{1, 1, 1, 16, 0}, Shape{40, 1, 8, 32, 0}, Shape{67, 4, 3, 37, 0},
                        Shape{90, 6, 2, 64, 9}, Shape{33, 9, 1, 5, 4}, Shape{128, 1, 4, 256, 32}}) {
    const Case c = MakeCase(s.keys, s.rows, s.heads, s.hd, s.window, 11);
    const std::vector<float> o = Attend(k_, c, Runs(c, {s.keys / 3}), 0, s.rows, 0, s.heads);
    for (size_t t = 0; t < s.rows; ++t) {
      for (size_t h = 0; h < s.heads; ++h) {
        const float* q = &c.q[(t * s.heads + h) * s.hd];
        std::vector<double> p;
        double mx = -INFINITY, sum = 0;
        for (int j = c.first[t]; j <= c.last[t]; ++j) {
          double d = 0;
          for (size_t i = 0; i < s.hd; ++i)
            d += static_cast<double>(q[i]) * c.k[j * c.ld + c.off + i];
          p.push_back(d);
          mx = std::max(mx, d);
        }
        for (double& x : p) sum += (x = std::exp(x - mx));
        for (size_t i = 0; i < s.hd; ++i) {
          double want = 0;
          for (int j = c.first[t]; j <= c.last[t]; ++j)
            want += p[static_cast<size_t>(j - c.first[t])] * c.v[j * c.ld + c.off + i];
          want /= sum;
          EXPECT_NEAR(o[(t * s.heads + h) * s.hd + i], want, 2e-5)
              << k_.target << " keys " << s.keys << " row " << t << " head " << h << " i " << i;
        }
      }
    }
  }
}

TEST_P(AttentionTest, VectorsAreGroupAndRunInvariant) {
  for (const int window : {0, 7}) {
    const Case c = MakeCase(75, 9, 5, 40, window, 3);
    const std::vector<KvRun> one = Runs(c, {});
    const std::vector<float> all = Attend(k_, c, one, 0, c.rows, 0, c.heads);
    // The same keys as three runs (ring wrap + new rows) give the same bits.
    EXPECT_EQ(Attend(k_, c, Runs(c, {20, 66}), 0, c.rows, 0, c.heads), all) << k_.target;
    // Each vector alone, and rows/heads in other groupings, give the same bits.
    const size_t qd = c.heads * c.hd;
    for (size_t t = 0; t < c.rows; ++t) {
      for (size_t h = 0; h < c.heads; ++h) {
        const std::vector<float> alone = Attend(k_, c, one, t, 1, h, 1);
        for (size_t i = 0; i < c.hd; ++i) {
          ASSERT_EQ(alone[t * qd + h * c.hd + i], all[t * qd + h * c.hd + i])
              << k_.target << " window " << window << " row " << t << " head " << h;
        }
      }
    }
    const std::vector<float> rows_2_to_6 = Attend(k_, c, one, 2, 5, 1, 3);
    for (size_t t = 2; t < 7; ++t) {
      for (size_t i = c.hd; i < 4 * c.hd; ++i)
        ASSERT_EQ(rows_2_to_6[t * qd + i], all[t * qd + i]) << k_.target << " row " << t;
    }
  }
}

TEST_P(AttentionTest, EqualsDotAxpyLoopBitExactly) {
  // The loop the models ran per (row, head) before the kernel: dot per key, exp, axpy per key,
  // scale by 1/sum. The kernel keeps its arithmetic, so swapping it in changed no output bit.
  const Case c = MakeCase(50, 3, 4, 32, 20, 9);
  const std::vector<float> o = Attend(k_, c, Runs(c, {31}), 0, c.rows, 0, c.heads);
  for (size_t t = 0; t < c.rows; ++t) {
    for (size_t h = 0; h < c.heads; ++h) {
      const float* q = &c.q[(t * c.heads + h) * c.hd];
      std::vector<float> sc;
      float mx = -INFINITY, sum = 0.0f;
      for (int j = c.first[t]; j <= c.last[t]; ++j) {
        sc.push_back(k_.dot(q, &c.k[j * c.ld + c.off], c.hd));
        mx = std::max(mx, sc.back());
      }
      for (float& x : sc) sum += (x = std::exp(x - mx));
      std::vector<float> want(c.hd, 0.0f);
      for (int j = c.first[t]; j <= c.last[t]; ++j)
        k_.axpy(sc[static_cast<size_t>(j - c.first[t])], &c.v[j * c.ld + c.off], want.data(), c.hd);
      const float inv = 1.0f / sum;
      for (size_t i = 0; i < c.hd; ++i)
        ASSERT_EQ(o[(t * c.heads + h) * c.hd + i], want[i] * inv)
            << k_.target << " " << t << " " << h;
    }
  }
}

TEST_P(AttentionTest, TreeMaskEqualsVisibleKeysAloneBitExactly) {
  // 40 cached keys, then a token tree of 8 rows (row t's parent: parents[t], -1 the cache): each
  // row sees the cache and its ancestors. Its output must have the bits of a call over exactly
  // those keys, laid out as a chain (what plain decoding of that path computes).
  const std::vector<int> parents = {-1, 0, 0, 1, 1, 2, 5, -1};
  const size_t cached = 40, rows = parents.size(), heads = 3, hd = 24;
  for (const int window : {0, 6}) {
    Case c = MakeCase(cached + rows, rows, heads, hd, 0, 21);
    std::vector<int> depth(rows);
    std::vector<uint8_t> visible(rows * rows, 0);
    for (size_t t = 0; t < rows; ++t) {
      const int p = parents[t];
      depth[t] = p < 0 ? 0 : depth[static_cast<size_t>(p)] + 1;
      for (int a = static_cast<int>(t); a >= 0; a = parents[static_cast<size_t>(a)])
        visible[t * rows + static_cast<size_t>(a)] = 1;
      const int pos = static_cast<int>(cached) + depth[t];
      c.first[t] = window > 0 ? std::max(0, pos - window + 1) : 0;
      c.last[t] = static_cast<int>(cached + t);
    }
    const size_t qd = heads * hd;
    std::vector<float> o(rows * qd);
    std::vector<float> scratch(AttentionScratchFloats(rows, heads, hd, c.keys));
    const std::vector<KvRun> runs = Runs(c, {17, cached});
    k_.attention({.runs = runs,
                  .q = c.q.data(),
                  .ldq = qd,
                  .rows = rows,
                  .heads = heads,
                  .head_dim = hd,
                  .first = c.first.data(),
                  .last = c.last.data(),
                  .o = o.data(),
                  .ldo = qd,
                  .scratch = scratch.data(),
                  .visible = visible.data(),
                  .tree_key0 = cached,
                  .tree_keys = rows});
    for (size_t t = 0; t < rows; ++t) {
      // The chain: the cached keys, then the row's ancestors in order.
      Case chain = c;
      for (size_t a = 0, n = cached; a <= t; ++a) {
        if (!visible[t * rows + a]) continue;
        std::copy_n(&c.k[(cached + a) * c.ld], c.ld, &chain.k[n * c.ld]);
        std::copy_n(&c.v[(cached + a) * c.ld], c.ld, &chain.v[n * c.ld]);
        ++n;
      }
      chain.first[t] = c.first[t];
      chain.last[t] = static_cast<int>(cached) + depth[t];
      const std::vector<float> want = Attend(k_, chain, Runs(chain, {cached}), t, 1, 0, heads);
      for (size_t i = 0; i < qd; ++i)
        ASSERT_EQ(o[t * qd + i], want[t * qd + i])
            << k_.target << " window " << window << " row " << t << " element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTargets, AttentionTest, ::testing::ValuesIn(RunnableTargets()),
                         [](const ::testing::TestParamInfo<int64_t>& info) {
                           return std::string(hwy::TargetName(info.param));
                         });

}  // namespace
}  // namespace specula
