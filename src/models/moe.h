// The mixture-of-experts half of a Gemma 4 26B-A4B feed-forward block (config.json's
// `enable_moe_block`): a router picks top_k_experts of num_experts gated experts per row, and the
// rows routed to one expert run through it together, so each selected expert's weights stream
// from memory once per pass, whatever the row count.
//
// Batch invariance: a row's router scores, its choice of experts and each expert's output for it
// do not depend on the other rows (the matmul kernels are batch-invariant), and its expert outputs
// are summed in its own rank order. A row's result is therefore bit for bit what it gets alone.
#pragma once

#include <vector>

#include "specula/kernels/kernels.h"

namespace specula {

class ThreadPool;

struct MoeWeights {
  int experts = 0;                      // E
  int top_k = 0;                        // k
  int width = 0;                        // F, moe_intermediate_size
  MatView router;                       // [E, H]
  std::vector<float> router_scale;      // [H]
  std::vector<float> per_expert_scale;  // [E]
  // The gate and up projections fused (HF: gate_up [E * 2F, H], expert e's F gate rows then its F
  // up rows) or apart (GGUF may split them: gate and up [E * F, H] each; gate_up then empty).
  MatView gate_up, gate, up;
  MatView down;  // [E * H, F]

  bool fused() const { return gate_up.data != nullptr; }
  MatView GateUp(int e) const;  // [2F, H]
  MatView Gate(int e) const;    // [F, H]
  MatView Up(int e) const;      // [F, H]
  MatView Down(int e) const;    // [H, F]
};

// Which experts each row uses, in rank order (probability, then the lower index), and their
// weights: renormalised over the k, times the expert's per_expert_scale.
struct Routing {
  int top_k = 0;
  std::vector<int> expert;    // [T, k]
  std::vector<float> weight;  // [T, k]
};

// Buffers of one MoE block, reused across layers and calls.
struct MoeScratch {
  std::vector<float> z, scores;   // [T, H], [T, E]
  std::vector<int> count, first;  // per expert: rows routed to it, first row in the grouped order
  std::vector<int> slot;          // [T, k]: where row t's j-th expert output sits
  std::vector<float> in, hidden, out;  // grouped [T*k, H], gate and up [T*k, 2F], [T*k, H]
  std::vector<MatMulJob> jobs;
};

// Routes each row of r [T, H] (the post-attention residual): z = RMSNorm(r) * router_scale *
// H^-0.5, softmax(z Wr^T) over the experts, the top k.
void RouteExperts(const KernelTable& kt, ThreadPool& pool, const MoeWeights& w, const float* r,
                  int T, int H, float eps, MoeScratch* scratch, Routing* routing);

// y[t] = sum_j weight[t, j] * Expert_{expert[t, j]}(x[t]) for x [T, H] (the experts' pre-normed
// input), Expert_e(x) = down_e(gelu(gate_e x) * up_e x). Returns how many distinct experts ran.
int RunExperts(const KernelTable& kt, ThreadPool& pool, const MoeWeights& w, const Routing& routing,
               const float* x, int T, int H, MoeScratch* scratch, float* y);

}  // namespace specula
