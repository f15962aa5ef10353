// What the int8 kernels of every target share (matmul_int8-inl.h on x86, matmul_sdot-inl.h on
// ARM): activations quantized per super-block as llama.cpp's Q8_K, the tiles of one weight row
// against a group of activation rows, and the loop that walks them. Included once per SIMD target.
#if defined(SPECULA_KERNELS_ACTS8_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_ACTS8_INL_H_
#undef SPECULA_KERNELS_ACTS8_INL_H_
#else
#define SPECULA_KERNELS_ACTS8_INL_H_
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
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL || \
    HWY_TARGET == HWY_NEON
using D8 = hn::ScalableTag<uint8_t>;  // 16 bytes on NEON, 32 on AVX2, 64 on AVX-512
using DI8 = hn::RebindToSigned<D8>;
using DI16 = hn::Repartition<int16_t, D8>;
using DI32 = hn::Repartition<int32_t, D8>;
// 32-value sub-blocks per vector of codes (0 on NEON, whose vectors hold half of one).
constexpr size_t kHalves = hn::MaxLanes(D8()) / 32;

// A vector of 4 f32 lanes (the min term) as the low lanes of a full vector, zeros above.
HWY_INLINE hn::Vec<DF> WidenFour(hn::Vec<hn::CappedTag<float, 4>> v) {
#if HWY_TARGET == HWY_NEON
  return v;
#elif HWY_TARGET == HWY_AVX2
  return hn::ZeroExtendVector(DF(), v);
#else
  const hn::Half<DF> dh;
  return hn::ZeroExtendVector(DF(), hn::ZeroExtendVector(dh, v));
#endif
}

// The products a[i] * b[i] widened to int32 and summed in pairs or quads, lane order unspecified
// (only their total is used). ReorderWidenMulAccumulate leaves half the products in its second
// sum on some targets (NEON), so both sums are added.
template <class D32, class V16>
HWY_INLINE hn::Vec<D32> WidenMulSums(D32 d32, V16 a, V16 b) {
  auto sum1 = hn::Zero(d32);
  const auto sum0 = hn::ReorderWidenMulAccumulate(d32, a, b, hn::Zero(d32), sum1);
  return hn::Add(sum0, sum1);
}

// Asks for the weight super-block kPrefetchBytes ahead of w, each of its 64-byte lines.
template <DType kType>
HWY_INLINE void PrefetchAhead(const uint8_t* w) {
  for (size_t p = 0; p < DTypeSize(kType); p += 64)
    __builtin_prefetch(w + kPrefetchBytes + p, 0, 1);
}

// The f16 factor stored at byte `at` of a block, as f32.
HWY_INLINE float F16At(const uint8_t* w, size_t at) {
  uint16_t bits;
  std::memcpy(&bits, w + at, 2);
  return F16ToF32Fast(bits);
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
// values are stored as 32-value pieces 0, 2, 1, 3; on AVX2 (sub-blocks 2c, 2c + 1) and NEON in
// value order.
// A super-block holding inf or NaN gets scale NaN and zero codes, so the row's outputs are NaN as
// they would be in float.
// Every other kernel (x86's Q6_K, Q3_K, Q2_K and IQ4_XS; all of ARM's) takes the codes in value
// order; the types with one scale per 16 values take sums per 16 values (their sub-blocks).
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

// v >> bits in each byte, the bits shifted in from the next byte left above (callers mask them).
template <class D>
HWY_INLINE hn::Vec<D> ShiftBytes(D d, hn::Vec<D> v, int bits) {
  const hn::Repartition<uint16_t, D> d16;
  return hn::BitCast(d, hn::ShiftRightSame(hn::BitCast(d16, v), bits));
}

// Q3_K's 16 six-bit scales (0..63, before their bias of 32) from its 12 packed bytes, as bytes
// of 4 words (scale s in byte s % 4 of word s / 4): scale s takes its low 4 bits from byte s % 8
// (low nibble for s < 8, high for s >= 8) and its top 2 bits from byte 8 + s % 4 (bits 2 (s / 4)
// and up). Worked in general registers, 4 scales per word.
HWY_INLINE void ScalesQ3KWords(const uint8_t* p, uint32_t v[4]) {
  uint32_t u[3];
  std::memcpy(u, p, 12);
  for (uint32_t q = 0; q < 4; ++q) {
    const uint32_t low = (q < 2 ? u[q] : u[q - 2] >> 4) & 0x0f0f0f0fu;
    v[q] = low | ((u[2] >> (2 * q)) & 0x03030303u) << 4;
  }
}

// IQ4_XS's 8 six-bit sub-block scales (before their bias of 32), byte j for sub-block j: the low
// 4 bits are nibble j of the 4 bytes at block + 4, the top 2 bits are bits 2 j, 2 j + 1 of the
// 16-bit word at block + 2. Spread with shifts and masks in a general register (no pdep: it is
// microcoded on AMD before Zen 3).
HWY_INLINE uint64_t ScalesIQ4XS(const uint8_t* block) {
  uint32_t low_bits;
  uint16_t high_bits;
  std::memcpy(&low_bits, block + 4, 4);
  std::memcpy(&high_bits, block + 2, 2);
  uint64_t lo = low_bits;  // 8 nibbles -> the low nibbles of 8 bytes
  lo = (lo | lo << 16) & 0x0000FFFF0000FFFFull;
  lo = (lo | lo << 8) & 0x00FF00FF00FF00FFull;
  lo = (lo | lo << 4) & 0x0F0F0F0F0F0F0F0Full;
  uint64_t hi = high_bits;  // 8 pairs of bits -> bits 0-1 of 8 bytes
  hi = (hi | hi << 24) & 0x000000FF000000FFull;
  hi = (hi | hi << 12) & 0x000F000F000F000Full;
  hi = (hi | hi << 6) & 0x0303030303030303ull;
  return lo | hi << 4;
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

// Activation rows per group: each super-block is unpacked once per group. Each row holds three
// vectors (two f32 chains and the super-block's int32 sum): 8 rows fill AVX-512's 32 registers
// beside the codes and scales, 4 rows are what AVX2's 16 allow. NEON's 32 registers hold a
// quarter of the codes that AVX-512's do, so a super-block's unpacked codes take 8 of them (Q4_K,
// Q6_K per half) beside the rows' 12 at 4 rows.
constexpr size_t kRows8 = HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL ? 8 : 4;

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
#endif

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_ACTS8_INL_H_
