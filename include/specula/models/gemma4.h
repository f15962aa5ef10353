// The Gemma 4 text decoder: dense (E2B, E4B, 12B, 31B) or mixture of experts (26B-A4B), and any
// config-compatible size.
//
// Load() reads config.json, maps the safetensors and binds every tensor after checking its
// presence, dtype and shape against the config. Weights stay in their stored dtype inside the map;
// only 1-D tensors (norm weights, layer scalars) are copied to f32.
//
// Forward() runs T tokens at positions cache.length() .. +T-1, appends their K/V to the cache, and
// returns logits (last row, or every row for speculative verification) and the post-final-norm
// hidden state of every row (what an MTP drafter consumes). Running T tokens in one call gives the
// same bits as T one-token calls.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/formats/weight_store.h"
#include "specula/kernels/kernels.h"
#include "specula/models/gemma4_config.h"
#include "specula/models/kv_cache.h"
#include "specula/models/target_model.h"

namespace specula {

class Binder;
class ThreadPool;

struct ForwardRequest {
  std::span<const int> ids;        // [T] token ids
  KvCache* cache = nullptr;        // positions cache->length() .. +T-1 are computed and appended
  bool all_logits = false;         // false: only the last row's logits (prefill / plain decode)
  PassScratch* scratch = nullptr;  // reused across calls; nullptr: this call allocates its own
};

struct ForwardOutput {
  int rows = 0;               // rows of logits: T or 1
  std::vector<float> logits;  // [rows, vocab], after the final softcap
  std::vector<float> hidden;  // [T, hidden], post-final-norm
  int experts_read = 0;       // mixture of experts: distinct experts run, summed over layers
};

class Gemma4Model : public TargetModel {
 public:
  // `dir` is a Hugging Face checkpoint directory, or a llama.cpp-layout .gguf file.
  static Result<std::unique_ptr<Gemma4Model>> Load(const std::string& dir);
  // A .gguf file opened by the caller (who may have read its tokenizer and generation config from
  // the same parse); the model keeps the mapping. `path` names it in errors.
  static Result<std::unique_ptr<Gemma4Model>> LoadGguf(std::unique_ptr<GgufFile> file,
                                                       const std::string& path);

  const Gemma4Config& config() const override { return config_; }
  const WeightStore& store() const { return *store_; }

  // A cache sized for `context` positions with `headroom` rows of sliding-window rollback.
  std::unique_ptr<KvCache> NewCache(int context, int headroom = kDefaultHeadroom) const override;

  Status Forward(const ForwardRequest& req, ThreadPool& pool, ForwardOutput* out) const;
  // Several sequences in one pass: every weight matrix is read once for all their rows, attention
  // reads each sequence's own cache. Each row's result is bit for bit what Forward gives it alone.
  Status ForwardBatch(std::span<const BatchSeq> seqs, ThreadPool& pool, PassScratch& scratch,
                      BatchOutput* out) const override;
  std::unique_ptr<PassScratch> NewScratch() const override;

  // E[token] * sqrt(H), the scaled input embedding (also the MTP drafter's input embedding).
  void EmbedScaled(int token, float* out) const;
  float embed_scale() const { return embed_scale_; }
  // Bytes of weights one decode step reads: every matrix once, plus one row of each table that is
  // only gathered (the per-layer embedding table), and with experts, top_k of them per layer. The
  // memory roofline is bandwidth / this.
  size_t WeightBytesPerToken() const;
  // What a pass reads whatever its rows: WeightBytesPerToken without the experts. A pass that ran
  // n distinct experts (ForwardOutput::experts_read) reads this + n * ExpertBytes().
  size_t DenseWeightBytes() const;
  size_t ExpertBytes() const;  // one expert of one layer (0 without experts)
  // The part of DenseWeightBytes inside the decoder layers (all of them): what another depth of
  // the same widths would scale.
  size_t LayerWeightBytes() const;
  // Multiply-adds per prompt token in prefill: every matrix but the gathered per-layer embedding
  // table and the LM head (prefill only needs the last row's logits), top_k experts per layer.
  size_t MatMulParamsPerToken() const;
  // The KV-cache slot holding layer `layer`'s keys (its own, or its KV-sharing source's).
  int KvSlotOf(int layer) const { return kv_slot_[static_cast<size_t>(layer)]; }

  ~Gemma4Model();

  struct Key {
   private:
    Key() = default;
    friend class Gemma4Model;
  };
  Gemma4Model(Key, Gemma4Config config, std::unique_ptr<WeightStore> store);

 private:
  struct LayerWeights;  // one layer's bound weights
  struct Workspace;     // a caller's pass buffers (NewScratch)
  struct Pass;          // one forward pass, shared by its stages

  Status Bind();
  // Bind's steps: BindGlobals returns only an untied LM head's problem, the rest stay in `b`.
  Status BindGlobals(Binder& b);
  void BindLayer(Binder& b, int layer);
  // The stages of a forward pass, in order.
  Status Plan(Pass& p) const;
  void Embed(Pass& p) const;
  void AttentionBlock(Pass& p, int layer) const;
  void ProjectQkv(Pass& p, int layer) const;
  void Attend(Pass& p, int layer) const;
  void FeedForwardBlock(Pass& p, int layer) const;
  void EndLayer(Pass& p, int layer) const;
  void CommitKv(Pass& p) const;
  void Head(Pass& p) const;

  const Gemma4Config config_;
  std::unique_ptr<WeightStore> store_;
  std::vector<LayerWeights> layers_;
  MatView embed_;    // [V, H]; also the tied LM head
  MatView lm_head_;  // == embed_ unless an untied lm_head.weight exists
  std::vector<float> final_norm_;
  MatView ple_embed_;            // [ple_vocab, L * P]
  MatView ple_proj_;             // [L * P, H]
  std::vector<float> ple_norm_;  // [P]
  float embed_scale_ = 1.0f;
  float ple_embed_scale_ = 1.0f;
  std::vector<int> kv_slot_;  // per layer: cache slot of the layer it reads KV from
  std::vector<float> rope_sliding_, rope_full_;
};

}  // namespace specula
