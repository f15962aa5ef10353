// Loading a Gemma 4 text decoder: config.json or GGUF metadata to a validated config, then every
// tensor bound after checking its presence, dtype and shape against that config.
#include <cmath>

#include "specula/base/json.h"
#include "specula/kernels/ops.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_gguf.h"
#include "src/models/binder.h"
#include "src/models/gemma4_parts.h"

namespace specula {

Gemma4Model::~Gemma4Model() = default;

Gemma4Model::Gemma4Model(Key, Gemma4Config config, std::unique_ptr<WeightStore> store)
    : config_(std::move(config)), store_(std::move(store)) {}

Result<std::unique_ptr<Gemma4Model>> Gemma4Model::Load(const std::string& dir) {
  if (IsGgufPath(dir)) {
    Result<std::unique_ptr<GgufFile>> file = GgufFile::Open(dir);
    if (!file.ok()) return file.status();
    return LoadGguf(std::move(*file), dir);
  }
  const std::string cfg_path = dir + "/config.json";
  Result<Json> j = ReadJsonFile(cfg_path);
  if (!j.ok()) return j.status();
  Result<Gemma4Config> cfg = Gemma4Config::FromJson(*j, cfg_path);
  if (!cfg.ok()) return cfg.status();
  Result<std::unique_ptr<WeightStore>> store = WeightStore::OpenDir(dir);
  if (!store.ok()) return store.status();
  // Text-only exports use "model." even under a multimodal model_type; follow the file.
  Gemma4Config c = std::move(*cfg);
  if ((*store)->Find(c.tensor_prefix + "embed_tokens.weight") == nullptr) {
    for (const char* p : {"model.language_model.", "model."}) {
      if ((*store)->Find(std::string(p) + "embed_tokens.weight") != nullptr) c.tensor_prefix = p;
    }
  }
  auto model = std::make_unique<Gemma4Model>(Key(), std::move(c), std::move(*store));
  Status s = model->Bind();
  if (!s.ok()) return s.WithContext(dir);
  return model;
}

Result<std::unique_ptr<Gemma4Model>> Gemma4Model::LoadGguf(std::unique_ptr<GgufFile> file,
                                                           const std::string& path) {
  Result<Json> j = Gemma4ConfigFromGguf(*file);
  if (!j.ok()) return j.status();
  Result<Gemma4Config> cfg =
      Gemma4Config::FromJson(*j, path + " (its metadata read as config.json)");
  if (!cfg.ok()) return cfg.status();
  const std::string prefix = cfg->tensor_prefix;
  Result<std::unique_ptr<WeightStore>> store = WeightStore::FromGguf(
      std::move(file), [&](const std::string& name) { return Gemma4HfName(name, prefix); });
  if (!store.ok()) return store.status();
  auto model = std::make_unique<Gemma4Model>(Key(), std::move(*cfg), std::move(*store));
  Status s = model->Bind();
  if (!s.ok()) return s.WithContext(path + " (GGUF tensors under their Hugging Face names)");
  return model;
}

namespace {

// Mixture of experts (26B-A4B): the router [E, H] and the expert stacks [E, rows, cols] of one
// layer, bound in this order because the binder reports the first problem.
MoeWeights BindExperts(Binder& b, const std::string& p, const Gemma4Config& c) {
  const int64_t H = c.hidden_size, E = c.num_experts, F = c.moe_intermediate_size;
  MoeWeights moe = {.experts = c.num_experts,
                    .top_k = c.top_k_experts,
                    .width = c.moe_intermediate_size,
                    .router = b.Mat(p + "router.proj.weight", E, H),
                    .router_scale = b.Vec(p + "router.scale", H),
                    .per_expert_scale = b.Vec(p + "router.per_expert_scale", E),
                    .gate_up = {},
                    .gate = {},
                    .up = {},
                    .down = b.Stack(p + "experts.down_proj", E, H, F)};
  // HF fuses gate and up; a GGUF may keep them apart (ffn_gate_exps, ffn_up_exps).
  if (b.Has(p + "experts.gate_up_proj") || !b.Has(p + "experts.gate_proj")) {
    moe.gate_up = b.Stack(p + "experts.gate_up_proj", E, 2 * F, H);
  } else {
    moe.gate = b.Stack(p + "experts.gate_proj", E, F, H);
    moe.up = b.Stack(p + "experts.up_proj", E, F, H);
  }
  return moe;
}

// Per layer: the cache slot of the layer it reads KV from (slots numbered over the owners).
std::vector<int> KvSlots(const Gemma4Config& c) {
  const size_t L = static_cast<size_t>(c.num_layers);
  int slots = 0;
  std::vector<int> own_slot(L, -1);
  for (size_t i = 0; i < L; ++i) {
    if (c.layers[i].owns_kv) own_slot[i] = slots++;
  }
  std::vector<int> kv_slot(L);
  for (size_t i = 0; i < L; ++i) {
    kv_slot[i] = own_slot[static_cast<size_t>(c.layers[i].kv_source)];
  }
  return kv_slot;
}

}  // namespace

Status Gemma4Model::Bind() {
  const Gemma4Config& c = config_;
  Binder b(*store_, c.tensor_prefix);
  if (Status s = BindGlobals(b); !s.ok()) return s;
  layers_.resize(static_cast<size_t>(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) BindLayer(b, i);
  if (!b.status().ok()) return b.status();

  // HF casts the sqrt(H) scale to the embedding dtype before multiplying (bf16: 39.25 for H=1536).
  embed_scale_ = RoundThrough(embed_.dtype, std::sqrt(static_cast<float>(c.hidden_size)));
  if (c.ple_dim > 0) {
    ple_embed_scale_ = RoundThrough(ple_embed_.dtype, std::sqrt(static_cast<float>(c.ple_dim)));
  }
  kv_slot_ = KvSlots(c);
  rope_sliding_ = RopeInvFreq(c.head_dim, c.rope_sliding.rotated_pairs, c.rope_sliding.theta);
  rope_full_ = RopeInvFreq(c.global_head_dim, c.rope_full.rotated_pairs, c.rope_full.theta);
  return OkStatus();
}

// The embedding, final norm, LM head and per-layer-input tables. Problems in `b` are left for the
// caller; an untied LM head of the wrong shape is returned at once.
Status Gemma4Model::BindGlobals(Binder& b) {
  const Gemma4Config& c = config_;
  const int64_t H = c.hidden_size, V = c.vocab_size, P = c.ple_dim, L = c.num_layers;
  embed_ = b.Mat("embed_tokens.weight", V, H);
  final_norm_ = b.Vec("norm.weight", H);
  lm_head_ = embed_;
  if (store_->Find("lm_head.weight") != nullptr && !b.Has("lm_head.weight")) {
    // Checkpoints usually omit lm_head (tied); when present it must match the embedding shape.
    Binder root(*store_, "");
    MatView head = root.Mat("lm_head.weight", V, H);
    if (!root.status().ok()) return root.status();
    lm_head_ = head;
  }
  if (P > 0) {
    ple_embed_ = b.Mat("embed_tokens_per_layer.weight", c.ple_vocab, L * P);
    ple_proj_ = b.Mat("per_layer_model_projection.weight", L * P, H);
    ple_norm_ = b.Vec("per_layer_projection_norm.weight", P);
  }
  return OkStatus();
}

// Layer i's norms, attention, MLP, per-layer input and experts, in that order.
void Gemma4Model::BindLayer(Binder& b, int i) {
  const Gemma4Config& c = config_;
  const Gemma4LayerSpec& s = c.layers[static_cast<size_t>(i)];
  LayerWeights& w = layers_[static_cast<size_t>(i)];
  const std::string p = "layers." + std::to_string(i) + ".";
  const int64_t H = c.hidden_size, P = c.ple_dim;
  const int64_t hd = s.head_dim, qd = c.num_heads * hd, kvd = s.num_kv_heads * hd;
  w.input_norm = b.Vec(p + "input_layernorm.weight", H);
  w.post_attn_norm = b.Vec(p + "post_attention_layernorm.weight", H);
  w.pre_ffn_norm = b.Vec(p + "pre_feedforward_layernorm.weight", H);
  w.post_ffn_norm = b.Vec(p + "post_feedforward_layernorm.weight", H);
  w.layer_scalar = b.Vec(p + "layer_scalar", 1)[0];
  w.q = b.Mat(p + "self_attn.q_proj.weight", qd, H);
  w.q_norm = b.Vec(p + "self_attn.q_norm.weight", hd);
  w.o = b.Mat(p + "self_attn.o_proj.weight", H, qd);
  if (s.owns_kv) {  // shared layers' k/v tensors, if a file has them, are ignored (as in HF)
    w.k = b.Mat(p + "self_attn.k_proj.weight", kvd, H);
    w.k_norm = b.Vec(p + "self_attn.k_norm.weight", hd);
    if (!s.k_eq_v) w.v = b.Mat(p + "self_attn.v_proj.weight", kvd, H);
  }
  w.gate = b.Mat(p + "mlp.gate_proj.weight", s.ffn_dim, H);
  w.up = b.Mat(p + "mlp.up_proj.weight", s.ffn_dim, H);
  w.down = b.Mat(p + "mlp.down_proj.weight", H, s.ffn_dim);
  if (P > 0) {
    w.ple_gate = b.Mat(p + "per_layer_input_gate.weight", P, H);
    w.ple_proj = b.Mat(p + "per_layer_projection.weight", H, P);
    w.ple_post_norm = b.Vec(p + "post_per_layer_input_norm.weight", H);
  }
  if (c.moe()) {
    w.pre_ffn_norm_2 = b.Vec(p + "pre_feedforward_layernorm_2.weight", H);
    w.post_ffn_norm_1 = b.Vec(p + "post_feedforward_layernorm_1.weight", H);
    w.post_ffn_norm_2 = b.Vec(p + "post_feedforward_layernorm_2.weight", H);
    w.moe = BindExperts(b, p, c);
  }
}

namespace {

bool IsExpertStack(const std::string& name) { return name.find(".experts.") != std::string::npos; }

}  // namespace

size_t Gemma4Model::DenseWeightBytes() const {
  size_t bytes = 0;
  for (const auto& [name, t] : store_->all()) {
    if (IsExpertStack(name)) continue;
    if (name == config_.tensor_prefix + "embed_tokens_per_layer.weight") {
      bytes += t->nbytes / static_cast<size_t>(t->shape[0]);  // one gathered row
    } else if (name.rfind(config_.tensor_prefix, 0) == 0 || name == "lm_head.weight") {
      bytes += t->nbytes;  // the tied embedding counts once: read whole by the LM head
    }
  }
  return bytes;
}

size_t Gemma4Model::LayerWeightBytes() const {
  size_t bytes = 0;
  const std::string layers = config_.tensor_prefix + "layers.";
  for (const auto& [name, t] : store_->all()) {
    if (!IsExpertStack(name) && name.rfind(layers, 0) == 0) bytes += t->nbytes;
  }
  return bytes;
}

size_t Gemma4Model::ExpertBytes() const {
  if (!config_.moe()) return 0;
  size_t bytes = 0;
  for (const auto& [name, t] : store_->all()) {
    if (IsExpertStack(name) && name.rfind(config_.tensor_prefix, 0) == 0) bytes += t->nbytes;
  }
  return bytes / static_cast<size_t>(config_.num_layers * config_.num_experts);
}

size_t Gemma4Model::WeightBytesPerToken() const {
  return DenseWeightBytes() +
         static_cast<size_t>(config_.num_layers * config_.top_k_experts) * ExpertBytes();
}

size_t Gemma4Model::MatMulParamsPerToken() const {
  size_t n = 0;
  for (const auto& [name, t] : store_->all()) {
    if (name.rfind(config_.tensor_prefix, 0) != 0 || t->shape.size() < 2) continue;
    if (name == config_.tensor_prefix + "embed_tokens_per_layer.weight" ||
        name == config_.tensor_prefix + "embed_tokens.weight")
      continue;
    const size_t params = static_cast<size_t>(t->numel());
    // A token runs top_k of a layer's experts.
    n += IsExpertStack(name) ? params / static_cast<size_t>(config_.num_experts) *
                                   static_cast<size_t>(config_.top_k_experts)
                             : params;
  }
  return n;
}

std::unique_ptr<KvCache> Gemma4Model::NewCache(int context, int headroom) const {
  std::vector<KvLayerShape> shapes;
  for (const Gemma4LayerSpec& s : config_.layers) {
    if (!s.owns_kv) continue;
    shapes.push_back(
        {.kv_dim = s.num_kv_heads * s.head_dim, .sliding = s.type == AttnType::kSliding});
  }
  return std::make_unique<KvCache>(
      shapes,
      KvCacheOptions{.context = context, .window = config_.sliding_window, .headroom = headroom});
}

void Gemma4Model::EmbedScaled(int token, float* out) const {
  const void* row = embed_.Row(token);
  for (int64_t i = 0; i < embed_.cols; ++i)
    out[i] = LoadAsF32(embed_.dtype, row, static_cast<size_t>(i)) * embed_scale_;
}

}  // namespace specula
