// Writing llama.cpp-layout GGUF files (`specula convert`): a target or an assistant directory's
// config as gemma4 / gemma4-assistant keys, its tokenizer and generation defaults, and the tensors
// the engine binds under their GGUF names.
#include <algorithm>
#include <deque>

#include "specula/formats/generation_config.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/models/gemma4_gguf.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/models/gemma4_gguf_names.h"

namespace specula {

namespace {

// What the target's and the assistant's keys describe alike.
struct TextKeys {
  std::string arch;
  int64_t context, hidden, layers, heads, head_dim, global_head_dim, window, shared, ple;
  double eps, softcap;
  RopeSpec rope_sliding, rope_full;
  std::vector<int64_t> ffn, kv_heads;  // per layer
  std::vector<bool> sliding;
  int64_t experts = 0, experts_used = 0, expert_ff = 0;  // mixture of experts; 0: dense
};

std::vector<GgufKv> TextMetadata(const TextKeys& t, const std::string& name) {
  auto u32 = [&](const char* k, int64_t v) { return GgufKv{t.arch + "." + k, GgufType::kU32, v}; };
  auto f32 = [&](const char* k, double v) { return GgufKv{t.arch + "." + k, GgufType::kF32, v}; };
  auto arr = [&](const char* k, Json v, GgufType e) {
    return GgufKv{t.arch + "." + k, GgufType::kArray, std::move(v), e};
  };
  std::vector<GgufKv> kvs = {
      {"general.architecture", GgufType::kString, t.arch},
      {"general.name", GgufType::kString, name},
      {"general.alignment", GgufType::kU32, 32},
      u32("context_length", t.context),
      u32("embedding_length", t.hidden),
      u32("block_count", t.layers),
      arr("feed_forward_length", t.ffn, GgufType::kI32),
      u32("attention.head_count", t.heads),
      arr("attention.head_count_kv", t.kv_heads, GgufType::kI32),
      u32("attention.key_length", t.global_head_dim),
      u32("attention.value_length", t.global_head_dim),
      u32("attention.key_length_swa", t.head_dim),
      u32("attention.value_length_swa", t.head_dim),
      f32("attention.layer_norm_rms_epsilon", t.eps),
      u32("attention.sliding_window", t.window),
      arr("attention.sliding_window_pattern", t.sliding, GgufType::kBool),
      u32("attention.shared_kv_layers", t.shared),
      u32("embedding_length_per_layer_input", t.ple),
      f32("rope.freq_base", t.rope_full.theta),
      f32("rope.freq_base_swa", t.rope_sliding.theta),
      u32("rope.dimension_count", t.global_head_dim),
      u32("rope.dimension_count_swa", 2 * t.rope_sliding.rotated_pairs),
      f32("final_logit_softcapping", t.softcap),
  };
  if (t.experts > 0) {
    kvs.push_back(u32("expert_count", t.experts));
    kvs.push_back(u32("expert_used_count", t.experts_used));
    kvs.push_back(u32("expert_feed_forward_length", t.expert_ff));
  }
  return kvs;
}

std::string BaseName(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir.substr(dir.find_last_of('/') + 1);
}

// Matrices as stored; 1-D tensors widened to F32 into `keep` (llama.cpp's norms are F32).
TensorToWrite AsWritten(const std::string& name, const TensorView& v,
                        std::deque<std::vector<float>>* keep) {
  if (v.shape.size() != 1 || (v.dtype != DType::kBF16 && v.dtype != DType::kF16)) {
    return {name, v.dtype, v.shape, v.data};
  }
  std::vector<float>& w = keep->emplace_back(static_cast<size_t>(v.numel()));
  for (size_t i = 0; i < w.size(); ++i) w[i] = LoadAsF32(v.dtype, v.data, i);
  return {name, DType::kF32, v.shape, w.data()};
}

Result<std::vector<GgufKv>> TokenizerKeys(const std::string& path, int64_t vocab_size) {
  Result<Json> tok = ReadJsonFile(path);
  if (!tok.ok()) return tok.status();
  return TokenizerGgufMetadata(*tok, path, vocab_size);
}

// The directory's generation_config.json (sampling defaults, BOS and stop tokens), so the file
// generates as the directory does. Its BOS and first stop token replace the ones the tokenizer
// keys name after <bos> and <eos>: the engine and llama.cpp both go by the config's.
Status AddGenerationKeys(const std::string& dir, std::vector<GgufKv>* kvs) {
  Result<GenerationConfig> gen = GenerationConfig::LoadFromDir(dir);
  if (!gen.ok()) return gen.status();
  for (GgufKv& add : gen->GgufMetadata()) {
    auto same =
        std::find_if(kvs->begin(), kvs->end(), [&](const GgufKv& kv) { return kv.key == add.key; });
    if (same != kvs->end()) {
      *same = std::move(add);
    } else {
      kvs->push_back(std::move(add));
    }
  }
  return OkStatus();
}

// Appends the full-attention layers' RoPE frequency factors (llama.cpp's `rope_freqs`, shared by
// the target and the assistant) and writes the file.
struct GgufOut {
  const std::string& path;
  const std::vector<GgufKv>& kvs;
  int global_head_dim = 0;
  const RopeSpec& rope_full;
};

Result<GgufConvertStats> WriteWithRopeFreqs(const GgufOut& o, std::vector<TensorToWrite>& tensors,
                                            GgufConvertStats stats) {
  const std::vector<float> rope = Gemma4RopeFreqs(o.global_head_dim, o.rope_full);
  tensors.push_back(
      {"rope_freqs.weight", DType::kF32, {static_cast<int64_t>(rope.size())}, rope.data()});
  stats.tensors = static_cast<int>(tensors.size());
  if (Status s = WriteGguf(o.path, o.kvs, tensors); !s.ok()) return s;
  return stats;
}

}  // namespace

std::vector<GgufKv> Gemma4GgufMetadata(const Gemma4Config& c, const std::string& name) {
  TextKeys t{.arch = "gemma4",
             .context = c.max_position_embeddings,
             .hidden = c.hidden_size,
             .layers = c.num_layers,
             .heads = c.num_heads,
             .head_dim = c.head_dim,
             .global_head_dim = c.global_head_dim,
             .window = c.sliding_window,
             .shared = c.num_kv_shared_layers,
             .ple = c.ple_dim,
             .eps = c.rms_norm_eps,
             .softcap = c.final_logit_softcapping,
             .rope_sliding = c.rope_sliding,
             .rope_full = c.rope_full,
             .ffn = {},
             .kv_heads = {},
             .sliding = {},
             .experts = c.num_experts,
             .experts_used = c.top_k_experts,
             .expert_ff = c.moe_intermediate_size};
  for (const Gemma4LayerSpec& l : c.layers) {
    t.ffn.push_back(l.ffn_dim);
    t.kv_heads.push_back(l.num_kv_heads);
    t.sliding.push_back(l.type == AttnType::kSliding);
  }
  return TextMetadata(t, name);
}

Result<GgufConvertStats> ConvertGemma4ToGguf(const std::string& dir,
                                             const std::string& tokenizer_json,
                                             const std::string& out) {
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(dir);
  if (!model.ok()) return model.status();
  const Gemma4Config& c = (*model)->config();
  std::vector<GgufKv> kvs = Gemma4GgufMetadata(c, BaseName(dir));
  Result<std::vector<GgufKv>> tok_kvs = TokenizerKeys(tokenizer_json, c.vocab_size);
  if (!tok_kvs.ok()) return tok_kvs.status();
  kvs.insert(kvs.end(), tok_kvs->begin(), tok_kvs->end());
  if (Status s = AddGenerationKeys(dir, &kvs); !s.ok()) return s;

  // The tensors Bind() reads: llama.cpp refuses files with tensors it does not create, such as
  // the K/V projections HF keeps on KV-shared layers.
  std::vector<TensorToWrite> tensors;
  std::deque<std::vector<float>> f32;  // 1-D tensors widened to F32
  GgufConvertStats stats;
  for (const auto& [hf, view] : (*model)->store().all()) {
    const std::string gg = Gemma4GgufName(hf, c);
    if (gg.empty()) continue;
    const auto [layer, rest] = SplitLayerName(gg, "blk.");
    if (layer >= 0) {
      const Gemma4LayerSpec& l = c.layers[static_cast<size_t>(layer)];
      const bool kv =
          rest == "attn_k.weight" || rest == "attn_v.weight" || rest == "attn_k_norm.weight";
      if (kv && (!l.owns_kv || (l.k_eq_v && rest == "attn_v.weight"))) continue;
    }
    if (c.ple_dim == 0 && gg.find("per_layer") != std::string::npos) continue;
    const TensorToWrite t = AsWritten(gg, *view, &f32);
    tensors.push_back(t);
    stats.bytes += StorageBytes(t.dtype, view->numel());
  }
  return WriteWithRopeFreqs(
      {.path = out, .kvs = kvs, .global_head_dim = c.global_head_dim, .rope_full = c.rope_full},
      tensors, stats);
}

Result<GgufConvertStats> ConvertGemma4AssistantToGguf(const std::string& dir,
                                                      const AssistantGgufOptions& options,
                                                      const std::string& out) {
  const std::string cfg_path = dir + "/config.json";
  Result<Json> j = ReadJsonFile(cfg_path);
  if (!j.ok()) return j.status();
  Result<Gemma4AssistantConfig> cfg = Gemma4AssistantConfig::FromJson(*j, cfg_path);
  if (!cfg.ok()) return cfg.status();
  const Gemma4AssistantConfig& c = *cfg;
  FieldReader text((*j)["text_config"], cfg_path, "text_config");
  TextKeys t{.arch = "gemma4-assistant",
             .context = text.Int("max_position_embeddings", 131072),
             .hidden = c.hidden_size,
             .layers = static_cast<int64_t>(c.layer_types.size()),
             .heads = c.num_heads,
             .head_dim = c.head_dim,
             .global_head_dim = c.global_head_dim,
             .window = c.sliding_window,
             .shared = static_cast<int64_t>(c.layer_types.size()),
             .ple = 0,
             .eps = c.rms_norm_eps,
             .softcap = 0.0,
             .rope_sliding = c.rope_sliding,
             .rope_full = c.rope_full,
             .ffn = {},
             .kv_heads = {},
             .sliding = {}};
  if (!text.ok()) return text.status();
  for (size_t l = 0; l < c.layer_types.size(); ++l) {
    t.ffn.push_back(c.intermediate_size);
    t.kv_heads.push_back(c.LayerKvHeads(static_cast<int>(l)));
    t.sliding.push_back(c.layer_types[l] == AttnType::kSliding);
  }
  std::vector<GgufKv> kvs = TextMetadata(t, BaseName(dir));
  kvs.push_back({"gemma4-assistant.embedding_length_out", GgufType::kU32, c.backbone_hidden_size});
  kvs.push_back({"gemma4-assistant.nextn_predict_layers", GgufType::kU32, t.layers});
  const bool centroids = c.use_ordered_embeddings && options.keep_centroids;
  if (centroids) {
    kvs.push_back({"gemma4-assistant.masked_embd_top_k", GgufType::kU32, c.centroid_top_k});
  }
  Result<std::vector<GgufKv>> tok_kvs = TokenizerKeys(options.tokenizer_json, c.vocab_size);
  if (!tok_kvs.ok()) return tok_kvs.status();
  kvs.insert(kvs.end(), tok_kvs->begin(), tok_kvs->end());
  if (Status s = AddGenerationKeys(dir, &kvs); !s.ok()) return s;

  Result<std::unique_ptr<WeightStore>> store = WeightStore::OpenDir(dir);
  if (!store.ok()) return store.status();
  std::vector<TensorToWrite> tensors;
  std::deque<std::vector<float>> f32;
  std::deque<std::vector<int32_t>> i32;
  GgufConvertStats stats;
  for (const auto& [hf, view] : (*store)->all()) {
    const std::string gg = Gemma4AssistantGgufName(hf);
    if (gg.empty() || (gg.rfind("masked_embd", 0) == 0 && !centroids)) continue;
    TensorToWrite w = AsWritten(gg, *view, &f32);
    if (view->dtype == DType::kI64) {  // ggml has no I64 arithmetic; ids fit I32
      std::vector<int32_t>& v = i32.emplace_back(static_cast<size_t>(view->numel()));
      for (size_t i = 0; i < v.size(); ++i) {
        int64_t x;
        std::memcpy(&x, static_cast<const uint8_t*>(view->data) + 8 * i, 8);
        v[i] = static_cast<int32_t>(x);  // a permutation of the vocabulary: checked when loaded
      }
      w = {gg, DType::kI32, view->shape, v.data()};
    }
    tensors.push_back(w);
    stats.bytes += StorageBytes(w.dtype, view->numel());
  }
  return WriteWithRopeFreqs(
      {.path = out, .kvs = kvs, .global_head_dim = c.global_head_dim, .rope_full = c.rope_full},
      tensors, stats);
}

}  // namespace specula
