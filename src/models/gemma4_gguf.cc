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

// The metadata of one architecture's text config: its keys are "<arch>.<name>". `assistant`
// relaxes what only targets carry.
struct TextMetadata {
  const GgufFile& f;
  FieldReader& g;
  const std::string& arch;
  bool assistant;

  std::string Key(const char* k) const { return arch + "." + k; }
};

// Layer types: the pattern is a bool per layer, true = sliding window.
struct LayerPattern {
  std::vector<bool> sliding;
  Json types = Json::array();  // "sliding_attention" / "full_attention", as config.json names them
  int first_full = -1;         // the first full-attention layer; -1 if none
};

// The per-layer keys, each folded to the one value (or pair of values) config.json holds.
struct LayerWidths {
  int64_t shared = 0;  // KV-shared layers, at the end
  int64_t heads = 0;
  int64_t kv_sliding = 0, kv_full = 0;  // KV heads of each attention type
  int64_t ff = 0;                       // the MLP width of the KV-owning layers
  bool double_wide = false;             // ff doubled on the KV-shared layers
};

struct AttentionDims {
  int64_t head_dim_swa = 0, head_dim_full = 0;
  int64_t window = 0;
};

struct NormsAndLimits {
  double eps = 0.0;
  int64_t ple = 0;  // per-layer input width; 0 = none
  double softcap = 0.0;
  int64_t context = 0;
};

struct RopeBases {
  double base_full = 0.0, base_swa = 0.0;
  int64_t rot_swa = 0;  // rotated dims of the sliding layers
};

struct Experts {
  int64_t count = 0, used = 0, ff = 0;  // count 0 = dense
};

// What the metadata leaves to the tensors.
struct TensorFacts {
  int64_t vocab = 0, ple_vocab = 0;
  bool k_eq_v = false;
  double factor_full = 1.0;  // partial_rotary_factor of the full layers
};

struct GgufTextConfig {
  int64_t hidden = 0, layers = 0;
  LayerPattern pattern;
  LayerWidths widths;
  AttentionDims attn;
  NormsAndLimits misc;
  RopeBases rope;
  Experts experts;
  TensorFacts tensors;
};

bool CheckArchitecture(const TextMetadata& m) {
  const std::string found = m.g.String("general.architecture");
  if (!m.g.ok()) return false;
  if (found != m.arch) {
    m.g.Fail(
        "general.architecture",
        "expected " + m.arch +
            (m.assistant ? " (an MTP assistant)" : " (a target; assistants are gemma4-assistant)"));
    return false;
  }
  return true;
}

// embedding_length and block_count; false once either is refused.
bool ReadSizes(const TextMetadata& m, GgufTextConfig* c) {
  c->hidden = m.g.Int(m.Key("embedding_length"));
  c->layers = m.g.Int(m.Key("block_count"));
  if (!m.g.ok()) return false;
  if (c->layers <= 0 || c->layers > 1024) {
    m.g.Fail(m.Key("block_count"), "must be in [1, 1024]");
    return false;
  }
  return true;
}

std::optional<LayerPattern> ReadLayerPattern(const TextMetadata& m, int64_t layers) {
  const std::string key = m.Key("attention.sliding_window_pattern");
  const Json* pattern = m.f.metadata().contains(key) ? &m.f.metadata()[key] : nullptr;
  if (pattern == nullptr || !pattern->is_array() ||
      pattern->size() != static_cast<size_t>(layers)) {
    m.g.Fail(key, "required: one bool per layer (block_count " + std::to_string(layers) + ")");
    return std::nullopt;
  }
  LayerPattern p;
  for (size_t i = 0; i < pattern->size(); ++i) {
    if (!(*pattern)[i].is_boolean()) {
      m.g.Fail(key, "entries must be bools");
      return std::nullopt;
    }
    const bool sliding = (*pattern)[i].get<bool>();
    p.sliding.push_back(sliding);
    p.types.push_back(sliding ? "sliding_attention" : "full_attention");
    if (!sliding && p.first_full < 0) p.first_full = static_cast<int>(i);
  }
  return p;
}

// KV heads: one count for sliding layers, one for full layers.
void FoldKvHeads(const TextMetadata& m, const std::vector<bool>& sliding,
                 const std::vector<int64_t>& kv, LayerWidths* w) {
  int64_t kv_sliding = -1, kv_full = -1;
  for (size_t i = 0; i < sliding.size(); ++i) {
    int64_t& slot = sliding[i] ? kv_sliding : kv_full;
    if (slot >= 0 && slot != kv[i]) {
      m.g.Fail(m.Key("attention.head_count_kv"),
               "must be the same for all layers of one attention type");
    }
    slot = kv[i];
  }
  w->kv_sliding = kv_sliding < 0 ? kv_full : kv_sliding;
  w->kv_full = kv_full < 0 ? kv_sliding : kv_full;
}

// MLP width: all equal, or (use_double_wide_mlp) doubled on the KV-shared layers.
void FoldMlpWidths(const TextMetadata& m, const std::vector<int64_t>& ff, int first_shared,
                   LayerWidths* w) {
  const int layers = static_cast<int>(ff.size());
  bool double_wide = false;
  for (int i = 0; i < layers; ++i) {
    const int64_t v = ff[static_cast<size_t>(i)];
    if (v == ff[0]) continue;
    // (v / 2 == ff[0], not v == 2 * ff[0]: a width near 2^63 must not overflow)
    if (i >= first_shared && v % 2 == 0 && v / 2 == ff[0] && v > 0) {
      double_wide = true;
      continue;
    }
    m.g.Fail(
        m.Key("feed_forward_length"),
        "per-layer widths must be equal, or doubled on the KV-shared layers (use_double_wide_mlp)");
    break;
  }
  if (double_wide) {
    for (int i = first_shared; i < layers; ++i) {
      if (ff[static_cast<size_t>(i)] % 2 != 0 || ff[static_cast<size_t>(i)] / 2 != ff[0]) {
        m.g.Fail(m.Key("feed_forward_length"), "doubled widths must cover every KV-shared layer");
      }
    }
  }
  w->ff = ff[0];
  w->double_wide = double_wide;
}

// nullopt when a per-layer key cannot be read; its folding errors are left in the reader.
std::optional<LayerWidths> ReadLayerWidths(const TextMetadata& m, const LayerPattern& pattern) {
  FieldReader& g = m.g;
  const int layers = static_cast<int>(pattern.sliding.size());
  LayerWidths w;
  // An assistant's layers all read the target's cache; its shared_kv_layers key has no effect.
  w.shared = m.assistant ? 0 : g.Int(m.Key("attention.shared_kv_layers"), 0);
  if (w.shared < 0 || w.shared >= layers)
    g.Fail(m.Key("attention.shared_kv_layers"), "must be in [0, block_count)");
  const std::vector<int64_t> ff = PerLayer(g, m.Key("feed_forward_length"), layers, std::nullopt);
  const std::vector<int64_t> heads =
      PerLayer(g, m.Key("attention.head_count"), layers, std::nullopt);
  const std::vector<int64_t> kv =
      PerLayer(g, m.Key("attention.head_count_kv"), layers, heads.empty() ? 0 : heads[0]);
  if (!g.ok()) return std::nullopt;
  for (int i = 1; i < layers; ++i) {
    if (heads[static_cast<size_t>(i)] != heads[0]) {
      g.Fail(m.Key("attention.head_count"), "must be the same for every layer");
    }
  }
  w.heads = heads[0];
  FoldKvHeads(m, pattern.sliding, kv, &w);
  FoldMlpWidths(m, ff, layers - static_cast<int>(w.shared), &w);
  return w;
}

AttentionDims ReadAttentionDims(const TextMetadata& m, int64_t hidden, int64_t heads) {
  FieldReader& g = m.g;
  AttentionDims d;
  d.head_dim_swa = g.Int(m.Key("attention.key_length_swa"));
  if (g.Int(m.Key("attention.value_length_swa"), d.head_dim_swa) != d.head_dim_swa) {
    g.Fail(m.Key("attention.value_length_swa"), "must equal attention.key_length_swa");
  }
  // The default (H / heads) only when the key is absent; a nonsense H or head count is the
  // config's to refuse, and must not overflow here (INT64_MIN / -1).
  d.head_dim_full = g.Has(m.Key("attention.key_length")) ? g.Int(m.Key("attention.key_length"))
                    : heads <= 0 || hidden <= 0          ? 0
                                                         : hidden / heads;
  if (g.Int(m.Key("attention.value_length"), d.head_dim_full) != d.head_dim_full) {
    g.Fail(m.Key("attention.value_length"), "must equal attention.key_length");
  }
  d.window = g.Int(m.Key("attention.sliding_window"));
  return d;
}

NormsAndLimits ReadNormsAndLimits(const TextMetadata& m) {
  NormsAndLimits n;
  n.eps = m.g.Float(m.Key("attention.layer_norm_rms_epsilon"));
  n.ple = m.assistant ? 0 : m.g.Int(m.Key("embedding_length_per_layer_input"));
  n.softcap = m.g.Float(m.Key("final_logit_softcapping"), 0.0);
  n.context = m.g.Int(m.Key("context_length"));
  return n;
}

RopeBases ReadRopeBases(const TextMetadata& m, int64_t head_dim_swa) {
  RopeBases r;
  r.base_full = m.g.Float(m.Key("rope.freq_base"), 10000.0);
  r.base_swa = m.g.Float(m.Key("rope.freq_base_swa"), r.base_full);
  r.rot_swa = m.g.Int(m.Key("rope.dimension_count_swa"), head_dim_swa);
  return r;
}

// Mixture of experts (26B-A4B): every layer, when expert_count is set.
Experts ReadExperts(const TextMetadata& m) {
  Experts e;
  e.count = m.assistant ? 0 : m.g.Int(m.Key("expert_count"), 0);
  e.used = e.count > 0 ? m.g.Int(m.Key("expert_used_count")) : 0;
  e.ff = e.count > 0 ? m.g.Int(m.Key("expert_feed_forward_length")) : 0;
  return e;
}

// The rows of a matrix tensor: a vocabulary.
Result<int64_t> VocabRows(const GgufFile& f, const std::string& name) {
  auto t = f.tensors().find(name);
  if (t == f.tensors().end() || t->second.shape.size() != 2) {
    return Error(f.path() + ": tensor '" + name + "' is missing or not a matrix");
  }
  return t->second.shape[0];
}

// Assistants have no K/V projections: their full layers read the target's own KV-head count.
bool FullLayersKEqV(const TextMetadata& m, const GgufTextConfig& c) {
  const LayerWidths& w = c.widths;
  if (m.assistant) return w.kv_full != w.kv_sliding;
  const int first_full = c.pattern.first_full;
  if (first_full < 0 || first_full >= c.layers - w.shared) return false;
  const std::string b = "blk." + std::to_string(first_full) + ".";
  return m.f.tensors().count(b + "attn_k.weight") && !m.f.tensors().count(b + "attn_v.weight");
}

// Full layers rotate the pairs whose rope_freqs factor is 1; the factor 1e30 stops the rest.
Result<double> FullRotaryFactor(const TextMetadata& m, int64_t hd_full) {
  auto rf = m.f.tensors().find("rope_freqs.weight");
  if (rf == m.f.tensors().end()) {
    // (A malformed rope.dimension_count reads as 0 here rather than failing: kept as it was.)
    return RotaryFactor(m.g.Int(m.Key("rope.dimension_count"), hd_full) / 2, hd_full);
  }
  const TensorView& v = rf->second;
  if (v.dtype != DType::kF32 || v.shape.size() != 1 || v.shape[0] * 2 != hd_full) {
    return Error(m.f.path() + ": tensor 'rope_freqs.weight': expected F32 [" +
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
      return Error(m.f.path() +
                   ": tensor 'rope_freqs.weight': only factors of 1 (rotated) followed "
                   "by 1e30 (not rotated) are supported; entry " +
                   std::to_string(i) + " is " + std::to_string(x[static_cast<size_t>(i)]));
    }
  }
  return RotaryFactor(rotated, hd_full);
}

// Shapes the metadata leaves to the tensors: the vocabularies, whether full layers compute V, and
// which pairs full layers rotate.
Result<TensorFacts> ReadTensorFacts(const TextMetadata& m, const GgufTextConfig& c) {
  TensorFacts t;
  Result<int64_t> vocab = VocabRows(m.f, "token_embd.weight");
  if (!vocab.ok()) return vocab.status();
  t.vocab = t.ple_vocab = *vocab;
  if (c.misc.ple > 0) {
    Result<int64_t> ple_vocab = VocabRows(m.f, "per_layer_token_embd.weight");
    if (!ple_vocab.ok()) return ple_vocab.status();
    t.ple_vocab = *ple_vocab;
  }
  t.k_eq_v = FullLayersKEqV(m, c);
  Result<double> factor = FullRotaryFactor(m, c.attn.head_dim_full);
  if (!factor.ok()) return factor.status();
  t.factor_full = *factor;
  return t;
}

Json ToConfigJson(const GgufTextConfig& c) {
  const LayerWidths& w = c.widths;
  Json j = {
      {"hidden_size", c.hidden},
      {"num_hidden_layers", c.layers},
      {"num_attention_heads", w.heads},
      {"num_key_value_heads", w.kv_sliding},
      {"num_global_key_value_heads", w.kv_full},
      {"head_dim", c.attn.head_dim_swa},
      {"global_head_dim", c.attn.head_dim_full},
      {"attention_k_eq_v", c.tensors.k_eq_v},
      {"intermediate_size", w.ff},
      {"use_double_wide_mlp", w.double_wide},
      {"hidden_size_per_layer_input", c.misc.ple},
      {"vocab_size", c.tensors.vocab},
      {"vocab_size_per_layer_input", c.tensors.ple_vocab},
      {"num_kv_shared_layers", w.shared},
      {"sliding_window", c.attn.window},
      {"max_position_embeddings", c.misc.context},
      {"final_logit_softcapping", c.misc.softcap},
      {"rms_norm_eps", c.misc.eps},
      {"layer_types", c.pattern.types},
      {"rope_parameters",
       {{"sliding_attention",
         {{"rope_type", "default"},
          {"rope_theta", c.rope.base_swa},
          {"partial_rotary_factor", RotaryFactor(c.rope.rot_swa / 2, c.attn.head_dim_swa)}}},
        {"full_attention",
         {{"rope_type", "proportional"},
          {"rope_theta", c.rope.base_full},
          {"partial_rotary_factor", c.tensors.factor_full}}}}},
  };
  if (c.experts.count > 0) {
    j["enable_moe_block"] = true;
    j["num_experts"] = c.experts.count;
    j["top_k_experts"] = c.experts.used;
    j["moe_intermediate_size"] = c.experts.ff;
  }
  return j;
}

// The text-config fields `arch`'s keys describe (target "gemma4" and "gemma4-assistant" share
// them); `assistant` relaxes what only targets carry. The steps read the keys in a fixed order:
// the reader keeps the first error, so the order decides which of several is reported.
Result<Json> TextConfigFromGguf(const GgufFile& f, const std::string& arch, bool assistant) {
  FieldReader g(f.metadata(), f.path());
  const TextMetadata m{f, g, arch, assistant};
  GgufTextConfig c;
  if (!CheckArchitecture(m) || !ReadSizes(m, &c)) return g.status();
  std::optional<LayerPattern> pattern = ReadLayerPattern(m, c.layers);
  if (!pattern) return g.status();
  c.pattern = std::move(*pattern);
  std::optional<LayerWidths> widths = ReadLayerWidths(m, c.pattern);
  if (!widths) return g.status();
  c.widths = *widths;
  c.attn = ReadAttentionDims(m, c.hidden, c.widths.heads);
  c.misc = ReadNormsAndLimits(m);
  c.rope = ReadRopeBases(m, c.attn.head_dim_swa);
  c.experts = ReadExperts(m);
  if (!g.ok()) return g.status();
  Result<TensorFacts> tensors = ReadTensorFacts(m, c);
  if (!tensors.ok()) return tensors.status();
  c.tensors = *tensors;
  return ToConfigJson(c);
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
