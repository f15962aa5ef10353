// The Gemma 4 model's private parts, shared by its two source files: the bound weights of a layer,
// the per-pass buffers and one pass's context. gemma4_load.cc fills the weights; gemma4.cc runs the
// forward pass over them.
#pragma once

#include <span>
#include <vector>

#include "specula/kernels/kernels.h"
#include "specula/models/gemma4.h"
#include "src/models/moe.h"

namespace specula {

struct Gemma4Model::LayerWeights {
  std::vector<float> input_norm, post_attn_norm, pre_ffn_norm, post_ffn_norm;  // [H]
  float layer_scalar = 1.0f;
  MatView q, k, v, o;  // q [nh*hd, H], k/v [nkv*hd, H] (absent when shared / k_eq_v), o [H, nh*hd]
  std::vector<float> q_norm, k_norm;  // [hd]
  MatView gate, up, down;             // gate/up [ff, H], down [H, ff]
  MatView ple_gate, ple_proj;         // [P, H], [H, P]
  std::vector<float> ple_post_norm;   // [H]
  // Mixture of experts (26B-A4B): the experts' pre-norm, and the norms of the dense MLP's and the
  // experts' outputs before they are summed.
  std::vector<float> pre_ffn_norm_2, post_ffn_norm_1, post_ffn_norm_2;  // [H]
  MoeWeights moe;
};

// One caller's pass buffers, grown on demand and reused across passes.
struct Gemma4Model::Workspace : PassScratch {
  std::vector<float> x, xn, q, o, a, g, u, e, ple, ple_tmp, head_in;
  std::vector<int> ids, row_pos;                 // per stacked row: token, position
  std::vector<float> rope_sliding, rope_full;    // per row: RopeCosSin at its position
  std::vector<std::vector<float>> new_k, new_v;  // per cache slot: [T, kv_dim]
  std::vector<std::vector<float>> attn_scratch;  // per thread: AttentionScratchFloats
  std::vector<std::vector<int>> ranges;          // per thread: each row's first, then last key
  // Token trees: per sequence with parents, [2, T_s, T_s] marks of the rows each row sees on full
  // and on sliding layers (offset per sequence; -1 for a chain).
  std::vector<uint8_t> visible;
  std::vector<long> visible_at;
  Routing routing;  // MoE: this layer's experts per row
  MoeScratch moe;
};

// One forward pass: the batch, its output and the kernels, shared by the stages.
struct Gemma4Model::Pass {
  const KernelTable& kt;
  ThreadPool& pool;
  Workspace& ws;
  std::span<const BatchSeq> seqs;
  BatchOutput* out;
  int T = 0;            // rows of all sequences, stacked
  int max_keys = 1;     // keys the longest sequence's last row sees
  size_t max_rows = 0;  // rows of the longest sequence
};

}  // namespace specula
