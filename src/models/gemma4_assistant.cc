// Gemma 4 assistant (MTP drafter): config, pairing checks, tensor binding, one draft step.
#include "specula/models/gemma4_assistant.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/kernels/ops.h"
#include "specula/models/gemma4_gguf.h"
#include "src/models/decoder_block.h"

namespace specula {

struct Gemma4Assistant::LayerWeights {
  std::vector<float> input_norm, post_attn_norm, pre_ffn_norm, post_ffn_norm;  // [H_d]
  float layer_scalar = 1.0f;
  MatView q, o, gate, up, down;
  std::vector<float> q_norm;  // [hd]
};

Result<Gemma4AssistantConfig> Gemma4AssistantConfig::FromJson(const Json& root,
                                                              const std::string& file) {
  Gemma4AssistantConfig c;
  FieldReader top(root, file);
  const std::string model_type = top.String("model_type");
  if (top.ok() && model_type != "gemma4_assistant" && model_type != "gemma4_unified_assistant") {
    top.Fail("model_type",
             "not a Gemma 4 assistant; expected gemma4_assistant or gemma4_unified_assistant");
  }
  c.backbone_hidden_size = top.Int32("backbone_hidden_size");
  c.use_ordered_embeddings = top.Bool("use_ordered_embeddings", false);
  c.num_centroids = top.Int32("num_centroids", 2048);
  c.centroid_top_k = top.Int32("centroid_intermediate_top_k", 32);
  const Json* text = top.Object("text_config", /*required=*/true);
  if (!top.ok()) return top.status();
  if (root.contains("architectures") && root["architectures"].is_array() &&
      !root["architectures"].empty() && root["architectures"][0].is_string()) {
    c.architecture = root["architectures"][0].get<std::string>();
  }
  FieldReader r(*text, file, "text_config");
  c.hidden_size = r.Int32("hidden_size");
  const int layers = r.Int32("num_hidden_layers");
  ReadAttentionGeometry(r, &c);
  c.intermediate_size = r.Int32("intermediate_size");
  c.sliding_window = r.Int32("sliding_window");
  c.vocab_size = r.Int32("vocab_size");
  c.rms_norm_eps = static_cast<float>(r.Float("rms_norm_eps", 1e-6));
  const int shared = r.Int32("num_kv_shared_layers", layers);
  const std::vector<std::string> types = r.StringList("layer_types");
  if (!r.ok()) return r.status();
  for (const auto& [key, v] : {std::pair<const char*, int>{"hidden_size", c.hidden_size},
                               {"num_hidden_layers", layers},
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
  if (shared != layers)
    r.Fail("num_kv_shared_layers",
           "must equal num_hidden_layers: every assistant layer reads the target's KV");
  if (static_cast<int>(types.size()) != layers)
    r.Fail("layer_types", "must have num_hidden_layers entries");
  if (c.head_dim % 2 || c.global_head_dim % 2) r.Fail("head_dim", "head dims must be even");
  if (r.Bool("enable_moe_block", false))
    r.Fail("enable_moe_block", "must be false for an assistant");
  if (r.Int("hidden_size_per_layer_input", 0) != 0)
    r.Fail("hidden_size_per_layer_input", "must be 0 for an assistant");
  for (const std::string& t : types) {
    if (t == "sliding_attention") {
      c.layer_types.push_back(AttnType::kSliding);
    } else if (t == "full_attention") {
      c.layer_types.push_back(AttnType::kFull);
    } else {
      r.Fail("layer_types", "unknown layer type '" + t + "'");
    }
  }
  ReadRopeParameters(r, c.head_dim, c.global_head_dim, &c.rope_sliding, &c.rope_full);
  if (c.use_ordered_embeddings) {
    if (c.num_centroids <= 0 || c.vocab_size % c.num_centroids != 0) {
      top.Fail("num_centroids",
               "must be positive and divide vocab_size (" + std::to_string(c.vocab_size) + ")");
    }
    if (c.centroid_top_k <= 0 || c.centroid_top_k > c.num_centroids) {
      top.Fail("centroid_intermediate_top_k", "must be in [1, num_centroids]");
    }
  }
  if (!top.ok()) return top.status();
  if (!r.ok()) return r.status();
  for (int l = 0; l < layers; ++l) {
    if (c.num_heads % c.LayerKvHeads(l) != 0) {
      r.Fail("num_attention_heads",
             "must be a multiple of the KV-head count of layer " + std::to_string(l));
    }
  }
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

Gemma4Assistant::Gemma4Assistant(Key, Gemma4AssistantConfig config,
                                 std::unique_ptr<WeightStore> store, const Gemma4Model& target)
    : config_(std::move(config)), store_(std::move(store)), target_(target) {}
Gemma4Assistant::~Gemma4Assistant() = default;

int Gemma4Assistant::SourceLayer(AttnType type) const { return target_.config().LastKvOwner(type); }

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

Result<std::unique_ptr<Gemma4Assistant>> Gemma4Assistant::Load(const std::string& dir,
                                                               const Gemma4Model& target) {
  Result<AssistantCheckpoint> ck = OpenAssistantCheckpoint(dir);
  if (!ck.ok()) return ck.status();
  if (Status s = ck->config.CheckFits(target.config(), ck->config_file); !s.ok()) return s;
  auto a =
      std::make_unique<Gemma4Assistant>(Key(), std::move(ck->config), std::move(ck->store), target);
  if (Status s = a->Bind(); !s.ok()) return s.WithContext(dir);
  return a;
}

Status Gemma4Assistant::Bind() {
  const Gemma4AssistantConfig& c = config_;
  const int64_t Hd = c.hidden_size, Hb = c.backbone_hidden_size, V = c.vocab_size;
  Status st;
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols) -> MatView {
    if (!st.ok()) return {};
    Result<const TensorView*> t = RequireTensor(*store_, name, {rows, cols});
    if (!t.ok()) {
      st = t.status();
      return {};
    }
    return {(*t)->dtype, (*t)->data, rows, cols};
  };
  auto vec = [&](const std::string& name, int64_t n) -> std::vector<float> {
    std::vector<float> v(static_cast<size_t>(n), 0.0f);
    if (!st.ok()) return v;
    Result<const TensorView*> t = RequireTensor(*store_, name, {n});
    if (!t.ok()) {
      st = t.status();
      return v;
    }
    for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsF32((*t)->dtype, (*t)->data, i);
    return v;
  };
  pre_proj_ = mat("pre_projection.weight", Hd, 2 * Hb);
  post_proj_ = mat("post_projection.weight", Hb, Hd);
  embed_ = mat("model.embed_tokens.weight", V, Hd);
  final_norm_ = vec("model.norm.weight", Hd);
  layers_.resize(c.layer_types.size());
  for (size_t l = 0; l < layers_.size(); ++l) {
    LayerWeights& w = layers_[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const int64_t hd = c.LayerHeadDim(static_cast<int>(l)), qd = c.num_heads * hd;
    w.input_norm = vec(p + "input_layernorm.weight", Hd);
    w.post_attn_norm = vec(p + "post_attention_layernorm.weight", Hd);
    w.pre_ffn_norm = vec(p + "pre_feedforward_layernorm.weight", Hd);
    w.post_ffn_norm = vec(p + "post_feedforward_layernorm.weight", Hd);
    w.layer_scalar = vec(p + "layer_scalar", 1)[0];
    w.q = mat(p + "self_attn.q_proj.weight", qd, Hd);
    w.q_norm = vec(p + "self_attn.q_norm.weight", hd);
    w.o = mat(p + "self_attn.o_proj.weight", Hd, qd);
    w.gate = mat(p + "mlp.gate_proj.weight", c.intermediate_size, Hd);
    w.up = mat(p + "mlp.up_proj.weight", c.intermediate_size, Hd);
    w.down = mat(p + "mlp.down_proj.weight", Hd, c.intermediate_size);
  }
  if (c.use_ordered_embeddings) {
    centroids_ = mat("masked_embedding.centroids.weight", c.num_centroids, Hd);
    if (!st.ok()) return st;
    const TensorView* ord = store_->Find("masked_embedding.token_ordering");
    if (ord == nullptr)
      return Error(
          "missing tensor 'masked_embedding.token_ordering' (use_ordered_embeddings is true)");
    const std::string where = *ord->file + ": tensor 'masked_embedding.token_ordering'";
    if ((ord->dtype != DType::kI64 && ord->dtype != DType::kI32) ||
        ord->shape != std::vector<int64_t>{V}) {
      return Error(where + ": expected an I64 vector of vocab_size (" + std::to_string(V) +
                   ") entries");
    }
    // Kept exact (never quantised) and checked to be a permutation: a bad entry would draft ids
    // outside the vocabulary.
    token_ordering_.resize(static_cast<size_t>(V));
    std::vector<uint8_t> seen(static_cast<size_t>(V), 0);
    for (size_t i = 0; i < token_ordering_.size(); ++i) {
      int64_t v = 0;
      if (ord->dtype == DType::kI64) {
        std::memcpy(&v, static_cast<const uint8_t*>(ord->data) + 8 * i, 8);
      } else {
        int32_t v32;
        std::memcpy(&v32, static_cast<const uint8_t*>(ord->data) + 4 * i, 4);
        v = v32;
      }
      if (v < 0 || v >= V || seen[static_cast<size_t>(v)]) {
        return Error(where + ": entry " + std::to_string(i) + " = " + std::to_string(v) +
                     " (must be a permutation of the vocabulary)");
      }
      seen[static_cast<size_t>(v)] = 1;
      token_ordering_[i] = static_cast<int>(v);
    }
  }
  if (!st.ok()) return st;
  rope_sliding_ = RopeInvFreq(c.head_dim, c.rope_sliding.rotated_pairs, c.rope_sliding.theta);
  rope_full_ = RopeInvFreq(c.global_head_dim, c.rope_full.rotated_pairs, c.rope_full.theta);
  slot_sliding_ = target_.config().LastKvOwner(AttnType::kSliding) >= 0
                      ? target_.KvSlotOf(target_.config().LastKvOwner(AttnType::kSliding))
                      : -1;
  slot_full_ = target_.config().LastKvOwner(AttnType::kFull) >= 0
                   ? target_.KvSlotOf(target_.config().LastKvOwner(AttnType::kFull))
                   : -1;
  return OkStatus();
}

// One caller's step buffers, grown on demand. Shapes for a step of B rows.
struct Gemma4Assistant::Scratch : PassScratch {
  std::vector<float> x;                // [B, 2 H_b] embedding, then h_in
  std::vector<float> z, a;             // [B, H_d] residual stream, sublayer output
  std::vector<float> q, o;             // [B, nh * hd] queries, attention output
  std::vector<float> g, u;             // [B, ff] MLP gate and up
  std::vector<float> attn;             // AttentionScratchFloats
  std::vector<float> rope_cs;          // [hd] RopeCosSin of one row's position
  std::vector<float> hidden, h_out;    // [B, H_d], [B, H_b]
  std::vector<float> logits, cluster;  // dense head [B, V]; centroid scores [B, C]
};

// One draft step over B rows, shared by the stages.
struct Gemma4Assistant::Round {
  const KernelTable& kt;
  ThreadPool& pool;
  Scratch& s;
  std::span<const StepArgs> batch;
  std::span<DraftStepOutput* const> outs;
  int B = 0;
};

std::unique_ptr<PassScratch> Gemma4Assistant::NewScratch() const {
  return std::make_unique<Scratch>();
}

void Gemma4Assistant::Step(const StepArgs& args, ThreadPool& pool, PassScratch& scratch,
                           DraftStepOutput* out) const {
  DraftStepOutput* outs[] = {out};
  StepBatch(std::span<const StepArgs>(&args, 1), pool, scratch, outs);
}

void Gemma4Assistant::StepBatch(std::span<const StepArgs> batch, ThreadPool& pool,
                                PassScratch& scratch,
                                std::span<DraftStepOutput* const> outs) const {
  assert(dynamic_cast<Scratch*>(&scratch) != nullptr && "scratch from another model's NewScratch");
  Round r{.kt = BestKernels(),  // dispatch once per step
          .pool = pool,
          .s = static_cast<Scratch&>(scratch),
          .batch = batch,
          .outs = outs,
          .B = static_cast<int>(batch.size())};
  Input(r);
  for (int l = 0; l < static_cast<int>(layers_.size()); ++l) {
    Attention(r, l);
    FeedForward(r, l);
  }
  Output(r);
  if (config_.use_ordered_embeddings) {
    CentroidHead(r);
  } else {
    DenseHead(r);
  }
}

// x = [E_target[tok] * sqrt(H_b), h_in] per row; z = pre_projection x (no norm, no scale).
void Gemma4Assistant::Input(Round& r) const {
  const size_t Hb = static_cast<size_t>(config_.backbone_hidden_size);
  const size_t B = static_cast<size_t>(r.B);
  Scratch& s = r.s;
  s.x.resize(B * 2 * Hb);
  for (size_t b = 0; b < B; ++b) {
    target_.EmbedScaled(r.batch[b].token, &s.x[b * 2 * Hb]);
    std::memcpy(&s.x[b * 2 * Hb + Hb], r.batch[b].h_in, Hb * sizeof(float));
  }
  s.z.resize(B * static_cast<size_t>(config_.hidden_size));
  MatMul(r.kt, r.pool, pre_proj_, s.x.data(), B, s.z.data());
}

// z += post_attn_norm(o_proj(attention(q))), q from input_norm(z) at the round's position P, into
// the target's cache (keys 0 .. P-1, windowed on sliding layers): the assistant has no K/V.
void Gemma4Assistant::Attention(Round& r, int l) const {
  const Gemma4AssistantConfig& c = config_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  Scratch& s = r.s;
  const bool full = c.layer_types[static_cast<size_t>(l)] == AttnType::kFull;
  const int hd = c.LayerHeadDim(l), nh = c.num_heads, nkv = c.LayerKvHeads(l);
  const size_t Hd = static_cast<size_t>(c.hidden_size), B = static_cast<size_t>(r.B);
  const size_t qd = static_cast<size_t>(nh * hd);
  const int slot = full ? slot_full_ : slot_sliding_;
  const float* inv = full ? rope_full_.data() : rope_sliding_.data();
  const int group = nh / nkv;
  s.a.resize(B * Hd);
  NormRows(r.pool, s.z.data(), w.input_norm, c.rms_norm_eps, Hd, r.B, s.a.data());
  s.q.resize(B * qd);
  MatMul(r.kt, r.pool, w.q, s.a.data(), B, s.q.data());
  s.o.assign(B * qd, 0.0f);
  s.rope_cs.resize(static_cast<size_t>(hd));
  for (size_t b = 0; b < B; ++b) {
    const int P = r.batch[b].pos;
    const KvCache& cache = *r.batch[b].cache;
    RopeCosSin(hd, inv, P, s.rope_cs.data());  // once for all heads of this row
    for (int h = 0; h < nh; ++h) {
      float* qh = &s.q[b * qd + static_cast<size_t>(h * hd)];
      RmsNorm(qh, w.q_norm.data(), static_cast<size_t>(hd), c.rms_norm_eps, qh);
      ApplyRopeTable(qh, hd, inv, s.rope_cs.data());
    }
    // A q_len = 1 query needs no causal mask: it sees every committed key in its window.
    const int lo = FirstVisibleKey(P, full ? 0 : c.sliding_window);
    if (P - lo <= 0) continue;  // no visible keys (cannot happen after a non-empty prefill)
    const int range[2] = {0, P - lo - 1};  // key index j is position lo + j
    const size_t floats = AttentionScratchFloats(
        1, static_cast<size_t>(group), static_cast<size_t>(hd), static_cast<size_t>(P - lo));
    if (s.attn.size() < floats) s.attn.resize(floats);  // grown only
    for (int g = 0; g < nkv; ++g) {
      KvRun runs[2];
      const size_t nruns =
          cache.Runs(slot, lo, P, static_cast<size_t>(g * hd), std::span<KvRun>(runs));
      const size_t at = b * qd + static_cast<size_t>(g * group * hd);
      r.kt.attention({.runs = std::span<const KvRun>(runs, nruns),
                      .q = s.q.data() + at,
                      .ldq = qd,
                      .rows = 1,
                      .heads = static_cast<size_t>(group),
                      .head_dim = static_cast<size_t>(hd),
                      .first = &range[0],
                      .last = &range[1],
                      .o = s.o.data() + at,
                      .ldo = qd,
                      .scratch = s.attn.data()});
    }
  }
  MatMul(r.kt, r.pool, w.o, s.o.data(), B, s.a.data());
  AddNormedRows(r.pool, s.a.data(), w.post_attn_norm, c.rms_norm_eps, Hd, r.B, s.z.data());
}

// z = (z + post_ffn_norm(MLP(pre_ffn_norm(z)))) * layer_scalar: the assistant's own gated-GELU
// MLP, of the same form as the target's dense one.
void Gemma4Assistant::FeedForward(Round& r, int l) const {
  const Gemma4AssistantConfig& c = config_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  Scratch& s = r.s;
  const size_t Hd = static_cast<size_t>(c.hidden_size);
  NormRows(r.pool, s.z.data(), w.pre_ffn_norm, c.rms_norm_eps, Hd, r.B, s.a.data());
  GatedMlp(r.kt, r.pool,
           {.gate = w.gate,
            .up = w.up,
            .down = w.down,
            .in = s.a.data(),
            .rows = r.B,
            .out = s.a.data()},
           s.g, s.u);
  AddNormedRows(r.pool, s.a.data(), w.post_ffn_norm, c.rms_norm_eps, Hd, r.B, s.z.data());
  for (float& v : s.z) v *= w.layer_scalar;
}

// hidden = final_norm(z); h_out = post_projection(hidden), the next step's h_in.
void Gemma4Assistant::Output(Round& r) const {
  const size_t Hb = static_cast<size_t>(config_.backbone_hidden_size),
               Hd = static_cast<size_t>(config_.hidden_size), B = static_cast<size_t>(r.B);
  Scratch& s = r.s;
  s.hidden.resize(B * Hd);
  NormRows(r.pool, s.z.data(), final_norm_, config_.rms_norm_eps, Hd, r.B, s.hidden.data());
  s.h_out.resize(B * Hb);
  MatMul(r.kt, r.pool, post_proj_, s.hidden.data(), B, s.h_out.data());
  for (size_t b = 0; b < B; ++b) {
    r.outs[b]->hidden.assign(&s.hidden[b * Hd], &s.hidden[(b + 1) * Hd]);
    r.outs[b]->h_out.assign(&s.h_out[b * Hb], &s.h_out[(b + 1) * Hb]);
  }
}

// Logits over the whole vocabulary from the tied embedding (no softcap).
void Gemma4Assistant::DenseHead(Round& r) const {
  const size_t V = static_cast<size_t>(config_.vocab_size), B = static_cast<size_t>(r.B);
  Scratch& s = r.s;
  s.logits.resize(B * V);
  MatMul(r.kt, r.pool, embed_, s.hidden.data(), B, s.logits.data());
  for (size_t b = 0; b < B; ++b) {
    r.outs[b]->candidates.clear();
    r.outs[b]->logits.assign(&s.logits[b * V], &s.logits[(b + 1) * V]);
  }
}

// Scores the clusters, keeps the top-k (ties: lower index) and scores only their tokens.
void Gemma4Assistant::CentroidHead(Round& r) const {
  const Gemma4AssistantConfig& c = config_;
  const size_t Hd = static_cast<size_t>(c.hidden_size), B = static_cast<size_t>(r.B);
  const size_t C = static_cast<size_t>(c.num_centroids);
  Scratch& s = r.s;
  s.cluster.resize(B * C);
  MatMul(r.kt, r.pool, centroids_, s.hidden.data(), B, s.cluster.data());
  const int per = c.vocab_size / c.num_centroids;
  for (size_t b = 0; b < B; ++b) {
    DraftStepOutput* out = r.outs[b];
    const float* cs = &s.cluster[b * C];
    std::vector<int> order(C);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + c.centroid_top_k, order.end(),
                      [&](int x, int y) { return cs[x] != cs[y] ? cs[x] > cs[y] : x < y; });
    out->candidates.resize(static_cast<size_t>(c.centroid_top_k * per));
    for (int k = 0; k < c.centroid_top_k; ++k) {
      const int* ids = &token_ordering_[static_cast<size_t>(order[static_cast<size_t>(k)] * per)];
      std::copy(ids, ids + per, out->candidates.begin() + static_cast<long>(k * per));
    }
    out->logits.resize(out->candidates.size());
    const float* hb = &s.hidden[b * Hd];
    // One task per cluster, not per candidate: a cluster's ids are scattered over the embedding, so
    // its rows are scored one by one, but the activation is prepared once per task and 32 tasks
    // share the pool's counter instead of 4,096 (a task per row costs more than scoring it).
    const size_t scratch_floats = MatMulScratchFloats(1, Hd);
    r.pool.ParallelFor(static_cast<size_t>(c.centroid_top_k), [&](size_t k, int thread) {
      float* scratch = r.pool.Scratch(thread, scratch_floats);
      const size_t first = k * static_cast<size_t>(per);
      for (size_t i = first; i < first + static_cast<size_t>(per); ++i) {
        const MatView row{embed_.dtype, embed_.Row(out->candidates[i]), 1, embed_.cols};
        r.kt.matmul_rows({.w = row,
                          .x = hb,
                          .ldx = Hd,
                          .m = 1,
                          .n_begin = 0,
                          .n_end = 1,
                          .y = &out->logits[i],
                          .ldy = 1,
                          .scratch = scratch,
                          .scratch_floats = scratch_floats,
                          .x_prepared = i > first});
      }
    });
  }
}

}  // namespace specula
