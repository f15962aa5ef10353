#include "src/models/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "specula/kernels/ops.h"
#include "src/models/for_each_row.h"

namespace specula {

namespace {

// Matrix e of a stack of `experts` equal matrices stored as one [experts * rows, cols].
MatView Slice(const MatView& stack, int experts, int e) {
  const int64_t rows = stack.rows / experts;
  return {stack.dtype, stack.Row(e * rows), rows, stack.cols};
}

}  // namespace

MatView MoeWeights::GateUp(int e) const { return Slice(gate_up, experts, e); }
MatView MoeWeights::Gate(int e) const { return Slice(gate, experts, e); }
MatView MoeWeights::Up(int e) const { return Slice(up, experts, e); }
MatView MoeWeights::Down(int e) const { return Slice(down, experts, e); }

void RouteExperts(const KernelTable& kt, ThreadPool& pool, const MoeWeights& w, const float* r,
                  int T, int H, float eps, MoeScratch* s, Routing* routing) {
  const size_t uH = static_cast<size_t>(H), E = static_cast<size_t>(w.experts);
  const size_t k = static_cast<size_t>(w.top_k);
  const float inv_sqrt_h = 1.0f / std::sqrt(static_cast<float>(H));
  s->z.resize(static_cast<size_t>(T) * uH);
  ForEachRow(pool, T, [&](int t) {
    float* z = &s->z[static_cast<size_t>(t) * uH];
    RmsNorm(r + static_cast<size_t>(t) * uH, nullptr, uH, eps, z);
    for (size_t i = 0; i < uH; ++i) z[i] = z[i] * w.router_scale[i] * inv_sqrt_h;
  });
  s->scores.resize(static_cast<size_t>(T) * E);
  MatMul(kt, pool, w.router, s->z.data(), static_cast<size_t>(T), s->scores.data());
  routing->top_k = w.top_k;
  routing->expert.resize(static_cast<size_t>(T) * k);
  routing->weight.resize(static_cast<size_t>(T) * k);
  ForEachRow(pool, T, [&](int t) {
    float* p = &s->scores[static_cast<size_t>(t) * E];
    const float max = *std::max_element(p, p + E);
    float sum = 0.0f;
    for (size_t e = 0; e < E; ++e) sum += (p[e] = std::exp(p[e] - max));
    for (size_t e = 0; e < E; ++e) p[e] /= sum;
    // The k most probable experts; equal probabilities go to the lower index.
    int* top = &routing->expert[static_cast<size_t>(t) * k];
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + static_cast<long>(k), order.end(),
                      [&](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    std::copy_n(order.begin(), k, top);
    float kept = 0.0f;
    for (size_t j = 0; j < k; ++j) kept += p[top[j]];
    float* weight = &routing->weight[static_cast<size_t>(t) * k];
    for (size_t j = 0; j < k; ++j)
      weight[j] = p[top[j]] / kept * w.per_expert_scale[static_cast<size_t>(top[j])];
  });
}

int RunExperts(const KernelTable& kt, ThreadPool& pool, const MoeWeights& w, const Routing& routing,
               const float* x, int T, int H, MoeScratch* s, float* y) {
  const size_t uH = static_cast<size_t>(H), k = static_cast<size_t>(routing.top_k);
  const size_t F = static_cast<size_t>(w.width), n = static_cast<size_t>(T) * k;
  // Group the (row, rank) pairs by expert, experts in index order, rows in order within one.
  s->count.assign(static_cast<size_t>(w.experts), 0);
  for (size_t i = 0; i < n; ++i) ++s->count[static_cast<size_t>(routing.expert[i])];
  s->first.resize(s->count.size());
  int distinct = 0;
  for (size_t e = 0, at = 0; e < s->count.size(); ++e) {
    s->first[e] = static_cast<int>(at);
    at += static_cast<size_t>(s->count[e]);
    distinct += s->count[e] > 0;
  }
  s->slot.resize(n);
  std::vector<int> next = s->first;
  for (size_t i = 0; i < n; ++i) s->slot[i] = next[static_cast<size_t>(routing.expert[i])]++;
  s->in.resize(n * uH);
  for (size_t i = 0; i < n; ++i) {
    std::copy_n(x + (i / k) * uH, uH, &s->in[static_cast<size_t>(s->slot[i]) * uH]);
  }

  // gate/up of every selected expert over its rows in one dispatch, then down likewise. Row i's
  // gate and up outputs sit at gate + i * ld and up + i * ld: interleaved in one [n, 2F] block when
  // the projections are fused, in two [n, F] blocks when they are not.
  const bool fused = w.fused();
  const size_t ld = fused ? 2 * F : F;
  s->hidden.resize(n * 2 * F);
  float* gate = s->hidden.data();
  float* up = fused ? gate + F : gate + n * F;
  s->out.resize(n * uH);
  s->jobs.clear();
  for (size_t e = 0; e < s->count.size(); ++e) {
    if (s->count[e] == 0) continue;
    const size_t first = static_cast<size_t>(s->first[e]);
    const auto m = static_cast<size_t>(s->count[e]);
    const float* in = &s->in[first * uH];
    const int ei = static_cast<int>(e);
    if (fused) {
      s->jobs.push_back({.w = w.GateUp(ei), .x = in, .ldx = uH, .m = m, .y = gate + first * ld});
    } else {
      s->jobs.push_back({.w = w.Gate(ei), .x = in, .ldx = uH, .m = m, .y = gate + first * ld});
      s->jobs.push_back({.w = w.Up(ei), .x = in, .ldx = uH, .m = m, .y = up + first * ld});
    }
  }
  MatMulGrouped(kt, pool, s->jobs);
  ForEachRow(pool, static_cast<int>(n), [&](int i) {
    kt.gelu_mul(gate + static_cast<size_t>(i) * ld, up + static_cast<size_t>(i) * ld, F);
  });
  s->jobs.clear();
  for (size_t e = 0; e < s->count.size(); ++e) {
    if (s->count[e] == 0) continue;
    const size_t first = static_cast<size_t>(s->first[e]);
    s->jobs.push_back({.w = w.Down(static_cast<int>(e)),
                       .x = gate + first * ld,
                       .ldx = ld,
                       .m = static_cast<size_t>(s->count[e]),
                       .y = &s->out[first * uH]});
  }
  MatMulGrouped(kt, pool, s->jobs);

  // Each row sums its experts' outputs in its own rank order.
  ForEachRow(pool, T, [&](int t) {
    float* yt = y + static_cast<size_t>(t) * uH;
    std::fill_n(yt, uH, 0.0f);
    for (size_t j = 0; j < k; ++j) {
      const size_t i = static_cast<size_t>(t) * k + j;
      kt.axpy(routing.weight[i], &s->out[static_cast<size_t>(s->slot[i]) * uH], yt, uH);
    }
  });
  return distinct;
}

}  // namespace specula
