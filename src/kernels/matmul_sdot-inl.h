// Int8 dot products for Q4_K, Q5_K, Q6_K, Q3_K, Q2_K and IQ4_XS on ARM with the dot-product
// instructions (SDOT, Armv8.2's optional FEAT_DotProd: Graviton 2 on, Cortex-A55/A76 on, Apple M1
// on; not the Raspberry Pi 4's Cortex-A72), detected from the Linux auxiliary vector. Included by
// matmul_kquants.cc once per SIMD target; only the NEON target has code here, and it runs only
// where GetTable found the instructions (without them NEON keeps matmul_quant-inl.h's int16
// path). The x86 counterpart is matmul_int8-inl.h.
//
// One SDOT multiplies 16 signed bytes by 16 others and adds each group of 4 products into one of
// 4 int32 lanes: two of them take a 32-value sub-block of codes against its activation codes
// (quantized per super-block, acts8-inl.h, in value order), a multiply by the sub-block's scale
// and an add fold it into the super-block's int32 sum. Codes need no widening (4- to 6-bit codes
// are valid signed bytes; Q6_K's -32 bias is subtracted in bytes), so a super-block costs ~4 ops
// per 16 values and row after unpacking, which each group of rows shares.
//
// Exactness: a lane takes 8 products per 32-value sub-block, at most 8 * 31 * 127 * 63 < 2^21 for
// Q5_K (scales 0..63), and 8 sub-blocks sum to < 2^24; Q6_K's lane per 16-value sub-block is at
// most 4 * 32 * 127 * 128 (scales are signed bytes), 8 sub-blocks (half a super-block) < 2^24;
// Q3_K's and Q2_K's smaller codes and scales stay below 2^21 over a super-block; IQ4_XS's bound is
// by its kernel. So each int32 sum is exact and so is its conversion to f32 (Q6_K and IQ4_XS
// convert per half). Every row runs the same operations whatever else shares the call.
#if defined(SPECULA_KERNELS_MATMUL_SDOT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_MATMUL_SDOT_INL_H_
#undef SPECULA_KERNELS_MATMUL_SDOT_INL_H_
#else
#define SPECULA_KERNELS_MATMUL_SDOT_INL_H_
#endif

#include <cstring>

#include "hwy/highway.h"
#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/acts8-inl.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_NEON && HWY_ARCH_ARM_A64
// acc + per 32-bit lane i: sum over j < 4 of a[4i + j] * b[4i + j]. Inline assembly, so that the
// compiler need not target FEAT_DotProd (the rest of the NEON target must run without it). The
// directive lets the assembler accept the instruction: binutils takes `dotprod` only on an
// Armv8.2 base. It stays in effect for the rest of the assembly file, which is safe while it is a
// superset of what the compiler emits there: Armv8 with crypto, the NEON target of a build without
// -march (as the project's ARM builds are); a build for Armv8.3 or later would need it raised.
HWY_INLINE hn::Vec<DI32> Sdot(hn::Vec<DI32> acc, hn::Vec<DI8> a, hn::Vec<DI8> b) {
  int32x4_t sum = acc.raw;
  asm(".arch armv8.2-a+crypto+dotprod\n\tsdot %0.4s, %1.16b, %2.16b"
      : "+w"(sum)
      : "w"(a.raw), "w"(b.raw));
  return hn::Vec<DI32>{sum};
}

// The dot product of 32 codes (lo, hi: values 0-15, 16-31) with the activation codes at x.
HWY_INLINE hn::Vec<DI32> Dot32(hn::Vec<DI8> lo, hn::Vec<DI8> hi, const int8_t* x) {
  const DI8 d8;
  return Sdot(Sdot(hn::Zero(DI32()), lo, hn::LoadU(d8, x)), hi, hn::LoadU(d8, x + 16));
}

// Q4_K and Q5_K: bytes 32 j .. 32 j + 31 of the 128 code bytes hold sub-block 2 j in their low
// nibbles and 2 j + 1 in their high ones; Q5_K's fifth bit of value 32 s + l is bit s of qh[l].
template <DType kType, size_t R>
HWY_NOINLINE void DotGroupSdot(const Tile8& job) {
  const D8 d8;
  const DI8 di8;
  const DI32 d32;
  const DF df;
  const hn::CappedTag<int16_t, 8> d16x8;
  const hn::CappedTag<int32_t, 4> d32x4;
  const hn::CappedTag<float, 4> df4;
  constexpr bool kQ5 = kType == DType::kQ5_K;
  constexpr size_t kCodes = kQ5 ? 48 : 16;  // Q5_K's qh[32] comes first
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto low = hn::Set(d8, 0x0F);
  hn::Vec<DF> acc[R], accm[R];
  for (size_t r = 0; r < R; ++r) acc[r] = accm[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(kType)) {
    PrefetchAhead<kType>(w);
    const float d = F16At(w, 0), dmin = F16At(w, 2);
    uint64_t sc, mn;
    ScalesMinsQ4K(w + 4, &sc, &mn);
    const auto m16 = BytesToI16(d16x8, mn);
    hn::Vec<DI32> isum[R];
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
    for (size_t j = 0; j < 4; ++j) {
      hn::Vec<D8> codes[4];  // sub-block 2 j: values 0-15, 16-31; then 2 j + 1
      for (size_t h = 0; h < 2; ++h) {
        const auto v = hn::LoadU(d8, w + kCodes + 32 * j + 16 * h);
        codes[h] = hn::And(v, low);
        codes[2 + h] = hn::ShiftRight<4>(v);
        if constexpr (kQ5) {
          const auto qh = hn::LoadU(d8, w + 16 + 16 * h), five = hn::Set(d8, 16);
          const auto bit = [&](size_t s) HWY_ATTR {
            return hn::IfThenElseZero(hn::TestBit(qh, hn::Set(d8, static_cast<uint8_t>(1u << s))),
                                      five);
          };
          codes[h] = hn::Or(codes[h], bit(2 * j));
          codes[2 + h] = hn::Or(codes[2 + h], bit(2 * j + 1));
        }
      }
      const auto slo = hn::Set(d32, static_cast<int32_t>((sc >> (16 * j)) & 0xff));
      const auto shi = hn::Set(d32, static_cast<int32_t>((sc >> (16 * j + 8)) & 0xff));
      for (size_t r = 0; r < R; ++r) {
        const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + 64 * j;
        const auto lo = Dot32(hn::BitCast(di8, codes[0]), hn::BitCast(di8, codes[1]), x);
        const auto hi = Dot32(hn::BitCast(di8, codes[2]), hn::BitCast(di8, codes[3]), x + 32);
        isum[r] = hn::Add(isum[r], hn::Add(hn::Mul(lo, slo), hn::Mul(hi, shi)));
      }
    }
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      const auto mins =
          WidenMulSums(d32x4, m16, hn::LoadU(d16x8, a.sums + (job.i + r) * (K / 32) + 8 * b));
      accm[r] = hn::MulAdd(WidenFour(hn::ConvertTo(df4, mins)), hn::Set(df, -dmin * s), accm[r]);
    }
  }
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[r], accm[r])));
}

// Q6_K: per half n of a super-block, ql[64 n + l] holds values 128 n + l (low nibble) and
// 128 n + 64 + l (high), ql[64 n + 32 + l] values 128 n + 32 + l and 128 n + 96 + l, and
// qh[32 n + l] their top two bits (bits 0-1, 2-3, 4-5, 6-7 for + 0, + 32, + 64, + 96). Codes are
// those 6 bits minus 32, signed bytes as SDOT takes them; each 16 values have an int8 scale.
template <size_t R>
HWY_NOINLINE void DotGroupSdotQ6K(const Tile8& job) {
  const D8 d8;
  const DI8 di8;
  const DI32 d32;
  const DF df;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto low4 = hn::Set(d8, 0x0F), top2 = hn::Set(d8, 0x30);
  const auto bias = hn::Set(di8, 32);
  hn::Vec<DF> acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(DType::kQ6_K)) {
    PrefetchAhead<DType::kQ6_K>(w);
    const float d = F16At(w, 208);
    const auto* scales = reinterpret_cast<const int8_t*>(w + 192);
    for (size_t n = 0; n < 2; ++n) {
      hn::Vec<DI32> isum[R];
      for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
      for (size_t k = 0; k < 2; ++k) {  // values 128 n + 16 k + 32 q + i, q = 0..3, i < 16
        const auto qa = hn::LoadU(d8, w + 64 * n + 16 * k);
        const auto qb = hn::LoadU(d8, w + 64 * n + 32 + 16 * k);
        const auto qh = hn::LoadU(d8, w + 128 + 32 * n + 16 * k);
        const hn::Vec<D8> raw[4] = {
            hn::Or(hn::And(qa, low4), hn::And(hn::ShiftLeft<4>(qh), top2)),
            hn::Or(hn::And(qb, low4), hn::And(hn::ShiftLeft<2>(qh), top2)),
            hn::Or(hn::ShiftRight<4>(qa), hn::And(qh, top2)),
            hn::Or(hn::ShiftRight<4>(qb), hn::And(hn::ShiftRight<2>(qh), top2))};
        hn::Vec<DI8> codes[4];
        hn::Vec<DI32> scale[4];
        for (size_t q = 0; q < 4; ++q) {
          codes[q] = hn::Sub(hn::BitCast(di8, raw[q]), bias);
          scale[q] = hn::Set(d32, static_cast<int32_t>(scales[8 * n + 2 * q + k]));
        }
        for (size_t r = 0; r < R; ++r) {
          const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + 128 * n + 16 * k;
          for (size_t q = 0; q < 4; ++q) {
            const auto dot = Sdot(hn::Zero(d32), codes[q], hn::LoadU(di8, x + 32 * q));
            isum[r] = hn::Add(isum[r], hn::Mul(dot, scale[q]));
          }
        }
      }
      for (size_t r = 0; r < R; ++r) {
        const float s = a.scales[(job.i + r) * blocks + b];
        acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      }
    }
  }
  for (size_t r = 0; r < R; ++r) job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
}

// Q3_K and Q2_K: byte qs[32 n + 16 k + i] holds the 2-bit codes of values 128 n + 32 p + 16 k + i
// at bits 2 p (p < 4), and Q3_K's hmask[16 k + i] their high bits at bit 4 n + p (code - 4 where it
// is clear). One scale per 16 values: Q3_K's six-bit scale - 32; Q2_K's 4-bit scale, with a 4-bit
// min m_s whose term -dmin * sum_s m_s * (sub-block s's sum of activation codes) is exact in int32.
template <DType kType, size_t R>
HWY_NOINLINE void DotGroupSdot2Bit(const Tile8& job) {
  const D8 d8;
  const DI8 di8;
  const DI32 d32;
  const DF df;
  const hn::CappedTag<int16_t, 8> d16x8;
  constexpr bool kQ3 = kType == DType::kQ3_K;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto three = hn::Set(d8, 3), one = hn::Set(d8, 1);
  hn::Vec<DF> acc[R], accm[R];
  for (size_t r = 0; r < R; ++r) acc[r] = accm[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(kType)) {
    PrefetchAhead<kType>(w);
    int8_t sc[16];
    uint8_t mins[16];
    float d, dmin = 0.0f;
    if constexpr (kQ3) {
      uint32_t v[4];
      ScalesQ3KWords(w + 96, v);
      for (size_t s = 0; s < 16; ++s)
        sc[s] = static_cast<int8_t>(static_cast<int>((v[s / 4] >> (8 * (s % 4))) & 0xff) - 32);
      d = F16At(w, 108);
    } else {
      for (size_t s = 0; s < 16; ++s) {
        sc[s] = static_cast<int8_t>(w[s] & 15);
        mins[s] = static_cast<uint8_t>(w[s] >> 4);
      }
      d = F16At(w, 80);
      dmin = F16At(w, 82);
    }
    hn::Vec<DI32> isum[R];
    for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
    for (size_t n = 0; n < 2; ++n) {
      for (size_t k = 0; k < 2; ++k) {
        const auto q = hn::LoadU(d8, w + (kQ3 ? 32 : 16) + 32 * n + 16 * k);
        hn::Vec<DI8> codes[4];
        for (size_t p = 0; p < 4; ++p) {
          auto c = hn::And(ShiftBytes(d8, q, static_cast<int>(2 * p)), three);
          if constexpr (kQ3) {
            const auto hm = hn::LoadU(d8, w + 16 * k);
            const auto high = hn::And(ShiftBytes(d8, hm, static_cast<int>(4 * n + p)), one);
            c = hn::Sub(hn::Or(c, hn::ShiftLeft<2>(high)), hn::Set(d8, 4));  // wraps to -4..3
          }
          codes[p] = hn::BitCast(di8, c);
        }
        for (size_t r = 0; r < R; ++r) {
          const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + 128 * n + 16 * k;
          for (size_t p = 0; p < 4; ++p) {
            const auto dot = Sdot(hn::Zero(d32), codes[p], hn::LoadU(di8, x + 32 * p));
            isum[r] = hn::Add(isum[r], hn::Mul(dot, hn::Set(d32, sc[8 * n + 2 * p + k])));
          }
        }
      }
    }
    for (size_t r = 0; r < R; ++r) {
      const float s = a.scales[(job.i + r) * blocks + b];
      acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      if constexpr (!kQ3) {
        const int16_t* sums = a.sums + (job.i + r) * (K / 16) + 16 * b;
        const auto m = hn::Add(
            WidenMulSums(d32, hn::PromoteTo(d16x8, hn::LoadU(hn::CappedTag<uint8_t, 8>(), mins)),
                         hn::LoadU(d16x8, sums)),
            WidenMulSums(d32,
                         hn::PromoteTo(d16x8, hn::LoadU(hn::CappedTag<uint8_t, 8>(), mins + 8)),
                         hn::LoadU(d16x8, sums + 8)));
        accm[r] = hn::MulAdd(hn::ConvertTo(df, m), hn::Set(df, -dmin * s), accm[r]);
      }
    }
  }
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc[r], accm[r])));
}

// IQ4_XS: sub-block j's 16 bytes at qs + 16 j hold the grid indices of values 32 j + l (low
// nibble) and 32 j + 16 + l (high). One table lookup gives 16 signed grid values, which SDOT takes
// as they are. Converted per half super-block: a lane of 4 sub-blocks is at most
// 4 * 8 * 127 * 127 * 32 < 2^24, exact in f32.
template <size_t R>
HWY_NOINLINE void DotGroupSdotIQ4XS(const Tile8& job) {
  const D8 d8;
  const DI8 di8;
  const DI32 d32;
  const DF df;
  const Acts8& a = *job.acts;
  const size_t K = job.K, blocks = K / kSuperBlock;
  const auto low4 = hn::Set(d8, 0x0F);
  const auto grid = hn::LoadU(di8, kIQ4Values);
  hn::Vec<DF> acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t b = 0; b < blocks; ++b, w += DTypeSize(DType::kIQ4_XS)) {
    PrefetchAhead<DType::kIQ4_XS>(w);
    const float d = F16At(w, 0);
    const uint64_t ls = ScalesIQ4XS(w);
    for (size_t half = 0; half < 2; ++half) {
      hn::Vec<DI32> isum[R];
      for (size_t r = 0; r < R; ++r) isum[r] = hn::Zero(d32);
      for (size_t j = 4 * half; j < 4 * half + 4; ++j) {
        const auto q = hn::LoadU(d8, w + 8 + 16 * j);
        const auto lo = hn::TableLookupBytes(grid, hn::BitCast(di8, hn::And(q, low4)));
        const auto hi = hn::TableLookupBytes(grid, hn::BitCast(di8, hn::ShiftRight<4>(q)));
        const auto scale = hn::Set(d32, static_cast<int32_t>((ls >> (8 * j)) & 0xff) - 32);
        for (size_t r = 0; r < R; ++r) {
          const int8_t* x = a.codes + (job.i + r) * K + b * kSuperBlock + 32 * j;
          isum[r] = hn::Add(isum[r], hn::Mul(Dot32(lo, hi, x), scale));
        }
      }
      for (size_t r = 0; r < R; ++r) {
        const float s = a.scales[(job.i + r) * blocks + b];
        acc[r] = hn::MulAdd(hn::ConvertTo(df, isum[r]), hn::Set(df, d * s), acc[r]);
      }
    }
  }
  for (size_t r = 0; r < R; ++r) job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, acc[r]));
}

// The SDOT kernel of type kType for a group of R rows.
template <DType kType, size_t R>
HWY_INLINE void DotGroupSdotOf(const Tile8& job) {
  if constexpr (kType == DType::kQ6_K) {
    DotGroupSdotQ6K<R>(job);
  } else if constexpr (kType == DType::kQ3_K || kType == DType::kQ2_K) {
    DotGroupSdot2Bit<kType, R>(job);
  } else if constexpr (kType == DType::kIQ4_XS) {
    DotGroupSdotIQ4XS<R>(job);
  } else {
    DotGroupSdot<kType, R>(job);
  }
}

// Q4_K, Q5_K, Q6_K, Q3_K, Q2_K or IQ4_XS (kType) with int8 activations through SDOT (Q2_K's
// min term takes sums of codes per 16 values).
template <DType kType>
void MatMulRowsSdot(const MatMulRowsArgs& a) {
  ForEachGroup8(
      a,
      PrepareActs8(
          a, {.value_order = true, .sum_len = kType == DType::kQ2_K ? size_t{16} : size_t{32}}),
      [](size_t rows, const Tile8& job) HWY_ATTR {
        WithRowCount<kRows8>(rows, [&](auto r) HWY_ATTR { DotGroupSdotOf<kType, r()>(job); });
      });
}
#endif  // NEON

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_MATMUL_SDOT_INL_H_
