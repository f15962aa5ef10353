// Int8 dot products on x86 (AVX2, AVX-512) for Q4_K and Q5_K, the bulk of llama.cpp's Q4_K_M and
// Q5_K_M files, and for the types with one scale per 16 values: Q6_K (their output head and some
// of their layers), Q3_K and Q2_K (the low-bit mixes). IQ4_XS is in matmul_iq4xs-inl.h. Included by
// matmul_kquants.cc once per SIMD target, whose Int8Dtype says which dtypes go this way (ARM's
// counterpart: matmul_sdot-inl.h; other targets and types keep matmul_quant-inl.h's int16 path).
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
// int32 lane takes 16 vpmaddwd terms (each a pair sum times a scale, twice) over a super-block on
// AVX2 (8 on AVX-512), at most 16 * 7874 * 63 < 2^23, so it is exact and so is its conversion to
// f32. Per super-block and
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
#include "src/kernels/acts8-inl.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
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
// one-row decode, so groups of one row keep vpmaddwd (kVnniFor). Both go through inline assembly,
// which needs no compiler target feature: Highway's AVX2 target does not enable AVX-VNNI, Highway
// 1.0.3 compiles AVX3_DL for AVX-VNNI rather than AVX512-VNNI, and a function with its own target
// attribute could not inline the helpers around it. Either runs only where the CPU has the
// instruction (GetTable and RequireVnniForAvx3Dl check; tests/isa_guard.sh checks that the
// compiler added no VEX form to AVX-512 code).
template <bool kVnni>
HWY_INLINE hn::Vec<DI32> MulAddPairs(hn::Vec<DI16> a, hn::Vec<DI16> b, hn::Vec<DI32> acc) {
  if constexpr (kVnni) {
#if HWY_TARGET == HWY_AVX3_DL
    __m512i sum = acc.raw;
    asm("vpdpwssd %2, %1, %0" : "+v"(sum) : "v"(a.raw), "v"(b.raw));
    return hn::Vec<DI32>{sum};
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
  [[maybe_unused]] const auto bit4 = hn::Set(d8, 0x10);
  // Per row, the scale terms and the min terms in two chains (one FMA each per super-block).
  hn::Vec<DF> acc[R], accm[R];
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) acc[r] = accm[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(kType)) {
    PrefetchAhead<kType>(w);
    const float d = F16At(w, 0), dmin = F16At(w, 2);
    uint64_t sc, mn;
    ScalesMinsQ4K(w + 4, &sc, &mn);
    const auto sc16 = BytesToI16(d16, sc);
    const auto m16 = BytesToI16(d16x8, mn);
    hn::Vec<DI32> isum[R];
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
    // Q5_K: the fifth bit of value 32 j + l is bit j of qh[l]. Half h of code vector c holds
    // sub-blocks 2 (kHalves c + h) (low nibbles) and that + 1 (high nibbles); with the upper
    // half's qh shifted right by 2, both halves take bit j = 2 kHalves c + nib (0 .. 7).
    [[maybe_unused]] hn::Vec<hn::RebindToUnsigned<DI16>> qh16;
    if constexpr (kQ5 && kHalves == 1) {
      qh16 = hn::BitCast(du16, hn::LoadU(d8, w + 16));
    } else if constexpr (kQ5) {
      const auto qh = hn::BitCast(hn::Half<decltype(du16)>(), hn::LoadU(hn::Half<D8>(), w + 16));
      qh16 = hn::Combine(du16, hn::ShiftRight<2>(qh), qh);  // bits 6, 7 of a byte: never read
    }
#pragma GCC unroll 4
    for (size_t c = 0; c < kChunks; ++c) {
      const auto v = hn::LoadU(d8, w + kCodes + c * hn::MaxLanes(D8()));
      auto lo = hn::And(v, low);
      auto hi = hn::And(hn::BitCast(d8, hn::ShiftRight<4>(hn::BitCast(du16, v))), low);
      if constexpr (kQ5) {
        // Bit j to bit 4 by one 16-bit shift: what crosses from the other byte of a pair lands
        // below bit 4 (left shifts of at most 4) or in bits 5-7 (right shifts of at most 3).
        const auto fifth = [&](int j) HWY_ATTR {
          return hn::BitCast(
              d8, j <= 4 ? hn::ShiftLeftSame(qh16, 4 - j) : hn::ShiftRightSame(qh16, j - 4));
        };
        const int j = static_cast<int>(2 * kHalves * c);
        lo = hn::OrAnd(lo, fifth(j), bit4);
        hi = hn::OrAnd(hi, fifth(j + 1), bit4);
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
      const auto mins =
          WidenMulSums(d32x4, m16, hn::LoadU(d16x8, a.sums + (job.i + r) * (K / 32) + 8 * b));
      accm[r] = hn::MulAdd(WidenFour(hn::ConvertTo(df4, mins)), hn::Set(df, -dmin * s), accm[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[r], accm[r])));
}

// Q4_K and Q5_K with int8 activations.
template <DType kType, bool kAvxVnni>
void MatMulRowsScaleMin8(const MatMulRowsArgs& a) {
  ForEachGroup8(a, PrepareActs8(a, {}), [](size_t rows, const Tile8& job) HWY_ATTR {
    WithRowCount<kRows8>(rows, [&](auto r) HWY_ATTR { DotGroup8<kType, r(), kAvxVnni>(job); });
  });
}

// Q6_K, Q3_K and Q2_K: one scale per 16 values. Codes are taken unsigned so that vpmaddubsw can
// multiply them (Q6_K: its 6 stored bits, 0..63; Q3_K: the 2-bit code plus 4 x its high bit, 0..7;
// Q2_K: 0..3), and a value is d * scale_s * code + factor * coef_s: Q6_K's bias of 32 and Q3_K's
// of 4 as coef_s = scale_s with factor -32 d or -4 d, Q2_K's min as coef_s = m_s with factor
// -dmin. So a super-block's dot product with activation codes is d * sum_s scale_s * (codes .
// activations over s) + factor * sum_s coef_s * (sub-block s's sum of activation codes), both sums
// exact in int32. Codes are unpacked in value order, and so are the activations
// (Acts8Layout::value_order, sums per 16 values).
struct Sub16Header {
  float d, factor;
  hn::Vec<hn::Full256<int16_t>> scales, coefs;  // per 16-value sub-block s, lane s
};

// The 16 int8 scales at p as int16 lanes.
HWY_INLINE hn::Vec<hn::Full256<int16_t>> ScalesI8(const uint8_t* p) {
  return hn::PromoteTo(hn::Full256<int16_t>(),
                       hn::LoadU(hn::Full128<int8_t>(), reinterpret_cast<const int8_t*>(p)));
}

// Q3_K's 16 scales moved to a vector without a round trip through memory (which stalls on store
// forwarding).
HWY_INLINE hn::Vec<hn::Full128<uint8_t>> ScalesQ3K(const uint8_t* p) {
  uint32_t v[4];
  ScalesQ3KWords(p, v);
  return hn::Vec<hn::Full128<uint8_t>>{_mm_set_epi32(static_cast<int>(v[3]), static_cast<int>(v[2]),
                                                     static_cast<int>(v[1]),
                                                     static_cast<int>(v[0]))};
}

template <DType kType>
HWY_INLINE Sub16Header Sub16HeaderOf(const uint8_t* w) {
  if constexpr (kType == DType::kQ6_K) {
    const float d = F16At(w, 208);
    const auto sc = ScalesI8(w + 192);
    return {d, -32.0f * d, sc, sc};
  } else if constexpr (kType == DType::kQ3_K) {
    const hn::Full256<int16_t> d16;
    const float d = F16At(w, 108);
    const auto s16 = hn::Sub(hn::PromoteTo(d16, ScalesQ3K(w + 96)), hn::Set(d16, 32));
    return {d, -4.0f * d, s16, s16};
  } else {
    const hn::Full256<int16_t> d16;
    const auto packed = hn::PromoteTo(d16, hn::LoadU(hn::Full128<uint8_t>(), w));
    return {F16At(w, 80), -F16At(w, 82), hn::And(packed, hn::Set(d16, 15)),
            hn::ShiftRight<4>(packed)};
  }
}

// The codes of half n (values 128 n ..) of a super-block as kPerHalf vectors in value order:
// vector i holds values 128 n + kSpan i .. + kSpan.
constexpr size_t kSpan = hn::MaxLanes(D8());  // 64 on AVX-512, 32 on AVX2
constexpr size_t kPerHalf = 128 / kSpan;

// Code vector i of half n of a Q2_K or Q3_K super-block, from q (its 32 bytes of qs: byte l holds
// the 2-bit codes of values 128 n + 32 p + l at bits 2p, p < 4) and, for Q3_K (kHigh), hm (hmask:
// the high bit of value 128 n + 32 p + l at bit 4 n + p of byte l) times 4. On AVX2 vector i is
// plane i; on AVX-512 planes 2 i and 2 i + 1.
template <bool kHigh>
HWY_INLINE hn::Vec<D8> TwoBitPlanes(hn::Vec<hn::Full256<uint8_t>> q,
                                    hn::Vec<hn::Full256<uint8_t>> hm, size_t n, size_t i) {
  const hn::Full256<uint8_t> d256;
  const auto three = hn::Set(d256, 3), one = hn::Set(d256, 1);
  const auto plane = [&](size_t p) HWY_ATTR {
    auto codes = hn::And(ShiftBytes(d256, q, static_cast<int>(2 * p)), three);
    if constexpr (kHigh) {
      const auto top = hn::And(ShiftBytes(d256, hm, static_cast<int>(4 * n + p)), one);
      codes = hn::Or(codes, hn::ShiftLeft<2>(top));
    }
    return codes;
  };
#if HWY_TARGET == HWY_AVX2
  return plane(i);
#else
  return hn::Combine(D8(), plane(2 * i + 1), plane(2 * i));
#endif
}

template <DType kType>
HWY_INLINE void UnpackHalf(const uint8_t* w, size_t n, hn::Vec<D8> codes[kPerHalf]) {
  const D8 d8;
  const hn::Full256<uint8_t> d256;
  if constexpr (kType == DType::kQ6_K) {
    // ql[64 n + l] holds values 128 n + l (low nibble) and + 64 (high), for l < 64; qh[32 n + l]
    // the top two bits of values 128 n + l, + 32, + 64, + 96 (bits 0-1 .. 6-7).
    const auto low4 = hn::Set(d8, 0x0F), low2 = hn::Set(d8, 3);
#if HWY_TARGET == HWY_AVX2
    const auto q0 = hn::LoadU(d8, w + 64 * n), q1 = hn::LoadU(d8, w + 64 * n + 32);
    const auto h = hn::LoadU(d8, w + 128 + 32 * n);
    for (size_t j = 0; j < 4; ++j) {
      const auto q = j % 2 == 0 ? q0 : q1;
      const auto nib = j < 2 ? hn::And(q, low4) : hn::ShiftRight<4>(q);
      const auto top = hn::And(ShiftBytes(d8, h, static_cast<int>(2 * j)), low2);
      codes[j] = hn::Or(nib, hn::ShiftLeft<4>(top));
    }
#else
    const auto q = hn::LoadU(d8, w + 64 * n);
    const auto h = hn::LoadU(d256, w + 128 + 32 * n);
    const auto hlo = hn::Combine(d8, hn::ShiftRight<2>(h), h);
    const auto hhi = hn::Combine(d8, hn::ShiftRight<6>(h), hn::ShiftRight<4>(h));
    codes[0] = hn::Or(hn::And(q, low4), hn::ShiftLeft<4>(hn::And(hlo, low2)));
    codes[1] = hn::Or(hn::ShiftRight<4>(q), hn::ShiftLeft<4>(hn::And(hhi, low2)));
#endif
  } else {
    constexpr bool kQ3 = kType == DType::kQ3_K;
    const auto q = hn::LoadU(d256, w + (kQ3 ? 32 : 16) + 32 * n);
    const auto hm = kQ3 ? hn::LoadU(d256, w) : hn::Zero(d256);
    for (size_t i = 0; i < kPerHalf; ++i) codes[i] = TwoBitPlanes<kQ3>(q, hm, n, i);
  }
}

// The int16 scale of every lane of code vector c (values kSpan c ..): lane l covers values
// kSpan c + 2 l and + 1, so sub-block (kSpan c + 2 l) / 16.
HWY_INLINE hn::Vec<DI16> Sub16Scales(hn::Vec<hn::Full256<int16_t>> scales, size_t c) {
#if HWY_TARGET == HWY_AVX2
  // One vpermd puts the dword of scales 2c and 2c + 1 in every dword, one vpshufb spreads the
  // first over the low 128 bits and the second over the high ones.
  const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2,
                                          3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  return hn::Vec<DI16>{_mm256_shuffle_epi8(
      _mm256_permutevar8x32_epi32(scales.raw, _mm256_set1_epi32(static_cast<int>(c))), spread)};
#else
  const DI16 d16;
  const auto idx =
      hn::Add(hn::ShiftRight<3>(hn::Iota(d16, 0)), hn::Set(d16, static_cast<int16_t>(4 * c)));
  return hn::Vec<DI16>{_mm512_permutexvar_epi16(idx.raw, hn::ZeroExtendVector(d16, scales).raw)};
#endif
}

// Bounds: a pair sum at most 2 * 63 * 127 < 2^15 (Q6_K); an int32 lane takes at most 4 vectors
// x 2 pairs of 16002 x |scale| <= 128 before it is converted (a half super-block on AVX2, a whole
// one on AVX-512: the same 4 vectors), < 2^24, so exact, and exact in f32. AVX2 keeps one f32
// accumulator per row (16 registers), AVX-512 two.
template <DType kType, size_t R, bool kAvxVnni>
HWY_NOINLINE void DotGroupSub16(const Tile8& job) {
  const DI32 d32;
  const DF df;
  const hn::Full256<int32_t> d32x8;
  const hn::Full256<float> df8;
  constexpr bool kPerHalfSums = HWY_TARGET == HWY_AVX2;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  hn::Vec<DF> acc[R];
  hn::Vec<hn::Full256<float>> accb[R];
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) {
    acc[r] = hn::Zero(df);
    accb[r] = hn::Zero(df8);
  }
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(kType)) {
    PrefetchAhead<kType>(w);
    const Sub16Header head = Sub16HeaderOf<kType>(w);
    hn::Vec<DI32> isum[R];
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
    for (size_t n = 0; n < 2; ++n) {
      hn::Vec<D8> codes[kPerHalf];
      UnpackHalf<kType>(w, n, codes);
#pragma GCC unroll 4
      for (size_t i = 0; i < kPerHalf; ++i) {
        const size_t c = kPerHalf * n + i;
        const auto scale = Sub16Scales(head.scales, c);
#pragma GCC unroll 16
        for (size_t r = 0; r < R; ++r) {
          const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + kSpan * c;
          isum[r] = MulAddPairs<kVnniFor<R, kAvxVnni>>(MulBytePairs(codes[i], hn::LoadU(DI8(), x)),
                                                       scale, isum[r]);
        }
      }
      if (kPerHalfSums || n == 1) {
#pragma GCC unroll 16
        for (size_t r = 0; r < R; ++r) {
          const float s = a.scales[(job.i + r) * blocks + b];
          acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, head.d * s), acc[r]);
          isum[r] = hn::Zero(d32);
        }
      }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      const auto bias =
          WidenMulSums(d32x8, head.coefs,
                       hn::LoadU(hn::Full256<int16_t>(), a.sums + (job.i + r) * (K / 16) + 16 * b));
      if constexpr (kPerHalfSums) {
        acc[r] = hn::MulAdd(hn::ConvertTo(df8, bias), hn::Set(df8, head.factor * s), acc[r]);
      } else {
        accb[r] = hn::MulAdd(hn::ConvertTo(df8, bias), hn::Set(df8, head.factor * s), accb[r]);
      }
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) {
    if constexpr (kPerHalfSums) {
      job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
    } else {
      job.out[r * job.ldo] =
          hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[r], hn::ZeroExtendVector(df, accb[r]))));
    }
  }
}

// Q6_K, Q3_K and Q2_K with int8 activations.
template <DType kType, bool kAvxVnni>
void MatMulRowsSub16(const MatMulRowsArgs& a) {
  ForEachGroup8(a, PrepareActs8(a, {.value_order = true, .sum_len = 16}),
                [](size_t rows, const Tile8& job) HWY_ATTR {
                  WithRowCount<kRows8>(
                      rows, [&](auto r) HWY_ATTR { DotGroupSub16<kType, r(), kAvxVnni>(job); });
                });
}
#endif  // x86

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_MATMUL_INT8_INL_H_
