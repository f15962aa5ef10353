// Every SIMD target compiled into the binary is checked against a scalar double-precision
// reference, including odd sizes that exercise the vector and scalar tails, and for bit-exact
// batch invariance (a row's result never depends on how many rows share the call).
#include "specula/kernels/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "hwy/targets.h"
#include "reference_ops.h"
#include "specula/base/dtype.h"
#include "specula/base/thread_pool.h"
#include "specula/kernels/ops.h"

namespace specula {

// gtest prints a test's parameter: the variant's name rather than its bytes.
void PrintTo(const KernelVariant& v, std::ostream* os) { *os << KernelsFor(v).target; }

namespace {

using test::QuantizeActRow;
using test::QuantRow;

struct Weights {
  DType dtype;
  std::vector<uint8_t> bytes;
  std::vector<double> exact;  // the stored values, exactly
  MatView view(int64_t rows, int64_t cols) const { return {dtype, bytes.data(), rows, cols}; }
};

Weights MakeWeights(DType t, size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Weights w{t, std::vector<uint8_t>(StorageBytes(t, static_cast<int64_t>(n))),
            std::vector<double>(n)};
  if (IsBlockType(t)) {  // quantize random values; the exact weights are the dequantized ones
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    QuantizeRow(t, v.data(), static_cast<int64_t>(n), w.bytes.data());
    for (size_t i = 0; i < n; ++i) w.exact[i] = LoadAsF32(t, w.bytes.data(), i);
    return w;
  }
  for (size_t i = 0; i < n; ++i) {
    const float v = u(rng);
    if (t == DType::kF32) {
      std::memcpy(&w.bytes[4 * i], &v, 4);
    } else {
      const uint16_t h = t == DType::kBF16 ? F32ToBF16(v) : F32ToF16(v);
      std::memcpy(&w.bytes[2 * i], &h, 2);
    }
    w.exact[i] = LoadAsF32(t, w.bytes.data(), i);
  }
  return w;
}

std::vector<float> RandomVec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// y[m, w.rows] = x[m, w.cols] · w^T through one kernel table's matmul_rows, every output in one
// call.
void MatMulAll(const KernelTable& k, const MatView& w, const float* x, size_t m, float* y) {
  k.matmul_rows({.w = w,
                 .x = x,
                 .ldx = static_cast<size_t>(w.cols),
                 .m = m,
                 .n_begin = 0,
                 .n_end = w.rows,
                 .y = y,
                 .ldy = static_cast<size_t>(w.rows)});
}

class KernelsTest : public ::testing::TestWithParam<KernelVariant> {
 protected:
  KernelTable k_ = KernelsFor(GetParam());
};

TEST_P(KernelsTest, MatMulMatchesScalarReference) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t K : {1, 7, 16, 33, 64, 257, 2100}) {
      for (size_t M : {1, 3, 4, 5, 9, 16}) {
        const int64_t N = 13;
        const Weights w = MakeWeights(t, static_cast<size_t>(N * K), 1);
        const std::vector<float> x = RandomVec(M * static_cast<size_t>(K), 2);
        std::vector<float> y(M * static_cast<size_t>(N), NAN);
        MatMulAll(k_, w.view(N, K), x.data(), M, y.data());
        for (size_t i = 0; i < M; ++i) {
          for (int64_t n = 0; n < N; ++n) {
            double ref = 0, mag = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
              const double p = w.exact[static_cast<size_t>(n * K + kk)] *
                               x[i * static_cast<size_t>(K) + static_cast<size_t>(kk)];
              ref += p;
              mag += std::fabs(p);
            }
            // f32 accumulation: error bound ~ K * eps * sum|products|.
            const double tol = 4.0 * static_cast<double>(K) * 6e-8 * mag + 1e-7;
            EXPECT_NEAR(y[i * static_cast<size_t>(N) + static_cast<size_t>(n)], ref, tol)
                << k_.target << " dtype " << DTypeName(t) << " K=" << K << " M=" << M;
          }
        }
      }
    }
  }
}

TEST_P(KernelsTest, QuantizedMatMulMatchesDequantizedReference) {
  for (DType t : kBlockTypes) {
    for (int64_t K : {256, 512, 768}) {
      for (size_t M : {1, 2, 3, 4, 8, 9, 13}) {
        const int64_t N = 37;  // two weight panels, 4-row and 1-row weight tiles
        const Weights w = MakeWeights(t, static_cast<size_t>(N * K), 11);
        std::vector<float> x = RandomVec(M * static_cast<size_t>(K), 12);
        // Rows of different magnitudes, one all zero: the row scale must follow each row. Row 1's
        // second 256 values are 1000x larger: per-block scales must follow each block.
        for (size_t i = 0; i < M; ++i) {
          for (int64_t kk = 0; kk < K; ++kk) {
            const float block = i == 1 && kk >= 256 && kk < 512 ? 1000.0f : 1.0f;
            x[i * static_cast<size_t>(K) + static_cast<size_t>(kk)] *=
                block * (i == 2 ? 0.0f : std::pow(4.0f, static_cast<float>(i % 4) - 1.0f));
          }
        }
        std::vector<float> y(M * static_cast<size_t>(N), NAN), one(static_cast<size_t>(N));
        MatMulAll(k_, w.view(N, K), x.data(), M, y.data());
        for (size_t i = 0; i < M; ++i) {
          const float* xi = x.data() + i * static_cast<size_t>(K);
          MatMulAll(k_, w.view(N, K), xi, 1, one.data());
          const QuantRow qa = QuantizeActRow(xi, static_cast<size_t>(K), k_.act_quant(t));
          for (int64_t n = 0; n < N; ++n) {
            double ref = 0, mag = 0, exact = 0, half_step = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
              const double wv = w.exact[static_cast<size_t>(n * K + kk)];
              const double p =
                  wv * qa.q[static_cast<size_t>(kk)] * qa.scale[static_cast<size_t>(kk)];
              ref += p;
              mag += std::fabs(p);
              exact += wv * xi[kk];
              half_step += qa.scale[static_cast<size_t>(kk)] / 2 * std::fabs(wv);
            }
            const float got = y[i * static_cast<size_t>(N) + static_cast<size_t>(n)];
            // The activation codes and the products are exact; only f32 accumulation errs.
            EXPECT_NEAR(got, ref, 4.0 * K * 6e-8 * mag + 1e-6)
                << k_.target << " " << DTypeName(t) << " K=" << K << " M=" << M << " row " << i;
            // And the codes are within half a step of the activations.
            EXPECT_NEAR(got, exact, half_step + 4.0 * K * 6e-8 * mag + 1e-6);
            EXPECT_EQ(one[static_cast<size_t>(n)], got) << "batch invariance";
          }
        }
      }
    }
  }
}

TEST_P(KernelsTest, QuantizedMatMulPropagatesNonFiniteRowsOnly) {
  for (const auto& [t, K] : {std::pair{DType::kQ8_0, int64_t{64}},
                             {DType::kQ6_K, int64_t{256}},
                             {DType::kQ4_K, int64_t{256}},
                             {DType::kQ5_K, int64_t{256}},
                             {DType::kQ3_K, int64_t{256}},
                             {DType::kQ2_K, int64_t{256}}}) {
    const int64_t N = 5;
    const Weights w = MakeWeights(t, static_cast<size_t>(N * K), 5);
    for (float bad : {INFINITY, NAN}) {
      std::vector<float> x = RandomVec(3 * static_cast<size_t>(K), 6);
      x[static_cast<size_t>(K) + 7] = bad;  // row 1
      std::vector<float> y(3 * static_cast<size_t>(N)), alone(static_cast<size_t>(N));
      MatMulAll(k_, w.view(N, K), x.data(), 3, y.data());
      MatMulAll(k_, w.view(N, K), x.data() + 2 * static_cast<size_t>(K), 1, alone.data());
      for (int64_t n = 0; n < N; ++n) {
        EXPECT_TRUE(std::isnan(y[static_cast<size_t>(N + n)])) << k_.target << " " << DTypeName(t);
        EXPECT_TRUE(std::isfinite(y[static_cast<size_t>(n)]));
        EXPECT_EQ(y[static_cast<size_t>(2 * N + n)], alone[static_cast<size_t>(n)]);
      }
    }
  }
}

// A block whose largest value is too small for 1/scale to be finite (~1e-38) quantizes to zero
// codes: finite outputs, not NaN from 0 * inf.
TEST_P(KernelsTest, QuantizedMatMulOfTinyActivationsIsZero) {
  for (DType t : kBlockTypes) {
    const int64_t K = 256, N = 5;
    const Weights w = MakeWeights(t, static_cast<size_t>(N * K), 7);
    std::vector<float> x(static_cast<size_t>(K), 1e-38f), y(static_cast<size_t>(N), NAN);
    MatMulAll(k_, w.view(N, K), x.data(), 1, y.data());
    for (float v : y) EXPECT_EQ(v, 0.0f) << k_.target << " " << DTypeName(t);
  }
}

TEST_P(KernelsTest, MatMulRowsAreBatchInvariant) {
  // M covers one tile (M <= 6) and several tiles of uneven sizes. K = 301: vector steps plus a
  // scalar tail; K = 2100: several panels; K = 8200: the short panels of long rows.
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16})
    for (int64_t K : {301, 2100, 8200})
      for (size_t M : {3, 5, 6, 11, 13, 16, 23, 40}) {
        const int64_t N = 37;  // two weight panels, 4-row and 1-row weight tiles
        const Weights w = MakeWeights(t, static_cast<size_t>(N * K), 3);
        const std::vector<float> x = RandomVec(M * static_cast<size_t>(K), 4);
        std::vector<float> all(M * static_cast<size_t>(N));
        MatMulAll(k_, w.view(N, K), x.data(), M, all.data());
        for (size_t i = 0; i < M; ++i) {
          std::vector<float> one(static_cast<size_t>(N));
          MatMulAll(k_, w.view(N, K), x.data() + i * static_cast<size_t>(K), 1, one.data());
          for (int64_t n = 0; n < N; ++n) {
            // Bit equality, not closeness: lossless speculative decoding depends on it.
            EXPECT_EQ(one[static_cast<size_t>(n)],
                      all[i * static_cast<size_t>(N) + static_cast<size_t>(n)])
                << k_.target << " row " << i << " col " << n;
          }
          // The dot kernel uses the same schedule as a one-row f32 matmul.
          if (t == DType::kF32) {
            const float d = k_.dot(reinterpret_cast<const float*>(w.bytes.data()),
                                   x.data() + i * static_cast<size_t>(K), static_cast<size_t>(K));
            EXPECT_EQ(d, one[0]);
          }
        }
      }
}

TEST_P(KernelsTest, AxpyMatchesReference) {
  for (size_t n : {1, 5, 16, 37, 130}) {
    const std::vector<float> x = RandomVec(n, 5);
    std::vector<float> y = RandomVec(n, 6), ref = y;
    k_.axpy(0.37f, x.data(), y.data(), n);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], ref[i] + 0.37 * x[i], 1e-6);
  }
}

TEST_P(KernelsTest, GeluMulAndSoftCapMatchScalarReference) {
  for (size_t n : {1u, 7u, 16u, 33u, 1000u}) {
    std::vector<float> g = RandomVec(n, 21), u = RandomVec(n, 22);
    for (float& v : g) v *= 6.0f;  // cover the tanh saturation range
    std::vector<float> want(n), logits(n), capped(n);
    for (size_t i = 0; i < n; ++i) want[i] = GeluTanh(g[i]) * u[i];
    k_.gelu_mul(g.data(), u.data(), n);
    for (size_t i = 0; i < n; ++i)
      EXPECT_NEAR(g[i], want[i], 2e-6 + 2e-6 * std::fabs(want[i])) << k_.target << " " << i;
    logits = RandomVec(n, 23);
    for (float& v : logits) v *= 80.0f;
    capped = logits;
    SoftCap(capped.data(), n, 30.0f);
    k_.softcap(logits.data(), n, 30.0f);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(logits[i], capped[i], 1e-5 * 30) << k_.target;
  }
}

// Softmax weights against a double-precision reference; the sum comes back in f64, and a -inf
// logit (a masked token) weighs a finite nothing.
TEST_P(KernelsTest, ExpWeightsMatchReference) {
  for (size_t n : {1u, 3u, 16u, 37u, 1000u, 262144u}) {
    std::vector<float> x = RandomVec(n, 31);
    for (float& v : x) v *= 40.0f;
    if (n > 5) x[5] = -std::numeric_limits<float>::infinity();
    const float mx = *std::max_element(x.begin(), x.end());
    for (float scale : {1.0f, 1.0f / 0.7f}) {
      std::vector<float> w(n);
      const double sum = k_.exp_weights(x.data(), n, mx, scale, w.data());
      double want_sum = 0.0;
      for (size_t i = 0; i < n; ++i) {
        // The argument in float, as the kernel forms it; the exponential to within 1 ulp.
        const float arg = std::max((x[i] - mx) * scale, -87.0f);
        const double want = std::exp(static_cast<double>(arg));
        want_sum += want;
        ASSERT_NEAR(w[i], want, 2.5e-7 * want) << k_.target << " n " << n << " i " << i;
      }
      EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << k_.target << " n " << n;
      EXPECT_GE(sum, 1.0);  // the maximum weighs 1
    }
  }
}

TEST_P(KernelsTest, ArgmaxFindsTheFirstMaximum) {
  for (size_t n : {1u, 2u, 7u, 16u, 17u, 1000u, 262144u}) {
    std::vector<float> x = RandomVec(n, 41);
    for (size_t at : {size_t{0}, n / 2, n - 1}) {
      std::vector<float> y = x;
      y[at] = 5.0f;
      EXPECT_EQ(k_.argmax(y.data(), n), at) << k_.target << " n " << n;
      if (at + 3 < n) {
        y[at + 3] = 5.0f;  // a tie after it: the first one wins
        EXPECT_EQ(k_.argmax(y.data(), n), at) << k_.target << " n " << n;
      }
    }
  }
}

TEST_P(KernelsTest, FmaProbeCountsItsFlops) {
  const double one = k_.fma_probe(1);
  ASSERT_GT(one, 0.0);
  EXPECT_EQ(k_.fma_probe(1000), 1000 * one);  // 16 chains x lanes x 2 flops per iteration
  EXPECT_EQ(static_cast<long>(one) % 32, 0);
}

TEST_P(KernelsTest, StreamReadTouchesEveryWord) {
  for (size_t words : {8u, 64u, 1000u, 4096u}) {
    std::vector<uint64_t> buf(words, 0);
    const auto* p = reinterpret_cast<const uint8_t*>(buf.data());
    EXPECT_EQ(k_.stream_read(p, words * 8), 0u);
    for (size_t at : {size_t{0}, words / 3, words - 1}) {
      buf.assign(words, 0);
      buf[at] = 0xABCDEF12345ull;  // a single non-zero word survives the fold unchanged
      EXPECT_EQ(k_.stream_read(p, words * 8), 0xABCDEF12345ull)
          << k_.target << " word " << at << " of " << words;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllTargets, KernelsTest, ::testing::ValuesIn(RunnableVariants()),
                         [](const ::testing::TestParamInfo<KernelVariant>& info) {
                           return std::string(KernelsFor(info.param).target);
                         });

TEST(KernelsPool, ThreadedMatMulEqualsSingleThreaded) {
  const int64_t N = 1000, K = 96;
  const Weights w = MakeWeights(DType::kBF16, static_cast<size_t>(N * K), 7);
  const std::vector<float> x = RandomVec(3 * static_cast<size_t>(K), 8);
  std::vector<float> a(3 * static_cast<size_t>(N)), b(a.size());
  ThreadPool one(1), two(2);
  MatMul(BestKernels(), one, w.view(N, K), x.data(), 3, a.data());
  MatMul(BestKernels(), two, w.view(N, K), x.data(), 3, b.data());
  EXPECT_EQ(a, b);
}

TEST(KernelsPool, SharedDispatchEqualsSeparateMatMuls) {
  // Matrices of different heights and dtypes (like q, k, v) over one input; slices cross matrix
  // boundaries at 2 and 3 threads. Dtypes repeat, adjacent and not, so a thread reuses the x it
  // packed or quantized for an earlier matrix of the same dtype, and must not for another dtype.
  const int64_t rows[] = {203, 17, 64, 40, 33, 70};
  const DType types[] = {DType::kBF16, DType::kF32,  DType::kQ8_0,
                         DType::kBF16, DType::kQ8_0, DType::kQ8_0};
  constexpr int kMats = 6;
  const int64_t KK = 96;  // a multiple of the Q8_0 block
  std::vector<Weights> w;
  for (int i = 0; i < kMats; ++i)
    w.push_back(MakeWeights(types[i], static_cast<size_t>(rows[i] * KK), 20 + i));
  const size_t m = 9;  // two row tiles on AVX-512
  const std::vector<float> x = RandomVec(m * static_cast<size_t>(KK), 9);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<std::vector<float>> separate(kMats), shared(kMats);
    std::vector<MatMulOut> outs;
    for (int i = 0; i < kMats; ++i) {
      separate[i].resize(m * static_cast<size_t>(rows[i]));
      shared[i].assign(m * static_cast<size_t>(rows[i]), -1.0f);
      MatMul(BestKernels(), pool, w[i].view(rows[i], KK), x.data(), m, separate[i].data());
      outs.push_back({w[i].view(rows[i], KK), shared[i].data()});
    }
    MatMulShared(BestKernels(), pool, outs, x.data(), m);
    for (int i = 0; i < kMats; ++i)
      EXPECT_EQ(separate[i], shared[i]) << "matrix " << i << ", " << threads << " threads";
  }
}

TEST(KernelsPool, GroupedDispatchEqualsSeparateMatMuls) {
  // Experts of a mixture-of-experts layer: matrices over different inputs and row counts (one with
  // no rows), inputs read with a stride wider than K, two jobs on one input. Every output equals
  // its own MatMul, at any thread count.
  const int64_t KK = 256;  // a multiple of the Q6_K super-block
  const DType types[] = {DType::kBF16, DType::kQ8_0, DType::kQ6_K, DType::kQ4_K,
                         DType::kF32,  DType::kQ5_K, DType::kQ5_1, DType::kIQ4_XS};
  const int64_t rows[] = {96, 40, 64, 33, 8, 17, 24, 12};
  const size_t ms[] = {1, 3, 0, 5, 2, 4, 3, 2};
  constexpr int kJobs = static_cast<int>(std::size(types));
  const size_t ldx = KK + 16;
  const std::vector<float> x = RandomVec(10 * ldx, 31);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<MatMulJob> jobs;
    std::vector<std::vector<float>> separate, grouped;
    std::vector<Weights> w;
    for (int i = 0; i < kJobs; ++i)
      w.push_back(MakeWeights(types[i], static_cast<size_t>(rows[i] * KK), 40 + i));
    for (int i = 0; i < kJobs; ++i) {
      const float* xi = x.data() + (i == 4 ? 0 : static_cast<size_t>(i)) * ldx;  // 0 and 4 share x
      std::vector<float> packed(ms[i] * static_cast<size_t>(KK));
      for (size_t r = 0; r < ms[i]; ++r)
        std::copy_n(xi + r * ldx, KK, packed.data() + r * static_cast<size_t>(KK));
      separate.emplace_back(ms[i] * static_cast<size_t>(rows[i]));
      grouped.emplace_back(ms[i] * static_cast<size_t>(rows[i]), -1.0f);
      MatMul(BestKernels(), pool, w[static_cast<size_t>(i)].view(rows[i], KK), packed.data(), ms[i],
             separate.back().data());
      jobs.push_back({.w = w[static_cast<size_t>(i)].view(rows[i], KK),
                      .x = xi,
                      .ldx = ldx,
                      .m = ms[i],
                      .y = grouped.back().data()});
    }
    MatMulGrouped(BestKernels(), pool, jobs);
    for (int i = 0; i < kJobs; ++i)
      EXPECT_EQ(separate[static_cast<size_t>(i)], grouped[static_cast<size_t>(i)])
          << "job " << i << ", " << threads << " threads";
  }
}

TEST(KernelsPool, ParallelForRunsEveryTaskOnce) {
  ThreadPool pool(2);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::atomic<int>> hits(257);
    pool.ParallelFor(hits.size(), [&](size_t t, int) { hits[t]++; });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
  }
}

TEST(KernelsPool, ScratchIsAlignedPerThreadAndReused) {
  ThreadPool pool(2);
  float* s0 = pool.Scratch(0, 1000);
  float* s1 = pool.Scratch(1, 1000);
  std::fill(s0, s0 + 1000, 0.0f);  // each whole span is writable (ASan checks it)
  std::fill(s1, s1 + 1000, 1.0f);
  EXPECT_EQ(s0[999], 0.0f);  // the two indices never share memory
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s0) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s1) % 64, 0u);
  EXPECT_EQ(pool.Scratch(0, 500), s0);  // no larger: the same buffer, no allocation
  float* grown = pool.Scratch(0, 100000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(grown) % 64, 0u);
  std::fill(grown, grown + 100000, 2.0f);
  EXPECT_EQ(s1[999], 1.0f);
}

}  // namespace
}  // namespace specula
