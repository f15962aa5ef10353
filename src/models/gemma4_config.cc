#include "specula/models/gemma4_config.h"

#include <cmath>
#include <sstream>

namespace specula {
namespace {

RopeSpec ReadRope(FieldReader& parent, const Json* rope_params, const std::string& key,
                  int head_dim, double default_theta, const std::string& default_type,
                  double default_factor) {
  RopeSpec spec;
  std::string type = default_type;
  double factor = default_factor;
  spec.theta = default_theta;
  if (rope_params != nullptr) {
    FieldReader rp(*rope_params, parent.file(), parent.PathOf("rope_parameters"));
    if (const Json* o = rp.Object(key, /*required=*/false)) {
      FieldReader r(*o, parent.file(), rp.PathOf(key));
      type = r.String("rope_type", default_type);
      spec.theta = r.Float("rope_theta", default_theta);
      factor = r.Float("partial_rotary_factor", type == "proportional" ? default_factor : 1.0);
      if (type != "default" && type != "proportional") r.Fail("rope_type", "unsupported RoPE type");
      if (spec.theta <= 0) r.Fail("rope_theta", "must be positive");
      if (factor <= 0 || factor > 1) r.Fail("partial_rotary_factor", "must be in (0, 1]");
      if (!r.ok()) parent.Fail("rope_parameters", r.status().message());
    }
  }
  spec.rotated_pairs = static_cast<int>(std::floor(factor * head_dim / 2.0));
  return spec;
}

// Where the text config sits: the root itself, or its text_config object.
struct TextSection {
  const Json* json = nullptr;
  std::string path;  // "" = the root
};

// model_type, which places the text config and the tensors, and the multimodal placeholder ids.
Result<TextSection> ReadTopLevel(const Json& root, const std::string& file, Gemma4Config* c) {
  FieldReader top(root, file);
  c->model_type = top.String("model_type");
  if (!top.ok()) return top.status();
  TextSection text;
  if (c->model_type == "gemma4" || c->model_type == "gemma4_unified") {
    text = {top.Object("text_config", /*required=*/true), "text_config"};
    c->tensor_prefix = "model.language_model.";
  } else if (c->model_type == "gemma4_text" || c->model_type == "gemma4_unified_text") {
    text.json = &root;
    c->tensor_prefix = "model.";
  } else {
    top.Fail("model_type",
             "unknown model_type; expected gemma4, gemma4_unified, gemma4_text or "
             "gemma4_unified_text");
  }
  for (const char* k : {"image_token_id", "audio_token_id", "video_token_id"}) {
    const int64_t id = top.Int(k, -1);
    if (id >= 0) c->multimodal_token_ids.push_back(static_cast<int>(id));
  }
  if (!top.ok()) return top.status();
  return text;
}

// Sizes, attention geometry, MLP width, per-layer inputs, vocabulary and KV sharing.
void ReadShape(FieldReader& r, Gemma4Config* c) {
  c->hidden_size = r.Int32("hidden_size");
  c->num_layers = r.Int32("num_hidden_layers");
  ReadAttentionGeometry(r, c);
  c->intermediate_size = r.Int32("intermediate_size");
  c->use_double_wide_mlp = r.Bool("use_double_wide_mlp", false);
  c->ple_dim = r.Int32("hidden_size_per_layer_input", 0);
  c->vocab_size = r.Int32("vocab_size");
  c->ple_vocab = r.Int32("vocab_size_per_layer_input", c->vocab_size);
  c->num_kv_shared_layers = r.Int32("num_kv_shared_layers", 0);
}

// The attention window, context length, logit softcap, norm epsilon and activation.
void ReadLimits(FieldReader& r, Gemma4Config* c) {
  c->sliding_window = r.Int32("sliding_window");
  c->max_position_embeddings = r.Int32("max_position_embeddings");
  c->final_logit_softcapping = static_cast<float>(r.Float("final_logit_softcapping", 0.0));
  c->rms_norm_eps = static_cast<float>(r.Float("rms_norm_eps", 1e-6));
  const std::string act = r.String("hidden_activation", "gelu_pytorch_tanh");
  if (act != "gelu_pytorch_tanh")
    r.Fail("hidden_activation", "only gelu_pytorch_tanh is supported");
}

// Mixture of experts (26B-A4B): read only when enable_moe_block is set.
void ReadExperts(FieldReader& r, Gemma4Config* c) {
  if (!r.Bool("enable_moe_block", false)) return;
  c->num_experts = r.Int32("num_experts");
  c->top_k_experts = r.Int32("top_k_experts");
  c->moe_intermediate_size = r.Int32("moe_intermediate_size");
  if (r.ok() && c->num_experts <= 0) r.Fail("num_experts", "must be a positive integer");
  if (r.ok() && (c->top_k_experts <= 0 || c->top_k_experts > c->num_experts))
    r.Fail("top_k_experts", "must be in [1, num_experts = " + std::to_string(c->num_experts) + "]");
  if (r.ok() && c->moe_intermediate_size <= 0)
    r.Fail("moe_intermediate_size", "must be a positive integer");
}

// Ranges. Each check names the field and shows its value; the reader keeps the first failure.
void CheckRanges(FieldReader& r, const Gemma4Config& c, size_t layer_types) {
  auto positive = [&](const char* key, int v) {
    if (v <= 0) r.Fail(key, "must be a positive integer");
  };
  positive("hidden_size", c.hidden_size);
  positive("num_hidden_layers", c.num_layers);
  positive("num_attention_heads", c.num_heads);
  positive("num_key_value_heads", c.num_kv_heads);
  positive("num_global_key_value_heads", c.num_global_kv_heads);
  positive("head_dim", c.head_dim);
  positive("global_head_dim", c.global_head_dim);
  positive("intermediate_size", c.intermediate_size);
  positive("vocab_size", c.vocab_size);
  positive("sliding_window", c.sliding_window);
  positive("max_position_embeddings", c.max_position_embeddings);
  if (c.head_dim % 2 != 0) r.Fail("head_dim", "must be even (RoPE pairs)");
  if (c.global_head_dim % 2 != 0) r.Fail("global_head_dim", "must be even (RoPE pairs)");
  if (c.num_heads > 0 && c.num_kv_heads > 0 && c.num_heads % c.num_kv_heads != 0) {
    r.Fail("num_key_value_heads", "must divide num_attention_heads");
  }
  if (c.num_heads > 0 && c.num_global_kv_heads > 0 && c.num_heads % c.num_global_kv_heads != 0) {
    r.Fail("num_global_key_value_heads", "must divide num_attention_heads");
  }
  if (c.ple_dim < 0) r.Fail("hidden_size_per_layer_input", "must be >= 0");
  if (c.ple_dim > 0 && c.ple_vocab <= 0) {
    r.Fail("vocab_size_per_layer_input", "must be positive when per-layer inputs are used");
  }
  if (c.num_kv_shared_layers < 0 || c.num_kv_shared_layers >= c.num_layers) {
    r.Fail("num_kv_shared_layers", "must be in [0, num_hidden_layers)");
  }
  if (c.final_logit_softcapping < 0) r.Fail("final_logit_softcapping", "must be >= 0");
  if (!(c.rms_norm_eps > 0)) r.Fail("rms_norm_eps", "must be positive");
  if (static_cast<int>(layer_types) != c.num_layers) {
    r.Fail("layer_types",
           "must have num_hidden_layers (" + std::to_string(c.num_layers) + ") entries");
  }
}

bool ParseAttnType(FieldReader& r, const std::string& t, int layer, AttnType* type) {
  if (t == "sliding_attention") {
    *type = AttnType::kSliding;
  } else if (t == "full_attention") {
    *type = AttnType::kFull;
  } else {
    r.Fail("layer_types", "entry " + std::to_string(layer) + " is '" + t +
                              "'; expected sliding_attention or full_attention");
    return false;
  }
  return true;
}

// The last KV-owning layer before `first_shared` of `type`; -1 if none.
int KvSourceOf(const Gemma4Config& c, AttnType type, int first_shared) {
  for (int j = first_shared - 1; j >= 0; --j) {
    if (c.layers[static_cast<size_t>(j)].type == type) return j;
  }
  return -1;
}

// Per-layer facts from the layer types and the shared fields, so the forward pass never re-derives
// them. Stops at the first bad layer, its error in `r`.
void BuildLayers(FieldReader& r, const std::vector<std::string>& types, Gemma4Config* c) {
  const int first_shared = c->num_layers - c->num_kv_shared_layers;
  c->layers.resize(static_cast<size_t>(c->num_layers));
  for (int i = 0; i < c->num_layers; ++i) {
    Gemma4LayerSpec& l = c->layers[static_cast<size_t>(i)];
    if (!ParseAttnType(r, types[static_cast<size_t>(i)], i, &l.type)) break;
    const bool full = l.type == AttnType::kFull;
    l.head_dim = full ? c->global_head_dim : c->head_dim;
    l.k_eq_v = full && c->attention_k_eq_v;
    // HF: full layers use the global KV-head count only together with k_eq_v (12B/26B/31B).
    l.num_kv_heads = l.k_eq_v ? c->num_global_kv_heads : c->num_kv_heads;
    l.owns_kv = i < first_shared;
    l.ffn_dim = c->intermediate_size * ((c->use_double_wide_mlp && !l.owns_kv) ? 2 : 1);
    l.kv_source = l.owns_kv ? i : KvSourceOf(*c, l.type, first_shared);
    if (l.kv_source < 0) {
      r.Fail("num_kv_shared_layers",
             "shared layer " + std::to_string(i) + " has no earlier KV-owning layer of its type");
      break;
    }
  }
}

}  // namespace

void ReadRopeParameters(FieldReader& text, int head_dim, int global_head_dim, RopeSpec* sliding,
                        RopeSpec* full) {
  const Json* rope = text.Object("rope_parameters", /*required=*/false);
  *sliding = ReadRope(text, rope, "sliding_attention", head_dim, 10000.0, "default", 1.0);
  *full = ReadRope(text, rope, "full_attention", global_head_dim, 1e6, "proportional", 0.25);
}

// The steps read the fields in a fixed order: the reader keeps the first error, so the order
// decides which of several is reported.
Result<Gemma4Config> Gemma4Config::FromJson(const Json& root, const std::string& file) {
  Gemma4Config c;
  Result<TextSection> text = ReadTopLevel(root, file, &c);
  if (!text.ok()) return text.status();
  FieldReader r(*text->json, file, text->path);
  ReadShape(r, &c);
  ReadLimits(r, &c);
  ReadExperts(r, &c);
  if (r.Bool("attention_bias", false)) r.Fail("attention_bias", "must be false for Gemma 4");
  const std::vector<std::string> types = r.StringList("layer_types");
  if (!r.ok()) return r.status();
  CheckRanges(r, c, types.size());
  if (!r.ok()) return r.status();
  ReadRopeParameters(r, c.head_dim, c.global_head_dim, &c.rope_sliding, &c.rope_full);
  BuildLayers(r, types, &c);
  if (!r.ok()) return r.status();
  return c;
}

int Gemma4Config::LastKvOwner(AttnType type) const {
  for (int i = num_layers - 1; i >= 0; --i) {
    const Gemma4LayerSpec& l = layers[static_cast<size_t>(i)];
    if (l.owns_kv && l.type == type) return i;
  }
  return -1;
}

std::string Gemma4Config::Describe() const {
  std::ostringstream s;
  int n_full = 0, n_own = 0;
  for (const auto& l : layers) {
    n_full += l.type == AttnType::kFull;
    n_own += l.owns_kv;
  }
  s << "model_type            " << model_type << "\n"
    << "hidden_size           " << hidden_size << "\n"
    << "layers                " << num_layers << " (" << num_layers - n_full << " sliding, "
    << n_full << " full; " << n_own << " own KV)\n"
    << "attention heads       " << num_heads << " (kv: sliding " << num_kv_heads << ", full "
    << (attention_k_eq_v ? num_global_kv_heads : num_kv_heads) << ")\n"
    << "head_dim              " << head_dim << " sliding, " << global_head_dim << " full\n"
    << "attention_k_eq_v      " << (attention_k_eq_v ? "true" : "false") << "\n"
    << "intermediate_size     " << intermediate_size
    << (use_double_wide_mlp ? " (x2 on KV-shared layers)" : "") << "\n"
    << "per-layer input dim   " << ple_dim << "\n"
    << "kv shared layers      " << num_kv_shared_layers << "\n";
  if (moe()) {
    s << "experts               " << num_experts << " of width " << moe_intermediate_size
      << ", top " << top_k_experts << " per token, beside the dense MLP\n";
  }
  s << "sliding_window        " << sliding_window << "\n"
    << "max positions         " << max_position_embeddings << "\n"
    << "vocab_size            " << vocab_size << "\n"
    << "final softcap         " << final_logit_softcapping << "\n"
    << "rope                  sliding theta " << rope_sliding.theta << " ("
    << rope_sliding.rotated_pairs << " pairs), full theta " << rope_full.theta << " ("
    << rope_full.rotated_pairs << " pairs)\n";
  return s.str();
}

}  // namespace specula
