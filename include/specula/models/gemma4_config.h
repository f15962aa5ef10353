// The Gemma 4 text-decoder configuration, parsed once from config.json and validated, then
// immutable. Per-layer facts (attention type, head size, KV heads, MLP width, which layer's KV a
// layer reads) are precomputed into `layers` so the forward pass never re-derives them.
#pragma once

#include <string>
#include <vector>

#include "specula/base/json.h"
#include "specula/base/status.h"

namespace specula {

enum class AttnType { kSliding, kFull };

struct RopeSpec {
  double theta = 10000.0;
  int rotated_pairs = 0;  // of head_dim / 2
};

struct Gemma4LayerSpec {
  AttnType type = AttnType::kSliding;
  int head_dim = 0;  // 256 sliding, 512 full (global_head_dim)
  int num_kv_heads = 0;
  int ffn_dim = 0;      // intermediate size of this layer's MLP (doubled on E2B shared layers)
  bool owns_kv = true;  // false on cross-layer KV-shared layers (E2B/E4B)
  int kv_source = 0;    // the layer whose KV cache this layer reads (itself when owns_kv)
  bool k_eq_v = false;  // full layers of 12B/26B/31B: V = weightless-RMSNorm(k_proj x)
};

// Reads `rope_parameters` of a text config (shared by the target and its MTP assistant). Defaults
// follow HF: sliding "default" theta 1e4 over all pairs, full "proportional" theta 1e6, factor
// 0.25.
void ReadRopeParameters(FieldReader& text, int head_dim, int global_head_dim, RopeSpec* sliding,
                        RopeSpec* full);

// The attention-geometry fields shared by the target's and the assistant's text config, read the
// same way into either (both name the members alike).
template <class Config>
void ReadAttentionGeometry(FieldReader& r, Config* c) {
  c->num_heads = r.Int32("num_attention_heads");
  c->num_kv_heads = r.Int32("num_key_value_heads");
  c->num_global_kv_heads = r.Int32("num_global_key_value_heads", c->num_kv_heads);
  c->head_dim = r.Int32("head_dim", 256);
  c->global_head_dim = r.Int32("global_head_dim", 512);
  c->attention_k_eq_v = r.Bool("attention_k_eq_v", false);
}

struct Gemma4Config {
  std::string model_type;     // as read: gemma4, gemma4_unified, gemma4_text, ...
  std::string tensor_prefix;  // "model.language_model." or "model."
  int hidden_size = 0;        // H
  int num_layers = 0;         // L
  int num_heads = 0;
  int num_kv_heads = 0;         // sliding layers
  int num_global_kv_heads = 0;  // full layers
  int head_dim = 0;
  int global_head_dim = 0;
  bool attention_k_eq_v = false;
  int intermediate_size = 0;
  bool use_double_wide_mlp = false;
  int ple_dim = 0;    // hidden_size_per_layer_input; 0 = no per-layer embeddings
  int ple_vocab = 0;  // vocab_size_per_layer_input
  int num_kv_shared_layers = 0;
  // Mixture of experts (26B-A4B, enable_moe_block): in every layer, beside the dense MLP,
  // `top_k_experts` of `num_experts` gated experts of width `moe_intermediate_size` per token.
  int num_experts = 0;  // 0 = dense
  int top_k_experts = 0;
  int moe_intermediate_size = 0;
  int sliding_window = 0;  // W: a query at p sees keys p-W+1 .. p
  int max_position_embeddings = 0;
  float final_logit_softcapping = 0.0f;  // 0 = none
  int vocab_size = 0;
  float rms_norm_eps = 1e-6f;
  RopeSpec rope_sliding;
  RopeSpec rope_full;
  std::vector<int> multimodal_token_ids;  // replaced by pad (0) for the per-layer embedding lookup
  std::vector<Gemma4LayerSpec> layers;

  // Parses and validates config.json content. `file` names the file in error messages.
  static Result<Gemma4Config> FromJson(const Json& root, const std::string& file);

  bool moe() const { return num_experts > 0; }
  // Last KV-owning layer of each type: what an MTP drafter's layers read.
  int LastKvOwner(AttnType type) const;
  std::string Describe() const;  // multi-line human summary for `specula inspect`
};

}  // namespace specula
