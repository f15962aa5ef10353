// Matmul kernels for the GGUF block dtypes (Q8_0, Q4_0, Q6_K). Included by matmul.cc once per SIMD
// target, after tiles-inl.h.
#if defined(SPECULA_KERNELS_MATMUL_QUANT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_MATMUL_QUANT_INL_H_
#undef SPECULA_KERNELS_MATMUL_QUANT_INL_H_
#else
#define SPECULA_KERNELS_MATMUL_QUANT_INL_H_
#endif

#include <cstring>

#include "hwy/highway.h"
#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

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

// The f16 scale at p, broadcast as f32 (one vector conversion instead of scalar bit work).
HWY_INLINE hn::Vec<DQ> LoadScale(DQ d, const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  const hn::Rebind<uint16_t, DQ> du16;
  return hn::PromoteTo(d, hn::BitCast(hn::Rebind<hwy::float16_t, DQ>(), hn::Set(du16, bits)));
}

// A tile of NW weight rows (row stride ldw bytes) x R activation rows over 32-blocks. Per block
// each weight vector is dequantized once (d * q, exactly the stored value) and fed to all R rows;
// the NW rows give the FMAs independent chains (one row alone waits on its own FMA latency, which
// held one-row Q8_0 decode at ~65% of the memory roofline). Every output is accumulated the same
// way whatever NW and R are: one accumulator over the blocks' vectors in K order.
template <size_t NW, size_t R, DType kType>
HWY_NOINLINE void DotTileQ(const uint8_t* HWY_RESTRICT w, size_t ldw, const float* HWY_RESTRICT x,
                           size_t ldx, size_t K, float* out, size_t ldo) {
  const DQ d;
  const size_t N = hn::Lanes(d);
  constexpr size_t kBytes = DTypeSize(kType);
  hn::Vec<DQ> acc[NW][R];
  for (size_t i = 0; i < NW; ++i) {
    for (size_t r = 0; r < R; ++r) acc[i][r] = hn::Zero(d);
  }
  for (size_t k = 0; k < K; k += kQuantBlock, w += kBytes) {
    for (size_t i = 0; i < NW; ++i) __builtin_prefetch(w + i * ldw + kPrefetchBytes, 0, 1);
    hn::Vec<DQ> scale[NW];
    for (size_t i = 0; i < NW; ++i) scale[i] = LoadScale(d, w + i * ldw);
    if constexpr (kType == DType::kQ8_0) {
      for (size_t s = 0; s < kQuantBlock; s += N) {
        hn::Vec<DQ> wq[NW];
        for (size_t i = 0; i < NW; ++i) wq[i] = hn::Mul(LoadQ8(d, w + i * ldw + 2 + s), scale[i]);
        for (size_t r = 0; r < R; ++r) {
          const auto xv = hn::LoadU(d, x + r * ldx + k + s);
          for (size_t i = 0; i < NW; ++i) acc[i][r] = hn::MulAdd(wq[i], xv, acc[i][r]);
        }
      }
    } else {
      for (size_t s = 0; s < kQuantBlock / 2; s += N) {
        for (size_t half = 0; half < 2; ++half) {
          hn::Vec<DQ> wq[NW];
          for (size_t i = 0; i < NW; ++i) {
            hn::Vec<DQ> lo, hi;
            LoadQ4(d, w + i * ldw + 2 + s, &lo, &hi);
            wq[i] = hn::Mul(half == 0 ? lo : hi, scale[i]);
          }
          for (size_t r = 0; r < R; ++r) {
            const auto xv = hn::LoadU(d, x + r * ldx + k + half * 16 + s);
            for (size_t i = 0; i < NW; ++i) acc[i][r] = hn::MulAdd(wq[i], xv, acc[i][r]);
          }
        }
      }
    }
  }
  for (size_t r = 0; r < R; ++r) {
    float sums[4];
    SumColumn(d, acc, r, sums);
    for (size_t i = 0; i < NW; ++i) out[r * ldo + i] = sums[i];
  }
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

// Activation rows per Q6_K group (groups of 6 and 8 measured no faster on 8 and 64 rows).
constexpr size_t kQuantRows = 4;

template <size_t R>
HWY_INLINE void DotGroupTail(size_t rem, const uint8_t* w, const float* x, size_t ldx, size_t K,
                             float* out, size_t ldo) {
  if constexpr (R > 0) {
    if (rem == R) return DotGroupQ6K<R>(w, x, ldx, K, out, ldo);
    DotGroupTail<R - 1>(rem, w, x, ldx, K, out, ldo);
  }
}

void MatMulRowsQ6K(const MatMulRowsArgs& a) {
  const size_t K = static_cast<size_t>(a.w.cols);
  for (int64_t n = a.n_begin; n < a.n_end; ++n) {
    const auto* wr = static_cast<const uint8_t*>(a.w.Row(n));
    // Rows in groups of kQuantRows, then one group of the rest: every block is dequantized once
    // per group.
    size_t i = 0;
    for (; i + kQuantRows <= a.m; i += kQuantRows) {
      DotGroupQ6K<kQuantRows>(wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n, a.ldy);
    }
    DotGroupTail<kQuantRows - 1>(a.m - i, wr, a.x + i * a.ldx, a.ldx, K, a.y + i * a.ldy + n,
                                 a.ldy);
  }
}

// Rows per 32-block tile: 4 x 5 uses 20 accumulators + 4 scales + 4 weights + 1 activation of
// AVX-512's 32 registers; AVX2's 16 leave room for 4 x 1.
constexpr size_t kMaxRowsQ = kWideRegs ? 5 : 1;

template <size_t NW, size_t R, DType kType>
HWY_INLINE void DotTileQTail(size_t rows, const uint8_t* w, size_t ldw, const float* x, size_t ldx,
                             size_t K, float* out, size_t ldo) {
  if constexpr (R > 0) {
    if (rows == R) return DotTileQ<NW, R, kType>(w, ldw, x, ldx, K, out, ldo);
    DotTileQTail<NW, R - 1, kType>(rows, w, ldw, x, ldx, K, out, ldo);
  }
}

// In panels of kPanel weight rows like MatMulRowsBF16, so the activations are not re-streamed
// per weight tile.
template <DType kType>
void MatMulRowsQ(const MatMulRowsArgs& a) {
  const size_t K = static_cast<size_t>(a.w.cols);
  const size_t ldw = StorageBytes(a.w.dtype, a.w.cols);
  const size_t tiles = (a.m + kMaxRowsQ - 1) / kMaxRowsQ;
  for (int64_t p = a.n_begin; p < a.n_end; p += kPanel) {
    const int64_t pe = std::min<int64_t>(a.n_end, p + kPanel);
    for (size_t t = 0, i = 0; t < tiles; ++t) {
      const size_t rows = a.m / tiles + (t < a.m % tiles ? 1 : 0);
      const float* x = a.x + i * a.ldx;
      int64_t n = p;
      for (; n + static_cast<int64_t>(kTileWeights) <= pe; n += kTileWeights) {
        DotTileQTail<kTileWeights, kMaxRowsQ, kType>(rows, static_cast<const uint8_t*>(a.w.Row(n)),
                                                     ldw, x, a.ldx, K, a.y + i * a.ldy + n, a.ldy);
      }
      for (; n < pe; ++n) {
        DotTileQTail<1, kMaxRowsQ, kType>(rows, static_cast<const uint8_t*>(a.w.Row(n)), ldw, x,
                                          a.ldx, K, a.y + i * a.ldy + n, a.ldy);
      }
      i += rows;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_MATMUL_QUANT_INL_H_
