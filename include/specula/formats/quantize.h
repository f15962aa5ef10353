// Writes a quantized copy of a checkpoint directory (`specula quantize`). The engine loads the
// result directly; the tensors stay in GGUF's block layouts inside safetensors files.
//
// Per-tensor policy (why each choice):
//   - weight matrices, and stacks of them (a mixture-of-experts layer's experts [E, rows, cols]),
//     whose rows are a multiple of 32 values -> the recipe's type for that tensor (super-block
//     types need rows of 256 values; shorter ones fall back to Q8_0);
//   - embedding tables (`*embed_tokens*.weight`, also the tied LM head): the output distribution
//     is most sensitive to the head, as in llama.cpp's mixes -> Q8_0 with the 32-value types, Q6_K
//     with the other super-block types;
//   - kept exact: 1-D tensors (norm weights, layer scalars, router scales), integer tensors (the
//     centroid head's `token_ordering` is a lookup table), `masked_embedding.centroids.weight` (it
//     only picks clusters; tiny, and an error there changes which tokens can be drafted at all)
//     and a MoE layer's `router.proj.weight` (tiny; an error there changes which experts run).
//
// Recipes. A block type's name alone ("q4_k", "q8_0", ...) puts every matrix in that type. Names of
// llama.cpp's mixes (`llama-quantize`'s ftypes) give a few sensitive tensors more bits, with the
// same rules llama.cpp applies by tensor role and layer (i of n layers, for attn_v i of the n
// layers that have one; "more bits" layers are the first and last eighth and every third in
// between):
//   q2_k    Q2_K; ffn_down and attn_output Q3_K; attn_v Q4_K (GQA >= 4) or Q3_K
//   q3_k_s  Q3_K everywhere
//   q3_k_m  Q3_K; attn_v Q5_K in the first two layers, else Q4_K; attn_output Q4_K; ffn_down Q5_K
//           in the first sixteenth of layers, else Q4_K
//   q3_k_l  Q3_K; attn_v, attn_output and ffn_down Q5_K
//   q4_k_s  Q4_K; attn_v in the first four layers and ffn_down in the first eighth Q5_K
//   q4_k_m  Q4_K; attn_v and ffn_down Q6_K in the "more bits" layers
//   q5_k_s  Q5_K everywhere
//   q5_k_m  Q5_K; attn_v and ffn_down Q6_K in the "more bits" layers
//   iq4_xs, iq4_nl  that type; attn_v Q5_K when GQA >= 4; ffn_down Q5_K in the first eighth
// (attn_v is `self_attn.v_proj`, attn_output `self_attn.o_proj`, ffn_down `mlp.down_proj` and a
// MoE layer's `experts.down_proj`; GQA = num_attention_heads / num_key_value_heads of config.json.)
// Vision and audio tower tensors take the recipe's base type (llama.cpp keeps them in a separate
// projector file). q6_k, q8_0, q4_0, q4_1, q5_0 and q5_1 put every matrix in that type as llama.cpp
// does, but for the embedding table (llama.cpp: Q6_K unless Q8_0). llama-quantize's bare Q3_K, Q4_K
// and Q5_K mean its _M mixes; here q3_k, q4_k and q5_k mean that one type everywhere.
#pragma once

#include <string>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/base/status.h"

namespace specula {

struct QuantizeStats {
  int quantized = 0, kept = 0;
  size_t bytes_in = 0, bytes_out = 0;
  std::vector<std::pair<DType, int>> types;  // tensors per block type written, in kBlockTypes order
};

// A quantization recipe: a block type, and which of llama.cpp's mixes (if any) refines it.
struct QuantRecipe {
  enum class Mix : uint8_t { kNone, kQ2K, kS, kM, kL, kIQ4 };
  DType base = DType::kQ8_0;
  Mix mix = Mix::kNone;
  std::string name;  // as the user spelled it, lowercased
};

// "q4_k_m", "Q8_0", ... -> the recipe, or an error listing the valid names.
Result<QuantRecipe> ParseQuantRecipe(const std::string& name);
// The recipe of one block type alone.
QuantRecipe PureRecipe(DType t);
// Every recipe name, for help text and messages.
std::string QuantRecipeNames();

// Where a tensor sits in its model, for the per-layer rules of the mixes.
struct TensorPlace {
  int layers = 0;  // the model's decoder layers (0: unknown, no per-layer rule applies)
  int gqa = 1;     // query heads per KV head
  // The layers that have a v_proj, ascending (KV-sharing layers have none): attn_v rules count
  // among these, as llama.cpp counts attn_v tensors. Empty: every layer.
  std::vector<int> v_layers;
};

// The dtype the policy assigns to tensor `name` of `shape` and `dtype` under `recipe`.
DType QuantizedType(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    const QuantRecipe& recipe, const TensorPlace& place = {});
inline DType QuantizedType(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                           DType target) {
  return QuantizedType(name, dtype, shape, PureRecipe(target));
}

Result<QuantizeStats> QuantizeCheckpoint(const std::string& in_dir, const std::string& out_dir,
                                         const QuantRecipe& recipe);
inline Result<QuantizeStats> QuantizeCheckpoint(const std::string& in_dir,
                                                const std::string& out_dir, DType target) {
  return QuantizeCheckpoint(in_dir, out_dir, PureRecipe(target));
}

}  // namespace specula
