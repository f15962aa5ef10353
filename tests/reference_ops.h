// Double-precision building blocks shared by the naive references (target and assistant).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/kernels/kernels.h"

namespace specula::test {

using VecD = std::vector<double>;

// RMSNorm with a plain weight (none when w is null).
inline VecD Rms(const VecD& x, const VecD* w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double s = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  VecD y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * (w ? (*w)[i] : 1.0);
  return y;
}

inline double Gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// Rotate-half RoPE on x[d]: pairs (j, j + d/2) for j < n_rot rotate by pos * theta^(-2j/d), with
// the frequency and angle rounded to f32 as HF computes them; the rest pass through.
inline void Rope(double* x, int d, int n_rot, double theta, int pos) {
  for (int j = 0; j < n_rot; ++j) {
    const double inv = static_cast<double>(static_cast<float>(1.0 / std::pow(theta, 2.0 * j / d)));
    const double a = static_cast<double>(static_cast<float>(pos) * static_cast<float>(inv));
    const double x1 = x[j], x2 = x[j + d / 2];
    x[j] = x1 * std::cos(a) - x2 * std::sin(a);
    x[j + d / 2] = x2 * std::cos(a) + x1 * std::sin(a);
  }
}

// The kernels quantize each activation row for block-dtype weights (KernelTable::act_quant) to
// int16 codes with one scale per row, s = max|x| / 32767, or to int8 codes with one scale per 256
// values, s = max|x| / 127 over them; q = x * (1 / s as the kernel computes it) rounded to nearest
// even. Written out naively here; scale[k] is value k's. kernels_test holds the kernels to it
// exactly.
struct QuantRow {
  VecD q;
  VecD scale;
};
inline QuantRow QuantizeActRow(const float* x, size_t K, ActQuant how) {
  const size_t span = how == ActQuant::kInt8SuperBlock ? 256 : K;
  const float top = how == ActQuant::kInt8SuperBlock ? 127.0f : 32767.0f;
  QuantRow r{VecD(K), VecD(K)};
  for (size_t b = 0; b < K; b += span) {
    const size_t end = std::min(K, b + span);
    float amax = 0.0f;
    for (size_t k = b; k < end; ++k) amax = std::max(amax, std::fabs(x[k]));
    float inv = top / amax;  // 0 for an all-zero block, or one too small for the factor
    if (!(inv <= std::numeric_limits<float>::max())) inv = 0.0f;
    for (size_t k = b; k < end; ++k) {
      r.q[k] = std::nearbyint(x[k] * inv);
      r.scale[k] = static_cast<double>(amax / top);
    }
  }
  return r;
}

// x as the engine's matmul sees it for weights of dtype t: where the kernels quantize activations
// to int8 codes per 256 values, the reference rounds x the same way, since that rounding is a
// sizeable part of what 4-bit weights move a tiny model. Int16 codes per row (the other rule) are
// left out: 15 bits err far less than the f32 arithmetic the reference is compared with.
inline VecD AsMatMulInput(DType t, const VecD& x) {
  if (!IsBlockType(t) || BestKernels().act_quant(t) != ActQuant::kInt8SuperBlock) return x;
  const std::vector<float> xf(x.begin(), x.end());
  const QuantRow r = QuantizeActRow(xf.data(), xf.size(), ActQuant::kInt8SuperBlock);
  VecD q(x.size());
  for (size_t k = 0; k < q.size(); ++k) q[k] = r.q[k] * r.scale[k];
  return q;
}

}  // namespace specula::test
