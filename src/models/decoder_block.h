// What the target's and the assistant's decoder layers share: the gated-GELU MLP and the
// norm-then-add that joins each sublayer's output to the residual stream. Every row is computed on
// its own, so a row's result does not depend on how many rows share the call.
#pragma once

#include <cstddef>
#include <vector>

#include "specula/base/thread_pool.h"
#include "specula/kernels/kernels.h"
#include "specula/kernels/ops.h"
#include "src/models/for_each_row.h"

namespace specula {

// out[t] = RMSNorm_w(in[t]) for rows t of width H (in-place allowed).
inline void NormRows(ThreadPool& pool, const float* in, const std::vector<float>& w, float eps,
                     size_t H, int rows, float* out) {
  ForEachRow(pool, rows, [&](int t) { RmsNorm(&in[t * H], w.data(), H, eps, &out[t * H]); });
}

// x[t] += RMSNorm_w(a[t]); a is normalised in place.
inline void AddNormedRows(ThreadPool& pool, float* a, const std::vector<float>& w, float eps,
                          size_t H, int rows, float* x) {
  ForEachRow(pool, rows, [&](int t) {
    float* at = &a[t * H];
    RmsNorm(at, w.data(), H, eps, at);
    for (size_t i = 0; i < H; ++i) x[t * H + i] += at[i];
  });
}

struct GatedMlpArgs {
  const MatView& gate;  // [ff, H]
  const MatView& up;    // [ff, H]
  const MatView& down;  // [H, ff]
  const float* in;      // [rows, H]
  int rows = 0;
  float* out;  // [rows, H]; may be `in` (read before it is written)
};

// out = down(gelu_tanh(gate in) * up in); g and u are the caller's [rows, ff] buffers.
inline void GatedMlp(const KernelTable& kt, ThreadPool& pool, const GatedMlpArgs& a,
                     std::vector<float>& g, std::vector<float>& u) {
  const size_t rows = static_cast<size_t>(a.rows), ff = static_cast<size_t>(a.gate.rows);
  g.resize(rows * ff);
  u.resize(rows * ff);
  const MatMulOut gate_up[] = {{a.gate, g.data()}, {a.up, u.data()}};
  MatMulShared(kt, pool, gate_up, a.in, rows);
  ForEachRow(pool, a.rows, [&](int t) { kt.gelu_mul(&g[t * ff], &u[t * ff], ff); });
  MatMul(kt, pool, a.down, g.data(), rows, a.out);
}

}  // namespace specula
