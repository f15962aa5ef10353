#include "specula/kernels/ops.h"

#include <cmath>

namespace specula {

void RmsNorm(const float* x, const float* w, size_t n, float eps, float* out) {
  // Sum of squares in double: cheap at these widths and insensitive to summation order.
  double ss = 0.0;
  for (size_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  if (w != nullptr) {
    for (size_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = x[i] * scale;
  }
}

float GeluTanh(float x) {
  constexpr float kAlpha = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(kAlpha * (x + 0.044715f * x * x * x)));
}

std::vector<float> RopeInvFreq(int head_dim, int rotated_pairs, double theta) {
  std::vector<float> inv(static_cast<size_t>(head_dim / 2), 0.0f);
  for (int j = 0; j < rotated_pairs && j < head_dim / 2; ++j) {
    // f32 like HF: 1 / theta^(2j/d) computed once, stored as float.
    inv[static_cast<size_t>(j)] =
        static_cast<float>(1.0 / std::pow(theta, (2.0 * j) / static_cast<double>(head_dim)));
  }
  return inv;
}

void RopeCosSin(int head_dim, const float* inv_freq, int pos, float* cos_sin) {
  const int half = head_dim / 2;
  for (int j = 0; j < half; ++j) {
    if (inv_freq[j] == 0.0f) {  // pass-through pair: cos 0 and sin 0, without calling them
      cos_sin[j] = 1.0f;
      cos_sin[half + j] = 0.0f;
      continue;
    }
    const float angle = static_cast<float>(pos) * inv_freq[j];  // f32 product, as HF
    cos_sin[j] = static_cast<float>(std::cos(static_cast<double>(angle)));
    cos_sin[half + j] = static_cast<float>(std::sin(static_cast<double>(angle)));
  }
}

void ApplyRopeTable(float* x, int head_dim, const float* inv_freq, const float* cos_sin) {
  const int half = head_dim / 2;
  for (int j = 0; j < half; ++j) {
    if (inv_freq[j] == 0.0f) continue;  // pass-through pair (proportional RoPE)
    const float c = cos_sin[j], s = cos_sin[half + j];
    const float a = x[j], b = x[j + half];
    x[j] = a * c - b * s;
    x[j + half] = b * c + a * s;
  }
}

void ApplyRope(float* x, int head_dim, const float* inv_freq, int pos) {
  const int half = head_dim / 2;
  for (int j = 0; j < half; ++j) {
    if (inv_freq[j] == 0.0f) continue;  // pass-through pair (proportional RoPE)
    const float angle = static_cast<float>(pos) * inv_freq[j];  // f32 product, as HF
    const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
    const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
    const float a = x[j], b = x[j + half];
    x[j] = a * c - b * s;
    x[j + half] = b * c + a * s;
  }
}

void SoftCap(float* logits, size_t n, float cap) {
  const float inv = 1.0f / cap;
  for (size_t i = 0; i < n; ++i) logits[i] = cap * std::tanh(logits[i] * inv);
}

}  // namespace specula
