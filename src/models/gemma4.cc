// The Gemma 4 text decoder: config binding, tensor binding and the forward pass, top to bottom.
// Shapes are [rows, width] unless noted; T = tokens in this call, H = hidden size.
#include "specula/models/gemma4.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/kernels/ops.h"
#include "specula/models/gemma4_gguf.h"
#include "src/models/for_each_row.h"
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

// Per-call buffers, grown on demand and reused across calls.
struct Gemma4Model::Workspace {
  std::vector<float> x, xn, q, o, a, g, u, e, ple, ple_tmp, head_in;
  std::vector<int> ids, row_pos;                 // per stacked row: token, position
  std::vector<float> rope_sliding, rope_full;    // per row: RopeCosSin at its position
  std::vector<std::vector<float>> new_k, new_v;  // per cache slot: [T, kv_dim]
  std::vector<std::vector<float>> attn_scratch;  // per thread: AttentionScratchFloats
  std::vector<std::vector<int>> ranges;          // per thread: each row's first, then last key
  Routing routing;                               // MoE: this layer's experts per row
  MoeScratch moe;
};

// One forward pass: the batch, its output and the kernels, shared by the stages.
struct Gemma4Model::Pass {
  const KernelTable& kt;
  ThreadPool& pool;
  std::span<const BatchSeq> seqs;
  BatchOutput* out;
  int T = 0;            // rows of all sequences, stacked
  int max_keys = 1;     // keys the longest sequence's last row sees
  size_t max_rows = 0;  // rows of the longest sequence
};

Gemma4Model::~Gemma4Model() = default;

Gemma4Model::Gemma4Model(Key, Gemma4Config config, std::unique_ptr<WeightStore> store)
    : config_(std::move(config)), store_(std::move(store)), ws_(std::make_unique<Workspace>()) {}

namespace {

MatView ToMat(const TensorView* t) {
  MatView m;
  m.dtype = t->dtype;
  m.data = t->data;
  m.rows = t->shape.empty() ? 0 : t->shape[0];
  m.cols = t->shape.size() < 2 ? 1 : t->shape[1];
  return m;
}

std::vector<float> ToF32(const TensorView* t) {
  std::vector<float> v(static_cast<size_t>(t->numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsF32(t->dtype, t->data, i);
  return v;
}

// Binds tensors by name, stopping at the first problem.
class Binder {
 public:
  Binder(const WeightStore& store, std::string prefix)
      : store_(store), prefix_(std::move(prefix)) {}
  MatView Mat(const std::string& name, int64_t rows, int64_t cols) {
    const TensorView* t = Get(name, {rows, cols});
    return t ? ToMat(t) : MatView{};
  }
  // A stack of n matrices [n, rows, cols] as one [n * rows, cols] matrix.
  MatView Stack(const std::string& name, int64_t n, int64_t rows, int64_t cols) {
    const TensorView* t = Get(name, {n, rows, cols});
    if (t == nullptr) return MatView{};
    return {t->dtype, t->data, n * rows, cols};
  }
  std::vector<float> Vec(const std::string& name, int64_t n) {
    const TensorView* t = Get(name, {n});
    return t ? ToF32(t) : std::vector<float>(static_cast<size_t>(n), 0.0f);
  }
  bool Has(const std::string& name) const { return store_.Find(prefix_ + name) != nullptr; }
  const Status& status() const { return status_; }

 private:
  const TensorView* Get(const std::string& name, const std::vector<int64_t>& shape) {
    if (!status_.ok()) return nullptr;
    Result<const TensorView*> t = RequireTensor(store_, prefix_ + name, shape, "");
    if (!t.ok()) {
      status_ = t.status();
      return nullptr;
    }
    return *t;
  }
  const WeightStore& store_;
  std::string prefix_;
  Status status_;
};

// x[t] += RMSNorm_w(a[t]) for row t: how each sublayer's output joins the residual stream.
void AddNormed(float* at, const std::vector<float>& w, float eps, size_t H, float* xt) {
  RmsNorm(at, w.data(), H, eps, at);
  for (size_t i = 0; i < H; ++i) xt[i] += at[i];
}

}  // namespace

Result<std::unique_ptr<Gemma4Model>> Gemma4Model::Load(const std::string& dir) {
  if (IsGgufPath(dir)) return LoadGguf(dir);
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

Result<std::unique_ptr<Gemma4Model>> Gemma4Model::LoadGguf(const std::string& path) {
  Result<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  Result<Json> j = Gemma4ConfigFromGguf(**file);
  if (!j.ok()) return j.status();
  Result<Gemma4Config> cfg =
      Gemma4Config::FromJson(*j, path + " (its metadata read as config.json)");
  if (!cfg.ok()) return cfg.status();
  const std::string prefix = cfg->tensor_prefix;
  Result<std::unique_ptr<WeightStore>> store = WeightStore::FromGguf(
      std::move(*file), [&](const std::string& name) { return Gemma4HfName(name, prefix); });
  if (!store.ok()) return store.status();
  auto model = std::make_unique<Gemma4Model>(Key(), std::move(*cfg), std::move(*store));
  Status s = model->Bind();
  if (!s.ok()) return s.WithContext(path + " (GGUF tensors under their Hugging Face names)");
  return model;
}

Status Gemma4Model::Bind() {
  const Gemma4Config& c = config_;
  const int64_t H = c.hidden_size, V = c.vocab_size, P = c.ple_dim, L = c.num_layers;
  Binder b(*store_, c.tensor_prefix);
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
  layers_.resize(static_cast<size_t>(L));
  for (int i = 0; i < L; ++i) {
    const Gemma4LayerSpec& s = c.layers[static_cast<size_t>(i)];
    LayerWeights& w = layers_[static_cast<size_t>(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
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
      const int64_t E = c.num_experts, F = c.moe_intermediate_size;
      w.pre_ffn_norm_2 = b.Vec(p + "pre_feedforward_layernorm_2.weight", H);
      w.post_ffn_norm_1 = b.Vec(p + "post_feedforward_layernorm_1.weight", H);
      w.post_ffn_norm_2 = b.Vec(p + "post_feedforward_layernorm_2.weight", H);
      w.moe = {.experts = c.num_experts,
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
        w.moe.gate_up = b.Stack(p + "experts.gate_up_proj", E, 2 * F, H);
      } else {
        w.moe.gate = b.Stack(p + "experts.gate_proj", E, F, H);
        w.moe.up = b.Stack(p + "experts.up_proj", E, F, H);
      }
    }
  }
  if (!b.status().ok()) return b.status();

  // HF casts the sqrt(H) scale to the embedding dtype before multiplying (bf16: 39.25 for H=1536).
  embed_scale_ = RoundThrough(embed_.dtype, std::sqrt(static_cast<float>(H)));
  if (P > 0) ple_embed_scale_ = RoundThrough(ple_embed_.dtype, std::sqrt(static_cast<float>(P)));

  int slots = 0;
  std::vector<int> own_slot(static_cast<size_t>(L), -1);
  for (int i = 0; i < L; ++i) {
    if (c.layers[static_cast<size_t>(i)].owns_kv) own_slot[static_cast<size_t>(i)] = slots++;
  }
  kv_slot_.resize(static_cast<size_t>(L));
  for (int i = 0; i < L; ++i) {
    kv_slot_[static_cast<size_t>(i)] =
        own_slot[static_cast<size_t>(c.layers[static_cast<size_t>(i)].kv_source)];
  }
  rope_sliding_ = RopeInvFreq(c.head_dim, c.rope_sliding.rotated_pairs, c.rope_sliding.theta);
  rope_full_ = RopeInvFreq(c.global_head_dim, c.rope_full.rotated_pairs, c.rope_full.theta);
  return OkStatus();
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

Status Gemma4Model::Forward(const ForwardRequest& req, ThreadPool& pool, ForwardOutput* out) {
  const int T = static_cast<int>(req.ids.size());
  const BatchSeq seq{.ids = req.ids, .cache = req.cache, .logit_rows = req.all_logits ? T : 1};
  BatchOutput batch;
  batch.logits = std::move(out->logits);  // reuse the caller's buffers
  batch.hidden = std::move(out->hidden);
  if (Status s = ForwardBatch(std::span<const BatchSeq>(&seq, 1), pool, &batch); !s.ok()) return s;
  out->rows = seq.logit_rows;
  out->logits = std::move(batch.logits);
  out->hidden = std::move(batch.hidden);
  out->experts_read = batch.experts_read;
  return OkStatus();
}

Status Gemma4Model::ForwardBatch(std::span<const BatchSeq> seqs, ThreadPool& pool,
                                 BatchOutput* out) {
  // Rows of all sequences are stacked: every matmul runs over all rows at once (the weights stream
  // once per pass), while RoPE positions, attention and the KV cache stay per sequence. Row
  // results do not depend on the batch (kernels are batch-invariant).
  Pass p{.kt = BestKernels(), .pool = pool, .seqs = seqs, .out = out};  // dispatch once per pass
  if (Status s = Plan(p); !s.ok()) return s;  // nothing is written before this
  Embed(p);
  for (int l = 0; l < config_.num_layers; ++l) {
    AttentionBlock(p, l);
    FeedForwardBlock(p, l);
    EndLayer(p, l);
  }
  CommitKv(p);
  Head(p);
  return OkStatus();
}

// Validates every sequence and lays out the stacked rows: ids, positions, offsets.
Status Gemma4Model::Plan(Pass& p) {
  const Gemma4Config& c = config_;
  Workspace& ws = *ws_;
  if (p.seqs.empty()) return Error("empty batch: at least one sequence is required");
  BatchOutput& out = *p.out;
  out.row_offset.assign(1, 0);
  out.logit_offset.assign(1, 0);
  out.experts_read = 0;
  ws.ids.clear();
  ws.row_pos.clear();
  for (size_t si = 0; si < p.seqs.size(); ++si) {
    const BatchSeq& q = p.seqs[si];
    const int Ts = static_cast<int>(q.ids.size());
    if (Ts == 0) return Error("empty input: at least one token is required");
    if (q.logit_rows < 0 || q.logit_rows > Ts) return Error("logit_rows out of range");
    for (size_t sj = 0; sj < si; ++sj)
      assert(p.seqs[sj].cache != q.cache && "one cache per sequence");
    for (int id : q.ids) {
      if (id < 0 || id >= c.vocab_size) {
        return Error("token id " + std::to_string(id) + " is out of range [0, " +
                     std::to_string(c.vocab_size) + ")");
      }
    }
    if (Status st = q.cache->CheckAppend(Ts); !st.ok()) return st;
    const int pos0 = q.cache->length();
    for (int t = 0; t < Ts; ++t) {
      ws.ids.push_back(q.ids[static_cast<size_t>(t)]);
      ws.row_pos.push_back(pos0 + t);
    }
    p.max_keys = std::max(p.max_keys, pos0 + Ts);
    p.max_rows = std::max(p.max_rows, static_cast<size_t>(Ts));
    out.row_offset.push_back(out.row_offset.back() + Ts);
    out.logit_offset.push_back(out.logit_offset.back() + q.logit_rows);
  }
  p.T = out.row_offset.back();
  return OkStatus();
}

// x = E[ids] * sqrt(H); the per-layer inputs (E2B/E4B); RoPE tables per row and layer type.
void Gemma4Model::Embed(Pass& p) {
  const Gemma4Config& c = config_;
  Workspace& ws = *ws_;
  const int T = p.T, H = c.hidden_size, P = c.ple_dim, L = c.num_layers;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(H);
  ws.x.resize(uT * uH);
  for (int t = 0; t < T; ++t) EmbedScaled(ws.ids[static_cast<size_t>(t)], &ws.x[t * uH]);
  Tap(-1, "embed", T, H, ws.x.data());

  // ple[T, L, P] = (norm(x Wp^T / sqrt(H)) + E_ple[ids] * sqrt(P)) / sqrt(2)
  if (P > 0) {
    const size_t LP = static_cast<size_t>(L) * static_cast<size_t>(P);
    ws.ple.resize(uT * LP);
    MatMul(p.kt, p.pool, ple_proj_, ws.x.data(), uT, ws.ple.data());
    const float proj_scale = 1.0f / std::sqrt(static_cast<float>(H));
    const float sum_scale = 1.0f / std::sqrt(2.0f);
    ForEachRow(p.pool, T, [&](int t) {
      int id = ws.ids[static_cast<size_t>(t)];
      if (id >= c.ple_vocab ||
          std::find(c.multimodal_token_ids.begin(), c.multimodal_token_ids.end(), id) !=
              c.multimodal_token_ids.end()) {
        id = 0;  // multimodal placeholders use the pad row
      }
      const void* tok_row = ple_embed_.Row(id);
      float* row = &ws.ple[static_cast<size_t>(t) * LP];
      for (int l = 0; l < L; ++l) {
        float* chunk = row + static_cast<size_t>(l) * static_cast<size_t>(P);
        for (int i = 0; i < P; ++i) chunk[i] *= proj_scale;
        RmsNorm(chunk, ple_norm_.data(), static_cast<size_t>(P), c.rms_norm_eps, chunk);
        for (int i = 0; i < P; ++i) {
          const size_t e = static_cast<size_t>(l * P + i);
          chunk[i] =
              (chunk[i] + LoadAsF32(ple_embed_.dtype, tok_row, e) * ple_embed_scale_) * sum_scale;
        }
      }
    });
    Tap(-1, "per_layer_inputs", T, static_cast<int>(LP), ws.ple.data());
  }

  // RoPE cos/sin per row and layer type, shared by every head and layer of that type.
  const int hd_sliding = c.head_dim, hd_full = c.global_head_dim;
  ws.rope_sliding.resize(uT * static_cast<size_t>(hd_sliding));
  ws.rope_full.resize(uT * static_cast<size_t>(hd_full));
  for (size_t t = 0; t < uT; ++t) {
    RopeCosSin(hd_sliding, rope_sliding_.data(), ws.row_pos[t],
               &ws.rope_sliding[t * static_cast<size_t>(hd_sliding)]);
    RopeCosSin(hd_full, rope_full_.data(), ws.row_pos[t],
               &ws.rope_full[t * static_cast<size_t>(hd_full)]);
  }

  // Scratch for this pass's new K/V, committed to the cache after the last layer so that
  // KV-shared layers and early rows still see the pre-pass ring contents.
  const size_t n_slots = static_cast<size_t>(p.seqs[0].cache->num_layers());
  ws.new_k.resize(n_slots);
  ws.new_v.resize(n_slots);
  ws.attn_scratch.resize(static_cast<size_t>(p.pool.num_threads()));
  ws.ranges.resize(static_cast<size_t>(p.pool.num_threads()));
  ws.xn.resize(uT * uH);
}

// x += post_attn_norm(o_proj(attention(q, K, V))), q/k/v from input_norm(x).
void Gemma4Model::AttentionBlock(Pass& p, int l) {
  const Gemma4Config& c = config_;
  Workspace& ws = *ws_;
  const Gemma4LayerSpec& s = c.layers[static_cast<size_t>(l)];
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int T = p.T, hd = s.head_dim, nh = c.num_heads, nkv = s.num_kv_heads;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(c.hidden_size);
  const size_t qd = static_cast<size_t>(nh * hd), kvd = static_cast<size_t>(nkv * hd);
  const bool full = s.type == AttnType::kFull;
  const float* inv_freq = full ? rope_full_.data() : rope_sliding_.data();
  const float* rope = full ? ws.rope_full.data() : ws.rope_sliding.data();  // [T, hd]
  const int slot = kv_slot_[static_cast<size_t>(l)];

  ForEachRow(p.pool, T, [&](int t) {
    RmsNorm(&ws.x[t * uH], w.input_norm.data(), uH, c.rms_norm_eps, &ws.xn[t * uH]);
  });
  ws.q.resize(uT * qd);
  std::vector<float>& nk = ws.new_k[static_cast<size_t>(slot)];
  std::vector<float>& nv = ws.new_v[static_cast<size_t>(slot)];
  if (s.owns_kv) {  // q, k and (unless V is K) v in one dispatch
    nk.resize(uT * kvd);
    nv.resize(uT * kvd);
    const MatMulOut qkv[] = {{w.q, ws.q.data()}, {w.k, nk.data()}, {w.v, nv.data()}};
    MatMulShared(p.kt, p.pool, std::span<const MatMulOut>(qkv, s.k_eq_v ? 2 : 3), ws.xn.data(), uT);
    if (s.k_eq_v) nv = nk;  // V comes from the raw K projection, before k_norm and RoPE
  } else {
    MatMul(p.kt, p.pool, w.q, ws.xn.data(), uT, ws.q.data());
  }
  ForEachRow(p.pool, T, [&](int t) {
    if (s.owns_kv) {
      for (int h = 0; h < nkv; ++h) {
        float* kh = &nk[t * kvd + static_cast<size_t>(h * hd)];
        float* vh = &nv[t * kvd + static_cast<size_t>(h * hd)];
        RmsNorm(kh, w.k_norm.data(), static_cast<size_t>(hd), c.rms_norm_eps, kh);
        ApplyRopeTable(kh, hd, inv_freq, rope + static_cast<size_t>(t * hd));
        RmsNorm(vh, nullptr, static_cast<size_t>(hd), c.rms_norm_eps, vh);
      }
    }
    for (int h = 0; h < nh; ++h) {
      float* qh = &ws.q[t * qd + static_cast<size_t>(h * hd)];
      RmsNorm(qh, w.q_norm.data(), static_cast<size_t>(hd), c.rms_norm_eps, qh);
      ApplyRopeTable(qh, hd, inv_freq, rope + static_cast<size_t>(t * hd));
    }
  });

  // softmax(q·K^T) V with scale 1, causal, sliding window on sliding layers, GQA. One task per
  // (sequence, KV head, share of its query heads): the kernel reads the head's keys and values
  // once for all the task's rows and heads. Heads are split only as far as needed to give every
  // thread work; a vector's output does not depend on the split.
  const float* new_k = nk.data();
  const float* new_v = nv.data();
  const int window = s.type == AttnType::kSliding ? c.sliding_window : 0;
  const int group = nh / nkv;
  const size_t per_head = p.seqs.size() * static_cast<size_t>(nkv);
  const int splits = std::clamp(
      static_cast<int>((static_cast<size_t>(p.pool.num_threads()) + per_head - 1) / per_head), 1,
      group);
  const int heads_per_task = (group + splits - 1) / splits;
  // Grown only: layer types alternate head sizes, and a shrink-then-grow would zero it again.
  const size_t scratch =
      AttentionScratchFloats(p.max_rows, static_cast<size_t>(heads_per_task),
                             static_cast<size_t>(hd), static_cast<size_t>(p.max_keys));
  for (auto& sc : ws.attn_scratch) {
    if (sc.size() < scratch) sc.resize(scratch);
  }
  ws.o.resize(uT * qd);
  const BatchOutput& out = *p.out;
  p.pool.ParallelFor(per_head * static_cast<size_t>(splits), [&](size_t task, int thread) {
    const size_t si = task / (static_cast<size_t>(nkv) * static_cast<size_t>(splits));
    const int g = static_cast<int>(task / static_cast<size_t>(splits)) % nkv;
    const int h0 = static_cast<int>(task % static_cast<size_t>(splits)) * heads_per_task;
    const int heads = std::min(heads_per_task, group - h0);
    if (heads <= 0) return;
    const KvCache& cache = *p.seqs[si].cache;
    const int pos0 = cache.length();
    const int first_row = out.row_offset[si], Ts = out.row_offset[si + 1] - first_row;
    // Key index j is position kv0 + j: the cached keys the first row sees, then this pass's.
    const int kv0 = FirstVisibleKey(pos0, window);
    const size_t col = static_cast<size_t>(g * hd);
    KvRun runs[3];
    size_t nruns = cache.Runs(slot, kv0, pos0, col, std::span<KvRun>(runs, 2));
    runs[nruns++] = {.k = new_k + static_cast<size_t>(first_row) * kvd + col,
                     .v = new_v + static_cast<size_t>(first_row) * kvd + col,
                     .ld = kvd,
                     .n = static_cast<size_t>(Ts)};
    std::vector<int>& range = ws.ranges[static_cast<size_t>(thread)];
    range.resize(2 * static_cast<size_t>(Ts));
    for (int t = 0; t < Ts; ++t) {
      const int pos = pos0 + t;
      range[static_cast<size_t>(t)] = FirstVisibleKey(pos, window) - kv0;
      range[static_cast<size_t>(Ts + t)] = pos - kv0;
    }
    const size_t q_at =
        static_cast<size_t>(first_row) * qd + static_cast<size_t>((g * group + h0) * hd);
    p.kt.attention({.runs = std::span<const KvRun>(runs, nruns),
                    .q = ws.q.data() + q_at,
                    .ldq = qd,
                    .rows = static_cast<size_t>(Ts),
                    .heads = static_cast<size_t>(heads),
                    .head_dim = static_cast<size_t>(hd),
                    .first = range.data(),
                    .last = range.data() + Ts,
                    .o = ws.o.data() + q_at,
                    .ldo = qd,
                    .scratch = ws.attn_scratch[static_cast<size_t>(thread)].data()});
  });
  Tap(l, "attn_out", T, static_cast<int>(qd), ws.o.data());

  ws.a.resize(uT * uH);
  MatMul(p.kt, p.pool, w.o, ws.o.data(), uT, ws.a.data());
  ForEachRow(p.pool, T, [&](int t) {
    AddNormed(&ws.a[t * uH], w.post_attn_norm, c.rms_norm_eps, uH, &ws.x[t * uH]);
  });
}

// x += post_ffn_norm(y), y = MLP(pre_ffn_norm(x)), MLP(v) = down(gelu(gate v) * up v). With
// experts (26B-A4B): y = post_ffn_norm_1(MLP(...)) + post_ffn_norm_2(experts(pre_ffn_norm_2(x))),
// the experts routed from x itself (the post-attention residual).
void Gemma4Model::FeedForwardBlock(Pass& p, int l) {
  const Gemma4Config& c = config_;
  Workspace& ws = *ws_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int T = p.T, H = c.hidden_size;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(H);
  const size_t ff = static_cast<size_t>(c.layers[static_cast<size_t>(l)].ffn_dim);
  ForEachRow(p.pool, T, [&](int t) {
    RmsNorm(&ws.x[t * uH], w.pre_ffn_norm.data(), uH, c.rms_norm_eps, &ws.xn[t * uH]);
  });
  ws.g.resize(uT * ff);
  ws.u.resize(uT * ff);
  const MatMulOut gate_up[] = {{w.gate, ws.g.data()}, {w.up, ws.u.data()}};
  MatMulShared(p.kt, p.pool, gate_up, ws.xn.data(), uT);
  ForEachRow(p.pool, T, [&](int t) { p.kt.gelu_mul(&ws.g[t * ff], &ws.u[t * ff], ff); });
  MatMul(p.kt, p.pool, w.down, ws.g.data(), uT, ws.a.data());

  if (c.moe()) {
    RouteExperts(p.kt, p.pool, w.moe, ws.x.data(), T, H, c.rms_norm_eps, &ws.moe, &ws.routing);
    ForEachRow(p.pool, T, [&](int t) {
      RmsNorm(&ws.x[t * uH], w.pre_ffn_norm_2.data(), uH, c.rms_norm_eps, &ws.xn[t * uH]);
    });
    ws.e.resize(uT * uH);
    p.out->experts_read +=
        RunExperts(p.kt, p.pool, w.moe, ws.routing, ws.xn.data(), T, H, &ws.moe, ws.e.data());
    ForEachRow(p.pool, T, [&](int t) {
      float* a = &ws.a[t * uH];
      float* e = &ws.e[t * uH];
      RmsNorm(a, w.post_ffn_norm_1.data(), uH, c.rms_norm_eps, a);
      RmsNorm(e, w.post_ffn_norm_2.data(), uH, c.rms_norm_eps, e);
      for (size_t i = 0; i < uH; ++i) a[i] += e[i];
    });
  }
  ForEachRow(p.pool, T, [&](int t) {
    AddNormed(&ws.a[t * uH], w.post_ffn_norm, c.rms_norm_eps, uH, &ws.x[t * uH]);
  });
}

// The layer's end: the per-layer input where there is one (E2B/E4B),
// x += norm(proj(gelu(gate x) * ple[:, l])), then x *= layer_scalar.
void Gemma4Model::EndLayer(Pass& p, int l) {
  const Gemma4Config& c = config_;
  Workspace& ws = *ws_;
  const LayerWeights& w = layers_[static_cast<size_t>(l)];
  const int T = p.T, P = c.ple_dim;
  const size_t uT = static_cast<size_t>(T), uH = static_cast<size_t>(c.hidden_size);
  const auto scale_row = [&](int t) {
    for (size_t i = t * uH; i < (t + 1) * uH; ++i) ws.x[i] *= w.layer_scalar;
  };
  if (P > 0) {
    const size_t uP = static_cast<size_t>(P), LP = static_cast<size_t>(c.num_layers) * uP;
    ws.ple_tmp.resize(uT * uP);
    MatMul(p.kt, p.pool, w.ple_gate, ws.x.data(), uT, ws.ple_tmp.data());
    ForEachRow(p.pool, T, [&](int t) {
      p.kt.gelu_mul(&ws.ple_tmp[t * uP], &ws.ple[t * LP + static_cast<size_t>(l) * uP], uP);
    });
    MatMul(p.kt, p.pool, w.ple_proj, ws.ple_tmp.data(), uT, ws.a.data());
    ForEachRow(p.pool, T, [&](int t) {
      AddNormed(&ws.a[t * uH], w.ple_post_norm, c.rms_norm_eps, uH, &ws.x[t * uH]);
      scale_row(t);
    });
  } else {
    ForEachRow(p.pool, T, scale_row);
  }
  Tap(l, "layer_out", T, c.hidden_size, ws.x.data());
}

// Appends this pass's K/V to each sequence's cache.
void Gemma4Model::CommitKv(Pass& p) {
  Workspace& ws = *ws_;
  const size_t uT = static_cast<size_t>(p.T);
  const BatchOutput& out = *p.out;
  for (size_t si = 0; si < p.seqs.size(); ++si) {
    const size_t first = static_cast<size_t>(out.row_offset[si]);
    const int Ts = out.row_offset[si + 1] - out.row_offset[si];
    for (size_t sl = 0; sl < ws.new_k.size(); ++sl) {
      const size_t kvd = ws.new_k[sl].size() / uT;
      p.seqs[si].cache->Append(static_cast<int>(sl), Ts, ws.new_k[sl].data() + first * kvd,
                               ws.new_v[sl].data() + first * kvd);
    }
    p.seqs[si].cache->Commit(Ts);
  }
}

// Final norm (every row: the drafter reads it), LM head (only the rows that need logits), softcap.
void Gemma4Model::Head(Pass& p) {
  const Gemma4Config& c = config_;
  Workspace& ws = *ws_;
  BatchOutput& out = *p.out;
  const size_t uT = static_cast<size_t>(p.T), uH = static_cast<size_t>(c.hidden_size);
  out.hidden.resize(uT * uH);
  ForEachRow(p.pool, p.T, [&](int t) {
    RmsNorm(&ws.x[t * uH], final_norm_.data(), uH, c.rms_norm_eps, &out.hidden[t * uH]);
  });
  const size_t rows = static_cast<size_t>(out.logit_offset.back());
  ws.head_in.resize(rows * uH);
  for (size_t si = 0; si < p.seqs.size(); ++si) {
    const size_t n = static_cast<size_t>(p.seqs[si].logit_rows);
    const size_t src = static_cast<size_t>(out.row_offset[si + 1]) - n;
    std::copy_n(out.hidden.data() + src * uH, n * uH,
                ws.head_in.data() + static_cast<size_t>(out.logit_offset[si]) * uH);
  }
  const size_t uV = static_cast<size_t>(c.vocab_size);
  out.logits.resize(rows * uV);
  if (rows == 0) return;
  MatMul(p.kt, p.pool, lm_head_, ws.head_in.data(), rows, out.logits.data());
  if (c.final_logit_softcapping > 0) {
    // Elementwise, so split over the pool: one tanh per logit is ~1.5 ms for 16 rows of a 262k
    // vocabulary on one core.
    constexpr size_t kChunk = size_t{1} << 16;
    const size_t total = out.logits.size();
    p.pool.ParallelFor((total + kChunk - 1) / kChunk, [&](size_t t, int) {
      const size_t begin = t * kChunk;
      p.kt.softcap(out.logits.data() + begin, std::min(kChunk, total - begin),
                   c.final_logit_softcapping);
    });
  }
}

}  // namespace specula
