// Matmul and dot kernels, compiled once per SIMD target through Highway's foreach_target.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep (must come first: it re-includes this file)
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "specula/kernels/kernels.h"
#include "specula/kernels/ops.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
// How far ahead of each weight row's stream to prefetch.
constexpr size_t kPrefetchBytes = 16384;

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

// A register tile: NW weight rows x R activation rows, one accumulator per output. Each loaded
// weight vector feeds R FMAs and each activation vector NW FMAs, so a tile needs far fewer loads
// per FMA than a row-at-a-time loop (prefill and verification are FMA-bound here).
//
// Batch invariance: every output is accumulated the same way whatever NW and R are (one
// accumulator over full vectors in K order, a fixed lane reduction, then a scalar tail), so a row's
// result never depends on how many rows share the call or how the rows were tiled.
template <size_t NW, size_t R, class WT>
HWY_INLINE void DotTile(const WT* HWY_RESTRICT w, size_t ldw, const float* HWY_RESTRICT x,
                        size_t ldx, size_t K, float* out, size_t ldo) {
  const DF df;
  const size_t N = hn::Lanes(df);
  hn::Vec<DF> acc[NW][R];
  for (size_t i = 0; i < NW; ++i) {
    for (size_t r = 0; r < R; ++r) acc[i][r] = hn::Zero(df);
  }
  size_t k = 0;
  // One prefetch per cache line and row: steps cover N * sizeof(WT) bytes.
  const size_t steps_per_line = std::max<size_t>(1, 64 / (N * sizeof(WT)));
  for (size_t step = 0; k + N <= K; k += N, ++step) {
    // One core keeps too few loads in flight to stream at full bandwidth on its own; prefetching
    // each weight row's stream kPrefetchBytes ahead (16 KiB: best of 4-32 KiB with per-thread
    // slices) lifts a 1-row matmul from ~62% to ~80% of the machine's stream bandwidth. Prefetches
    // never fault.
    if (step % steps_per_line == 0) {
      for (size_t i = 0; i < NW; ++i)
        hwy::Prefetch(reinterpret_cast<const uint8_t*>(w + i * ldw + k) + kPrefetchBytes);
    }
    hn::Vec<DF> wv[NW];
    for (size_t i = 0; i < NW; ++i) wv[i] = LoadW(df, w + i * ldw + k);
    for (size_t r = 0; r < R; ++r) {
      const auto xv = hn::LoadU(df, x + r * ldx + k);
      for (size_t i = 0; i < NW; ++i) acc[i][r] = hn::MulAdd(wv[i], xv, acc[i][r]);
    }
  }
  for (size_t i = 0; i < NW; ++i) {
    for (size_t r = 0; r < R; ++r) {
      float s = hn::GetLane(hn::SumOfLanes(df, acc[i][r]));
      for (size_t t = k; t < K; ++t) s += ScalarW(w + i * ldw, t) * x[r * ldx + t];
      out[r * ldo + i] = s;
    }
  }
}

// Register tiles of 4 weight rows x R activation rows. From 6 rows on (prefill, batched verify)
// R = 6: 24 accumulators + 4 weights + 1 activation of the 32 registers; on 64 rows this took 198
// instead of 247 ms (best of 5) for 4 x 4, while 3 x 8, 2 x 8 and 3 x 6 tiles spilled and ran 2x
// slower. Below 6 rows R = 4. AVX2 has 16 registers: 4 x 2.
constexpr bool kWideRegs = HWY_TARGET != HWY_AVX2;
constexpr size_t kSmallRows = kWideRegs ? 4 : 2, kBigRows = kWideRegs ? 5 : 2;
constexpr size_t kTileWeights = 4;

// The tile of exactly `rem` (< R) rows.
template <size_t NW, size_t R, class WT>
HWY_INLINE void DotTileTail(size_t rem, const WT* w, size_t ldw, const float* x, size_t ldx,
                            size_t K, float* out, size_t ldo) {
  if constexpr (R > 0) {
    if (rem == R) return DotTile<NW, R>(w, ldw, x, ldx, K, out, ldo);
    DotTileTail<NW, R - 1>(rem, w, ldw, x, ldx, K, out, ldo);
  }
}

template <size_t NW, size_t R, class WT>
HWY_INLINE void DotTileRows(const WT* w, size_t ldw, const float* x, size_t ldx, size_t m, size_t K,
                            float* out, size_t ldo) {
  size_t i = 0;
  for (; i + R <= m; i += R) DotTile<NW, R>(w, ldw, x + i * ldx, ldx, K, out + i * ldo, ldo);
  DotTileTail<NW, R - 1>(m - i, w, ldw, x + i * ldx, ldx, K, out + i * ldo, ldo);
}

template <size_t R, class WT>
void MatMulRowsTiled(const MatMulRowsArgs& a) {
  const auto* w = static_cast<const WT*>(a.w.data);
  const size_t K = static_cast<size_t>(a.w.cols);
  int64_t n = a.n_begin;
  for (; n + static_cast<int64_t>(kTileWeights) <= a.n_end; n += kTileWeights) {
    DotTileRows<kTileWeights, R>(w + static_cast<size_t>(n) * K, K, a.x, a.ldx, a.m, K, a.y + n,
                                 a.ldy);
  }
  for (; n < a.n_end; ++n) {
    DotTileRows<1, R>(w + static_cast<size_t>(n) * K, K, a.x, a.ldx, a.m, K, a.y + n, a.ldy);
  }
}

// The tile shape only changes which outputs are computed together, never how one is accumulated.
template <class WT>
void MatMulRowsT(const MatMulRowsArgs& a) {
  if (a.m >= kBigRows) return MatMulRowsTiled<kBigRows, WT>(a);
  MatMulRowsTiled<kSmallRows, WT>(a);
}

// Quantized rows (GGUF blocks of 32). Per block: dequantize each vector of codes once (d * q, the
// exact stored value) and FMA it into every activation row of the group; the per-output schedule
// (one accumulator over the blocks' vectors in K order) ignores R. Lanes are capped at 16 so every
// block is a whole number of vector steps on every target.
using DQ = hn::CappedTag<float, 16>;

HWY_INLINE hn::Vec<DQ> LoadQ8(DQ d, const uint8_t* q) {
  const hn::Rebind<int8_t, DQ> d8;
  const hn::Rebind<int32_t, DQ> d32;
  return hn::ConvertTo(d, hn::PromoteTo(d32, hn::LoadU(d8, reinterpret_cast<const int8_t*>(q))));
}

// Nibbles of 16 bytes: low nibbles are values 0..15 of the block, high nibbles 16..31.
HWY_INLINE void LoadQ4(DQ d, const uint8_t* q, hn::Vec<DQ>* lo, hn::Vec<DQ>* hi) {
  const hn::Rebind<uint8_t, DQ> d8;
  const hn::Rebind<int32_t, DQ> d32;
  const auto v = hn::BitCast(d32, hn::PromoteTo(hn::Rebind<uint32_t, DQ>(), hn::LoadU(d8, q)));
  const auto eight = hn::Set(d32, 8);
  *lo = hn::ConvertTo(d, hn::Sub(hn::And(v, hn::Set(d32, 15)), eight));
  *hi = hn::ConvertTo(d, hn::Sub(hn::ShiftRight<4>(v), eight));
}

template <size_t R, DType kType>
HWY_INLINE void DotGroupQ(const uint8_t* HWY_RESTRICT w, const float* HWY_RESTRICT x, size_t ldx,
                          size_t K, float* out, size_t ldo) {
  const DQ d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kBytes = DTypeSize(kType);
  hn::Vec<DQ> acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(d);
  for (size_t k = 0; k < K; k += kQuantBlock, w += kBytes) {
    hwy::Prefetch(w + 4096);
    uint16_t dh;
    std::memcpy(&dh, w, 2);
    const auto scale = hn::Set(d, F16ToF32Fast(dh));
    // Dequantize once per block (d * q, exactly the stored value) and feed it to every row: one
    // multiply per weight vector instead of a per-row partial sum and scale per block.
    if constexpr (kType == DType::kQ8_0) {
      for (size_t s = 0; s < kQuantBlock; s += N) {
        const auto wq = hn::Mul(LoadQ8(d, w + 2 + s), scale);
        for (size_t r = 0; r < R; ++r)
          acc[r] = hn::MulAdd(wq, hn::LoadU(d, x + r * ldx + k + s), acc[r]);
      }
    } else {
      for (size_t s = 0; s < kQuantBlock / 2; s += N) {
        hn::Vec<DQ> lo, hi;
        LoadQ4(d, w + 2 + s, &lo, &hi);
        lo = hn::Mul(lo, scale);
        hi = hn::Mul(hi, scale);
        for (size_t r = 0; r < R; ++r)
          acc[r] = hn::MulAdd(lo, hn::LoadU(d, x + r * ldx + k + s), acc[r]);
        for (size_t r = 0; r < R; ++r)
          acc[r] = hn::MulAdd(hi, hn::LoadU(d, x + r * ldx + k + 16 + s), acc[r]);
      }
    }
  }
  for (size_t r = 0; r < R; ++r) out[r * ldo] = hn::GetLane(hn::SumOfLanes(d, acc[r]));
}

// Q6_K: per super-block of 256 values, 16 sub-blocks of 16 with their own scale d * sc[j]. The 16
// codes of sub-block j sit in 16 consecutive bytes of ql (one nibble) and of qh (two bits).
template <size_t R>
HWY_INLINE void DotGroupQ6K(const uint8_t* HWY_RESTRICT w, const float* HWY_RESTRICT x, size_t ldx,
                            size_t K, float* out, size_t ldo) {
  const DQ d;
  const hn::Rebind<uint8_t, DQ> d8;
  const hn::Rebind<int32_t, DQ> d32;
  const size_t N = hn::Lanes(d);
  hn::Vec<DQ> acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(d);
  for (size_t k = 0; k < K; k += kSuperBlock, w += DTypeSize(DType::kQ6_K)) {
    hwy::Prefetch(w + 2048);
    uint16_t dh;
    std::memcpy(&dh, w + 208, 2);
    const float dsuper = F16ToF32Fast(dh);
    for (size_t j = 0; j < 16; ++j) {
      const size_t n = j / 8, g = (j % 8) / 2, is = j % 2;
      const uint8_t* ql = w + 64 * n + (g & 1) * 32 + is * 16;
      const uint8_t* qh = w + 128 + 32 * n + is * 16;
      const int ql_shift = g >= 2 ? 4 : 0, qh_shift = static_cast<int>(2 * g);
      const auto scale = hn::Set(d, dsuper * static_cast<float>(static_cast<int8_t>(w[192 + j])));
      hn::Vec<DQ> part[R];
      for (size_t r = 0; r < R; ++r) part[r] = hn::Zero(d);
      for (size_t s = 0; s < 16; s += N) {
        const auto lo = hn::And(
            hn::ShiftRightSame(
                hn::BitCast(d32, hn::PromoteTo(hn::Rebind<uint32_t, DQ>(), hn::LoadU(d8, ql + s))),
                ql_shift),
            hn::Set(d32, 15));
        const auto hi = hn::And(
            hn::ShiftRightSame(
                hn::BitCast(d32, hn::PromoteTo(hn::Rebind<uint32_t, DQ>(), hn::LoadU(d8, qh + s))),
                qh_shift),
            hn::Set(d32, 3));
        const auto q =
            hn::ConvertTo(d, hn::Sub(hn::Or(lo, hn::ShiftLeft<4>(hi)), hn::Set(d32, 32)));
        const size_t xo = k + 16 * j + s;
        for (size_t r = 0; r < R; ++r)
          part[r] = hn::MulAdd(q, hn::LoadU(d, x + r * ldx + xo), part[r]);
      }
      for (size_t r = 0; r < R; ++r) acc[r] = hn::MulAdd(scale, part[r], acc[r]);
    }
  }
  for (size_t r = 0; r < R; ++r) out[r * ldo] = hn::GetLane(hn::SumOfLanes(d, acc[r]));
}

template <size_t R, DType kType>
HWY_INLINE void DotGroupAnyQ(const uint8_t* w, const float* x, size_t ldx, size_t K, float* out,
                             size_t ldo) {
  if constexpr (kType == DType::kQ6_K) {
    DotGroupQ6K<R>(w, x, ldx, K, out, ldo);
  } else {
    DotGroupQ<R, kType>(w, x, ldx, K, out, ldo);
  }
}

// Activation rows per quantized group (groups of 6 and 8 measured no faster on 8 and 64 rows).
constexpr size_t kQuantRows = 4;

template <size_t R, DType kType>
HWY_INLINE void DotGroupTail(size_t rem, const uint8_t* w, const float* x, size_t ldx, size_t K,
                             float* out, size_t ldo) {
  if constexpr (R > 0) {
    if (rem == R) return DotGroupAnyQ<R, kType>(w, x, ldx, K, out, ldo);
    DotGroupTail<R - 1, kType>(rem, w, x, ldx, K, out, ldo);
  }
}

template <DType kType>
void MatMulRowsQ(const MatMulRowsArgs& a) {
  const size_t K = static_cast<size_t>(a.w.cols);
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    const auto* wr = static_cast<const uint8_t*>(a.w.Row(n));
    // Rows in groups of kQuantRows, then one group of the rest: every block is dequantized once
    // per group.
    size_t i = 0;
    for (; i + kQuantRows <= a.m; i += kQuantRows) {
      DotGroupAnyQ<kQuantRows, kType>(wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n, a.ldy);
    }
    DotGroupTail<kQuantRows - 1, kType>(a.m - i, wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n,
                                        a.ldy);
  }
}

void MatMulRows(const MatMulRowsArgs& a) {
  switch (a.w.dtype) {
    case DType::kBF16:
      return MatMulRowsT<hwy::bfloat16_t>(a);
    case DType::kF16:
      return MatMulRowsT<hwy::float16_t>(a);
    case DType::kQ8_0:
      return MatMulRowsQ<DType::kQ8_0>(a);
    case DType::kQ4_0:
      return MatMulRowsQ<DType::kQ4_0>(a);
    case DType::kQ6_K:
      return MatMulRowsQ<DType::kQ6_K>(a);
    default:
      return MatMulRowsT<float>(a);
  }
}

float Dot(const float* a, const float* b, size_t n) {
  float out;
  DotTile<1, 1>(a, 0, b, 0, n, &out, 0);
  return out;
}

void Axpy(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto va = hn::Set(df, alpha);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// Elementwise ops over whole rows: vector body, scalar-reference tail. Each element's result
// depends only on its own inputs, so they are batch-invariant by construction.
void GeluMul(float* HWY_RESTRICT g, const float* HWY_RESTRICT u, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f);
  const auto alpha = hn::Set(df, 0.7978845608028654f), beta = hn::Set(df, 0.044715f);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto x = hn::LoadU(df, g + i);
    const auto inner = hn::Mul(alpha, hn::MulAdd(hn::Mul(beta, hn::Mul(x, x)), x, x));
    const auto gelu = hn::Mul(hn::Mul(half, x), hn::Add(one, hn::Tanh(df, inner)));
    hn::StoreU(hn::Mul(gelu, hn::LoadU(df, u + i)), df, g + i);
  }
  for (; i < n; ++i) g[i] = GeluTanh(g[i]) * u[i];
}

void SoftCapRow(float* HWY_RESTRICT x, size_t n, float cap) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const auto c = hn::Set(df, cap), inv = hn::Set(df, 1.0f / cap);
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(hn::Mul(c, hn::Tanh(df, hn::Mul(hn::LoadU(df, x + i), inv))), df, x + i);
  for (; i < n; ++i) x[i] = cap * std::tanh(x[i] * (1.0f / cap));
}

double FmaProbe(size_t iters) {
  const DF df;
  const auto m = hn::Set(df, 0.999999f), a = hn::Set(df, 1e-7f);
  hn::Vec<DF> v[16];
  for (int i = 0; i < 16; ++i) v[i] = hn::Set(df, static_cast<float>(i));
  for (size_t it = 0; it < iters; ++it) {
    for (int i = 0; i < 16; ++i) v[i] = hn::MulAdd(v[i], m, a);
  }
  auto s = v[0];
  for (int i = 1; i < 16; ++i) s = hn::Add(s, v[i]);
  volatile float sink = hn::GetLane(s);
  (void)sink;
  return 2.0 * 16.0 * static_cast<double>(hn::Lanes(df)) * static_cast<double>(iters);
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
  t.fma_probe = &FmaProbe;
  t.gelu_mul = &GeluMul;
  t.softcap = &SoftCapRow;
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
    pool.ParallelFor(chunks,
                     [&](size_t c, int) { sums[c] = k.stream_read(buf.data() + c * per, per); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(per * chunks) / s / 1e9);
  }
  volatile uint64_t sink = 0;
  for (uint64_t v : sums) sink = sink ^ v;
  return best;
}

double MeasurePeakGflops(ThreadPool& pool) {
  const KernelTable& k = BestKernels();
  const size_t threads = static_cast<size_t>(pool.num_threads());
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> flops(threads);
    const auto t0 = std::chrono::steady_clock::now();
    pool.ParallelFor(threads, [&](size_t t, int) { flops[t] = k.fma_probe(size_t{4} << 20); });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double total = 0.0;
    for (double f : flops) total += f;
    best = std::max(best, total / s / 1e9);
  }
  return best;
}

void MatMul(const KernelTable& k, ThreadPool& pool, const MatView& w, const float* x, size_t m,
            float* y) {
  const MatMulOut one{w, y};
  MatMulShared(k, pool, std::span<const MatMulOut>(&one, 1), x, m);
}

void MatMulShared(const KernelTable& k, ThreadPool& pool, std::span<const MatMulOut> outs,
                  const float* x, size_t m) {
  // One contiguous slice of the stacked rows per thread: each core then streams long runs of rows,
  // which the hardware prefetchers and DRAM pages favour (64 KiB dynamically scheduled tasks
  // reached ~78% of stream bandwidth, per-thread slices ~86%). Slices are whole 4-row tiles, and
  // tiny matrices stay on one thread.
  int64_t rows = 0, row_bytes = 1;
  for (const MatMulOut& o : outs) {
    rows += o.w.rows;
    row_bytes =
        std::max<int64_t>(row_bytes, static_cast<int64_t>(StorageBytes(o.w.dtype, o.w.cols)));
  }
  const int64_t min_rows = std::max<int64_t>(4, (16 << 10) / row_bytes);
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), rows / min_rows));
  const int64_t chunk = ((rows + threads - 1) / threads + 3) / 4 * 4;
  const size_t tasks = static_cast<size_t>((rows + chunk - 1) / chunk);
  pool.ParallelFor(tasks, [&](size_t t, int) {
    const int64_t begin = static_cast<int64_t>(t) * chunk,
                  end = std::min<int64_t>(rows, begin + chunk);
    int64_t base = 0;  // first stacked row of the current matrix
    for (const MatMulOut& o : outs) {
      const int64_t lo = std::max(begin, base), hi = std::min(end, base + o.w.rows);
      if (lo < hi) {
        k.matmul_rows({.w = o.w,
                       .x = x,
                       .ldx = static_cast<size_t>(o.w.cols),
                       .m = m,
                       .n_begin = lo - base,
                       .n_end = hi - base,
                       .y = o.y,
                       .ldy = static_cast<size_t>(o.w.rows)});
      }
      base += o.w.rows;
    }
  });
}

}  // namespace specula
#endif  // HWY_ONCE
