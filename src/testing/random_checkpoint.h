// Writes Gemma 4 checkpoints with random weights in the exact Hugging Face layout (config.json,
// generation_config.json, safetensors — single file or sharded with an index — tokenizer.json,
// tokenizer_config.json). Tests generate them at test time; `specula make-random` exposes them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "specula/base/dtype.h"
#include "specula/base/status.h"

namespace specula {

struct RandomTargetSpec {
  std::string model_type = "gemma4";  // gemma4 | gemma4_unified (nested text_config) | gemma4_text
  int hidden_size = 64;
  int num_layers = 6;
  std::vector<std::string> layer_types;  // empty: (5 sliding, 1 full) repeated, last forced full
  int num_heads = 4;
  int num_kv_heads = 1;
  int num_global_kv_heads = 0;  // 0: null in config.json
  int head_dim = 32;
  int global_head_dim = 64;
  bool k_eq_v = false;
  int intermediate_size = 128;
  bool double_wide_mlp = false;
  int ple_dim = 0;
  int num_kv_shared_layers = 0;
  // Mixture of experts (26B-A4B): every layer gets `num_experts` experts of this width beside its
  // dense MLP, `top_k_experts` of them per token. 0: dense.
  int num_experts = 0;
  int top_k_experts = 0;
  int moe_intermediate_size = 0;
  int sliding_window = 16;
  int vocab_size = 512;
  int max_position_embeddings = 4096;
  DType dtype = DType::kBF16;
  uint64_t seed = 1;
  int shards = 1;  // >1: model-0000i-of-0000n.safetensors + index
  // Scales the embedding: logits get about this std. Larger values let the tied embedding dominate
  // the residual stream and random models then just repeat their input token; 1.5 keeps greedy
  // output diverse (hundreds of distinct tokens over 1000 steps), which the lossless tests need.
  float logit_gain = 1.5f;
  // Mixture of experts: router.scale's mean. Random projections alone route almost uniformly
  // (expert probabilities a few 1e-5 apart), where any rounding flips the choice.
  float router_gain = 1.0f;
  float qk_norm_scale = 1.0f;  // q/k norm weights: attention scores have a std of ~scale^2 sqrt(hd)
  std::string tokenizer_json;  // copy this tokenizer.json; empty: synthesize one of vocab_size
};

// Named presets: e2b-tiny, e4b-tiny, 31b-tiny, 12b-tiny, 26b-a4b-tiny, e2b-small, e2b-full,
// 31b-shallow, 26b-a4b-shallow.
Result<RandomTargetSpec> TargetPreset(const std::string& name);
std::vector<std::string> TargetPresetNames();

Status WriteRandomTarget(const RandomTargetSpec& spec, const std::string& dir);

// An MTP assistant (drafter) for a target of shape `target`: 4 layers (S,S,S,F), Q-only attention
// with the target's KV geometry, random weights, either head.
struct RandomAssistantSpec {
  int hidden_size = 32;
  int num_heads = 4;  // a multiple of the target's KV-head counts
  int intermediate_size = 64;
  bool centroid_head = true;
  int num_centroids = 16;  // must divide the vocabulary
  int centroid_top_k = 4;
  int num_assistant_tokens = 0;  // > 0: written to generation_config.json
  DType dtype = DType::kBF16;
  uint64_t seed = 2;
};
// The assistant shape that goes with a target preset (real E2B/31B assistant widths for the
// full-size presets, small ones otherwise; centroid head for E-series shapes).
RandomAssistantSpec AssistantPresetFor(const std::string& target_preset);
Status WriteRandomAssistant(const RandomAssistantSpec& assistant, const RandomTargetSpec& target,
                            const std::string& dir);

// A small byte-fallback BPE tokenizer.json with `vocab_size` entries (>= 400), trained on a
// built-in English/code sample, with Gemma's special tokens at their real ids below 108.
std::string SyntheticTokenizerJson(int vocab_size);

}  // namespace specula
