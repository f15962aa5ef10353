// Google Benchmark suite for the kernels: matmul at decode (1 row), verify (2-8 rows) and prefill
// (64 rows) shapes for every weight dtype, attention-style dots, and the bandwidth probe. Bytes/s
// counts weight bytes, so 1-row numbers read directly as achieved memory bandwidth.
//   build/bench/kernels_bench --benchmark_filter=MatMul
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/base/thread_pool.h"
#include "specula/kernels/kernels.h"

namespace specula {
namespace {

struct Matrix {
  DType dtype;
  std::vector<uint8_t> bytes;
  MatView view;
};

// Weight rows start on a cache line, as in a GGUF file (32-byte aligned tensors) or safetensors
// data whose offsets happen to be.
uint8_t* Aligned(uint8_t* p) { return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64; }

Matrix MakeMatrix(DType t, int64_t rows, int64_t cols) {
  Matrix m{t, std::vector<uint8_t>(StorageBytes(t, rows * cols) + 64), {}};
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = u(rng);
    uint8_t* out = Aligned(m.bytes.data()) + static_cast<size_t>(r) * StorageBytes(t, cols);
    if (IsBlockType(t)) {
      QuantizeRow(t, row.data(), cols, out);
    } else {
      for (int64_t c = 0; c < cols; ++c) {
        if (t == DType::kF32) {
          std::memcpy(out + 4 * c, &row[static_cast<size_t>(c)], 4);
        } else {
          const uint16_t h = t == DType::kBF16 ? F32ToBF16(row[static_cast<size_t>(c)])
                                               : F32ToF16(row[static_cast<size_t>(c)]);
          std::memcpy(out + 2 * c, &h, 2);
        }
      }
    }
  }
  m.view = {t, Aligned(m.bytes.data()), rows, cols};
  return m;
}

// Times y = x . w^T over m rows of x on `threads` threads and reports GFLOP/s.
void TimeMatMul(benchmark::State& state, const MatView& w, size_t m, int threads,
                const KernelTable& k = BestKernels()) {
  const auto cols = static_cast<size_t>(w.cols), rows = static_cast<size_t>(w.rows);
  std::vector<float> x(m * cols, 0.5f), y(m * rows);
  ThreadPool pool(threads);
  for (auto _ : state) {
    MatMul(k, pool, w, x.data(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * static_cast<double>(m * rows * cols) * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// Args: dtype, activation rows M, threads. The matrix is 32 E2B MLP up-projections (600 MB at
// bf16): larger than any cache (some servers have 260 MB of L3), like a decode step's weights.
void BM_MatMul(benchmark::State& state) {
  const auto t = static_cast<DType>(state.range(0));
  const size_t m = static_cast<size_t>(state.range(1));
  const int64_t rows = 32 * 6144, cols = 1536;
  static std::map<DType, Matrix> cache;
  if (!cache.count(t)) cache[t] = MakeMatrix(t, rows, cols);
  const Matrix& w = cache[t];
  TimeMatMul(state, w.view, m, static_cast<int>(state.range(2)));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.bytes.size()));
  state.SetLabel(std::string(DTypeName(t)) + " " + BestKernels().target);
}
BENCHMARK(BM_MatMul)
    ->ArgsProduct({{static_cast<int>(DType::kBF16), static_cast<int>(DType::kQ8_0),
                    static_cast<int>(DType::kQ4_0), static_cast<int>(DType::kQ6_K),
                    static_cast<int>(DType::kQ4_K), static_cast<int>(DType::kQ5_K),
                    static_cast<int>(DType::kIQ4_XS), static_cast<int>(DType::kQ3_K),
                    static_cast<int>(DType::kQ2_K)},
                   {1, 2, 4, 8, 16, 24, 64},
                   {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Other E2B column counts, bf16, 2 threads, ~600 MB each: the attention output (2048), the MLP
// down-projections (6144; 12288 in the double-wide layers). Args: cols, activation rows M.
void BM_MatMulCols(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const auto m = static_cast<size_t>(state.range(1));
  const int64_t rows = (int64_t{300} << 20) / cols;
  static std::map<int64_t, Matrix> cache;
  if (!cache.count(cols)) cache[cols] = MakeMatrix(DType::kBF16, rows, cols);
  TimeMatMul(state, cache[cols].view, m, 2);
}
BENCHMARK(BM_MatMulCols)
    ->ArgsProduct({{2048, 6144, 12288}, {4, 8, 16}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// The same weights as BM_MatMul, but as a decode step meets them: one matmul call (and fork/join)
// per 6144-row matrix, 32 calls. The gap to BM_MatMul is the per-call cost (dispatch, each
// thread's cold start, imbalance). Args: dtype, threads.
void BM_MatMulPerMatrix(benchmark::State& state) {
  const auto t = static_cast<DType>(state.range(0));
  const int64_t rows = 6144, cols = 1536, mats = 32;
  static std::map<DType, Matrix> cache;
  if (!cache.count(t)) cache[t] = MakeMatrix(t, rows * mats, cols);
  const Matrix& w = cache[t];
  std::vector<float> x(static_cast<size_t>(cols), 0.5f), y(static_cast<size_t>(rows * mats));
  ThreadPool pool(static_cast<int>(state.range(1)));
  for (auto _ : state) {
    for (int64_t i = 0; i < mats; ++i) {
      MatView part = w.view;
      part.data = w.view.Row(i * rows);
      part.rows = rows;
      MatMul(BestKernels(), pool, part, x.data(), 1, y.data() + i * rows);
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(w.bytes.size()));
  state.SetLabel(std::string(DTypeName(t)) + " " + BestKernels().target);
}
BENCHMARK(BM_MatMulPerMatrix)
    ->ArgsProduct({{static_cast<int>(DType::kBF16), static_cast<int>(DType::kQ8_0)}, {2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Cache-resident variant: 256 rows (768 KB at bf16, L2-resident) separate the kernel's compute
// speed from DRAM. Args: dtype, activation rows M, threads.
void BM_MatMulHot(benchmark::State& state) {
  const Matrix w = MakeMatrix(static_cast<DType>(state.range(0)), 256, 1536);
  TimeMatMul(state, w.view, static_cast<size_t>(state.range(1)), static_cast<int>(state.range(2)));
}
BENCHMARK(BM_MatMulHot)
    ->ArgsProduct({{static_cast<int>(DType::kF32), static_cast<int>(DType::kBF16),
                    static_cast<int>(DType::kQ8_0), static_cast<int>(DType::kQ6_K),
                    static_cast<int>(DType::kQ4_K), static_cast<int>(DType::kQ5_K),
                    static_cast<int>(DType::kIQ4_XS), static_cast<int>(DType::kQ3_K),
                    static_cast<int>(DType::kQ2_K)},
                   {1, 4, 6, 8, 12, 16, 24, 64},
                   {1}})
    ->UseRealTime();

// The bf16 tile against row length, cache-resident (0.1-0.8 MB of weights, in L2),
// one thread: short rows expose each tile's fixed cost (lane reduction, call, pipeline fill),
// about three K-chunks' worth; at 6144 columns a 6-row tile's activations no longer fit in L1.
// Args: cols, activation rows M.
void BM_MatMulHotK(benchmark::State& state) {
  const int64_t cols = state.range(0);
  const Matrix w = MakeMatrix(DType::kBF16, cols >= 4096 ? 64 : 256, cols);
  TimeMatMul(state, w.view, static_cast<size_t>(state.range(1)), 1);
}
// BM_MatMulHot's k-quants on every kernel variant this CPU runs (registered in main as
// BM_MatMulHotTarget/NAME, e.g. AVX2 and AVX2_VNNI): what a CPU feature is worth, same machine.
// Args: dtype, activation rows M (one thread).
void BM_MatMulHotTarget(benchmark::State& state, KernelVariant v) {
  const Matrix w = MakeMatrix(static_cast<DType>(state.range(0)), 256, 1536);
  TimeMatMul(state, w.view, static_cast<size_t>(state.range(1)), 1, KernelsFor(v));
}

BENCHMARK(BM_MatMulHotK)->ArgsProduct({{256, 512, 1024, 1536, 6144}, {6, 12, 24}})->UseRealTime();

// Attention for one KV head: E2B's 8 query heads of 256 dims over `keys` cached positions, `rows`
// query rows (1: decode, 4: a K=3 verify). Args: keys, rows.
void BM_Attention(benchmark::State& state) {
  const size_t keys = static_cast<size_t>(state.range(0)),
               rows = static_cast<size_t>(state.range(1));
  constexpr size_t kHeads = 8, kDim = 256;
  std::vector<float> k(keys * kDim, 0.01f), v(keys * kDim, 0.02f), q(rows * kHeads * kDim, 0.1f);
  std::vector<float> o(q.size()), scratch(AttentionScratchFloats(rows, kHeads, kDim, keys));
  std::vector<int> first(rows, 0), last(rows);
  for (size_t t = 0; t < rows; ++t) last[t] = static_cast<int>(keys - rows + t);
  const KvRun run{.k = k.data(), .v = v.data(), .ld = kDim, .n = keys};
  for (auto _ : state) {
    BestKernels().attention({.runs = std::span<const KvRun>(&run, 1),
                             .q = q.data(),
                             .ldq = kHeads * kDim,
                             .rows = rows,
                             .heads = kHeads,
                             .head_dim = kDim,
                             .first = first.data(),
                             .last = last.data(),
                             .o = o.data(),
                             .ldo = kHeads * kDim,
                             .scratch = scratch.data()});
    benchmark::DoNotOptimize(o.data());
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * 2 * keys * kDim * sizeof(float)));
}
BENCHMARK(BM_Attention)->ArgsProduct({{512, 4096}, {1, 4}});

void BM_Dot(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> a(n, 0.25f), b(n, 0.5f);
  const KernelTable& k = BestKernels();
  for (auto _ : state) benchmark::DoNotOptimize(k.dot(a.data(), b.data(), n));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_Dot)->Arg(256)->Arg(512);

// The sampler's per-row pass over a 262,144-token vocabulary (one thread): softmax weights and
// their sum at temperature 0.7, logits spread over 40 like a capped language-model head's.
void BM_ExpWeights(benchmark::State& state) {
  constexpr size_t kVocab = 262144;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-30.0f, 10.0f);
  std::vector<float> x(kVocab), w(kVocab);
  for (float& v : x) v = u(rng);
  const float mx = *std::max_element(x.begin(), x.end());
  const KernelTable& k = BestKernels();
  for (auto _ : state)
    benchmark::DoNotOptimize(k.exp_weights(x.data(), kVocab, mx, 1.0f / 0.7f, w.data()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVocab));
}
BENCHMARK(BM_ExpWeights);

void BM_Bandwidth(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  double gbs = 0;
  for (auto _ : state) gbs = MeasureReadBandwidthGBs(pool, size_t{256} << 20, 1);
  state.counters["GB/s"] = gbs;
}
BENCHMARK(BM_Bandwidth)->Arg(1)->Arg(2)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace specula

int main(int argc, char** argv) {
  for (const specula::KernelVariant& v : specula::RunnableVariants()) {
    benchmark::RegisterBenchmark(
        (std::string("BM_MatMulHotTarget/") + specula::KernelsFor(v).target).c_str(),
        specula::BM_MatMulHotTarget, v)
        ->ArgsProduct(
            {{static_cast<int>(specula::DType::kQ6_K), static_cast<int>(specula::DType::kQ4_K),
              static_cast<int>(specula::DType::kQ5_K), static_cast<int>(specula::DType::kQ3_K),
              static_cast<int>(specula::DType::kQ2_K)},
             {1, 4, 8, 64}})
        ->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
