// Matmul kernels for the GGUF block dtypes (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q6_K, IQ4_XS,
// Q3_K, Q4_K, Q5_K, Q2_K). Included by matmul.cc once per SIMD target, after tiles-inl.h.
#if defined(SPECULA_KERNELS_MATMUL_QUANT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_MATMUL_QUANT_INL_H_
#undef SPECULA_KERNELS_MATMUL_QUANT_INL_H_
#else
#define SPECULA_KERNELS_MATMUL_QUANT_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "hwy/aligned_allocator.h"
#include "hwy/highway.h"
#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Q8_0 and Q4_0 (and the k-quants below, where matmul_int8-inl.h does not take them) run in
// integers, as llama.cpp's CPU backend does: each activation
// row is quantized once per call to int16 codes with one f32 scale per row (x ~ s * q, s = max|x| /
// 32767), and a block's 32 products of int8 weight codes and int16 activation codes are summed
// exactly in int32 (pairs via ReorderWidenMulAccumulate: vpmaddwd on x86). Only the per-block
// weight scale is applied in float: ~6 ops per block and row, where converting every weight code
// to f32 (sign-extend, convert, scale) takes ~11 and makes one-row decode compute-bound. One scale
// per row (not per block, as llama.cpp's int8
// activations have) keeps the per-block work at one multiply-add per (weight row, activation row),
// and 15 bits per row are finer than 7 bits per block unless a row's max exceeds its typical
// block's max 256-fold.
constexpr size_t kBlock = kQuantBlock;
using D16 = hn::CappedTag<int16_t, kBlock>;
using D32 = hn::Repartition<int32_t, D16>;
using DQ = hn::Rebind<float, D32>;
// Vectors of int16 codes per block (1 on AVX-512, 2 on AVX2, 4 on NEON).
constexpr size_t kVecs = kBlock / hn::MaxLanes(D16());

// The f16 scale at p, broadcast as f32 (one vector conversion instead of scalar bit work).
template <class D>
HWY_INLINE hn::Vec<D> LoadScale(D d, const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  const hn::Rebind<uint16_t, D> du16;
  return hn::PromoteTo(d, hn::BitCast(hn::Rebind<hwy::float16_t, D>(), hn::Set(du16, bits)));
}

// x[m, K] (row stride ldx) -> codes[m, K] and scales[m]. Codes round to nearest even, as the
// scalar reference does. A row holding inf or NaN gets scale NaN (and zero codes), so its outputs
// are NaN as they would be in float.
HWY_INLINE void QuantizeActs(const float* x, size_t ldx, size_t m, size_t K, float* scales,
                             int16_t* codes) {
  const DF df;
  const hn::Rebind<int16_t, DF> d16;
  const size_t N = hn::Lanes(df);
  for (size_t r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    int16_t* q = codes + r * K;
    auto vmax = hn::Zero(df), bad = hn::Zero(df);
    size_t k = 0;
    for (; k + N <= K; k += N) {
      const auto v = hn::LoadU(df, xr + k);
      vmax = hn::Max(vmax, hn::Abs(v));
      bad = hn::Add(bad, hn::Mul(v, hn::Zero(df)));  // NaN iff some value is inf or NaN
    }
    float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    float nonfinite = hn::GetLane(hn::SumOfLanes(df, bad));
    for (; k < K; ++k) {
      amax = std::max(amax, std::fabs(xr[k]));
      nonfinite += xr[k] * 0.0f;
    }
    if (!(nonfinite == 0.0f)) {
      scales[r] = std::numeric_limits<float>::quiet_NaN();
      std::fill(q, q + K, int16_t{0});
      continue;
    }
    scales[r] = amax / 32767.0f;
    // 0 also when the factor overflows (amax below ~1e-34): the codes are then all zero.
    float inv = 32767.0f / amax;
    if (!(inv <= std::numeric_limits<float>::max())) inv = 0.0f;
    const auto vinv = hn::Set(df, inv);
    for (k = 0; k + N <= K; k += N) {
      hn::StoreU(hn::DemoteTo(d16, hn::NearestInt(hn::Mul(hn::LoadU(df, xr + k), vinv))), d16,
                 q + k);
    }
    for (; k < K; ++k) q[k] = static_cast<int16_t>(std::nearbyint(xr[k] * inv));
  }
}

// The activation rows quantized as QuantizeActs lays them out in scratch (row scales, then codes),
// reusing what an earlier matrix of the same MatMulShared group left there.
struct QuantActs {
  const float* scales;
  const int16_t* codes;  // [m, K]
  hwy::AlignedFreeUniquePtr<float[]> own;
};
HWY_INLINE QuantActs PrepareQuantActs(const MatMulRowsArgs& a) {
  const size_t K = static_cast<size_t>(a.w.cols);
  // Row scales first (a 64-byte line per 16 rows), then the codes, vector-aligned.
  const size_t scale_floats = (a.m + 15) / 16 * 16;
  const size_t need = scale_floats + (a.m * K + 1) / 2;
  QuantActs q;
  float* scratch = a.scratch;
  if (a.scratch_floats < need) {
    q.own = hwy::AllocateAligned<float>(need);
    scratch = q.own.get();
  }
  auto* codes = reinterpret_cast<int16_t*>(scratch + scale_floats);
  if (!a.x_prepared || q.own) QuantizeActs(a.x, a.ldx, a.m, K, scratch, codes);
  q.scales = scratch;
  q.codes = codes;
  return q;
}

// The weight codes of one block as kVecs vectors of int16, in value order.
template <DType kType>
HWY_INLINE void LoadBlock(D16 d16, const uint8_t* codes, hn::Vec<D16> (&v)[kVecs]) {
  constexpr size_t L = hn::MaxLanes(D16());
  if constexpr (kType == DType::kQ8_0) {
    const hn::Rebind<int8_t, D16> d8;
    for (size_t j = 0; j < kVecs; ++j)
      v[j] = hn::PromoteTo(d16, hn::LoadU(d8, reinterpret_cast<const int8_t*>(codes) + j * L));
  } else if constexpr (kType == DType::kQ5_0 || kType == DType::kQ5_1) {
    // `codes` is the block; its fifth bits gathered in scalar code, as IQ4_NL's lookups are.
    HWY_ALIGN int16_t v16[kBlock];
    const int bias = kType == DType::kQ5_0 ? 16 : 0;
    for (size_t j = 0; j < kBlock; ++j)
      v16[j] = static_cast<int16_t>(Q5Code(codes, kType, j) - bias);
    for (size_t j = 0; j < kVecs; ++j) v[j] = hn::Load(d16, v16 + j * L);
  } else if constexpr (kType == DType::kIQ4_NL) {
    // Q4_0's nibbles as indices into the grid. Looked up in scalar code: correct on every target;
    // a byte-shuffle lookup would be the faster path.
    HWY_ALIGN int16_t v16[kBlock];
    for (size_t j = 0; j < 16; ++j) {
      v16[j] = kIQ4Values[codes[j] & 15];
      v16[j + 16] = kIQ4Values[codes[j] >> 4];
    }
    for (size_t j = 0; j < kVecs; ++j) v[j] = hn::Load(d16, v16 + j * L);
  } else {  // Q4_0 and Q4_1: byte j holds value j in its low nibble and j + 16 in its high one
    const auto bias = hn::Set(d16, kType == DType::kQ4_0 ? 8 : 0);
#if HWY_TARGET != HWY_SCALAR  // (no Combine there; its kVecs is 32)
    if constexpr (kVecs == 1) {
      const hn::Half<D16> dh;
      const auto b =
          hn::BitCast(dh, hn::PromoteTo(hn::RebindToUnsigned<decltype(dh)>(),
                                        hn::LoadU(hn::Rebind<uint8_t, decltype(dh)>(), codes)));
      v[0] = hn::Sub(hn::Combine(d16, hn::ShiftRight<4>(b), hn::And(b, hn::Set(dh, 15))), bias);
      return;
    }
#endif
    for (size_t j = 0; j < kVecs / 2; ++j) {
      const auto b =
          hn::BitCast(d16, hn::PromoteTo(hn::RebindToUnsigned<D16>(),
                                         hn::LoadU(hn::Rebind<uint8_t, D16>(), codes + j * L)));
      v[j] = hn::Sub(hn::And(b, hn::Set(d16, 15)), bias);
      v[j + kVecs / 2] = hn::Sub(hn::ShiftRight<4>(b), bias);
    }
  }
}

// Each activation row's sum of codes per `len` values (32, or Q2_K's 16), [K / len, m] (transposed,
// so one vector spans rows), padded so that a vector load from any row stays inside. Exact:
// |sum| <= 32 * 32767 < 2^24.
HWY_INLINE std::vector<float> BlockSums(const QuantActs& q, size_t m, size_t K,
                                        size_t len = kBlock) {
  const size_t blocks = K / len;
  std::vector<float> xsum(blocks * m + hn::MaxLanes(DF()));
  for (size_t r = 0; r < m; ++r) {
    for (size_t j = 0; j < blocks; ++j) {
      const int16_t* x = q.codes + r * K + len * j;
      int32_t s = 0;
      for (size_t l = 0; l < len; ++l) s += x[l];
      xsum[j * m + r] = static_cast<float>(s);
    }
  }
  return xsum;
}

// One NW x R tile of a block-dtype matmul.
struct QTile {
  const uint8_t* w;  // [NW, ldw bytes]
  size_t ldw;
  // Types with a min: per 32-value block the sum of each activation row's codes, transposed
  // ([K / 32, ldsum] from the tile's first row).
  const float* xsum = nullptr;
  size_t ldsum = 0;
  const int16_t* xq;  // [R, ldq] the tile's activation codes
  size_t ldq;
  const float* xscale;  // [R] their row scales
  size_t K;
  float* out;  // out[r * ldo + i]
  size_t ldo;
};

// The tile of activation rows from i and weight rows from n, over the prepared activations q;
// weight rows are ldw bytes apart (StorageBytes, computed once per call rather than per tile).
HWY_INLINE QTile TileAt(const MatMulRowsArgs& a, const QuantActs& q, size_t ldw, size_t i,
                        int64_t n) {
  const size_t K = static_cast<size_t>(a.w.cols);
  return {.w = static_cast<const uint8_t*>(a.w.data) + static_cast<size_t>(n) * ldw,
          .ldw = ldw,
          .xq = q.codes + i * K,
          .ldq = K,
          .xscale = q.scales + i,
          .K = K,
          .out = a.y + i * a.ldy + n,
          .ldo = a.ldy};
}

// A tile of NW weight rows x R activation rows. Every output is accumulated the same way whatever
// NW and R are: an exact int32 sum per block, then one f32 accumulator over the blocks in K order
// (acc += sum * d), a fixed lane reduction, and the row scale last. Types with a min (Q4_1, Q5_1)
// add m * (the block's sum of activation codes) to a scalar chain per output, in K order.
template <size_t NW, size_t R, DType kType>
HWY_NOINLINE void DotTileQ(const QTile& job) {
  const D16 d16;
  const D32 d32;
  const DQ df;
  constexpr size_t L = hn::MaxLanes(D16());
  constexpr size_t kBytes = DTypeSize(kType);
  constexpr bool kQ5 = kType == DType::kQ5_0 || kType == DType::kQ5_1;
  constexpr bool kMin = IsMinBlockType(kType);
  const size_t ldw = job.ldw;
  hn::Vec<DQ> acc[NW][R];  // constant indices only, as in DotTileBF16
  float mins[NW][R] = {};
#pragma GCC unroll 32
  for (size_t i = 0; i < NW; ++i) {
#pragma GCC unroll 32
    for (size_t r = 0; r < R; ++r) acc[i][r] = hn::Zero(df);
  }
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t k = 0; k < job.K; k += kBlock, w += kBytes) {
    for (size_t i = 0; i < NW; ++i) __builtin_prefetch(w + i * ldw + kPrefetchBytes, 0, 1);
    hn::Vec<DQ> scale[NW];
    hn::Vec<D16> wq[NW][kVecs];
    for (size_t i = 0; i < NW; ++i) {
      const uint8_t* block = w + i * ldw;
      scale[i] = LoadScale(df, block);
      LoadBlock<kType>(d16, kQ5 ? block : block + CodesOffset(kType), wq[i]);
      if constexpr (kMin) {
        uint16_t mh;
        std::memcpy(&mh, block + 2, 2);
        const float m = F16ToF32Fast(mh);
        const float* xs = job.xsum + (k / kBlock) * job.ldsum;
        for (size_t r = 0; r < R; ++r) mins[i][r] = std::fma(m, xs[r], mins[i][r]);
      }
    }
    for (size_t r = 0; r < R; ++r) {
      hn::Vec<D16> xv[kVecs];
      for (size_t j = 0; j < kVecs; ++j) xv[j] = hn::LoadU(d16, job.xq + r * job.ldq + k + j * L);
      for (size_t i = 0; i < NW; ++i) {
        auto s0 = hn::Zero(d32), s1 = hn::Zero(d32);
        for (size_t j = 0; j < kVecs; ++j)
          s0 = hn::ReorderWidenMulAccumulate(d32, wq[i][j], xv[j], s0, s1);
        acc[i][r] = hn::MulAdd(hn::ConvertTo(df, hn::Add(s0, s1)), scale[i], acc[i][r]);
      }
    }
  }
  ForEachIndex<R>([&](auto rc) HWY_ATTR {
    constexpr size_t r = decltype(rc)::value;
    float sums[4];
    SumColumn<NW>(df, acc[0][r], acc[NW > 1 ? 1 : 0][r], acc[NW > 2 ? 2 : 0][r],
                  acc[NW > 3 ? 3 : 0][r], sums);
#pragma GCC unroll 32
    for (size_t i = 0; i < NW; ++i)
      job.out[r * job.ldo + i] = (kMin ? sums[i] + mins[i][r] : sums[i]) * job.xscale[r];
  });
}

// Q6_K: per super-block of 256 values, 16 sub-blocks of 16 with their own scale d * sc[j].

// A super-block's 256 codes (-32..31) as int8 in value order. For half n (values 128n ..): byte
// ql[64n + l] holds value 128n + l in its low nibble and 128n + 64 + l in its high one (l < 64);
// byte qh[32n + l] holds the top two bits of values 128n + l, + 32, + 64, + 96 in bits 0-1, 2-3,
// 4-5, 6-7. Unpacking with byte vectors once per super-block, rather than widening ql and qh to
// 32-bit lanes and shifting them there for every 16 values, cut one-row decode's ops per value ~3x.
HWY_INLINE void UnpackQ6K(const uint8_t* HWY_RESTRICT w, int8_t* HWY_RESTRICT codes) {
  const hn::CappedTag<uint8_t, 32> d8;
  const hn::RebindToSigned<decltype(d8)> di8;
  const size_t L = hn::Lanes(d8);
  const auto m4 = hn::Set(d8, 0x0F), m2 = hn::Set(d8, 3), bias = hn::Set(d8, 32);
  for (size_t n = 0; n < 2; ++n) {
    const uint8_t* ql = w + 64 * n;
    const uint8_t* qh = w + 128 + 32 * n;
    int8_t* out = codes + 128 * n;
    for (size_t l = 0; l < 32; l += L) {
      const auto a = hn::LoadU(d8, ql + l), b = hn::LoadU(d8, ql + 32 + l);
      const auto h = hn::LoadU(d8, qh + l);
      const auto put = [&](size_t at, hn::Vec<decltype(d8)> low4, hn::Vec<decltype(d8)> high2)
                           HWY_ATTR {
                             // Wraps below 32: the int8 reading is the signed code.
                             const auto q = hn::Sub(hn::Or(low4, hn::ShiftLeft<4>(high2)), bias);
                             hn::StoreU(hn::BitCast(di8, q), di8, out + at + l);
                           };
      put(0, hn::And(a, m4), hn::And(h, m2));
      put(32, hn::And(b, m4), hn::And(hn::ShiftRight<2>(h), m2));
      put(64, hn::ShiftRight<4>(a), hn::And(hn::ShiftRight<4>(h), m2));
      put(96, hn::ShiftRight<4>(b), hn::ShiftRight<6>(h));
    }
  }
}

// The integer Q6_K dot product. Per super-block, each code is multiplied by its sub-block's int8
// scale in int16 (|32 * 128| <= 4096, exact) once per weight row, so a row's products need no
// per-sub-block work: int16 pairs summed to int32 (ReorderWidenMulAccumulate), converted to f32
// once per group of values and multiply-added with the super-block scale d, the activation row's
// scale last, as Q8_0 does. A group is 16 values per int32 lane (256 on AVX-512, a super-block):
// |sum| <= 16 * 4096 * 32767 < 2^31, so the int32 sums are exact.
using DQ6 = hn::CappedTag<int16_t, 32>;  // one or two sub-blocks per vector
using DQ6W = hn::Repartition<int32_t, DQ6>;
using DQ6F = hn::Rebind<float, DQ6W>;
constexpr size_t kQ6Group = std::min<size_t>(kSuperBlock, 16 * hn::MaxLanes(DQ6W()));

// A super-block's 256 values as int16 code * sub-block scale, in value order.
HWY_INLINE void ScaledCodesQ6K(const uint8_t* HWY_RESTRICT w, int16_t* HWY_RESTRICT scaled) {
  const DQ6 d16;
  const hn::Rebind<int8_t, DQ6> d8;
  const size_t L = hn::Lanes(d16);
  HWY_ALIGN int8_t codes[kSuperBlock];
  UnpackQ6K(w, codes);
  const auto* sc = reinterpret_cast<const int8_t*>(w + 192);
#if HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL
  // Two sub-blocks per vector: the 16 scales widened once, then one vpermw per vector picks
  // sub-block v/16's for lanes 0-15 and the next one's for 16-31 (broadcasting each scale from a
  // general register and joining the halves took ~3x the ops).
  const hn::Vec<DQ6> scales{_mm512_cvtepi8_epi16(
      _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc))))};
  auto idx = hn::ShiftRight<4>(hn::Iota(d16, 0));  // 0 in lanes 0-15, 1 in 16-31
  for (size_t v = 0; v < kSuperBlock; v += L, idx = hn::Add(idx, hn::Set(d16, 2))) {
    const hn::Vec<DQ6> scale{_mm512_permutexvar_epi16(idx.raw, scales.raw)};
    hn::Store(hn::Mul(hn::PromoteTo(d16, hn::Load(d8, codes + v)), scale), d16, scaled + v);
  }
#else
  for (size_t v = 0; v < kSuperBlock; v += L) {
    hn::Store(hn::Mul(hn::PromoteTo(d16, hn::Load(d8, codes + v)), hn::Set(d16, sc[v / 16])), d16,
              scaled + v);
  }
#endif
}

// IQ4_XS: a super-block's 256 values as int16 grid value * (ls_j - 32) (|127 * 32| = 4064, within
// Q6_K's bound), in value order. The grid lookup is scalar, as IQ4_NL's.
HWY_INLINE void ScaledCodesIQ4XS(const uint8_t* HWY_RESTRICT w, int16_t* HWY_RESTRICT scaled) {
  for (int j = 0; j < 8; ++j) {
    const int s = IQ4XSScale(w, j) - 32;
    const uint8_t* qs = w + 8 + 16 * j;
    int16_t* out = scaled + 32 * j;
    for (int l = 0; l < 16; ++l) {
      out[l] = static_cast<int16_t>(kIQ4Values[qs[l] & 15] * s);
      out[l + 16] = static_cast<int16_t>(kIQ4Values[qs[l] >> 4] * s);
    }
  }
}

// Q3_K and Q2_K keep 2-bit codes as Q6_K keeps its top two bits: byte qs[32 n + l] holds values
// 128 n + 32 j + l (l < 32) in bits 2j, 2j + 1. Sixteen values at a time share one sub-block scale.
using D16x16 = hn::CappedTag<int16_t, 16>;

// The 2-bit codes of values 128 n + 32 j + 16 h + l (l < 16) as int16 lanes from `at`.
HWY_INLINE hn::Vec<D16x16> Codes2(const uint8_t* HWY_RESTRICT qs, size_t n, int j, size_t h,
                                  size_t at) {
  const D16x16 d16;
  const auto b = hn::BitCast(
      d16, hn::PromoteTo(hn::RebindToUnsigned<D16x16>(),
                         hn::LoadU(hn::Rebind<uint8_t, D16x16>(), qs + 32 * n + 16 * h + at)));
  return hn::And(hn::ShiftRightSame(b, 2 * j), hn::Set(d16, 3));
}

// Q3_K: a super-block's 256 values as int16 (code - 4 unless its high bit is set) * (ls_s - 32),
// |4 * 32| = 128, in value order.
HWY_INLINE void ScaledCodesQ3K(const uint8_t* HWY_RESTRICT w, int16_t* HWY_RESTRICT scaled) {
  const D16x16 d16;
  const size_t L = hn::Lanes(d16);
  const auto one = hn::Set(d16, 1), four = hn::Set(d16, 4);
  for (size_t n = 0; n < 2; ++n) {
    for (int j = 0; j < 4; ++j) {
      for (size_t h = 0; h < 2; ++h) {
        const int s = static_cast<int>(8 * n) + 2 * j + static_cast<int>(h);
        const auto scale = hn::Set(d16, static_cast<int16_t>(Q3KScale(w + 96, s) - 32));
        for (size_t l = 0; l < 16; l += L) {
          const auto hb = hn::BitCast(
              d16, hn::PromoteTo(hn::RebindToUnsigned<D16x16>(),
                                 hn::LoadU(hn::Rebind<uint8_t, D16x16>(), w + 16 * h + l)));
          const auto high = hn::And(hn::ShiftRightSame(hb, static_cast<int>(4 * n) + j), one);
          const auto q = hn::Sub(hn::Add(Codes2(w + 32, n, j, h, l), hn::ShiftLeft<2>(high)), four);
          hn::StoreU(hn::Mul(q, scale), d16, scaled + 16 * s + l);
        }
      }
    }
  }
}

// acc[r] += d * (a super-block's scaled codes . row r's activation codes from k), summed in exact
// int32 groups of kQ6Group values. Shared by the k-quants.
template <size_t R>
HWY_INLINE void AccumulateScaled(const int16_t* HWY_RESTRICT scaled, const QTile& job, size_t k,
                                 hn::Vec<DQ6F> d, hn::Vec<DQ6F> (&acc)[R]) {
  const DQ6 d16;
  const DQ6W d32;
  const DQ6F df;
  const size_t L = hn::Lanes(d16);
  for (size_t g = 0; g < kSuperBlock; g += kQ6Group) {
    for (size_t r = 0; r < R; ++r) {
      const int16_t* x = job.xq + r * job.ldq + k + g;
      auto s0 = hn::Zero(d32), s1 = hn::Zero(d32);
      for (size_t v = 0; v < kQ6Group; v += L)
        s0 = hn::ReorderWidenMulAccumulate(d32, hn::Load(d16, scaled + g + v),
                                           hn::LoadU(d16, x + v), s0, s1);
      acc[r] = hn::MulAdd(hn::ConvertTo(df, hn::Add(s0, s1)), d, acc[r]);
    }
  }
}

// One weight row (job.w) against R activation rows: Q6_K, IQ4_XS or Q3_K (one scale d per
// super-block times int16 scaled codes).
template <DType kType, size_t R>
HWY_INLINE void DotGroupScaled(const QTile& job) {
  const DQ6F df;
  HWY_ALIGN int16_t scaled[kSuperBlock];
  hn::Vec<DQ6F> acc[R];
  for (size_t r = 0; r < R; ++r) acc[r] = hn::Zero(df);
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t k = 0; k < job.K; k += kSuperBlock, w += DTypeSize(kType)) {
    // Every line of the stream, kPrefetchBytes ahead (one prefetch per 210-byte super-block
    // missed a third of them).
    for (size_t b = 0; b < DTypeSize(kType); b += 64)
      __builtin_prefetch(w + kPrefetchBytes + b, 0, 1);
    uint16_t dh;
    if constexpr (kType == DType::kQ6_K) {
      ScaledCodesQ6K(w, scaled);
      std::memcpy(&dh, w + 208, 2);
    } else if constexpr (kType == DType::kQ3_K) {
      ScaledCodesQ3K(w, scaled);
      std::memcpy(&dh, w + 108, 2);
    } else {
      ScaledCodesIQ4XS(w, scaled);
      std::memcpy(&dh, w, 2);
    }
    const auto d = hn::Set(df, F16ToF32Fast(dh));
    AccumulateScaled<R>(scaled, job, k, d, acc);
  }
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = hn::GetLane(hn::SumOfLanes(df, acc[r])) * job.xscale[r];
}

// Activation rows per Q6_K group at most: each super-block is unpacked and scaled once per group,
// so larger groups (m cut into even groups, as TileRows cuts tiles) share that work more widely.
// AVX2 has too few registers for 16 accumulators.
constexpr size_t kQuantRows = kWideRegs ? 16 : 4;

// Q6_K, IQ4_XS and Q3_K.
template <DType kType>
void MatMulRowsScaled(const MatMulRowsArgs& a) {
  const size_t ldw = StorageBytes(a.w.dtype, a.w.cols);
  const QuantActs q = PrepareQuantActs(a);
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    for (size_t t = 0, i = 0; t < NumTiles(a.m, kQuantRows); ++t) {
      const size_t rows = TileRows(a.m, t, kQuantRows);
      const QTile job = TileAt(a, q, ldw, i, n);
      WithRowCount<kQuantRows>(rows, [&](auto r) HWY_ATTR { DotGroupScaled<kType, r()>(job); });
      i += rows;
    }
  }
}

// Q4_K: per super-block of 256 values, 8 sub-blocks of 32 with a 6-bit scale sc_j and min m_j:
// x = d sc_j q - dmin m_j. The scale term runs like Q6_K's (4-bit codes times sc_j in int16,
// |15 * 63| < 2^10, then the same exact int32 pair sums and one multiply-add with d per group). The
// min term needs only each sub-block's sum of activation codes (exact in f32: |32 * 32767| < 2^24),
// taken once per call for every row: per super-block and row, dmin * sum_j m_j * xsum_j by a fixed
// chain of f32 fmas, accumulated apart and subtracted at the end. With 4 or more rows the chains
// run across rows in vectors (8 FMAs per super-block for up to 16 rows, instead of a scalar chain
// per row); lane and scalar fma give the same bits, so a row's result does not depend on its
// group. The mins stay out of the vector accumulators: folded in, they go through memory (a
// store-forwarding stall). One-row decode is bound by the per-super-block work (8 scale/min
// decodes, 8 vectors unpacked and scaled), not by bandwidth (docs/architecture.md).

// Q5_K is Q4_K with a fifth code bit (bit j of qh[l] for value 32 j + l): codes up to 31, so
// |31 * 63| < 2^11 and the int32 group sums stay exact (16 * 1953 * 32767 < 2^31).

// Q2_K: 16 sub-blocks of 16 values, each with a 4-bit scale and min (x = d sc_s q - dmin m_s),
// 2-bit codes; run as Q4_K with twice the sub-blocks (|3 * 15| < 2^6).

// Sub-blocks per super-block of the scale-and-min types.
template <DType kType>
constexpr size_t kSubBlocks = kType == DType::kQ2_K ? 16 : 8;

// A super-block's 256 values as int16 code * sub-block scale, in value order; its mins into m.
template <DType kType>
HWY_INLINE void ScaledCodesScaleMin(const uint8_t* HWY_RESTRICT w, int16_t* HWY_RESTRICT scaled,
                                    int32_t* HWY_RESTRICT m) {
  if constexpr (kType == DType::kQ2_K) {
    const D16x16 d16;
    const size_t L = hn::Lanes(d16);
    for (size_t n = 0; n < 2; ++n) {
      for (int j = 0; j < 4; ++j) {
        for (size_t h = 0; h < 2; ++h) {
          const size_t s = 8 * n + 2 * static_cast<size_t>(j) + h;
          m[s] = w[s] >> 4;
          const auto scale = hn::Set(d16, static_cast<int16_t>(w[s] & 15));
          for (size_t l = 0; l < 16; l += L)
            hn::StoreU(hn::Mul(Codes2(w + 16, n, j, h, l), scale), d16, scaled + 16 * s + l);
        }
      }
    }
    return;
  }
  const DQ6 d16;
  const hn::RebindToUnsigned<DQ6> du16;
  const hn::Rebind<uint8_t, DQ6> d8;
  const size_t L = hn::Lanes(d16);
  const auto low = hn::Set(d16, 15), one = hn::Set(d16, 1);
  constexpr size_t kCodes = kType == DType::kQ5_K ? 48 : 16;  // Q5_K's qh[32] comes first
  for (int j = 0; j < 8; ++j) {
    int sc, mj;
    Q4KScaleMin(w + 4, j, &sc, &mj);
    m[j] = mj;
    const auto s = hn::Set(d16, static_cast<int16_t>(sc));
    const uint8_t* qs = w + kCodes + 32 * (j / 2);
    for (size_t l = 0; l < 32; l += L) {
      const auto b = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(d8, qs + l)));
      auto q = j % 2 ? hn::ShiftRight<4>(b) : hn::And(b, low);
      if constexpr (kType == DType::kQ5_K) {
        const auto h = hn::BitCast(d16, hn::PromoteTo(du16, hn::LoadU(d8, w + 16 + l)));
        q = hn::Or(q, hn::ShiftLeft<4>(hn::And(hn::ShiftRightSame(h, j), one)));
      }
      hn::Store(hn::Mul(q, s), d16, scaled + 32 * j + l);
    }
  }
}

// One weight row (job.w) against R activation rows. xsum holds the sub-block sums of activation
// codes transposed, [K / 32, ldsum] from the group's first row, so one vector spans the rows.
template <DType kType, size_t R>
HWY_INLINE void DotGroupScaleMin(const QTile& job, const float* HWY_RESTRICT xsum, size_t ldsum) {
  const DQ6F df;
  const size_t NF = hn::Lanes(df);
  HWY_ALIGN int16_t scaled[kSuperBlock];
  HWY_ALIGN float s2[kQuantRows + hn::MaxLanes(DQ6F())];
  constexpr size_t kSubs = kSubBlocks<kType>, kSubLen = kSuperBlock / kSubs;
  int32_t m[kSubs];
  hn::Vec<DQ6F> acc[R];
  float mins[R];
  for (size_t r = 0; r < R; ++r) {
    acc[r] = hn::Zero(df);
    mins[r] = 0.0f;
  }
  const uint8_t* HWY_RESTRICT w = job.w;
  for (size_t k = 0; k < job.K; k += kSuperBlock, w += DTypeSize(kType)) {
    for (size_t b = 0; b < DTypeSize(kType); b += 64)
      __builtin_prefetch(w + kPrefetchBytes + b, 0, 1);
    uint16_t dh, mh;
    const size_t at = kType == DType::kQ2_K ? 80 : 0;  // Q2_K keeps d and dmin last
    std::memcpy(&dh, w + at, 2);
    std::memcpy(&mh, w + at + 2, 2);
    const auto d = hn::Set(df, F16ToF32Fast(dh));
    ScaledCodesScaleMin<kType>(w, scaled, m);
    AccumulateScaled<R>(scaled, job, k, d, acc);
    // The min term's sums s2[r] = sum_j m_j * xsum[r][j] (fma chain in j order): across the rows
    // in vectors when there are enough of them, else per row; the same bits either way.
    const float* xs = xsum + (k / kSubLen) * ldsum;
    const float dmin = F16ToF32Fast(mh);
    if constexpr (R >= 4) {
      for (size_t r0 = 0; r0 < R; r0 += NF) {
        auto s = hn::Zero(df);
        for (size_t j = 0; j < kSubs; ++j)
          s = hn::MulAdd(hn::Set(df, static_cast<float>(m[j])), hn::LoadU(df, xs + j * ldsum + r0),
                         s);
        hn::Store(s, df, s2 + r0);
      }
      for (size_t r = 0; r < R; ++r) mins[r] = std::fma(dmin, s2[r], mins[r]);
    } else {
      for (size_t r = 0; r < R; ++r) {
        float s = 0.0f;
        for (size_t j = 0; j < kSubs; ++j)
          s = std::fma(static_cast<float>(m[j]), xs[j * ldsum + r], s);
        mins[r] = std::fma(dmin, s, mins[r]);
      }
    }
  }
  for (size_t r = 0; r < R; ++r)
    job.out[r * job.ldo] = (hn::GetLane(hn::SumOfLanes(df, acc[r])) - mins[r]) * job.xscale[r];
}

// Q4_K, Q5_K and Q2_K.
template <DType kType>
void MatMulRowsScaleMin(const MatMulRowsArgs& a) {
  const size_t ldw = StorageBytes(a.w.dtype, a.w.cols);
  const QuantActs q = PrepareQuantActs(a);
  const std::vector<float> xsum =
      BlockSums(q, a.m, static_cast<size_t>(a.w.cols), kSuperBlock / kSubBlocks<kType>);
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    for (size_t t = 0, i = 0; t < NumTiles(a.m, kQuantRows); ++t) {
      const size_t rows = TileRows(a.m, t, kQuantRows);
      const QTile job = TileAt(a, q, ldw, i, n);
      WithRowCount<kQuantRows>(
          rows, [&](auto r) HWY_ATTR { DotGroupScaleMin<kType, r()>(job, xsum.data() + i, a.m); });
      i += rows;
    }
  }
}

// Rows per tile on AVX-512: 4 x 6 (24 accumulators + 4 scales + 4 weights, one value reloaded)
// fills the 32 registers. AVX2 (16 registers, two code vectors per block and weight row) keeps
// 4 x 1.
constexpr size_t kMaxRowsQ = kWideRegs ? 6 : 1;

template <DType kType>
void MatMulRowsQ(const MatMulRowsArgs& a) {
  const size_t ldw = StorageBytes(a.w.dtype, a.w.cols);
  const QuantActs q = PrepareQuantActs(a);
  std::vector<float> xsum;
  if constexpr (IsMinBlockType(kType)) xsum = BlockSums(q, a.m, static_cast<size_t>(a.w.cols));
  ForEachTile(a, kMaxRowsQ, NoPanelStep, [&](auto nw, size_t rows, size_t i, int64_t n) HWY_ATTR {
    QTile tile = TileAt(a, q, ldw, i, n);
    if constexpr (IsMinBlockType(kType)) {
      tile.xsum = xsum.data() + i;
      tile.ldsum = a.m;
    }
    WithRowCount<kMaxRowsQ>(
        rows, [&](auto r) HWY_ATTR { DotTileQ<decltype(nw)::value, r(), kType>(tile); });
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_MATMUL_QUANT_INL_H_
