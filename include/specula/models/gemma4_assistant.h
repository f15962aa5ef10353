// The Gemma 4 "assistant" (`Gemma4AssistantForCausalLM`, `Gemma4UnifiedAssistantForCausalLM`):
// the MTP drafter that proposes tokens for a Gemma 4 target (docs/architecture.md, "The assistant's
// draft step").
//
// It is a small Gemma 4 stack (4 layers in the released assistants) whose layers have Q-only
// attention into the *target's* KV cache (sliding layers read the target's last KV-owning sliding
// layer, the full layer its last KV-owning full layer). It has no KV cache of its own. One draft
// step:
//   x = [E_target[tok] * sqrt(H_b), h_in]      [2 H_b]   target embedding, then the hidden state
//   z = pre_projection x                        [H_d]
//   4 layers (query at the round's fixed position P; keys 0..P-1, windowed on sliding layers)
//   hd = norm(z);  h_out = post_projection hd   [H_b]     fed to the next step as h_in
//   logits = hd E_draft^T (dense), or the centroid head over ~4k candidates (E2B/E4B)
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/formats/weight_store.h"
#include "specula/kernels/kernels.h"
#include "specula/models/gemma4.h"

namespace specula {

struct Gemma4AssistantConfig {
  std::string architecture;      // Gemma4AssistantForCausalLM | Gemma4UnifiedAssistantForCausalLM
  int backbone_hidden_size = 0;  // H_b: the target's hidden size
  int hidden_size = 0;           // H_d
  int num_heads = 0;
  int num_kv_heads = 0;
  int num_global_kv_heads = 0;
  int head_dim = 0;
  int global_head_dim = 0;
  bool attention_k_eq_v = false;
  int intermediate_size = 0;
  int sliding_window = 0;
  int vocab_size = 0;
  float rms_norm_eps = 1e-6f;
  RopeSpec rope_sliding, rope_full;
  std::vector<AttnType> layer_types;
  bool use_ordered_embeddings = false;  // the centroid head
  int num_centroids = 0;
  int centroid_top_k = 0;

  static Result<Gemma4AssistantConfig> FromJson(const Json& root, const std::string& file);
  int LayerHeadDim(int l) const;
  int LayerKvHeads(int l) const;
  // An error naming `file` and the first field that does not fit `target` (width, vocabulary,
  // head sizes and KV heads of the target layers it reads, sliding window).
  Status CheckFits(const Gemma4Config& target, const std::string& file) const;
  std::string Describe() const;  // multi-line human summary for `specula inspect`
};

// An assistant checkpoint opened without a target: its validated config and its tensors.
struct AssistantCheckpoint {
  Gemma4AssistantConfig config;
  std::unique_ptr<WeightStore> store;
  std::string config_file;  // config.json, or the GGUF file standing for it (for messages)
};
// `dir` is a checkpoint directory or a .gguf file (llama.cpp's gemma4-assistant layout).
Result<AssistantCheckpoint> OpenAssistantCheckpoint(const std::string& dir);

struct DraftStepOutput {
  std::vector<float> h_out;   // [H_b] next step's h_in
  std::vector<float> hidden;  // [H_d] post-norm draft hidden
  // Head output. Dense head: `candidates` empty and `logits` [V]. Centroid head: `candidates` holds
  // the vocabulary ids of the selected clusters and `logits` their scores (other ids: excluded).
  std::vector<int> candidates;
  std::vector<float> logits;
};

class Gemma4Assistant {
 public:
  // Loads `dir` and checks that it fits `target` (width, vocabulary, KV geometry of the target
  // layers it reads). `target` must outlive the assistant.
  static Result<std::unique_ptr<Gemma4Assistant>> Load(const std::string& dir,
                                                       const Gemma4Model& target);

  const Gemma4AssistantConfig& config() const { return config_; }
  const WeightStore& store() const { return *store_; }
  int SourceLayer(AttnType type) const;  // target layer whose KV a drafter layer of `type` reads

  struct StepArgs {
    int token = 0;                   // last token (position `pos`, not yet in the target cache)
    const float* h_in = nullptr;     // [H_b]
    int pos = 0;                     // RoPE position, constant for a whole draft round
    const KvCache* cache = nullptr;  // the target's cache; keys 0 .. pos-1 are read
  };
  // `scratch` comes from NewScratch: the caller's step buffers, reused across steps, so that one
  // loaded assistant can serve several drafters at once.
  void Step(const StepArgs& args, ThreadPool& pool, PassScratch& scratch,
            DraftStepOutput* out) const;
  // One draft step for several sequences (each with its own token, state, position and target
  // cache): the weights are read once for all rows. outs[b] gets exactly what Step gives row b.
  void StepBatch(std::span<const StepArgs> batch, ThreadPool& pool, PassScratch& scratch,
                 std::span<DraftStepOutput* const> outs) const;
  std::unique_ptr<PassScratch> NewScratch() const;

  struct Key {
   private:
    Key() = default;
    friend class Gemma4Assistant;
  };
  Gemma4Assistant(Key, Gemma4AssistantConfig config, std::unique_ptr<WeightStore> store,
                  const Gemma4Model& target);
  ~Gemma4Assistant();

 private:
  struct LayerWeights;  // one layer's bound weights
  struct Scratch;       // a caller's step buffers (NewScratch)
  struct Round;         // one draft step, shared by its stages

  Status Bind();
  // The stages of a draft step, in order.
  void Input(Round& r) const;
  void Attention(Round& r, int layer) const;
  void FeedForward(Round& r, int layer) const;
  void Output(Round& r) const;
  void DenseHead(Round& r) const;
  void CentroidHead(Round& r) const;

  const Gemma4AssistantConfig config_;
  std::unique_ptr<WeightStore> store_;
  const Gemma4Model& target_;
  std::vector<LayerWeights> layers_;
  MatView pre_proj_, post_proj_, embed_, centroids_;
  std::vector<float> final_norm_;
  std::vector<int> token_ordering_;  // [V] cluster c owns ids [c*V/C, (c+1)*V/C) of this list
  std::vector<float> rope_sliding_, rope_full_;
  int slot_sliding_ = -1, slot_full_ = -1;
};

}  // namespace specula
