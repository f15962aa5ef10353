// Per-target pieces every matmul kernel shares: weight loads, the register-tile geometry, the lane
// reduction and the weight panels. Included by matmul.cc once per SIMD target (Highway's -inl.h
// convention: the guard toggles with HWY_TARGET_TOGGLE).
#if defined(SPECULA_KERNELS_TILES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_TILES_INL_H_
#undef SPECULA_KERNELS_TILES_INL_H_
#else
#define SPECULA_KERNELS_TILES_INL_H_
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"

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
HWY_INLINE float ScalarW(const hwy::float16_t* p, size_t i) {
  uint16_t bits;  // a struct on x86, the native __fp16 on ARM
  std::memcpy(&bits, p + i, 2);
  return F16ToF32(bits);
}

// Register tiles of 4 weight rows x up to kMaxRows activation rows. The m rows are cut into the
// fewest tiles of at most kMaxRows, as even as possible (16 rows: 6 + 5 + 5, not 6 + 6 + 4 or
// 5 + 5 + 5 + 1), since a short tile pays the same weight loads and conversions for fewer FMAs.
// AVX-512 has 32 registers: 24 accumulators + 4 weights + 1 activation + 1 mask. AVX2 has 16.
constexpr bool kWideRegs = HWY_TARGET != HWY_AVX2;
constexpr size_t kMaxRows = kWideRegs ? 6 : 2;
constexpr size_t kTileWeights = 4;

HWY_INLINE size_t NumTiles(size_t m, size_t max_rows = kMaxRows) {
  return (m + max_rows - 1) / max_rows;
}
HWY_INLINE size_t TileRows(size_t m, size_t t, size_t max_rows = kMaxRows) {
  const size_t tiles = NumTiles(m, max_rows);
  return m / tiles + (t < m % tiles ? 1 : 0);
}

// Calls f(std::integral_constant<size_t, rows>()) for a run-time rows in [1, kMax]: each row count
// is its own instantiation, so a kernel's per-row accumulators become registers.
template <size_t kMax, class F>
HWY_INLINE void WithRowCount(size_t rows, F&& f) {
  if constexpr (kMax > 0) {
    if (rows == kMax) return f(std::integral_constant<size_t, kMax>());
    WithRowCount<kMax - 1>(rows, f);
  }
}

// Sums of the lanes of a0..a3 into out[0..3]. On x86 the four are reduced together (two
// interleave rounds, then the 128-bit blocks folded): ~3 ops per sum instead of ~10. Each sum's
// order is fixed whatever the other three hold, so rows reduced
// with zeros for neighbours get the same bits.
template <class D>
HWY_INLINE void SumLanes4(D df, hn::Vec<D> a0, hn::Vec<D> a1, hn::Vec<D> a2, hn::Vec<D> a3,
                          float* out) {
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  const hn::RepartitionToWide<D> dd;
  const auto p =
      hn::BitCast(dd, hn::Add(hn::InterleaveLower(df, a0, a1), hn::InterleaveUpper(df, a0, a1)));
  const auto q =
      hn::BitCast(dd, hn::Add(hn::InterleaveLower(df, a2, a3), hn::InterleaveUpper(df, a2, a3)));
  const auto s = hn::Add(hn::BitCast(df, hn::InterleaveLower(dd, p, q)),
                         hn::BitCast(df, hn::InterleaveUpper(dd, p, q)));
#if HWY_TARGET == HWY_AVX2
  const hn::Half<D> d128;
  const auto r = hn::Add(hn::LowerHalf(d128, s), hn::UpperHalf(d128, s));
#else
  const hn::Half<D> d256;
  const hn::Half<decltype(d256)> d128;
  const auto h = hn::Add(hn::LowerHalf(d256, s), hn::UpperHalf(d256, s));
  const auto r = hn::Add(hn::LowerHalf(d128, h), hn::UpperHalf(d128, h));
#endif
  hn::StoreU(r, d128, out);
#else
  out[0] = hn::GetLane(hn::SumOfLanes(df, a0));
  out[1] = hn::GetLane(hn::SumOfLanes(df, a1));
  out[2] = hn::GetLane(hn::SumOfLanes(df, a2));
  out[3] = hn::GetLane(hn::SumOfLanes(df, a3));
#endif
}

// fn(std::integral_constant<size_t, I>()) for I = 0 .. N-1, unrolled.
template <size_t N, class Fn>
HWY_INLINE void ForEachIndex(const Fn& fn) {
  [&]<size_t... I>(std::index_sequence<I...>) HWY_ATTR {
    (fn(std::integral_constant<size_t, I>()), ...);
  }
  (std::make_index_sequence<N>());
}

// The lane sums of a tile's column r, acc[0..NW)[r], into sums[0..NW) (NW is 1 or 4; a lone row is
// reduced with zeros for neighbours, so it gets the bits it would get in a 4-row tile). The
// vectors go by value: taking the accumulator array by reference made GCC keep the whole tile on
// the stack, zeroed and stored there around the loop.
template <size_t NW, class D>
HWY_INLINE void SumColumn(D d, hn::Vec<D> a0, hn::Vec<D> a1, hn::Vec<D> a2, hn::Vec<D> a3,
                          float* sums) {
  static_assert(NW == 1 || NW == 4);
  if constexpr (NW == 4) {
    SumLanes4(d, a0, a1, a2, a3, sums);
  } else {
    const auto z = hn::Zero(d);
    SumLanes4(d, a0, z, z, z, sums);
  }
}

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
  // Constant indices only, as in DotTileBF16: otherwise GCC keeps acc on the stack around the loop.
  hn::Vec<DF> acc[NW][R];
#pragma GCC unroll 32
  for (size_t i = 0; i < NW; ++i) {
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) acc[i][r] = hn::Zero(df);
  }
  size_t k = 0;
  // One prefetch per cache line and row: steps cover N * sizeof(WT) bytes.
  const size_t steps_per_line = std::max<size_t>(1, 64 / (N * sizeof(WT)));
  for (size_t step = 0; k + N <= K; k += N, ++step) {
    // One core keeps too few loads in flight to stream at full bandwidth on its own, so each
    // weight row's stream is prefetched kPrefetchBytes ahead (16 KiB: far enough to cover DRAM
    // latency, near enough to stay in L2 with per-thread slices). Prefetches never fault.
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
  ForEachIndex<NW>([&](auto ic) HWY_ATTR {
    constexpr size_t i = decltype(ic)::value;
    ForEachIndex<R>([&](auto rc) HWY_ATTR {
      constexpr size_t r = decltype(rc)::value;
      float s = hn::GetLane(hn::SumOfLanes(df, acc[i][r]));
      for (size_t t = k; t < K; ++t) s += ScalarW(w + i * ldw, t) * x[r * ldx + t];
      out[r * ldo + i] = s;
    });
  });
}

// One f32/f16 tile of R rows (x is its first row, stride ldx). Not inlined: inlined into the
// row-count dispatch, GCC gives all tile shapes one stack array of accumulators and stores it back
// every iteration.
template <size_t NW, size_t R, class WT>
HWY_NOINLINE void AnyTile(const WT* w, size_t ldw, const float* x, size_t ldx, size_t K, float* out,
                          size_t ldo) {
  DotTile<NW, R>(w, ldw, x, ldx, K, out, ldo);
}

// The tile of exactly `rows` (<= R) rows.
template <size_t NW, size_t R, class WT>
HWY_INLINE void DotTileTail(size_t rows, const WT* w, size_t ldw, const float* x, size_t ldx,
                            size_t K, float* out, size_t ldo) {
  WithRowCount<R>(rows, [&](auto r) HWY_ATTR { AnyTile<NW, r()>(w, ldw, x, ldx, K, out, ldo); });
}

// Weight rows per panel (see MatMulRowsBF16) for prefill: with long rows (K up to 21504, so one
// tile's activations are 0.5 MB) 32 rows amortise the activations' trips through L2 over enough
// weights; fewer rows left prefill bound by them, more gained nothing.
constexpr int64_t kPanel = 32;
// At verify sizes (m <= 32) a panel holds ~96 KB of weights (4 to 32 rows): long rows get
// short panels, so the panel, the next one being prefetched and the activations stay in L2 (with
// 32-row panels a 12288-column matrix spills them). Prefill keeps kPanel.
HWY_INLINE int64_t PanelRows(const MatMulRowsArgs& a) {
  if (a.m > 32) return kPanel;
  const auto row_bytes = static_cast<int64_t>(StorageBytes(a.w.dtype, a.w.cols));
  const int64_t rows = (int64_t{96} << 10) / row_bytes / 4 * 4;
  return std::clamp<int64_t>(rows, 4, kPanel);
}

// The loop every matmul_rows kernel shares: panels of PanelRows weight rows; per panel, panel(p,
// pe) for its rows [p, pe), then the row tiles (at most max_rows rows each, as TileRows cuts
// them), and per row tile the panel's weight tiles of kTileWeights rows, then its single rows.
// Calls tile(nw, rows, i, n) for the tile of activation rows [i, i + rows) and weight rows
// [n, n + nw), nw a std::integral_constant.
template <class PanelFn, class TileFn>
HWY_INLINE void ForEachTile(const MatMulRowsArgs& a, size_t max_rows, const PanelFn& panel,
                            const TileFn& tile) {
  const std::integral_constant<size_t, kTileWeights> four;
  const std::integral_constant<size_t, 1> one;
  const int64_t panel_rows = PanelRows(a);
  for (int64_t p = a.n_begin; p < a.n_end; p += panel_rows) {
    const int64_t pe = std::min<int64_t>(a.n_end, p + panel_rows);
    panel(p, pe);
    for (size_t t = 0, i = 0; t < NumTiles(a.m, max_rows); ++t) {
      const size_t rows = TileRows(a.m, t, max_rows);
      int64_t n = p;
      for (; n + static_cast<int64_t>(kTileWeights) <= pe; n += kTileWeights)
        tile(four, rows, i, n);
      for (; n < pe; ++n) tile(one, rows, i, n);
      i += rows;
    }
  }
}
HWY_INLINE void NoPanelStep(int64_t, int64_t) {}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_TILES_INL_H_
