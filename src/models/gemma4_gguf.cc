#include "specula/models/gemma4_gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <utility>

#include "specula/formats/generation_config.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/models/gemma4_gguf_names.h"

namespace specula {
namespace {

// GGUF per-layer suffix <-> HF per-layer suffix (both without the "blk.N." / "layers.N." part).
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q_norm.weight", "self_attn.q_norm.weight"},
    {"attn_k_norm.weight", "self_attn.k_norm.weight"},
    {"post_attention_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_norm.weight", "pre_feedforward_layernorm.weight"},
    {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
    {"layer_output_scale.weight", "layer_scalar"},
    {"inp_gate.weight", "per_layer_input_gate.weight"},
    {"proj.weight", "per_layer_projection.weight"},
    {"post_norm.weight", "post_per_layer_input_norm.weight"},
    // Mixture of experts (26B-A4B). llama.cpp's converter keeps router.scale as the router input's
    // scale and per_expert_scale as a scale on each expert's down output: the same numbers.
    {"ffn_gate_inp.weight", "router.proj.weight"},
    {"ffn_gate_inp.scale", "router.scale"},
    {"ffn_down_exps.scale", "router.per_expert_scale"},
    {"ffn_gate_up_exps.weight", "experts.gate_up_proj"},
    {"ffn_gate_exps.weight", "experts.gate_proj"},  // the split form (HF has only the fused one)
    {"ffn_up_exps.weight", "experts.up_proj"},
    {"ffn_down_exps.weight", "experts.down_proj"},
    {"pre_ffw_norm_2.weight", "pre_feedforward_layernorm_2.weight"},
    {"post_ffw_norm_1.weight", "post_feedforward_layernorm_1.weight"},
    {"post_ffw_norm_2.weight", "post_feedforward_layernorm_2.weight"},
};
// Global tensors; the HF side is under the tensor prefix except lm_head.
constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"token_embd.weight", "embed_tokens.weight"},
    {"output_norm.weight", "norm.weight"},
    {"per_layer_token_embd.weight", "embed_tokens_per_layer.weight"},
    {"per_layer_model_proj.weight", "per_layer_model_projection.weight"},
    {"per_layer_proj_norm.weight", "per_layer_projection_norm.weight"},
};

// A u32 key, or an array with one value per layer: the per-layer values.
std::vector<int64_t> PerLayer(FieldReader& r, const std::string& key, int layers,
                              std::optional<int64_t> fallback) {
  if (!r.Has(key) && fallback) return std::vector<int64_t>(static_cast<size_t>(layers), *fallback);
  std::vector<int64_t> v = r.IntOrIntList(key);
  if (!r.ok()) return {};
  if (v.size() == 1) v.assign(static_cast<size_t>(layers), v[0]);
  if (static_cast<int>(v.size()) != layers) {
    r.Fail(key, "expected one value or block_count (" + std::to_string(layers) + ") values");
    return {};
  }
  return v;
}

// The partial_rotary_factor that makes the config rotate `pairs` of head_dim / 2 pairs. The config
// floors factor * head_dim / 2, so the factor aims half a pair above `pairs` (a ratio that is exact
// in decimal need not be in binary).
double RotaryFactor(int64_t pairs, int64_t head_dim) {
  if (head_dim <= 0 || 2 * pairs >= head_dim) return 1.0;
  return (static_cast<double>(pairs) + 0.5) / (static_cast<double>(head_dim) / 2.0);
}

// The text-config fields `arch`'s keys describe (target "gemma4" and "gemma4-assistant" share
// them); `assistant` relaxes what only targets carry.
Result<Json> TextConfigFromGguf(const GgufFile& f, const std::string& arch, bool assistant) {
  FieldReader g(f.metadata(), f.path());
  const std::string found = g.String("general.architecture");
  if (!g.ok()) return g.status();
  if (found != arch) {
    g.Fail(
        "general.architecture",
        "expected " + arch +
            (assistant ? " (an MTP assistant)" : " (a target; assistants are gemma4-assistant)"));
    return g.status();
  }
  auto key = [&](const char* k) { return arch + "." + k; };
  const int64_t H = g.Int(key("embedding_length"));
  const int64_t L = g.Int(key("block_count"));
  if (!g.ok()) return g.status();
  if (L <= 0 || L > 1024) {
    g.Fail(key("block_count"), "must be in [1, 1024]");
    return g.status();
  }
  const int layers = static_cast<int>(L);

  // Layer types: the pattern is a bool per layer, true = sliding window.
  const Json* pattern = f.metadata().contains(key("attention.sliding_window_pattern"))
                            ? &f.metadata()[key("attention.sliding_window_pattern")]
                            : nullptr;
  if (pattern == nullptr || !pattern->is_array() || pattern->size() != static_cast<size_t>(L)) {
    g.Fail(key("attention.sliding_window_pattern"),
           "required: one bool per layer (block_count " + std::to_string(L) + ")");
    return g.status();
  }
  Json types = Json::array();
  int first_full = -1;
  for (size_t i = 0; i < pattern->size(); ++i) {
    if (!(*pattern)[i].is_boolean()) {
      g.Fail(key("attention.sliding_window_pattern"), "entries must be bools");
      return g.status();
    }
    const bool sliding = (*pattern)[i].get<bool>();
    types.push_back(sliding ? "sliding_attention" : "full_attention");
    if (!sliding && first_full < 0) first_full = static_cast<int>(i);
  }

  // An assistant's layers all read the target's cache; its shared_kv_layers key has no effect.
  const int64_t shared = assistant ? 0 : g.Int(key("attention.shared_kv_layers"), 0);
  if (shared < 0 || shared >= L)
    g.Fail(key("attention.shared_kv_layers"), "must be in [0, block_count)");
  const std::vector<int64_t> ff = PerLayer(g, key("feed_forward_length"), layers, std::nullopt);
  const std::vector<int64_t> heads = PerLayer(g, key("attention.head_count"), layers, std::nullopt);
  const std::vector<int64_t> kv =
      PerLayer(g, key("attention.head_count_kv"), layers, heads.empty() ? 0 : heads[0]);
  if (!g.ok()) return g.status();
  for (int i = 1; i < layers; ++i) {
    if (heads[static_cast<size_t>(i)] != heads[0]) {
      g.Fail(key("attention.head_count"), "must be the same for every layer");
    }
  }
  // KV heads: one count for sliding layers, one for full layers.
  int64_t kv_sliding = -1, kv_full = -1;
  for (int i = 0; i < layers; ++i) {
    const bool sliding = (*pattern)[static_cast<size_t>(i)].get<bool>();
    int64_t& slot = sliding ? kv_sliding : kv_full;
    if (slot >= 0 && slot != kv[static_cast<size_t>(i)]) {
      g.Fail(key("attention.head_count_kv"),
             "must be the same for all layers of one attention type");
    }
    slot = kv[static_cast<size_t>(i)];
  }
  if (kv_sliding < 0) kv_sliding = kv_full;
  if (kv_full < 0) kv_full = kv_sliding;
  // MLP width: all equal, or (use_double_wide_mlp) doubled on the KV-shared layers.
  const int first_shared = layers - static_cast<int>(shared);
  bool double_wide = false;
  for (int i = 0; i < layers; ++i) {
    const int64_t v = ff[static_cast<size_t>(i)];
    if (v == ff[0]) continue;
    // (v / 2 == ff[0], not v == 2 * ff[0]: a width near 2^63 must not overflow)
    if (i >= first_shared && v % 2 == 0 && v / 2 == ff[0] && v > 0) {
      double_wide = true;
      continue;
    }
    g.Fail(
        key("feed_forward_length"),
        "per-layer widths must be equal, or doubled on the KV-shared layers (use_double_wide_mlp)");
    break;
  }
  if (double_wide) {
    for (int i = first_shared; i < layers; ++i) {
      if (ff[static_cast<size_t>(i)] % 2 != 0 || ff[static_cast<size_t>(i)] / 2 != ff[0]) {
        g.Fail(key("feed_forward_length"), "doubled widths must cover every KV-shared layer");
      }
    }
  }

  const int64_t hd_swa = g.Int(key("attention.key_length_swa"));
  if (g.Int(key("attention.value_length_swa"), hd_swa) != hd_swa) {
    g.Fail(key("attention.value_length_swa"), "must equal attention.key_length_swa");
  }
  // The default (H / heads) only when the key is absent; a nonsense H or head count is the
  // config's to refuse, and must not overflow here (INT64_MIN / -1).
  const int64_t hd_full = g.Has(key("attention.key_length")) ? g.Int(key("attention.key_length"))
                          : heads.empty() || heads[0] <= 0 || H <= 0 ? 0
                                                                     : H / heads[0];
  if (g.Int(key("attention.value_length"), hd_full) != hd_full) {
    g.Fail(key("attention.value_length"), "must equal attention.key_length");
  }
  const int64_t window = g.Int(key("attention.sliding_window"));
  const double eps = g.Float(key("attention.layer_norm_rms_epsilon"));
  const int64_t ple = assistant ? 0 : g.Int(key("embedding_length_per_layer_input"));
  const double softcap = g.Float(key("final_logit_softcapping"), 0.0);
  const int64_t context = g.Int(key("context_length"));
  const double base_full = g.Float(key("rope.freq_base"), 10000.0);
  const double base_swa = g.Float(key("rope.freq_base_swa"), base_full);
  const int64_t rot_swa = g.Int(key("rope.dimension_count_swa"), hd_swa);
  // Mixture of experts (26B-A4B): every layer, when expert_count is set.
  const int64_t experts = assistant ? 0 : g.Int(key("expert_count"), 0);
  const int64_t experts_used = experts > 0 ? g.Int(key("expert_used_count")) : 0;
  const int64_t expert_ff = experts > 0 ? g.Int(key("expert_feed_forward_length")) : 0;
  if (!g.ok()) return g.status();

  // Shapes the metadata leaves to the tensors: the vocabularies, and whether full layers compute V.
  const auto& t = f.tensors();
  auto tensor = t.find("token_embd.weight");
  if (tensor == t.end() || tensor->second.shape.size() != 2) {
    return Error(f.path() + ": tensor 'token_embd.weight' is missing or not a matrix");
  }
  const int64_t vocab = tensor->second.shape[0];
  int64_t ple_vocab = vocab;
  if (ple > 0) {
    auto p = t.find("per_layer_token_embd.weight");
    if (p == t.end() || p->second.shape.size() != 2) {
      return Error(f.path() + ": tensor 'per_layer_token_embd.weight' is missing or not a matrix");
    }
    ple_vocab = p->second.shape[0];
  }
  // Assistants have no K/V projections: their full layers read the target's own KV-head count.
  bool k_eq_v = assistant && kv_full != kv_sliding;
  if (!assistant && first_full >= 0 && first_full < first_shared) {
    const std::string b = "blk." + std::to_string(first_full) + ".";
    k_eq_v = t.count(b + "attn_k.weight") && !t.count(b + "attn_v.weight");
  }
  // Full layers rotate the pairs whose rope_freqs factor is 1; the factor 1e30 stops the rest.
  double factor_full = 1.0;
  if (auto rf = t.find("rope_freqs.weight"); rf != t.end()) {
    const TensorView& v = rf->second;
    if (v.dtype != DType::kF32 || v.shape.size() != 1 || v.shape[0] * 2 != hd_full) {
      return Error(f.path() + ": tensor 'rope_freqs.weight': expected F32 [" +
                   std::to_string(hd_full / 2) + "], got " + std::string(DTypeName(v.dtype)) + " " +
                   v.ShapeString());
    }
    // (Copied out: with a general.alignment below 4 the tensor may sit at an odd address.)
    std::vector<float> x(static_cast<size_t>(v.shape[0]));
    std::memcpy(x.data(), v.data, x.size() * sizeof(float));
    int64_t rotated = 0;
    while (rotated < v.shape[0] && x[static_cast<size_t>(rotated)] == 1.0f) ++rotated;
    for (int64_t i = rotated; i < v.shape[0]; ++i) {
      if (!(x[static_cast<size_t>(i)] >= 1e29f)) {
        return Error(f.path() +
                     ": tensor 'rope_freqs.weight': only factors of 1 (rotated) followed "
                     "by 1e30 (not rotated) are supported; entry " +
                     std::to_string(i) + " is " + std::to_string(x[static_cast<size_t>(i)]));
      }
    }
    factor_full = RotaryFactor(rotated, hd_full);
  } else {
    factor_full = RotaryFactor(g.Int(key("rope.dimension_count"), hd_full) / 2, hd_full);
  }

  Json c = {
      {"hidden_size", H},
      {"num_hidden_layers", L},
      {"num_attention_heads", heads[0]},
      {"num_key_value_heads", kv_sliding},
      {"num_global_key_value_heads", kv_full},
      {"head_dim", hd_swa},
      {"global_head_dim", hd_full},
      {"attention_k_eq_v", k_eq_v},
      {"intermediate_size", ff[0]},
      {"use_double_wide_mlp", double_wide},
      {"hidden_size_per_layer_input", ple},
      {"vocab_size", vocab},
      {"vocab_size_per_layer_input", ple_vocab},
      {"num_kv_shared_layers", shared},
      {"sliding_window", window},
      {"max_position_embeddings", context},
      {"final_logit_softcapping", softcap},
      {"rms_norm_eps", eps},
      {"layer_types", types},
      {"rope_parameters",
       {{"sliding_attention",
         {{"rope_type", "default"},
          {"rope_theta", base_swa},
          {"partial_rotary_factor", RotaryFactor(rot_swa / 2, hd_swa)}}},
        {"full_attention",
         {{"rope_type", "proportional"},
          {"rope_theta", base_full},
          {"partial_rotary_factor", factor_full}}}}},
  };
  if (experts > 0) {
    c["enable_moe_block"] = true;
    c["num_experts"] = experts;
    c["top_k_experts"] = experts_used;
    c["moe_intermediate_size"] = expert_ff;
  }
  return c;
}

}  // namespace

// "blk.12.attn_q.weight" -> {12, "attn_q.weight"}; -1 when `name` has no `head`N. prefix.
std::pair<int, std::string> SplitLayerName(const std::string& name, const std::string& head) {
  if (name.compare(0, head.size(), head) != 0) return {-1, ""};
  size_t i = head.size(), digits = 0;
  int layer = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && digits < 6) {
    layer = layer * 10 + (name[i++] - '0');
    ++digits;
  }
  if (digits == 0 || i >= name.size() || name[i] != '.') return {-1, ""};
  return {layer, name.substr(i + 1)};
}

Result<Json> Gemma4ConfigFromGguf(const GgufFile& f) {
  Result<Json> text = TextConfigFromGguf(f, "gemma4", /*assistant=*/false);
  if (!text.ok()) return text.status();
  (*text)["model_type"] = "gemma4_text";
  return text;
}

Result<Json> Gemma4AssistantConfigFromGguf(const GgufFile& f) {
  Result<Json> text = TextConfigFromGguf(f, "gemma4-assistant", /*assistant=*/true);
  if (!text.ok()) return text.status();
  (*text)["model_type"] = "gemma4_text";
  (*text)["num_kv_shared_layers"] = (*text)["num_hidden_layers"];
  FieldReader g(f.metadata(), f.path());
  const int64_t backbone = g.Int("gemma4-assistant.embedding_length_out");
  const int64_t top_k = g.Int("gemma4-assistant.masked_embd_top_k", 32);
  if (!g.ok()) return g.status();
  Json c = {{"model_type", "gemma4_assistant"},
            {"architectures", {"Gemma4AssistantForCausalLM"}},
            {"backbone_hidden_size", backbone},
            {"use_ordered_embeddings", false},
            {"text_config", std::move(*text)}};
  // The centroid head, when the file keeps it (llama.cpp's converter may drop it: a dense head).
  if (auto t = f.tensors().find("masked_embd_centroids.weight"); t != f.tensors().end()) {
    if (t->second.shape.size() != 2) {
      return Error(f.path() + ": tensor 'masked_embd_centroids.weight' must be a matrix");
    }
    c["use_ordered_embeddings"] = true;
    c["num_centroids"] = t->second.shape[0];
    c["centroid_intermediate_top_k"] = top_k;
  }
  return c;
}

std::string Gemma4HfName(const std::string& gguf_name, const std::string& prefix) {
  if (gguf_name == "output.weight") return "lm_head.weight";
  for (const auto& [gg, hf] : kGlobalNames) {
    if (gguf_name == gg) return prefix + hf;
  }
  const auto [layer, rest] = SplitLayerName(gguf_name, "blk.");
  if (layer < 0) return "";
  for (const auto& [gg, hf] : kLayerNames) {
    if (rest == gg) return prefix + "layers." + std::to_string(layer) + "." + hf;
  }
  return "";
}

// Assistant tensors outside the target's naming scheme.
constexpr std::pair<const char*, const char*> kAssistantNames[] = {
    {"nextn.pre_projection.weight", "pre_projection.weight"},
    {"nextn.post_projection.weight", "post_projection.weight"},
    {"masked_embd_centroids.weight", "masked_embedding.centroids.weight"},
    {"masked_embd_ordering", "masked_embedding.token_ordering"},
};

std::string Gemma4AssistantHfName(const std::string& gguf_name) {
  for (const auto& [gg, hf] : kAssistantNames) {
    if (gguf_name == gg) return hf;
  }
  return gguf_name == "output.weight" ? "" : Gemma4HfName(gguf_name, "model.");
}

namespace {

// The GGUF name of a global or per-layer tensor under `prefix`, layers below `layers`; "" if none.
std::string GgufNameUnder(const std::string& hf_name, const std::string& prefix, int layers) {
  if (hf_name.compare(0, prefix.size(), prefix) != 0) return "";
  const std::string rest = hf_name.substr(prefix.size());
  for (const auto& [gg, hf] : kGlobalNames) {
    if (rest == hf) return gg;
  }
  const auto [layer, suffix] = SplitLayerName(rest, "layers.");
  if (layer < 0 || layer >= layers) return "";
  for (const auto& [gg, hf] : kLayerNames) {
    if (suffix == hf) return "blk." + std::to_string(layer) + "." + gg;
  }
  return "";
}

}  // namespace

std::string Gemma4AssistantGgufName(const std::string& hf_name) {
  for (const auto& [gg, hf] : kAssistantNames) {
    if (hf_name == hf) return gg;
  }
  // Assistants have no per-layer embeddings; their own layer count is checked when they load.
  const std::string gg = GgufNameUnder(hf_name, "model.", std::numeric_limits<int>::max());
  return gg.find("per_layer") == std::string::npos ? gg : "";
}

std::string Gemma4GgufName(const std::string& hf_name, const Gemma4Config& c) {
  if (hf_name == "lm_head.weight") return "output.weight";
  return GgufNameUnder(hf_name, c.tensor_prefix, c.num_layers);
}

std::vector<float> Gemma4RopeFreqs(int global_head_dim, const RopeSpec& full) {
  std::vector<float> f(static_cast<size_t>(global_head_dim / 2), 1e30f);
  for (int i = 0; i < full.rotated_pairs; ++i) f[static_cast<size_t>(i)] = 1.0f;
  return f;
}

}  // namespace specula
