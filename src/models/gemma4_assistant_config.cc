// The Gemma 4 assistant's config (config.json or GGUF metadata), its checks against a target, and
// opening an assistant checkpoint.
#include <sstream>

#include "specula/base/json.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/models/gemma4_gguf.h"

namespace specula {

namespace {

// model_type, the target width and the centroid head's fields; the text_config object (nullptr
// when missing, with the error in `top`).
const Json* ReadTopLevel(FieldReader& top, Gemma4AssistantConfig* c) {
  const std::string model_type = top.String("model_type");
  if (top.ok() && model_type != "gemma4_assistant" && model_type != "gemma4_unified_assistant") {
    top.Fail("model_type",
             "not a Gemma 4 assistant; expected gemma4_assistant or gemma4_unified_assistant");
  }
  c->backbone_hidden_size = top.Int32("backbone_hidden_size");
  c->use_ordered_embeddings = top.Bool("use_ordered_embeddings", false);
  c->num_centroids = top.Int32("num_centroids", 2048);
  c->centroid_top_k = top.Int32("centroid_intermediate_top_k", 32);
  return top.Object("text_config", /*required=*/true);
}

// architectures[0], when it is a string: shown by Describe only, so anything else is ignored.
void ReadArchitecture(const Json& root, Gemma4AssistantConfig* c) {
  if (root.contains("architectures") && root["architectures"].is_array() &&
      !root["architectures"].empty() && root["architectures"][0].is_string()) {
    c->architecture = root["architectures"][0].get<std::string>();
  }
}

// The text_config fields the config does not keep as members.
struct TextLayers {
  int layers = 0;
  int shared = 0;  // num_kv_shared_layers
  std::vector<std::string> types;
};

TextLayers ReadTextConfig(FieldReader& r, Gemma4AssistantConfig* c) {
  TextLayers t;
  c->hidden_size = r.Int32("hidden_size");
  t.layers = r.Int32("num_hidden_layers");
  ReadAttentionGeometry(r, c);
  c->intermediate_size = r.Int32("intermediate_size");
  c->sliding_window = r.Int32("sliding_window");
  c->vocab_size = r.Int32("vocab_size");
  c->rms_norm_eps = static_cast<float>(r.Float("rms_norm_eps", 1e-6));
  t.shared = r.Int32("num_kv_shared_layers", t.layers);
  t.types = r.StringList("layer_types");
  return t;
}

// Sizes, and what a target has but an assistant must not (own KV, experts, per-layer inputs).
// backbone_hidden_size is a top-level field, so its error goes to `top`.
void CheckShape(FieldReader& top, FieldReader& r, const Gemma4AssistantConfig& c,
                const TextLayers& t) {
  for (const auto& [key, v] : {std::pair<const char*, int>{"hidden_size", c.hidden_size},
                               {"num_hidden_layers", t.layers},
                               {"num_attention_heads", c.num_heads},
                               {"num_key_value_heads", c.num_kv_heads},
                               {"num_global_key_value_heads", c.num_global_kv_heads},
                               {"head_dim", c.head_dim},
                               {"global_head_dim", c.global_head_dim},
                               {"intermediate_size", c.intermediate_size},
                               {"sliding_window", c.sliding_window},
                               {"vocab_size", c.vocab_size}}) {
    if (v <= 0) r.Fail(key, "must be a positive integer");
  }
  if (c.backbone_hidden_size <= 0) top.Fail("backbone_hidden_size", "must be a positive integer");
  if (t.shared != t.layers)
    r.Fail("num_kv_shared_layers",
           "must equal num_hidden_layers: every assistant layer reads the target's KV");
  if (static_cast<int>(t.types.size()) != t.layers)
    r.Fail("layer_types", "must have num_hidden_layers entries");
  if (c.head_dim % 2 || c.global_head_dim % 2) r.Fail("head_dim", "head dims must be even");
  if (r.Bool("enable_moe_block", false))
    r.Fail("enable_moe_block", "must be false for an assistant");
  if (r.Int("hidden_size_per_layer_input", 0) != 0)
    r.Fail("hidden_size_per_layer_input", "must be 0 for an assistant");
}

void ParseLayerTypes(FieldReader& r, const std::vector<std::string>& types,
                     Gemma4AssistantConfig* c) {
  for (const std::string& t : types) {
    if (t == "sliding_attention") {
      c->layer_types.push_back(AttnType::kSliding);
    } else if (t == "full_attention") {
      c->layer_types.push_back(AttnType::kFull);
    } else {
      r.Fail("layer_types", "unknown layer type '" + t + "'");
    }
  }
}

// The centroid head splits the vocabulary into equal clusters and scores the top ones.
void CheckCentroidHead(FieldReader& top, const Gemma4AssistantConfig& c) {
  if (!c.use_ordered_embeddings) return;
  if (c.num_centroids <= 0 || c.vocab_size % c.num_centroids != 0) {
    top.Fail("num_centroids",
             "must be positive and divide vocab_size (" + std::to_string(c.vocab_size) + ")");
  }
  if (c.centroid_top_k <= 0 || c.centroid_top_k > c.num_centroids) {
    top.Fail("centroid_intermediate_top_k", "must be in [1, num_centroids]");
  }
}

void CheckHeadsDivide(FieldReader& r, const Gemma4AssistantConfig& c, int layers) {
  for (int l = 0; l < layers; ++l) {
    if (c.num_heads % c.LayerKvHeads(l) != 0) {
      r.Fail("num_attention_heads",
             "must be a multiple of the KV-head count of layer " + std::to_string(l));
    }
  }
}

}  // namespace

// Two readers, the top level's and text_config's, each keeping its first error; a top-level error
// is reported before a text_config one.
Result<Gemma4AssistantConfig> Gemma4AssistantConfig::FromJson(const Json& root,
                                                              const std::string& file) {
  Gemma4AssistantConfig c;
  FieldReader top(root, file);
  const Json* text = ReadTopLevel(top, &c);
  if (!top.ok()) return top.status();
  ReadArchitecture(root, &c);
  FieldReader r(*text, file, "text_config");
  const TextLayers t = ReadTextConfig(r, &c);
  if (!r.ok()) return r.status();
  CheckShape(top, r, c, t);
  ParseLayerTypes(r, t.types, &c);
  ReadRopeParameters(r, c.head_dim, c.global_head_dim, &c.rope_sliding, &c.rope_full);
  CheckCentroidHead(top, c);
  if (!top.ok()) return top.status();
  if (!r.ok()) return r.status();
  // (After the checks above: every layer has a type and a positive KV-head count.)
  CheckHeadsDivide(r, c, t.layers);
  if (!r.ok()) return r.status();
  return c;
}

int Gemma4AssistantConfig::LayerHeadDim(int l) const {
  return layer_types[static_cast<size_t>(l)] == AttnType::kFull ? global_head_dim : head_dim;
}

int Gemma4AssistantConfig::LayerKvHeads(int l) const {
  return layer_types[static_cast<size_t>(l)] == AttnType::kFull && attention_k_eq_v
             ? num_global_kv_heads
             : num_kv_heads;
}

std::string Gemma4AssistantConfig::Describe() const {
  std::ostringstream s;
  int n_full = 0;
  for (AttnType t : layer_types) n_full += t == AttnType::kFull;
  const int layers = static_cast<int>(layer_types.size());
  s << "architecture          " << architecture << " (MTP assistant)\n"
    << "hidden_size           " << hidden_size << " (target width " << backbone_hidden_size << ")\n"
    << "layers                " << layers << " (" << layers - n_full << " sliding, " << n_full
    << " full; Q-only attention into the target's KV cache, none of its own)\n"
    << "attention heads       " << num_heads << " (kv: sliding " << num_kv_heads << ", full "
    << (attention_k_eq_v ? num_global_kv_heads : num_kv_heads) << ")\n"
    << "head_dim              " << head_dim << " sliding, " << global_head_dim << " full\n"
    << "intermediate_size     " << intermediate_size << "\n"
    << "sliding_window        " << sliding_window << "\n"
    << "vocab_size            " << vocab_size << "\n"
    << "head                  ";
  if (use_ordered_embeddings) {
    s << "centroid: " << num_centroids << " clusters of " << vocab_size / num_centroids
      << " ids, top " << centroid_top_k << " clusters scored ("
      << centroid_top_k * vocab_size / num_centroids << " candidates)\n";
  } else {
    s << "dense (all " << vocab_size << " ids)\n";
  }
  s << "reads target layers   sliding layers: the target's last KV-owning sliding layer; full "
       "layers: its last KV-owning full layer\n";
  return s.str();
}

Result<AssistantCheckpoint> OpenAssistantCheckpoint(const std::string& dir) {
  // A .gguf file (llama.cpp's gemma4-assistant layout) stands for the directory: its metadata for
  // config.json, its tensors under their HF names.
  std::unique_ptr<GgufFile> gguf;
  std::string cfg_path = dir + "/config.json";
  Result<Json> j = Json();
  if (IsGgufPath(dir)) {
    Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(dir);
    if (!f.ok()) return f.status();
    gguf = std::move(*f);
    j = Gemma4AssistantConfigFromGguf(*gguf);
    cfg_path = dir + " (its metadata read as config.json)";
  } else {
    j = ReadJsonFile(cfg_path);
  }
  if (!j.ok()) return j.status();
  Result<Gemma4AssistantConfig> cfg = Gemma4AssistantConfig::FromJson(*j, cfg_path);
  if (!cfg.ok()) return cfg.status();
  Result<std::unique_ptr<WeightStore>> store =
      gguf ? WeightStore::FromGguf(std::move(gguf), Gemma4AssistantHfName)
           : WeightStore::OpenDir(dir);
  if (!store.ok()) return store.status();
  return AssistantCheckpoint{std::move(*cfg), std::move(*store), cfg_path};
}

Status Gemma4AssistantConfig::CheckFits(const Gemma4Config& t, const std::string& file) const {
  // Pairing: the assistant reads the target's embedding, hidden state and KV cache.
  auto mismatch = [&](const std::string& what) {
    return Error(file + ": assistant does not fit the target: " + what);
  };
  if (backbone_hidden_size != t.hidden_size) {
    return mismatch("backbone_hidden_size " + std::to_string(backbone_hidden_size) +
                    " != target hidden_size " + std::to_string(t.hidden_size));
  }
  if (vocab_size != t.vocab_size) {
    return mismatch("vocab_size " + std::to_string(vocab_size) + " != target vocab_size " +
                    std::to_string(t.vocab_size));
  }
  for (int l = 0; l < static_cast<int>(layer_types.size()); ++l) {
    const AttnType type = layer_types[static_cast<size_t>(l)];
    const char* name = type == AttnType::kFull ? "full" : "sliding";
    const int src = t.LastKvOwner(type);
    if (src < 0)
      return mismatch(std::string("layer ") + std::to_string(l) + " is " + name +
                      " but the target has no KV-owning " + name + " layer");
    const Gemma4LayerSpec& s = t.layers[static_cast<size_t>(src)];
    if (LayerHeadDim(l) != s.head_dim) {
      return mismatch(std::string(name) + " head dim " + std::to_string(LayerHeadDim(l)) +
                      " != target layer " + std::to_string(src) + " head dim " +
                      std::to_string(s.head_dim));
    }
    if (LayerKvHeads(l) != s.num_kv_heads) {
      return mismatch(std::string(name) + " KV heads " + std::to_string(LayerKvHeads(l)) +
                      " != target layer " + std::to_string(src) + " KV heads " +
                      std::to_string(s.num_kv_heads));
    }
  }
  if (sliding_window > t.sliding_window) {
    return mismatch("sliding_window " + std::to_string(sliding_window) + " exceeds the target's " +
                    std::to_string(t.sliding_window) +
                    " (the target cache does not keep those keys)");
  }
  return OkStatus();
}

}  // namespace specula
