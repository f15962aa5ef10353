// Loading a Gemma 4 assistant against its target: every tensor bound after checking its presence,
// dtype and shape, the centroid head's token ordering checked to be a permutation.
#include <cstring>

#include "specula/kernels/ops.h"
#include "specula/models/gemma4_assistant.h"
#include "src/models/binder.h"
#include "src/models/gemma4_assistant_parts.h"

namespace specula {

Gemma4Assistant::Gemma4Assistant(Key, Gemma4AssistantConfig config,
                                 std::unique_ptr<WeightStore> store, const Gemma4Model& target)
    : config_(std::move(config)), store_(std::move(store)), target_(target) {}
Gemma4Assistant::~Gemma4Assistant() = default;

int Gemma4Assistant::SourceLayer(AttnType type) const { return target_.config().LastKvOwner(type); }

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
  Binder b(*store_, "");
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols) {
    return b.Mat(name, rows, cols);
  };
  auto vec = [&](const std::string& name, int64_t n) { return b.Vec(name, n); };
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
    if (!b.status().ok()) return b.status();
    const TensorView* ord = store_->Find("masked_embedding.token_ordering");
    if (ord == nullptr)
      return Error(
          "missing tensor 'masked_embedding.token_ordering' (use_ordered_embeddings is true)");
    const std::string where = *ord->file + ": tensor 'masked_embedding.token_ordering'";
    if ((ord->dtype != DType::kI64 && ord->dtype != DType::kI32) ||
        ord->shape != std::vector<int64_t>{V}) {
      return Error(where + ": expected an I64 or I32 vector of vocab_size (" + std::to_string(V) +
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
  if (!b.status().ok()) return b.status();
  rope_sliding_ = RopeInvFreq(c.head_dim, c.rope_sliding.rotated_pairs, c.rope_sliding.theta);
  rope_full_ = RopeInvFreq(c.global_head_dim, c.rope_full.rotated_pairs, c.rope_full.theta);
  const int sliding = SourceLayer(AttnType::kSliding), full = SourceLayer(AttnType::kFull);
  slot_sliding_ = sliding >= 0 ? target_.KvSlotOf(sliding) : -1;
  slot_full_ = full >= 0 ? target_.KvSlotOf(full) : -1;
  return OkStatus();
}

}  // namespace specula
