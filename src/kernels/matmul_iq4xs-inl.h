// IQ4_XS with int8 activations on x86 (AVX2, AVX-512): the 4-bit codes index llama.cpp's
// non-linear grid of 16 signed values (kIQ4Values, -127..113), one byte-shuffle looks up 32 or 64
// of them, and the grid values multiply the activation codes as signed bytes. vpmaddubsw wants one
// unsigned operand, so it takes |grid value| and the activation code with the grid value's sign
// (vpsignb on AVX2; AVX-512 has none, so a masked subtraction from zero negates the codes of
// negative grid values). A pair sum is at most 2 * 127 * 127 < 2^15: never saturated. Per 32
// values (a sub-block) one 6-bit scale ls - 32; an int32 lane takes at most 8 vpmaddwd results of
// 2 * 32258 * 32 over a super-block, < 2^24, so the sums are exact and exact in f32. Included by
// matmul_kquants.cc once per SIMD target; other targets keep matmul_quant-inl.h's int16 path.
#if defined(SPECULA_KERNELS_MATMUL_IQ4XS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_MATMUL_IQ4XS_INL_H_
#undef SPECULA_KERNELS_MATMUL_IQ4XS_INL_H_
#else
#define SPECULA_KERNELS_MATMUL_IQ4XS_INL_H_
#endif

#include <cstring>

#include "hwy/highway.h"
#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/acts8-inl.h"
#include "src/kernels/matmul_int8-inl.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
// The grid values of code vector c: on AVX2 sub-block c (values 32 c ..), on AVX-512 sub-blocks
// 2 c and 2 c + 1. Sub-block j's 16 bytes at qs + 16 j hold values 32 j + l (low nibble) and
// 32 j + 16 + l (high), so the nibble vectors are regrouped by 128-bit lanes into value order.
HWY_INLINE hn::Vec<DI8> GridValues(const uint8_t* qs, size_t c) {
  const D8 d8;
  const auto low4 = hn::Set(d8, 0x0F);
  const hn::Full128<int8_t> d128;
  const auto grid = hn::LoadU(d128, kIQ4Values);
#if HWY_TARGET == HWY_AVX2
  const auto v = hn::LoadU(d8, qs + 32 * (c / 2));
  const auto lo = hn::And(v, low4), hi = hn::And(hn::ShiftRight<4>(v), low4);
  const __m256i idx = c % 2 == 0 ? _mm256_permute2x128_si256(lo.raw, hi.raw, 0x20)
                                 : _mm256_permute2x128_si256(lo.raw, hi.raw, 0x31);
  return hn::Vec<DI8>{_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(grid.raw), idx)};
#else
  const auto v = hn::LoadU(d8, qs + 64 * (c / 2));
  const auto lo = hn::And(v, low4), hi = hn::And(hn::ShiftRight<4>(v), low4);
  const __m512i order = c % 2 == 0 ? _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11)
                                   : _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  const __m512i idx = _mm512_permutex2var_epi64(lo.raw, order, hi.raw);
  return hn::Vec<DI8>{_mm512_shuffle_epi8(_mm512_broadcast_i32x4(grid.raw), idx)};
#endif
}

// The int16 scale (ls - 32) of every lane of code vector c: lane l covers values kSpan c + 2 l
// and + 1, so sub-block (kSpan c + 2 l) / 32.
HWY_INLINE hn::Vec<DI16> IQ4Scales(uint64_t ls, size_t c) {
  const DI16 d16;
#if HWY_TARGET == HWY_AVX2
  return hn::Set(d16, static_cast<int16_t>(static_cast<int>((ls >> (8 * c)) & 0xff) - 32));
#else
  const auto sc16 = hn::Sub(BytesToI16(d16, ls), hn::Set(d16, 32));
  const auto idx =
      hn::Add(hn::ShiftRight<4>(hn::Iota(d16, 0)), hn::Set(d16, static_cast<int16_t>(2 * c)));
  return hn::Vec<DI16>{_mm512_permutexvar_epi16(idx.raw, sc16.raw)};
#endif
}

// |g| times the activation codes x with g's signs, pairs summed (int16).
struct SignedGrid {
  hn::Vec<D8> magnitude;
#if HWY_TARGET == HWY_AVX2
  hn::Vec<DI8> sign;  // g itself: vpsignb takes its sign
#else
  __mmask64 negative;
#endif
};

HWY_INLINE SignedGrid SplitSign(hn::Vec<DI8> g) {
#if HWY_TARGET == HWY_AVX2
  return {hn::BitCast(D8(), hn::Abs(g)), g};
#else
  return {hn::BitCast(D8(), hn::Abs(g)), _mm512_movepi8_mask(g.raw)};
#endif
}

HWY_INLINE hn::Vec<DI16> MulSignedPairs(const SignedGrid& g, hn::Vec<DI8> x) {
#if HWY_TARGET == HWY_AVX2
  return MulBytePairs(g.magnitude, hn::Vec<DI8>{_mm256_sign_epi8(x.raw, g.sign.raw)});
#else
  return MulBytePairs(g.magnitude, hn::Vec<DI8>{_mm512_mask_sub_epi8(
                                       x.raw, g.negative, _mm512_setzero_si512(), x.raw)});
#endif
}

template <size_t R, bool kAvxVnni>
HWY_NOINLINE void DotGroupIQ4XS(const Tile8& job) {
  const DI32 d32;
  const DF df;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  hn::Vec<DF> acc[R];
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(DType::kIQ4_XS)) {
    PrefetchAhead<DType::kIQ4_XS>(w);
    const float d = F16At(w, 0);
    const uint64_t ls = ScalesIQ4XS(w);
    hn::Vec<DI32> isum[R];
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
#pragma GCC unroll 8
    for (size_t c = 0; c < kSuperBlock / kSpan; ++c) {
      const SignedGrid g = SplitSign(GridValues(w + 8, c));
      const auto scale = IQ4Scales(ls, c);
#pragma GCC unroll 16
      for (size_t r = 0; r < R; ++r) {
        const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + kSpan * c;
        isum[r] = MulAddPairs<kVnniFor<R, kAvxVnni>>(MulSignedPairs(g, hn::LoadU(DI8(), x)), scale,
                                                     isum[r]);
      }
    }
#pragma GCC unroll 16
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
    }
  }
#pragma GCC unroll 16
  for (size_t r = 0; r < R; ++r) job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
}

template <bool kAvxVnni>
void MatMulRowsIQ4XS8(const MatMulRowsArgs& a) {
  ForEachGroup8(
      a, PrepareActs8(a, {.value_order = true}), [](size_t rows, const Tile8& job) HWY_ATTR {
        WithRowCount<kRows8>(rows, [&](auto r) HWY_ATTR { DotGroupIQ4XS<r(), kAvxVnni>(job); });
      });
}
#endif  // x86

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_MATMUL_IQ4XS_INL_H_
