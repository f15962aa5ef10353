// Matmul and dot kernels, compiled once per SIMD target through Highway's foreach_target. The
// float-weight (f32, f16, bf16) matmuls live here; tiles-inl.h holds what all matmuls share,
// matmul_quant-inl.h the block-dtype ones (compiled in matmul_blocks.cc and matmul_kquants.cc, so
// that the three build in parallel) and attention-inl.h the grouped attention.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "src/kernels/matmul.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep (must come first: it re-includes this file)
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "hwy/aligned_allocator.h"
#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "specula/kernels/kernels.h"
#include "specula/kernels/ops.h"
#include "src/kernels/attention-inl.h"
#include "src/kernels/tiles-inl.h"

namespace specula {
// CPU features Highway 1.0.3 does not report (defined once, below). Read from CPUID and the
// auxiliary vector rather than __builtin_cpu_supports, whose names differ between compilers.
bool CpuHasAvxVnni();
bool CpuHasAvx512Vnni();
bool CpuHasArmDotProd();
}  // namespace specula

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// bf16 weights: a vector of u32 lanes over 2N consecutive bf16 holds element 2j in the low and
// 2j+1 in the high half of lane j, and a bf16 is the top half of its f32. So one shift gives the
// even elements and one mask the odd ones, exactly: one op per N weights instead of a zero-extend
// plus a shift, which kept the FMA ports a third busy with conversions. The activations of a tile
// come packed to match (PackPairs): per 2N chunk of K and per row, its N even elements, then its
// N odd ones, so one pointer walks all rows; after the chunks, each row's tail (K mod 2N) in order.
//
// AVX-512 instead loads the 2N words at p with only the high half of each lane enabled and the
// rest zeroed, which gives the odd elements as f32 in one load; the same load one element earlier
// gives the even ones (its first word, the element before p, is masked off: never read, so it
// cannot fault), which saves the separate shift and mask in memory-bound one-row decode. But that
// even load spans two cache lines, and the compute-bound tiles (5-6 rows: verification, prefill)
// lose more to the split than to a shift that reads its aligned operand from memory
// (EvenF32<true>), so they use the shift while 1-4 row tiles keep the split load. Both give the
// same bits.
using DU = hn::RebindToUnsigned<DF>;
HWY_INLINE hn::Vec<DU> LoadPairs(DU du, const hwy::bfloat16_t* p) {
  // LoadU reads unaligned memory (memcpy on the scalar target); p only needs bf16 alignment.
  return hn::LoadU(du, reinterpret_cast<const uint32_t*>(p));
}

// Elements p[2j] (EvenF32) and p[2j + 1] (OddF32) of the 2N at p, as f32 lane j.
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
HWY_INLINE hn::Vec<DF> HighWordsF32(const void* p) {
  // The raw intrinsic with a constant mask keeps the mask in a k register across the tile loop.
  return hn::Vec<DF>{_mm512_castsi512_ps(_mm512_maskz_loadu_epi16(0xAAAAAAAAu, p))};
}
template <bool kShift>
HWY_INLINE hn::Vec<DF> EvenF32(DF df, const hwy::bfloat16_t* p) {
  if constexpr (kShift) {
    return hn::BitCast(df, hn::ShiftLeft<16>(LoadPairs(DU(), p)));  // the load folds into the shift
  } else {
    // Address arithmetic, not p - 1: p may be the first element of its buffer.
    return HighWordsF32(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) - 2));
  }
}
HWY_INLINE hn::Vec<DF> OddF32(DF, const hwy::bfloat16_t* p) { return HighWordsF32(p); }
#else
template <bool kShift>  // AVX-512 only
HWY_INLINE hn::Vec<DF> EvenF32(DF df, const hwy::bfloat16_t* p) {
  return hn::BitCast(df, hn::ShiftLeft<16>(LoadPairs(DU(), p)));
}
HWY_INLINE hn::Vec<DF> OddF32(DF df, const hwy::bfloat16_t* p) {
  const DU du;
  return hn::BitCast(df, hn::And(LoadPairs(du, p), hn::Set(du, 0xFFFF0000u)));
}
#endif

// Streams the next panel's weights into L2 while this panel computes: `lines` cache lines from
// `next`, issued evenly over the panel's `slots` chunk iterations (all its tiles, in order), so
// the core keeps a steady number of misses in flight instead of bursts (see MatMulRowsBF16).
struct PanelPrefetch {
  const uint8_t* next;
  size_t lines;
  size_t slots;
  size_t credit;  // lines owed, in 1/slots units
};

// One NW x R tile: NW weight rows against the R activation rows packed at xt.
struct BF16Tile {
  const hwy::bfloat16_t* w;  // [NW, ldw]
  size_t ldw;
  const float* xt;  // the tile's packed activations
  size_t K;
  float* out;  // out[r * ldo + i]
  size_t ldo;
  // With panel == nullptr, each row's own stream is prefetched kPrefetchBytes ahead.
  PanelPrefetch* panel;
};

template <size_t NW, size_t R>
HWY_NOINLINE void DotTileBF16(const BF16Tile& job) {
  const DF df;
  const size_t N = hn::Lanes(df);
  const hwy::bfloat16_t* HWY_RESTRICT w = job.w;
  const size_t ldw = job.ldw;
  // Every index into acc must be a constant before GCC's scalar replacement runs, or the array
  // stays on the stack around the K loop, zeroed and stored there: hence the unroll pragmas and
  // ForEachIndex.
  hn::Vec<DF> acc[NW][R];
#pragma GCC unroll 32
  for (size_t i = 0; i < NW; ++i) {
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) acc[i][r] = hn::Zero(df);
  }
  constexpr size_t kStepsPerLine =
      std::max<size_t>(1, 64 / (2 * hn::MaxLanes(DF()) * sizeof(hwy::bfloat16_t)));
  const size_t K = job.K, chunks = K / (2 * N), K2 = chunks * 2 * N;
  const float* HWY_RESTRICT x = job.xt;
  PanelPrefetch* panel = job.panel;
  const uint8_t* pf_next = panel ? panel->next : nullptr;
  size_t pf_credit = panel ? panel->credit : 0;
  for (size_t c = 0; c < chunks; ++c, x += R * 2 * N) {
    const hwy::bfloat16_t* wk = w + c * 2 * N;
    // Into L2, not L1: 16 KiB ahead on four rows is more than L1 holds beside the activations.
    if (panel) {
      for (pf_credit += panel->lines; pf_credit >= panel->slots; pf_credit -= panel->slots) {
        __builtin_prefetch(pf_next, 0, 1);
        pf_next += 64;
      }
    } else if (c % kStepsPerLine == 0) {
      for (size_t i = 0; i < NW; ++i)
        __builtin_prefetch(wk + i * ldw + kPrefetchBytes / sizeof(hwy::bfloat16_t), 0, 1);
    }
    // The odd pass reloads the weights from L1 rather than keeping them: registers go to
    // accumulators and the load ports have room.
    hn::Vec<DF> wv[NW];
    for (size_t i = 0; i < NW; ++i) wv[i] = EvenF32<(R >= 5)>(df, wk + i * ldw);
    for (size_t r = 0; r < R; ++r) {
      const auto xv = hn::LoadU(df, x + r * 2 * N);
      for (size_t i = 0; i < NW; ++i) acc[i][r] = hn::MulAdd(wv[i], xv, acc[i][r]);
    }
    for (size_t i = 0; i < NW; ++i) wv[i] = OddF32(df, wk + i * ldw);
    for (size_t r = 0; r < R; ++r) {
      const auto xv = hn::LoadU(df, x + r * 2 * N + N);
      for (size_t i = 0; i < NW; ++i) acc[i][r] = hn::MulAdd(wv[i], xv, acc[i][r]);
    }
  }
  if (panel) {
    panel->next = pf_next;
    panel->credit = pf_credit;
  }
  const float* tail = job.xt + R * K2;
  ForEachIndex<R>([&](auto rc) HWY_ATTR {
    constexpr size_t r = decltype(rc)::value;
    float sums[4];
    SumColumn<NW>(df, acc[0][r], acc[NW > 1 ? 1 : 0][r], acc[NW > 2 ? 2 : 0][r],
                  acc[NW > 3 ? 3 : 0][r], sums);
#pragma GCC unroll 32
    for (size_t i = 0; i < NW; ++i) {
      float s = sums[i];
      for (size_t k = K2; k < K; ++k) s += ScalarW(w + i * ldw, k) * tail[r * (K - K2) + k - K2];
      job.out[r * job.ldo + i] = s;
    }
  });
}

// x[m, K] (row stride ldx) -> xp[m * K]: each tile's rows in DotTileBF16's layout, tile after tile.
HWY_INLINE void PackPairs(const float* x, size_t ldx, size_t m, size_t K, float* xp) {
  const size_t N = hn::Lanes(DF());
  const size_t chunks = K / (2 * N), K2 = chunks * 2 * N;
  for (size_t t = 0, i = 0; t < NumTiles(m); ++t) {
    const size_t rows = TileRows(m, t);
    float* dst = xp + i * K;
    for (size_t c = 0; c < chunks; ++c) {
      for (size_t r = 0; r < rows; ++r) {
        const float* src = x + (i + r) * ldx + c * 2 * N;
#if HWY_TARGET == HWY_SCALAR
        dst[0] = src[0];
        dst[1] = src[1];
#else
        const DF df;
        const auto lo = hn::LoadU(df, src), hi = hn::LoadU(df, src + N);
        hn::StoreU(hn::ConcatEven(df, hi, lo), df, dst);
        hn::StoreU(hn::ConcatOdd(df, hi, lo), df, dst + N);
#endif
        dst += 2 * N;
      }
    }
    for (size_t r = 0; r < rows; ++r, dst += K - K2)
      std::copy(x + (i + r) * ldx + K2, x + (i + r) * ldx + K, dst);
    i += rows;
  }
}

// The tile shape only changes which outputs are computed together, never how one is accumulated.
template <class WT>
void MatMulRowsT(const MatMulRowsArgs& a) {
  const auto* w = static_cast<const WT*>(a.w.data);
  const size_t K = static_cast<size_t>(a.w.cols);
  ForEachTile(a, kMaxRows, NoPanelStep, [&](auto nw, size_t rows, size_t i, int64_t n) HWY_ATTR {
    DotTileTail<decltype(nw)::value, kMaxRows>(rows, w + static_cast<size_t>(n) * K, K,
                                               a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n,
                                               a.ldy);
  });
}

void MatMulRowsBF16(const MatMulRowsArgs& a) {
  const auto* w = static_cast<const hwy::bfloat16_t*>(a.w.data);
  const size_t K = static_cast<size_t>(a.w.cols);
  // Vector-aligned: a load split across two cache lines costs two.
  hwy::AlignedFreeUniquePtr<float[]> own;
  float* packed = a.scratch;
  if (a.scratch_floats < a.m * K) {
    own = hwy::AllocateAligned<float>(a.m * K);
    packed = own.get();
  }
  if (!a.x_prepared || own) PackPairs(a.x, a.ldx, a.m, K, packed);
  // Panels of weight rows (ForEachTile): every row tile runs over the panel's weight tiles while
  // its activations stay close (L1/L2); the panel's weights come from DRAM for the first row tile
  // and from L2 for the rest. Weight tile outermost instead re-streamed all m rows' activations
  // per 4 weight rows, from L3 once m * K * 4 bytes outgrew L2.
  //
  // Prefetching: with one row tile (decode, memory-bound), each weight row's stream kPrefetchBytes
  // ahead. With more, the first row tile would pull the panel from DRAM and the others compute
  // from L2 with DRAM idle, so every tile instead streams the *next* panel, one contiguous run of
  // lines issued at an even rate over the whole panel (PanelPrefetch). One core sustains only a
  // limited rate of misses, and 16 rows need most of it throughout: prefetches issued in bursts
  // leave part of the panel in L3 when the first row tile reaches it. A single row tile (up to 4
  // rows) keeps the per-row prefetch.
  const size_t T = NumTiles(a.m);
  const int64_t panel_rows = PanelRows(a);
  const size_t chunks = K / (2 * hn::Lanes(DF()));
  PanelPrefetch prefetch{};
  const bool stream_next = T >= 2 && chunks > 0;
  ForEachTile(
      a, kMaxRows,
      [&](int64_t p, int64_t pe) HWY_ATTR {
        // Tiles of this panel: every row tile visits its four-row tiles and its single rows.
        const auto rows = static_cast<size_t>(pe - p);
        const int64_t next_rows = std::clamp<int64_t>(a.w.rows - pe, 0, panel_rows);
        const size_t next_bytes = static_cast<size_t>(next_rows) * K * sizeof(hwy::bfloat16_t);
        prefetch = {.next = reinterpret_cast<const uint8_t*>(w + static_cast<size_t>(pe) * K),
                    .lines = (next_bytes + 63) / 64,
                    .slots = T * (rows / kTileWeights + rows % kTileWeights) * chunks,
                    .credit = 0};
      },
      [&](auto nw, size_t rows, size_t i, int64_t n) HWY_ATTR {
        const BF16Tile job = {.w = w + static_cast<size_t>(n) * K,
                              .ldw = K,
                              .xt = packed + i * K,
                              .K = K,
                              .out = a.y + i * a.ldy + n,
                              .ldo = a.ldy,
                              .panel = stream_next ? &prefetch : nullptr};
        WithRowCount<kMaxRows>(
            rows, [&](auto r) HWY_ATTR { DotTileBF16<decltype(nw)::value, r()>(job); });
      });
}

// The block-dtype matmuls, in matmul_blocks.cc and matmul_kquants.cc (the same targets).
void MatMulRowsBlocks(const MatMulRowsArgs& a);
void MatMulRowsKQuants(const MatMulRowsArgs& a, bool dot_ext);
ActQuant KQuantActs(DType t, bool dot_ext);

// kDotExt: the target's optional int8 dot-product instructions are used (GetTable decides):
// AVX-VNNI on AVX2, SDOT on NEON.
template <bool kDotExt>
ActQuant ActQuantFor(DType t) {
  return IsSuperBlockType(t) ? KQuantActs(t, kDotExt) : ActQuant::kInt16Row;
}

template <bool kDotExt>
void MatMulRows(const MatMulRowsArgs& a) {
  switch (a.w.dtype) {
    case DType::kBF16:
      return MatMulRowsBF16(a);
    case DType::kF16:
      return MatMulRowsT<hwy::float16_t>(a);
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kIQ4_NL:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
      return MatMulRowsBlocks(a);
    case DType::kQ6_K:
    case DType::kIQ4_XS:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ2_K:
      return MatMulRowsKQuants(a, kDotExt);
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

// exp(t) for t in [-87, 0], the only arguments the sampler forms. hn::Exp covers the whole float
// range (a clamp, two scaling factors against overflow, a select); here t = n ln2 + r with
// |r| <= ln2 / 2, exp(r) by its Taylor series to degree 7 (truncation below 1e-8 relative), and
// 2^n by the exponent bits alone, as n >= -126 keeps the result a normal float.
template <class V>
V ExpNonPositive(V t) {
  const DF df;
  const hn::RebindToSigned<DF> di;
  const auto n = hn::Round(hn::Mul(t, hn::Set(df, 1.44269504088896341f)));
  auto r = hn::NegMulAdd(n, hn::Set(df, 0.693145751953125f), t);   // ln2 in two parts (exact
  r = hn::NegMulAdd(n, hn::Set(df, 1.428606765330187045e-6f), r);  // product with n's high part)
  auto p = hn::Set(df, 1.0f / 5040.0f);
  for (float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f})
    p = hn::MulAdd(p, r, hn::Set(df, c));
  const auto scale = hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  return hn::Mul(p, hn::BitCast(df, scale));
}

// The sampler's softmax weights over a whole vocabulary. Inputs below -87 (weights under
// FLT_MIN, -inf included) are clamped there, so every weight is a finite float. The f64 sum runs
// in four accumulators: one would be a chain of dependent adds, slower than the exponentials.
double ExpWeights(const float* HWY_RESTRICT x, size_t n, float max, float scale,
                  float* HWY_RESTRICT w) {
  const DF df;
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> dfh;  // the floats one double vector promotes
  const size_t N = hn::Lanes(df), Nd = hn::Lanes(dd);
  const auto vmax = hn::Set(df, max), vscale = hn::Set(df, scale), lo = hn::Set(df, -87.0f);
  hn::Vec<decltype(dd)> acc[4] = {hn::Zero(dd), hn::Zero(dd), hn::Zero(dd), hn::Zero(dd)};
  const auto one_vector = [&](size_t i, size_t first_acc) HWY_ATTR {
    const auto t = hn::Max(hn::Mul(hn::Sub(hn::LoadU(df, x + i), vmax), vscale), lo);
    hn::StoreU(ExpNonPositive(t), df, w + i);
    for (size_t j = 0, a = first_acc; j < N; j += Nd, a = (a + 1) % 4)
      acc[a] = hn::Add(acc[a], hn::PromoteTo(dd, hn::LoadU(dfh, w + i + j)));
  };
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    one_vector(i, 0);
    one_vector(i + N, 2);
  }
  for (; i + N <= n; i += N) one_vector(i, 0);
  double sum =
      hn::GetLane(hn::SumOfLanes(dd, hn::Add(hn::Add(acc[0], acc[1]), hn::Add(acc[2], acc[3]))));
  for (; i < n; ++i) sum += w[i] = std::exp(std::max((x[i] - max) * scale, -87.0f));
  return sum;
}

// First index of the largest value (inputs without NaN): the maximum, then where it first occurs.
size_t ArgmaxRow(const float* HWY_RESTRICT x, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  float best = x[0];
  size_t i = 0;
  if (n >= N) {
    auto m = hn::LoadU(df, x);
    for (i = N; i + N <= n; i += N) m = hn::Max(m, hn::LoadU(df, x + i));
    best = hn::GetLane(hn::MaxOfLanes(df, m));
  }
  for (; i < n; ++i) best = std::max(best, x[i]);
  const auto vb = hn::Set(df, best);
  for (i = 0; i + N <= n; i += N) {
    const intptr_t at = hn::FindFirstTrue(df, hn::Eq(hn::LoadU(df, x + i), vb));
    if (at >= 0) return i + static_cast<size_t>(at);
  }
  for (; i < n; ++i) {
    if (x[i] == best) return i;
  }
  return 0;
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

// allow_dot_ext: the target may use the int8 dot-product instructions it checks for at run time
// (AVX-VNNI on AVX2, SDOT on NEON) where the CPU has them; tests also run it without, so that both
// paths are checked on such a CPU.
KernelTable GetTable(bool allow_dot_ext) {
  KernelTable t;
  t.target = hwy::TargetName(HWY_TARGET);
  bool dot_ext = false;
#if HWY_TARGET == HWY_AVX2
  if (allow_dot_ext && CpuHasAvxVnni()) {
    t.target = "AVX2_VNNI";
    dot_ext = true;
  }
#elif HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64
  if (allow_dot_ext && CpuHasArmDotProd()) {
    t.target = "NEON_SDOT";
    dot_ext = true;
  }
#else
  (void)allow_dot_ext;
#endif
  t.matmul_rows = dot_ext ? &MatMulRows<true> : &MatMulRows<false>;
  t.act_quant = dot_ext ? &ActQuantFor<true> : &ActQuantFor<false>;
  t.dot = &Dot;
  t.axpy = &Axpy;
  t.attention = &Attention;
  t.stream_read = &StreamRead;
  t.fma_probe = &FmaProbe;
  t.gelu_mul = &GeluMul;
  t.softcap = &SoftCapRow;
  t.exp_weights = &ExpWeights;
  t.argmax = &ArgmaxRow;
  return t;
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <chrono>
#include <string_view>

#include "hwy/base.h"
#if HWY_ARCH_X86
#include <cpuid.h>
#elif HWY_ARCH_ARM_A64 && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "specula/base/thread_pool.h"

namespace specula {

HWY_EXPORT(GetTable);

#if HWY_ARCH_X86
// CPUID leaf 7: sub-leaf 0 ECX bit 11 is AVX512-VNNI, sub-leaf 1 EAX bit 4 is AVX-VNNI. Each only
// narrows a choice Highway made after checking the OS-enabled register state (the AVX2 target's
// variant; disabling AVX3_DL).
bool CpuHasAvx512Vnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx >> 11) & 1;
}
bool CpuHasAvxVnni() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (eax >> 4) & 1;
}
#else
bool CpuHasAvx512Vnni() { return false; }
bool CpuHasAvxVnni() { return false; }
#endif
#if HWY_ARCH_ARM_A64 && defined(__linux__)
bool CpuHasArmDotProd() { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#else
bool CpuHasArmDotProd() { return false; }
#endif

namespace {
// AVX3_DL's kernels use AVX512-VNNI, which Highway's runtime check for the target includes; this
// makes sure of it, whatever Highway version is installed.
void RequireVnniForAvx3Dl() {
#if HWY_ARCH_X86
  static const bool once = [] {
    if (!CpuHasAvx512Vnni()) hwy::DisableTargets(HWY_AVX3_DL);
    return true;
  }();
  (void)once;
#endif
}
}  // namespace

const KernelTable& BestKernels() {
  static const KernelTable table = [] {
    RequireVnniForAvx3Dl();
    return HWY_DYNAMIC_DISPATCH(GetTable)(true);
  }();
  return table;
}

std::vector<int64_t> RunnableTargets() {
  RequireVnniForAvx3Dl();
  return hwy::SupportedAndGeneratedTargets();
}

KernelTable KernelsForTarget(int64_t target) { return KernelsFor({.target = target}); }

std::vector<KernelVariant> RunnableVariants() {
  std::vector<KernelVariant> out;
  for (int64_t t : RunnableTargets()) {
    out.push_back({.target = t});
    if (std::string_view(KernelsFor({.target = t}).target) !=
        KernelsFor({.target = t, .dot_ext = false}).target)
      out.push_back({.target = t, .dot_ext = false});
  }
  return out;
}

KernelTable KernelsFor(KernelVariant v) {
  hwy::SetSupportedTargetsForTest(v.target);
  KernelTable t = HWY_DYNAMIC_DISPATCH(GetTable)(v.dot_ext);
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
  const MatMulJob one{.w = w, .x = x, .ldx = static_cast<size_t>(w.cols), .m = m, .y = y};
  MatMulGrouped(k, pool, std::span<const MatMulJob>(&one, 1));
}

void MatMulShared(const KernelTable& k, ThreadPool& pool, std::span<const MatMulOut> outs,
                  const float* x, size_t m) {
  std::vector<MatMulJob> jobs;
  jobs.reserve(outs.size());
  for (const MatMulOut& o : outs)
    jobs.push_back({.w = o.w, .x = x, .ldx = static_cast<size_t>(o.w.cols), .m = m, .y = o.y});
  MatMulGrouped(k, pool, jobs);
}

void MatMulGrouped(const KernelTable& k, ThreadPool& pool, std::span<const MatMulJob> jobs) {
  // One contiguous slice of the stacked rows per thread: each core then streams long runs of rows,
  // which the hardware prefetchers and DRAM pages favour over small dynamically scheduled tasks.
  // But equal slices finish at different times, so the slices cover 7/8 of the rows and the last
  // eighth goes in small tasks to whichever thread is free first. Tasks are whole 4-row tiles; tiny
  // matrices stay on one thread.
  int64_t rows = 0, row_bytes = 1;
  size_t scratch_floats = 0;
  for (const MatMulJob& j : jobs) {
    rows += j.w.rows;
    row_bytes =
        std::max<int64_t>(row_bytes, static_cast<int64_t>(StorageBytes(j.w.dtype, j.w.cols)));
    scratch_floats =
        std::max(scratch_floats, MatMulScratchFloats(j.m, static_cast<size_t>(j.w.cols)));
  }
  if (jobs.empty() || rows == 0) return;
  const int64_t min_rows = std::max<int64_t>(4, (16 << 10) / row_bytes);
  const int64_t threads =
      std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), rows / min_rows));
  const int64_t slice = threads > 1 ? rows * 7 / 8 / threads / 4 * 4 : rows;
  const int64_t tail = rows - slice * threads;
  const int64_t small =
      std::max<int64_t>((min_rows + 3) / 4 * 4, (tail / (4 * threads) + 3) / 4 * 4);
  const size_t tasks = static_cast<size_t>(threads + (tail + small - 1) / small);
  // Per thread, which input its scratch holds prepared (packed or quantized) and for which dtype:
  // consecutive jobs on the same input and dtype (q/k/v, gate/up) prepare it once per thread, not
  // once per matrix and task (16 rows of K = 1536 are 96 KB to pack).
  struct Prepared {
    const float* x = nullptr;
    size_t ldx = 0, m = 0;
    int64_t cols = 0;
    int dtype = -1;
    bool Holds(const MatMulJob& j) const {
      return x == j.x && ldx == j.ldx && m == j.m && cols == j.w.cols &&
             dtype == static_cast<int>(j.w.dtype);
    }
  };
  std::vector<Prepared> prepared(static_cast<size_t>(pool.num_threads()));
  pool.ParallelFor(tasks, [&](size_t t, int thread) {
    float* scratch = pool.Scratch(thread, scratch_floats);
    Prepared& ready = prepared[static_cast<size_t>(thread)];
    const auto ti = static_cast<int64_t>(t);
    const int64_t begin = ti < threads ? ti * slice : threads * slice + (ti - threads) * small;
    const int64_t end = ti < threads ? begin + slice : std::min<int64_t>(rows, begin + small);
    int64_t base = 0;  // first stacked row of the current matrix
    for (const MatMulJob& j : jobs) {
      const int64_t lo = std::max(begin, base), hi = std::min(end, base + j.w.rows);
      if (lo < hi && j.m > 0) {
        k.matmul_rows({.w = j.w,
                       .x = j.x,
                       .ldx = j.ldx,
                       .m = j.m,
                       .n_begin = lo - base,
                       .n_end = hi - base,
                       .y = j.y,
                       .ldy = static_cast<size_t>(j.w.rows),
                       .scratch = scratch,
                       .scratch_floats = scratch_floats,
                       .x_prepared = ready.Holds(j)});
        ready = {.x = j.x,
                 .ldx = j.ldx,
                 .m = j.m,
                 .cols = j.w.cols,
                 .dtype = static_cast<int>(j.w.dtype)};
      }
      base += j.w.rows;
    }
  });
}

}  // namespace specula
#endif  // HWY_ONCE
