// Int8 dot products for Q4_K and Q5_K on x86 (AVX2, AVX-512), the bulk of llama.cpp's Q4_K_M and
// Q5_K_M files, and Q6_K (their output head and some of their layers). Included by
// matmul_kquants.cc once per SIMD target (it needs only tiles-inl.h); other targets and types keep
// matmul_quant-inl.h's int16 path. Int8Dtype and MatMulRowsInt8 below are the one place that says
// which dtypes go this way on a target, for the kernels and for KernelTable::act_quant alike.
//
// Why: with int16 activations every 4- or 5-bit code is widened to 16 bits and multiplied by its
// sub-block scale before the products, ~100 ops per 256-value super-block, which made one-row
// decode compute-bound at ~0.6 of the memory roofline. Here the codes stay bytes: a nibble mask
// and shift unpack 64 of them per op, one vpmaddubsw multiplies them by int8 activation codes and
// adds pairs (int16), one vpmaddwd multiplies those pairs by the sub-block scale and adds pairs
// again (int32): ~3 ops per 64 values and row. Activations are quantized per super-block, as
// llama.cpp's Q8_K: x ~ s_b * q, s_b = max|x| / 127 over the 256 values, plus each 32 values' sum
// of codes for the min term.
//
// Exactness: a pair sum of vpmaddubsw is at most 2 * 31 * 127 = 7874 < 2^15 (no saturation); an
// int32 lane sums 16 products over a super-block on AVX2 (8 on AVX-512), at most
// 16 * 31 * 127 * 63 < 2^22, so it is exact and so is its conversion to f32. Per super-block and
// row, the int32 lanes are converted once and multiply-added with d * s_b, then the min term (sum_j
// m_j * bsum_j, exact) with -dmin * s_b, into two f32 accumulators per row; the lanes are reduced
// once at the end. Every row runs these same operations whatever else shares the call.
#if defined(SPECULA_KERNELS_MATMUL_INT8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_MATMUL_INT8_INL_H_
#undef SPECULA_KERNELS_MATMUL_INT8_INL_H_
#else
#define SPECULA_KERNELS_MATMUL_INT8_INL_H_
#endif

#include <algorithm>
#include <cstring>
#include <limits>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
// The AVX3_DL target runs only where the CPU has AVX512-VNNI (Highway's runtime check and
// BestKernels' both ask for it), but Highway 1.0.3 compiles it for AVX-VNNI (VEX) instead, which
// lacks the 512-bit vpdpwssd: name the feature here for this file's functions.
#if HWY_TARGET == HWY_AVX3_DL
#if HWY_COMPILER_CLANG
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif
#endif
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
constexpr bool kInt8KQuants = true;

using D8 = hn::ScalableTag<uint8_t>;  // 32 bytes on AVX2, 64 on AVX-512
using DI8 = hn::RebindToSigned<D8>;
using DI16 = hn::Repartition<int16_t, D8>;
using DI32 = hn::Repartition<int32_t, D8>;
// 32-value sub-blocks per vector of codes.
constexpr size_t kHalves = hn::MaxLanes(D8()) / 32;

// Per 16-bit lane i: u[2i] * s[2i] + u[2i + 1] * s[2i + 1] (u unsigned, s signed bytes). Highway
// 1.0 has no such op; this is its one x86 instruction.
HWY_INLINE hn::Vec<DI16> MulBytePairs(hn::Vec<D8> u, hn::Vec<DI8> s) {
#if HWY_TARGET == HWY_AVX2
  return hn::Vec<DI16>{_mm256_maddubs_epi16(u.raw, s.raw)};
#else
  return hn::Vec<DI16>{_mm512_maddubs_epi16(u.raw, s.raw)};
#endif
}

// acc + per 32-bit lane i: a[2i] * b[2i] + a[2i + 1] * b[2i + 1]. vpmaddwd and vpaddd, or, with
// kVnni, one vpdpwssd: AVX512-VNNI on the AVX3_DL target, AVX-VNNI on the AVX2 one (there only
// when chosen at run time, kAvxVnni below). The same exact int32 sums, one op fewer per 64 codes
// and row. But a one-row group then waits on vpdpwssd's latency (its sum is a chain of four per
// super-block, where vpmaddwd's products are independent and only the adds chain): 4-7 % slower in
// one-row decode, so groups of one row keep vpmaddwd (kVnniFor). AVX-VNNI goes through inline
// assembly: Highway's AVX2 target does not enable it, and a function that did could not inline the
// helpers around it.
template <bool kVnni>
HWY_INLINE hn::Vec<DI32> MulAddPairs(hn::Vec<DI16> a, hn::Vec<DI16> b, hn::Vec<DI32> acc) {
  if constexpr (kVnni) {
#if HWY_TARGET == HWY_AVX3_DL
    return hn::Vec<DI32>{_mm512_dpwssd_epi32(acc.raw, a.raw, b.raw)};
#elif HWY_TARGET == HWY_AVX2
    __m256i sum = acc.raw;
    asm("%{vex%} vpdpwssd %2, %1, %0" : "+x"(sum) : "x"(a.raw), "x"(b.raw));
    return hn::Vec<DI32>{sum};
#endif
  }
  auto unused = hn::Zero(DI32());  // x86's ReorderWidenMulAccumulate leaves it at zero
  return hn::ReorderWidenMulAccumulate(DI32(), a, b, acc, unused);
}

// Whether a group of R rows uses vpdpwssd (see MulAddPairs); kAvxVnni: the AVX2 target may.
template <size_t R, bool kAvxVnni>
constexpr bool kVnniFor = R > 1 && (HWY_TARGET == HWY_AVX3_DL || kAvxVnni);

// A vector of 4 f32 lanes (the min term) as the low lanes of a full vector, zeros above.
HWY_INLINE hn::Vec<DF> WidenFour(hn::Vec<hn::CappedTag<float, 4>> v) {
  const DF df;
#if HWY_TARGET == HWY_AVX2
  return hn::ZeroExtendVector(df, v);
#else
  const hn::Half<DF> dh;
  return hn::ZeroExtendVector(df, hn::ZeroExtendVector(dh, v));
#endif
}

// top / amax, the factor that maps a block's largest |x| to the top code; 0 for an all-zero block
// and for one so small (below ~1e-37) that the factor overflows, whose codes are then all zero.
HWY_INLINE float ActInverse(float amax, float top) {
  const float inv = top / amax;
  return inv <= std::numeric_limits<float>::max() ? inv : 0.0f;
}

// Each activation row quantized per 256-value super-block: K int8 codes, K / 256 f32 scales and
// K / 32 int16 sums of codes. The codes are stored in the order the kernel reads them, so that
// each weight code vector meets its activations in one load: on AVX-512, where a vector of codes
// holds sub-blocks 4c and 4c + 2 (low nibbles) or 4c + 1 and 4c + 3 (high nibbles), each 128
// values are stored as 32-value pieces 0, 2, 1, 3; on AVX2 (sub-blocks 2c, 2c + 1) in value order.
// A super-block holding inf or NaN gets scale NaN and zero codes, so the row's outputs are NaN as
// they would be in float.
// Q6_K (AVX-512) takes the codes in value order and sums per 16 values (its sub-blocks).
struct Acts8Layout {
  bool value_order = false;  // false: Q4_K's order above
  size_t sum_len = 32;       // values per sum of codes
};

struct Acts8 {
  const int8_t* codes;  // [m, K]
  const float* scales;  // [m, K / 256]
  const int16_t* sums;  // [m, K / sum_len]
  hwy::AlignedFreeUniquePtr<float[]> own;
};

HWY_INLINE void QuantizeActs8(const float* x, size_t ldx, size_t m, size_t K, Acts8Layout layout,
                              int8_t* codes, float* scales, int16_t* sums) {
  const DF df;
  const hn::Rebind<int8_t, DF> di8;
  const size_t N = hn::Lanes(df);
  const size_t blocks = K / kSuperBlock;
  for (size_t r = 0; r < m; ++r) {
    for (size_t b = 0; b < blocks; ++b) {
      const float* xb = x + r * ldx + b * kSuperBlock;
      int8_t* q = codes + r * K + b * kSuperBlock;
      const size_t nsums = kSuperBlock / layout.sum_len;
      int16_t* s = sums + r * (K / layout.sum_len) + b * nsums;
      float* scale = scales + r * blocks + b;
      auto vmax = hn::Zero(df), bad = hn::Zero(df);
      for (size_t k = 0; k < kSuperBlock; k += N) {
        const auto v = hn::LoadU(df, xb + k);
        vmax = hn::Max(vmax, hn::Abs(v));
        bad = hn::Add(bad, hn::Mul(v, hn::Zero(df)));  // NaN iff some value is inf or NaN
      }
      const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
      if (!(hn::GetLane(hn::SumOfLanes(df, bad)) == 0.0f)) {
        *scale = std::numeric_limits<float>::quiet_NaN();
        std::memset(q, 0, kSuperBlock);
        std::memset(s, 0, nsums * sizeof(int16_t));
        continue;
      }
      *scale = amax / 127.0f;
      const auto inv = hn::Set(df, ActInverse(amax, 127.0f));
      HWY_ALIGN int8_t natural[kSuperBlock];
      for (size_t k = 0; k < kSuperBlock; k += N) {
        const auto c = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + k), inv));  // |c| <= 127
        hn::StoreU(hn::DemoteTo(di8, c), di8, natural + k);
      }
      for (size_t j = 0; j < nsums; ++j) {
        int sum = 0;
        for (size_t l = 0; l < layout.sum_len; ++l) sum += natural[layout.sum_len * j + l];
        s[j] = static_cast<int16_t>(sum);
      }
      for (size_t j = 0; j < 8; ++j) {
        const size_t piece = j % 4 == 1 ? 2 : j % 4 == 2 ? 1 : j % 4;  // 0, 2, 1, 3
        const bool permute = kHalves == 2 && !layout.value_order;
        std::memcpy(q + 32 * (permute ? 4 * (j / 4) + piece : j), natural + 32 * j, 32);
      }
    }
  }
}

// The activations in the call's scratch (codes, then scales, then sums), reusing what an earlier
// matrix of the same MatMulShared group and dtype left there.
HWY_INLINE Acts8 PrepareActs8(const MatMulRowsArgs& a, Acts8Layout layout) {
  const size_t K = static_cast<size_t>(a.w.cols);
  const size_t code_floats = (a.m * K / 4 + 15) / 16 * 16;
  const size_t scale_floats = (a.m * K / kSuperBlock + 15) / 16 * 16;
  const size_t sum_floats = (a.m * K / layout.sum_len / 2 + 15) / 16 * 16;
  const size_t need = code_floats + scale_floats + sum_floats;
  Acts8 q;
  float* scratch = a.scratch;
  if (a.scratch_floats < need) {
    q.own = hwy::AllocateAligned<float>(need);
    scratch = q.own.get();
  }
  auto* codes = reinterpret_cast<int8_t*>(scratch);
  float* scales = scratch + code_floats;
  auto* sums = reinterpret_cast<int16_t*>(scratch + code_floats + scale_floats);
  if (!a.x_prepared || q.own) QuantizeActs8(a.x, a.ldx, a.m, K, layout, codes, scales, sums);
  q.codes = codes;
  q.scales = scales;
  q.sums = sums;
  return q;
}

// One weight row against R activation rows, the first at row i of the prepared activations.
struct Tile8 {
  const uint8_t* w;
  const Acts8* acts;
  size_t i;
  size_t K;
  float* out;  // out[r * ldo]
  size_t ldo;
};

// A super-block's 8 six-bit scales and 8 mins from Q4_K's 12 packed bytes, each set as 8 bytes in
// sub-block order (byte j of *sc is sub-block j's): sub-blocks 0-3 in the low 6 bits of bytes 0-3
// (mins: 4-7); 4-7 in the nibbles of bytes 8-11 (scales low, mins high) with the top two bits of
// bytes 0-3 (mins: 4-7) above them. Kept in general registers: bytes stored to memory and read
// back as a vector stall on store forwarding.
HWY_INLINE void ScalesMinsQ4K(const uint8_t* p, uint64_t* sc, uint64_t* mn) {
  uint32_t u[3];
  std::memcpy(u, p, 12);
  const uint32_t s_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;
  const uint32_t s_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
  const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
  *sc = s_lo | uint64_t{s_hi} << 32;
  *mn = m_lo | uint64_t{m_hi} << 32;
}

// 8 bytes as int16 lanes 0-7 of a vector of d's width (zeros above).
template <class D>
HWY_INLINE hn::Vec<D> BytesToI16(D d, uint64_t bytes) {
  const hn::Full128<uint64_t> d64;
  const hn::Full64<uint8_t> d8x8;
  const hn::Full128<int16_t> d16x8;
  const auto v = hn::PromoteTo(
      d16x8, hn::LowerHalf(d8x8, hn::BitCast(hn::Full128<uint8_t>(), hn::Set(d64, bytes))));
  if constexpr (hn::MaxLanes(D()) == 8) {
    return v;
  } else if constexpr (hn::MaxLanes(D()) == 16) {
    return hn::ZeroExtendVector(d, v);
  } else {
    return hn::ZeroExtendVector(d, hn::ZeroExtendVector(hn::Half<D>(), v));
  }
}

// The int16 scale of every lane of code vector c's low (hi = 0) or high (hi = 1) nibbles: its
// 32-value halves hold sub-blocks 2 (kHalves c + h) + hi.
HWY_INLINE hn::Vec<DI16> LaneScales(uint64_t sc, hn::Vec<DI16> sc16, size_t c, size_t hi) {
  const DI16 d16;
#if HWY_TARGET == HWY_AVX2
  (void)sc16;
  return hn::Set(d16, static_cast<int16_t>((sc >> (8 * (2 * c + hi))) & 0xff));
#else
  (void)sc;
  // Lanes 0-15 take sub-block 4c + hi's scale, 16-31 that of 4c + 2 + hi (one vpermw).
  const auto idx = hn::Add(hn::ShiftLeft<1>(hn::ShiftRight<4>(hn::Iota(d16, 0))),
                           hn::Set(d16, static_cast<int16_t>(4 * c + hi)));
  return hn::Vec<DI16>{_mm512_permutexvar_epi16(idx.raw, sc16.raw)};
#endif
}

// Activation codes lined up with code vector c's low (hi = 0) or high (hi = 1) nibbles: values
// 64 (kHalves c + h) + 32 hi .. + 32 of the super-block at x for each half h, stored together
// (QuantizeActs8).
HWY_INLINE hn::Vec<DI8> ActsFor(const int8_t* x, size_t c, size_t hi) {
  return hn::LoadU(DI8(), x + kHalves * (64 * c + 32 * hi));
}

template <DType kType, size_t R, bool kAvxVnni>
HWY_NOINLINE void DotGroup8(const Tile8& job) {
  const D8 d8;
  const DI16 d16;
  const hn::RebindToUnsigned<DI16> du16;
  const DI32 d32;
  const DF df;
  const hn::CappedTag<int16_t, 8> d16x8;
  const hn::CappedTag<int32_t, 4> d32x4;
  const hn::CappedTag<float, 4> df4;
  constexpr bool kQ5 = kType == DType::kQ5_K;
  constexpr size_t kCodes = kQ5 ? 48 : 16;  // Q5_K's qh[32] comes first
  constexpr size_t kChunks = 128 / hn::MaxLanes(D8());
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto low = hn::Set(d8, 0x0F);
  // Q5_K: per code vector and nibble, the qh bit of each half's sub-block (see below).
  HWY_ALIGN uint8_t fifth[kQ5 ? kChunks : 1][2][hn::MaxLanes(D8())];
  if constexpr (kQ5) {
    for (size_t c = 0; c < kChunks; ++c)
      for (size_t nib = 0; nib < 2; ++nib)
        for (size_t h = 0; h < kHalves; ++h)
          std::memset(fifth[c][nib] + 32 * h, 1 << (2 * (kHalves * c + h) + nib), 32);
  }
  // Per row, the scale terms and the min terms in two chains (one FMA each per super-block).
  hn::Vec<DF> acc[R], accm[R];
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) acc[r] = accm[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(kType)) {
    for (size_t p = 0; p < DTypeSize(kType); p += 64)
      __builtin_prefetch(w + kPrefetchBytes + p, 0, 1);
    uint16_t dh, mh;
    std::memcpy(&dh, w, 2);
    std::memcpy(&mh, w + 2, 2);
    const float d = F16ToF32Fast(dh), dmin = F16ToF32Fast(mh);
    uint64_t sc, mn;
    ScalesMinsQ4K(w + 4, &sc, &mn);
    const auto sc16 = BytesToI16(d16, sc);
    const auto m16 = BytesToI16(d16x8, mn);
    hn::Vec<DI32> isum[R];
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
    for (size_t c = 0; c < kChunks; ++c) {
      const auto v = hn::LoadU(d8, w + kCodes + c * hn::MaxLanes(D8()));
      auto lo = hn::And(v, low);
      auto hi = hn::And(hn::BitCast(d8, hn::ShiftRight<4>(hn::BitCast(du16, v))), low);
      if constexpr (kQ5) {
        // The fifth bit of value 32 j + l is bit j of qh[l]; half h of this vector holds
        // sub-blocks 2 (kHalves c + h) (low nibbles) and that + 1 (high nibbles).
        hn::Vec<D8> qh2;
        if constexpr (kHalves == 1) {
          qh2 = hn::LoadU(d8, w + 16);
        } else {
          const auto qh = hn::LoadU(hn::Half<D8>(), w + 16);
          qh2 = hn::Combine(d8, qh, qh);
        }
        const auto bit = [&](size_t nib) HWY_ATTR {
          const auto sel = hn::And(qh2, hn::Load(d8, fifth[c][nib]));
          return hn::IfThenElseZero(hn::Ne(sel, hn::Zero(d8)), hn::Set(d8, 16));
        };
        lo = hn::Or(lo, bit(0));
        hi = hn::Or(hi, bit(1));
      }
      const auto slo = LaneScales(sc, sc16, c, 0), shi = LaneScales(sc, sc16, c, 1);
#pragma GCC unroll 16
      for (size_t r = 0; r < R; ++r) {
        const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock;
        isum[r] =
            MulAddPairs<kVnniFor<R, kAvxVnni>>(MulBytePairs(lo, ActsFor(x, c, 0)), slo, isum[r]);
        isum[r] =
            MulAddPairs<kVnniFor<R, kAvxVnni>>(MulBytePairs(hi, ActsFor(x, c, 1)), shi, isum[r]);
      }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      auto unused = hn::Zero(d32x4);
      const auto mins = hn::ReorderWidenMulAccumulate(
          d32x4, m16, hn::LoadU(d16x8, a.sums + (job.i + r) * (K / 32) + 8 * b), hn::Zero(d32x4),
          unused);
      accm[r] = hn::MulAdd(WidenFour(hn::ConvertTo(df4, mins)), hn::Set(df, -dmin * s), accm[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[r], accm[r])));
}

// Activation rows per group: each super-block is unpacked once per group. Each row holds three
// vectors (two f32 chains and the super-block's int32 sum): 8 rows fill AVX-512's 32 registers
// beside the codes and scales, 4 rows are what AVX2's 16 allow.
constexpr size_t kRows8 = kWideRegs ? 8 : 4;

template <DType kType, size_t R, bool kAvxVnni>
HWY_INLINE void DotGroup8Tail(size_t rows, const Tile8& job) {
  if constexpr (R > 0) {
    if (rows == R) return DotGroup8<kType, R, kAvxVnni>(job);
    DotGroup8Tail<kType, R - 1, kAvxVnni>(rows, job);
  }
}

// Runs group(rows, tile) for weight rows [n_begin, n_end) against every group of up to kRows8
// activation rows. The weight rows go in panels of ~16 KiB, each met by every group in turn, so
// that a panel and one group's codes stay in L1 together; row by row, a long prompt's codes
// (64 rows x K bytes) would stream from L2 once per weight row. Each (weight row, activation row)
// pair runs the same operations whatever the panel and group sizes.
template <class Group>
HWY_INLINE void ForEachGroup8(const MatMulRowsArgs& a, const Acts8& q, const Group& group) {
  const size_t ldw = StorageBytes(a.w.dtype, a.w.cols);
  const auto panel = static_cast<int64_t>(std::max<size_t>(1, (size_t{16} << 10) / ldw));
  for (int64_t n0 = a.n_begin; n0 < a.n_end; n0 += panel) {
    const int64_t n1 = std::min(a.n_end, n0 + panel);
    for (size_t t = 0, i = 0; t < NumTiles(a.m, kRows8); ++t) {
      const size_t rows = TileRows(a.m, t, kRows8);
      for (int64_t n = n0; n < n1; ++n) {
        group(rows, Tile8{.w = static_cast<const uint8_t*>(a.w.data) + static_cast<size_t>(n) * ldw,
                          .acts = &q,
                          .i = i,
                          .K = static_cast<size_t>(a.w.cols),
                          .out = a.y + i * a.ldy + n,
                          .ldo = a.ldy});
      }
      i += rows;
    }
  }
}

// Q4_K and Q5_K with int8 activations.
template <DType kType, bool kAvxVnni>
void MatMulRowsScaleMin8(const MatMulRowsArgs& a) {
  ForEachGroup8(a, PrepareActs8(a, {}), [](size_t rows, const Tile8& job) HWY_ATTR {
    DotGroup8Tail<kType, kRows8, kAvxVnni>(rows, job);
  });
}

constexpr bool kInt8Q6K = true;

#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// Q6_K with int8 activations (AVX-512: vpermw lays 4 sub-blocks' scales over a vector). Codes are
// taken unsigned (0..63, the stored 6 bits) so vpmaddubsw can multiply them; the bias of 32 comes
// back as -32 * sum_s sc_s * (sub-block s's sum of activation codes), exact in int32. Per half n
// of a super-block, ql[64 n ..] holds values 128 n + 0..63 in its low nibbles and + 64..127 in its
// high ones; qh[32 n + l] their top two bits (values + 0, + 32, + 64, + 96: bits 0-1 .. 6-7). So
// both code vectors are in value order, and so are the activations (Acts8Layout::value_order).
// Bounds: a pair sum 2 * 63 * 127 < 2^15; an int32 lane over a super-block 4 * 2 * 16002 * 128
// < 2^24, so exact, and exact in f32.
template <size_t R, bool kAvxVnni>
HWY_NOINLINE void DotGroupQ6K8(const Tile8& job) {
  const D8 d8;
  const DI16 d16;
  const DI32 d32;
  const DF df;
  const hn::Half<D8> dh8;
  const hn::Half<DI16> dh16;
  const hn::Half<DI32> dh32;
  const hn::Half<DF> dhf;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto low4 = hn::Set(d8, 0x0F), low2 = hn::Set(d8, 3);
  // Lane i of code vector c (values 64 c ..) belongs to sub-block 4 c + i / 8.
  const auto sub = hn::ShiftRight<3>(hn::Iota(d16, 0));
  hn::Vec<DF> acc[R], accb[R];
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) acc[r] = accb[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(DType::kQ6_K)) {
    for (size_t p = 0; p < DTypeSize(DType::kQ6_K); p += 64)
      __builtin_prefetch(w + kPrefetchBytes + p, 0, 1);
    uint16_t dh;
    std::memcpy(&dh, w + 208, 2);
    const float d = F16ToF32Fast(dh);
    // The 16 int8 scales as int16 lanes 0-15 (zeros above).
    const auto sc16 = hn::ZeroExtendVector(
        d16, hn::PromoteTo(dh16, hn::LoadU(hn::Rebind<int8_t, decltype(dh16)>(),
                                           reinterpret_cast<const int8_t*>(w + 192))));
    hn::Vec<DI32> isum[R];
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
    for (size_t n = 0; n < 2; ++n) {
      const auto q = hn::LoadU(d8, w + 64 * n);
      const auto h = hn::LoadU(dh8, w + 128 + 32 * n);
      const auto hlo = hn::Combine(d8, hn::ShiftRight<2>(h), h);
      const auto hhi = hn::Combine(d8, hn::ShiftRight<6>(h), hn::ShiftRight<4>(h));
      const hn::Vec<D8> codes[2] = {
          hn::Or(hn::And(q, low4), hn::ShiftLeft<4>(hn::And(hlo, low2))),
          hn::Or(hn::ShiftRight<4>(q), hn::ShiftLeft<4>(hn::And(hhi, low2)))};
      for (size_t half = 0; half < 2; ++half) {
        const size_t c = 2 * n + half;
        const auto idx = hn::Add(sub, hn::Set(d16, static_cast<int16_t>(4 * c)));
        const hn::Vec<DI16> scale{_mm512_permutexvar_epi16(idx.raw, sc16.raw)};
#pragma GCC unroll 16
        for (size_t r = 0; r < R; ++r) {
          const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + 64 * c;
          isum[r] = MulAddPairs<kVnniFor<R, kAvxVnni>>(
              MulBytePairs(codes[half], hn::LoadU(DI8(), x)), scale, isum[r]);
        }
      }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      auto unused = hn::Zero(dh32);
      const auto bias = hn::ReorderWidenMulAccumulate(
          dh32, hn::LowerHalf(dh16, sc16),
          hn::LoadU(dh16, a.sums + (job.i + r) * (K / 16) + 16 * b), hn::Zero(dh32), unused);
      accb[r] = hn::MulAdd(hn::ZeroExtendVector(df, hn::ConvertTo(dhf, bias)),
                           hn::Set(df, -32.0f * d * s), accb[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[r], accb[r])));
}

#else
// Q6_K with int8 activations on AVX2: as on AVX-512, but 32 values per vector, two sub-blocks'
// scales per vector (one vpermd and one vpshufb: sub-block 2c's scale over the low 128 bits, 2c +
// 1's over the high ones), the codes of values 32 c .. 32 c + 31 from the low (c even) or high (c
// odd) nibbles of ql[64 n + 32 (c / 2 % 2) ..] (n = c / 4) and bits 2 (c % 4) of qh[32 n ..]. One
// accumulator per row (16 registers). Bounds: an int32 lane over a half super-block (4 vectors)
// 4 * 2 * 16002 * 128 < 2^24, so each half is converted and multiply-added on its own: exact.
template <size_t R, bool kAvxVnni>
HWY_NOINLINE void DotGroupQ6K8(const Tile8& job) {
  const D8 d8;
  const DI16 d16;
  const DI32 d32;
  const DF df;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto low4 = hn::Set(d8, 0x0F), low2 = hn::Set(d8, 3);
  // In a dword holding int16 scales 2c and 2c + 1: bytes 0-1 to every word of the low 128 bits,
  // bytes 2-3 to every word of the high ones.
  const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2,
                                          3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  hn::Vec<DF> acc[R];
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(DType::kQ6_K)) {
    for (size_t p = 0; p < DTypeSize(DType::kQ6_K); p += 64)
      __builtin_prefetch(w + kPrefetchBytes + p, 0, 1);
    uint16_t dh;
    std::memcpy(&dh, w + 208, 2);
    const float d = F16ToF32Fast(dh);
    const __m256i sc16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192)));
    for (size_t n = 0; n < 2; ++n) {
      const auto q0 = hn::LoadU(d8, w + 64 * n), q1 = hn::LoadU(d8, w + 64 * n + 32);
      const auto h = hn::LoadU(d8, w + 128 + 32 * n);
      hn::Vec<DI32> isum[R];
#pragma GCC unroll 16
      for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
#pragma GCC unroll 4
      for (size_t j = 0; j < 4; ++j) {
        const auto q = j % 2 == 0 ? q0 : q1;
        const auto nib = j < 2 ? hn::And(q, low4) : hn::ShiftRight<4>(q);
        const auto top = j == 0 ? hn::And(h, low2)
                         : j == 1 ? hn::And(hn::ShiftRight<2>(h), low2)
                         : j == 2 ? hn::And(hn::ShiftRight<4>(h), low2)
                                  : hn::ShiftRight<6>(h);
        const auto codes = hn::Or(nib, hn::ShiftLeft<4>(top));
        const size_t c = 4 * n + j;
        const hn::Vec<DI16> scale{_mm256_shuffle_epi8(
            _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(static_cast<int>(c))), spread)};
#pragma GCC unroll 16
        for (size_t r = 0; r < R; ++r) {
          const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + 32 * c;
          isum[r] = MulAddPairs<kVnniFor<R, kAvxVnni>>(MulBytePairs(codes, hn::LoadU(DI8(), x)),
                                                       scale, isum[r]);
        }
      }
#pragma GCC unroll 16
      for (size_t r = 0; r < R; ++r) {
        const float s = a.scales[(job.i + r) * blocks + b];
        acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      auto unused = hn::Zero(d32);
      const auto bias = hn::ReorderWidenMulAccumulate(
          d32, hn::Vec<DI16>{sc16}, hn::LoadU(d16, a.sums + (job.i + r) * (K / 16) + 16 * b),
          hn::Zero(d32), unused);
      acc[r] = hn::MulAdd(hn::ConvertTo(df, bias), hn::Set(df, -32.0f * d * s), acc[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
}
#endif

template <size_t R, bool kAvxVnni>
HWY_INLINE void DotGroupQ6K8Tail(size_t rows, const Tile8& job) {
  if constexpr (R > 0) {
    if (rows == R) return DotGroupQ6K8<R, kAvxVnni>(job);
    DotGroupQ6K8Tail<R - 1, kAvxVnni>(rows, job);
  }
}

template <bool kAvxVnni>
void MatMulRowsQ6K8(const MatMulRowsArgs& a) {
  ForEachGroup8(a, PrepareActs8(a, {.value_order = true, .sum_len = 16}),
                [](size_t rows, const Tile8& job)
                    HWY_ATTR { DotGroupQ6K8Tail<kRows8, kAvxVnni>(rows, job); });
}
#else
constexpr bool kInt8KQuants = false;
constexpr bool kInt8Q6K = false;
#endif

#if HWY_TARGET == HWY_AVX3_DL  // (the entry points below are called from code built without VNNI)
#if HWY_COMPILER_CLANG
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

// Whether this target multiplies t's weights with int8 activation codes.
HWY_INLINE bool Int8Dtype(DType t) {
  return (kInt8KQuants && IsScaleMinType(t)) || (kInt8Q6K && t == DType::kQ6_K);
}

// Runs the call through the int8 kernels when Int8Dtype(a.w.dtype); false otherwise. avx_vnni:
// the AVX2 target may use AVX-VNNI (the CPU has it; KernelsFor decides).
HWY_INLINE bool MatMulRowsInt8(const MatMulRowsArgs& a, bool avx_vnni) {
  if (!Int8Dtype(a.w.dtype)) return false;
#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  if constexpr (HWY_TARGET == HWY_AVX2) {
    if (avx_vnni) {
      if (a.w.dtype == DType::kQ4_K) {
        MatMulRowsScaleMin8<DType::kQ4_K, true>(a);
      } else if (a.w.dtype == DType::kQ5_K) {
        MatMulRowsScaleMin8<DType::kQ5_K, true>(a);
      } else {
        MatMulRowsQ6K8<true>(a);
      }
      return true;
    }
  }
  if (a.w.dtype == DType::kQ4_K) {
    MatMulRowsScaleMin8<DType::kQ4_K, false>(a);
  } else if (a.w.dtype == DType::kQ5_K) {
    MatMulRowsScaleMin8<DType::kQ5_K, false>(a);
  } else {
    MatMulRowsQ6K8<false>(a);
  }
#else
  (void)avx_vnni;
#endif
  return true;
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_MATMUL_INT8_INL_H_
