// Matmul and dot kernels, compiled once per SIMD target through Highway's foreach_target.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "specula/kernels/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

HWY_INLINE hn::Vec<DF> LoadW(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE hn::Vec<DF> LoadW(DF df, const hwy::bfloat16_t* p) {
  return hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::bfloat16_t, DF>(), p));
}
HWY_INLINE hn::Vec<DF> LoadW(DF df, const hwy::float16_t* p) {
  return hn::PromoteTo(df, hn::LoadU(hn::Rebind<hwy::float16_t, DF>(), p));
}
HWY_INLINE float ScalarW(const float* p, size_t i) { return p[i]; }
HWY_INLINE float ScalarW(const hwy::bfloat16_t* p, size_t i) { return hwy::F32FromBF16(p[i]); }
HWY_INLINE float ScalarW(const hwy::float16_t* p, size_t i) { return F16ToF32(p[i].bits); }

// R dot products of one weight row with R activation rows. The per-row sequence of operations
// (two accumulators striding 2 vectors, then one vector step, a fixed lane reduction, then a
// scalar tail) is the same for every R: this is what makes results batch-invariant.
template <size_t R, class WT>
HWY_INLINE void DotGroup(const WT* HWY_RESTRICT w, const float* HWY_RESTRICT x, size_t ldx,
                         size_t K, float* out, size_t ldo) {
  const DF df;
  const size_t N = hn::Lanes(df);
  hn::Vec<DF> a0[R], a1[R];
  for (size_t r = 0; r < R; ++r) a0[r] = a1[r] = hn::Zero(df);
  size_t k = 0;
  for (; k + 2 * N <= K; k += 2 * N) {
    // One core keeps too few loads in flight to stream at full bandwidth on its own; a software
    // prefetch 8 KiB ahead (measured best of 1-16 KiB) lifts a 1-row matmul from ~62% to ~78% of
    // the machine's stream bandwidth. Prefetches never fault, so running past the end is safe.
    hwy::Prefetch(reinterpret_cast<const uint8_t*>(w + k) + 8192);
    const auto w0 = LoadW(df, w + k);
    const auto w1 = LoadW(df, w + k + N);
    for (size_t r = 0; r < R; ++r) {
      a0[r] = hn::MulAdd(w0, hn::LoadU(df, x + r * ldx + k), a0[r]);
      a1[r] = hn::MulAdd(w1, hn::LoadU(df, x + r * ldx + k + N), a1[r]);
    }
  }
  for (; k + N <= K; k += N) {
    const auto w0 = LoadW(df, w + k);
    for (size_t r = 0; r < R; ++r) a0[r] = hn::MulAdd(w0, hn::LoadU(df, x + r * ldx + k), a0[r]);
  }
  for (size_t r = 0; r < R; ++r) {
    float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0[r], a1[r])));
    for (size_t t = k; t < K; ++t) s += ScalarW(w, t) * x[r * ldx + t];
    out[r * ldo] = s;
  }
}

template <class WT>
void MatMulRowsT(const MatMulRowsArgs& a) {
  const auto* w = static_cast<const WT*>(a.w.data);
  const size_t K = static_cast<size_t>(a.w.cols);
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    const WT* wr = w + static_cast<size_t>(n) * K;
    // Rows go in groups of 8 (one weight conversion feeds 8 FMAs), then 4, then 1.
    size_t i = 0;
    for (; i + 8 <= a.m; i += 8) DotGroup<8>(wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n, a.ldy);
    for (; i + 4 <= a.m; i += 4) DotGroup<4>(wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n, a.ldy);
    for (; i < a.m; ++i) DotGroup<1>(wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n, a.ldy);
  }
}

void MatMulRows(const MatMulRowsArgs& a) {
  switch (a.w.dtype) {
    case DType::kBF16: return MatMulRowsT<hwy::bfloat16_t>(a);
    case DType::kF16: return MatMulRowsT<hwy::float16_t>(a);
    default: return MatMulRowsT<float>(a);
  }
}

float Dot(const float* a, const float* b, size_t n) {
  float out;
  DotGroup<1>(a, b, 0, n, &out, 0);
  return out;
}

void Axpy(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto va = hn::Set(df, alpha);
  size_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  for (; i < n; ++i) y[i] += alpha * x[i];
}

uint64_t StreamRead(const uint8_t* HWY_RESTRICT p, size_t bytes) {
  const hn::ScalableTag<uint64_t> d;
  const size_t N = hn::Lanes(d);
  const auto* q = reinterpret_cast<const uint64_t*>(p);
  const size_t n = bytes / sizeof(uint64_t);
  auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    a0 = hn::Xor(a0, hn::LoadU(d, q + i));
    a1 = hn::Xor(a1, hn::LoadU(d, q + i + N));
    a2 = hn::Xor(a2, hn::LoadU(d, q + i + 2 * N));
    a3 = hn::Xor(a3, hn::LoadU(d, q + i + 3 * N));
  }
  uint64_t s = hn::GetLane(hn::SumOfLanes(d, hn::Xor(hn::Xor(a0, a1), hn::Xor(a2, a3))));
  for (; i < n; ++i) s ^= q[i];
  return s;
}

KernelTable GetTable() {
  KernelTable t;
  t.target = hwy::TargetName(HWY_TARGET);
  t.matmul_rows = &MatMulRows;
  t.dot = &Dot;
  t.axpy = &Axpy;
  t.stream_read = &StreamRead;
  return t;
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <chrono>

#include "specula/base/thread_pool.h"

namespace specula {

HWY_EXPORT(GetTable);

const KernelTable& BestKernels() {
  static const KernelTable table = HWY_DYNAMIC_DISPATCH(GetTable)();
  return table;
}

std::vector<int64_t> RunnableTargets() { return hwy::SupportedAndGeneratedTargets(); }

KernelTable KernelsForTarget(int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
  KernelTable t = HWY_DYNAMIC_DISPATCH(GetTable)();
  hwy::SetSupportedTargetsForTest(0);
  return t;
}

double MeasureReadBandwidthGBs(ThreadPool& pool, size_t bytes, int reps) {
  std::vector<uint8_t> buf(bytes, 1);  // written once: every page is resident before timing
  const KernelTable& k = BestKernels();
  const size_t chunks = static_cast<size_t>(pool.num_threads()) * 16;
  const size_t per = bytes / chunks / 64 * 64;
  std::vector<uint64_t> sums(chunks);
  double best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(chunks, [&](size_t c, int) { sums[c] = k.stream_read(buf.data() + c * per, per); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(per * chunks) / s / 1e9);
  }
  volatile uint64_t sink = 0;
  for (uint64_t v : sums) sink = sink ^ v;
  return best;
}

void MatMul(const KernelTable& k, ThreadPool& pool, const MatView& w, const float* x, size_t m,
            float* y) {
  // ~64 KiB of weights per task amortises the wake-up and keeps tasks balanced across threads.
  const int64_t row_bytes = w.cols * static_cast<int64_t>(DTypeSize(w.dtype));
  const int64_t chunk = std::max<int64_t>(1, (64 << 10) / std::max<int64_t>(1, row_bytes));
  const size_t tasks = static_cast<size_t>((w.rows + chunk - 1) / chunk);
  pool.ParallelFor(tasks, [&](size_t t, int) {
    MatMulRowsArgs a{.w = w,
                     .x = x,
                     .ldx = static_cast<size_t>(w.cols),
                     .m = m,
                     .n_begin = static_cast<int64_t>(t) * chunk,
                     .n_end = std::min<int64_t>(w.rows, static_cast<int64_t>(t + 1) * chunk),
                     .y = y,
                     .ldy = static_cast<size_t>(w.rows)};
    k.matmul_rows(a);
  });
}

}  // namespace specula
#endif  // HWY_ONCE
