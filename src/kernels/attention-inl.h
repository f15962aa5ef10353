// Grouped attention over a KV cache: softmax(q · K^T) V for every query head that shares one KV
// head (GQA) and every query row of a call, reading each key and value row once for all of them.
// Included by matmul.cc once per SIMD target, after tiles-inl.h.
#if defined(SPECULA_KERNELS_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SPECULA_KERNELS_ATTENTION_INL_H_
#undef SPECULA_KERNELS_ATTENTION_INL_H_
#else
#define SPECULA_KERNELS_ATTENTION_INL_H_
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "hwy/highway.h"
#include "specula/kernels/kernels.h"
#include "src/kernels/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace specula {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Calls fn(k, v, ld, j, n) for the pieces of key indices [a, b) that lie in one run each: rows
// j .. j+n-1 of the key index space start at k and v, ld floats apart.
template <class Fn>
HWY_INLINE void ForEachRunPiece(std::span<const KvRun> runs, size_t a, size_t b, const Fn& fn) {
  size_t base = 0;
  for (const KvRun& run : runs) {
    const size_t lo = std::max(a, base), hi = std::min(b, base + run.n);
    if (lo < hi)
      fn(run.k + (lo - base) * run.ld, run.v + (lo - base) * run.ld, run.ld, lo, hi - lo);
    base += run.n;
  }
}

// Key tiles of 4 keys x up to kMaxRows query vectors: every score is DotTile's, so it has the bits
// `dot` gives (one accumulator in head_dim order, the same lane reduction) whatever the tiling.
HWY_INLINE void Scores(const AttentionArgs& a, const float* qv, size_t nq, size_t lo, size_t n,
                       float* s) {
  const size_t hd = a.head_dim;
  ForEachRunPiece(a.runs, lo, lo + n,
                  [&](const float* k, const float*, size_t ld, size_t j, size_t cnt) HWY_ATTR {
                    for (size_t i = 0, t = 0; t < NumTiles(nq); ++t) {
                      const size_t rows = TileRows(nq, t);
                      float* out = s + i * n + (j - lo);
                      size_t c = 0;
                      for (; c + kTileWeights <= cnt; c += kTileWeights)
                        DotTileTail<kTileWeights, kMaxRows>(rows, k + c * ld, ld, qv + i * hd, hd,
                                                            hd, out + c, n);
                      for (; c < cnt; ++c)
                        DotTileTail<1, kMaxRows>(rows, k + c * ld, ld, qv + i * hd, hd, hd, out + c,
                                                 n);
                      i += rows;
                    }
                  });
}

// out[r] = scale[r] * sum over j in [first[r], last[r]] of p[r][j] * V[j], for R vectors at once:
// one value load feeds R FMAs. Each output element is one accumulator over its own keys in
// ascending order (the keys all R rows see are shared; the others are added alone, before and
// after), so a vector gets the same bits in any group.
struct ValueRows {
  const float* p;  // p[j - key0]: the vector's softmax numerator for key j
  size_t first, last;
  float scale;
  float* out;  // [head_dim]
};

// Head-dim values [c, c + CB * lanes) of R vectors: CB vectors of each value row per key, so one
// pass over the keys reads CB adjacent lines of every row, which the hardware prefetchers stream
// far better than one line per pass (BM_Attention measures both). Key-outer order, adding each
// value row into outputs kept in L1, would cost a load and a store per FMA.
template <size_t R, size_t CB>
HWY_INLINE void ValueBlock(std::span<const KvRun> runs, size_t key0, const ValueRows* rows,
                           size_t clo, size_t chi, bool common, size_t c) {
  const DF df;
  const size_t N = hn::Lanes(df);
  hn::Vec<DF> acc[R][CB];
  for (size_t r = 0; r < R; ++r) {
    for (size_t b = 0; b < CB; ++b) acc[r][b] = hn::Zero(df);
  }
  auto alone = [&](size_t r, size_t a, size_t e_end) HWY_ATTR {  // row r over keys [a, e_end)
    ForEachRunPiece(runs, a, e_end,
                    [&](const float*, const float* v, size_t ld, size_t j, size_t cnt) HWY_ATTR {
                      for (size_t e = 0; e < cnt; ++e) {
                        const auto p = hn::Set(df, rows[r].p[j + e - key0]);
                        for (size_t b = 0; b < CB; ++b)
                          acc[r][b] =
                              hn::MulAdd(p, hn::LoadU(df, v + e * ld + c + b * N), acc[r][b]);
                      }
                    });
  };
  for (size_t r = 0; r < R; ++r) alone(r, rows[r].first, common ? clo : rows[r].last + 1);
  if (common) {
    ForEachRunPiece(runs, clo, chi + 1,
                    [&](const float*, const float* v, size_t ld, size_t j, size_t cnt) HWY_ATTR {
                      for (size_t e = 0; e < cnt; ++e) {
                        hn::Vec<DF> vv[CB];
                        for (size_t b = 0; b < CB; ++b)
                          vv[b] = hn::LoadU(df, v + e * ld + c + b * N);
                        for (size_t r = 0; r < R; ++r) {
                          const auto p = hn::Set(df, rows[r].p[j + e - key0]);
                          for (size_t b = 0; b < CB; ++b)
                            acc[r][b] = hn::MulAdd(p, vv[b], acc[r][b]);
                        }
                      }
                    });
    for (size_t r = 0; r < R; ++r) alone(r, chi + 1, rows[r].last + 1);
  }
  for (size_t r = 0; r < R; ++r) {
    for (size_t b = 0; b < CB; ++b)
      hn::StoreU(hn::Mul(acc[r][b], hn::Set(df, rows[r].scale)), df, rows[r].out + c + b * N);
  }
}

template <size_t R>
HWY_NOINLINE void WeightedValues(std::span<const KvRun> runs, size_t hd, size_t key0,
                                 const ValueRows* rows) {
  const size_t N = hn::Lanes(DF());
  size_t clo = rows[0].first, chi = rows[0].last;  // keys every row sees: [clo, chi]
  for (size_t r = 1; r < R; ++r) {
    clo = std::max(clo, rows[r].first);
    chi = std::min(chi, rows[r].last);
  }
  const bool common = clo <= chi;
  constexpr size_t kBlock = 4;
  size_t c = 0;
  for (; c + kBlock * N <= hd; c += kBlock * N)
    ValueBlock<R, kBlock>(runs, key0, rows, clo, chi, common, c);
  for (; c + N <= hd; c += N) ValueBlock<R, 1>(runs, key0, rows, clo, chi, common, c);
  for (; c < hd; ++c) {  // head_dim % lanes: each element alone, fused like the vector lanes
    for (size_t r = 0; r < R; ++r) {
      float acc = 0.0f;
      ForEachRunPiece(runs, rows[r].first, rows[r].last + 1,
                      [&](const float*, const float* v, size_t ld, size_t j, size_t cnt) {
                        for (size_t e = 0; e < cnt; ++e)
                          acc = std::fma(rows[r].p[j + e - key0], v[e * ld + c], acc);
                      });
      rows[r].out[c] = acc * rows[r].scale;
    }
  }
}

// Value tiles of up to 4 vectors (AVX2: 2), from the rows' own key ranges.
constexpr size_t kValueRows = kWideRegs ? 4 : 2;

void Attention(const AttentionArgs& a) {
  const size_t hd = a.head_dim, nq = a.rows * a.heads;
  if (nq == 0) return;
  // Query vector i = t * heads + h, gathered contiguously so score tiles can span rows.
  float* qv = a.scratch;
  size_t lo = static_cast<size_t>(a.first[0]), hi = static_cast<size_t>(a.last[0]);
  for (size_t t = 0; t < a.rows; ++t) {
    for (size_t h = 0; h < a.heads; ++h)
      std::copy_n(a.q + t * a.ldq + h * hd, hd, qv + (t * a.heads + h) * hd);
    lo = std::min(lo, static_cast<size_t>(a.first[t]));
    hi = std::max(hi, static_cast<size_t>(a.last[t]));
  }
  // s[i, j - lo] for the union [lo, hi] of the rows' key ranges (a few keys are scored and never
  // used: a causal row's later keys, a sliding row's earlier ones).
  const size_t n = hi - lo + 1;
  float* s = qv + nq * hd;
  Scores(a, qv, nq, lo, n, s);
  // Softmax numerators per vector over its own keys, in key order (max, exp, sum, as a scalar loop
  // would); the division is left to the output.
  for (size_t i = 0; i < nq;) {
    const size_t rows = std::min(kValueRows, nq - i);
    ValueRows vr[kValueRows];
    for (size_t r = 0; r < rows; ++r, ++i) {
      const size_t t = i / a.heads, h = i % a.heads;
      float* si = s + i * n;  // si[j - lo] for key j
      const size_t f = static_cast<size_t>(a.first[t]) - lo,
                   l = static_cast<size_t>(a.last[t]) - lo;
      float mx = -INFINITY;
      float sum = 0.0f;
      if (a.visible == nullptr) {
        for (size_t j = f; j <= l; ++j) mx = std::max(mx, si[j]);
        for (size_t j = f; j <= l; ++j) sum += (si[j] = std::exp(si[j] - mx));
      } else {
        // A hidden key's numerator is 0: it adds +0 to the sum and 0 * v to each output.
        const uint8_t* vis = a.visible + t * a.tree_keys;
        const auto seen = [&](size_t j) {
          const size_t key = j + lo;
          return key < a.tree_key0 || key >= a.tree_key0 + a.tree_keys || vis[key - a.tree_key0];
        };
        for (size_t j = f; j <= l; ++j) {
          if (seen(j)) mx = std::max(mx, si[j]);
        }
        for (size_t j = f; j <= l; ++j) sum += (si[j] = seen(j) ? std::exp(si[j] - mx) : 0.0f);
      }
      vr[r] = {.p = si,
               .first = f + lo,
               .last = l + lo,
               .scale = 1.0f / sum,
               .out = a.o + t * a.ldo + h * hd};
    }
    WithRowCount<kValueRows>(rows,
                             [&](auto r) HWY_ATTR { WeightedValues<r()>(a.runs, hd, lo, vr); });
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace specula
HWY_AFTER_NAMESPACE();

#endif  // SPECULA_KERNELS_ATTENTION_INL_H_
