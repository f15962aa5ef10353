// Per-row elementwise and normalisation ops. They are O(width) per row, so a plain loop is fast
// enough; each is written to give the same result for a row whatever else is in the batch.
#pragma once

#include <cstddef>
#include <vector>

namespace specula {

// out = x * (mean(x^2) + eps)^-1/2 * w  (w == nullptr: no weight). Plain w, not (1 + w): Gemma 4.
// In-place allowed (out == x).
void RmsNorm(const float* x, const float* w, size_t n, float eps, float* out);

// gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
float GeluTanh(float x);

// RoPE inverse frequencies for one layer type. `rotated_pairs` of the `head_dim / 2` pairs rotate
// with inv_freq[j] = theta^(-2j / head_dim); the rest get 0 (identity). Gemma 4 full layers use
// head_dim 512 with 64 rotated pairs ("proportional"); sliding layers rotate all 128 of 256.
std::vector<float> RopeInvFreq(int head_dim, int rotated_pairs, double theta);

// Rotate-half (NeoX) RoPE on one head vector x[head_dim] at absolute position `pos`:
// pairs (j, j + head_dim/2). In place.
void ApplyRope(float* x, int head_dim, const float* inv_freq, int pos);

// The same rotation from a table: RopeCosSin fills cos_sin[head_dim] (head_dim/2 cosines, then
// the sines) for one position once, and every head at that position reuses it, so the
// double-precision sin/cos are evaluated once per row and layer type rather than once per head;
// the result has ApplyRope's bits.
void RopeCosSin(int head_dim, const float* inv_freq, int pos, float* cos_sin);
void ApplyRopeTable(float* x, int head_dim, const float* inv_freq, const float* cos_sin);

// logits = cap * tanh(logits / cap), cap > 0.
void SoftCap(float* logits, size_t n, float cap);

}  // namespace specula
