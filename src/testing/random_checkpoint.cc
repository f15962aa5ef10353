#include "src/testing/random_checkpoint.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/formats/safetensors.h"
#include "specula/tokenizer/tokenizer_gguf.h"

namespace specula {
namespace {

// SplitMix64: fast, seedable, identical on every platform.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// Uniform in [-1, 1) for element `i` of a stream `seed`: any element can be produced on its own,
// which lets the streaming writer fill huge tensors chunk by chunk.
float Unit(uint64_t seed, uint64_t i) {
  return static_cast<float>(static_cast<double>(Mix(seed ^ Mix(i)) >> 11) * 0x1.0p-52 - 1.0);
}

void Store(DType t, float v, void* out, int64_t i) {
  if (t == DType::kF32) {
    std::memcpy(static_cast<uint8_t*>(out) + 4 * i, &v, 4);
  } else {
    const uint16_t h = t == DType::kBF16 ? F32ToBF16(v) : F32ToF16(v);
    std::memcpy(static_cast<uint8_t*>(out) + 2 * i, &h, 2);
  }
}

// How a tensor's values are drawn.
struct Init {
  float center = 0.0f;
  float spread = 1.0f;                         // uniform in center ± spread
  const std::vector<int64_t>* ints = nullptr;  // integer tensors: copied as is
};

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) return Error(path + ": write failed");
  return OkStatus();
}

std::vector<std::string> DefaultLayerTypes(int n) {
  std::vector<std::string> t;
  for (int i = 0; i < n; ++i)
    t.push_back((i % 6 == 5 || i == n - 1) ? "full_attention" : "sliding_attention");
  return t;
}

// Writes random tensors (single file or `shards` files plus an index), streaming chunk by chunk.
Status WriteTensors(const std::string& dir, const std::vector<TensorSpec>& specs,
                    const std::vector<Init>& inits, uint64_t seed, int shard_count) {
  // Shards: contiguous runs of tensors, balanced by bytes.
  const int shards = std::max(1, shard_count);
  int64_t total = 0, total_bytes = 0;
  for (const TensorSpec& t : specs) {
    total += t.numel();
    total_bytes += t.numel() * static_cast<int64_t>(DTypeSize(t.dtype));
  }
  std::vector<std::vector<size_t>> members(static_cast<size_t>(shards));
  int64_t acc = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const size_t sh =
        std::min<size_t>(static_cast<size_t>(shards - 1),
                         static_cast<size_t>(acc * shards / std::max<int64_t>(1, total)));
    members[sh].push_back(i);
    acc += specs[i].numel();
  }
  Json weight_map = Json::object();
  for (int sh = 0; sh < shards; ++sh) {
    char fname[64];
    if (shards == 1) {
      std::snprintf(fname, sizeof(fname), "model.safetensors");
    } else {
      std::snprintf(fname, sizeof(fname), "model-%05d-of-%05d.safetensors", sh + 1, shards);
    }
    std::vector<TensorSpec> part;
    for (size_t i : members[static_cast<size_t>(sh)]) {
      part.push_back(specs[i]);
      weight_map[specs[i].name] = fname;
    }
    const auto& idx = members[static_cast<size_t>(sh)];
    Status st = WriteSafetensorsStreaming(
        dir + "/" + fname, part,
        [&](size_t k, int64_t off, int64_t n, void* out) {
          const size_t i = idx[k];
          const Init in = inits[i];
          const uint64_t stream = Mix(seed * 1000003ull + i);
          if (in.ints != nullptr) {
            std::memcpy(out, in.ints->data() + off, static_cast<size_t>(n) * sizeof(int64_t));
            return;
          }
          for (int64_t e = 0; e < n; ++e)
            Store(specs[i].dtype,
                  in.center + in.spread * Unit(stream, static_cast<uint64_t>(off + e)), out, e);
        },
        {{"format", "pt"}});
    if (!st.ok()) return st;
  }
  if (shards > 1) {
    Json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    if (Status st = WriteText(dir + "/model.safetensors.index.json", index.dump(2)); !st.ok())
      return st;
  }
  return OkStatus();
}

}  // namespace

std::vector<std::string> TargetPresetNames() {
  return {"e2b-tiny",  "e4b-tiny", "31b-tiny",    "12b-tiny",       "26b-a4b-tiny",
          "e2b-small", "e2b-full", "31b-shallow", "26b-a4b-shallow"};
}

Result<RandomTargetSpec> TargetPreset(const std::string& name) {
  RandomTargetSpec s;
  if (name == "e2b-tiny") {  // PLE, KV sharing, double-wide MLP, 4S1F pattern
    s.num_layers = 10;
    for (int i = 0; i < 10; ++i)
      s.layer_types.push_back(i % 5 == 4 ? "full_attention" : "sliding_attention");
    s.num_kv_heads = 1;
    s.double_wide_mlp = true;
    s.ple_dim = 16;
    s.num_kv_shared_layers = 4;
  } else if (name == "e4b-tiny") {  // PLE, KV sharing, 2 KV heads, 5S1F
    s.num_layers = 12;
    s.num_kv_heads = 2;
    s.ple_dim = 16;
    s.num_kv_shared_layers = 4;
  } else if (name == "31b-tiny" || name == "12b-tiny") {  // k_eq_v full layers, own KV-head count
    s.num_layers = 6;
    s.num_kv_heads = 2;
    s.num_global_kv_heads = 1;
    s.k_eq_v = true;
    if (name == "12b-tiny") s.model_type = "gemma4_unified";
  } else if (name == "26b-a4b-tiny") {  // MoE beside the dense MLP, k_eq_v full layers
    s.num_layers = 6;
    s.num_heads = 4;
    s.num_kv_heads = 2;
    s.num_global_kv_heads = 1;
    s.k_eq_v = true;
    s.intermediate_size = 96;
    s.num_experts = 16;
    s.top_k_experts = 4;
    s.moe_intermediate_size = 32;
  } else if (name == "e2b-small") {  // E2B structure at ~100 MB: a few ms per token (server tests)
    s.hidden_size = 512;
    s.num_layers = 10;
    for (int i = 0; i < 10; ++i)
      s.layer_types.push_back(i % 5 == 4 ? "full_attention" : "sliding_attention");
    s.num_heads = 4;
    s.num_kv_heads = 1;
    s.head_dim = 128;
    s.global_head_dim = 256;
    s.intermediate_size = 2048;
    s.double_wide_mlp = true;
    s.ple_dim = 64;
    s.num_kv_shared_layers = 4;
    s.sliding_window = 128;
    s.vocab_size = 32768;
  } else if (name == "e2b-full") {  // the real E2B geometry (its released config.json)
    s.hidden_size = 1536;
    s.num_layers = 35;
    for (int i = 0; i < 35; ++i)
      s.layer_types.push_back(i % 5 == 4 ? "full_attention" : "sliding_attention");
    s.num_heads = 8;
    s.num_kv_heads = 1;
    s.head_dim = 256;
    s.global_head_dim = 512;
    s.intermediate_size = 6144;
    s.double_wide_mlp = true;
    s.ple_dim = 256;
    s.num_kv_shared_layers = 20;
    s.sliding_window = 512;
    s.vocab_size = 262144;
    s.max_position_embeddings = 131072;
  } else if (name == "31b-shallow") {  // 31B widths, 6 layers
    s.hidden_size = 5376;
    s.num_layers = 6;
    s.num_heads = 32;
    s.num_kv_heads = 16;
    s.num_global_kv_heads = 4;
    s.head_dim = 256;
    s.global_head_dim = 512;
    s.k_eq_v = true;
    s.intermediate_size = 21504;
    s.sliding_window = 1024;
    s.vocab_size = 262144;
    s.max_position_embeddings = 262144;
  } else if (name == "26b-a4b-shallow") {  // 26B-A4B widths, two layers (S, F)
    s.hidden_size = 2816;
    s.num_layers = 2;
    s.num_heads = 16;
    s.num_kv_heads = 8;
    s.num_global_kv_heads = 2;
    s.head_dim = 256;
    s.global_head_dim = 512;
    s.k_eq_v = true;
    s.intermediate_size = 2112;
    s.num_experts = 128;
    s.top_k_experts = 8;
    s.moe_intermediate_size = 704;
    s.sliding_window = 1024;
    s.vocab_size = 262144;
    s.max_position_embeddings = 262144;
  } else {
    std::string all;
    for (const auto& n : TargetPresetNames()) all += (all.empty() ? "" : ", ") + n;
    return Error("unknown preset '" + name + "' (known: " + all + ")");
  }
  return s;
}

Status WriteRandomTarget(const RandomTargetSpec& s, const std::string& dir) {
  ::mkdir(dir.c_str(), 0755);
  const std::vector<std::string> types =
      s.layer_types.empty() ? DefaultLayerTypes(s.num_layers) : s.layer_types;
  if (static_cast<int>(types.size()) != s.num_layers)
    return Error("layer_types must have num_layers entries");

  // ---- config.json (HF layout)
  Json text = {
      {"model_type", s.model_type == "gemma4_unified" ? "gemma4_unified_text" : "gemma4_text"},
      {"hidden_size", s.hidden_size},
      {"num_hidden_layers", s.num_layers},
      {"num_attention_heads", s.num_heads},
      {"num_key_value_heads", s.num_kv_heads},
      {"num_global_key_value_heads",
       s.num_global_kv_heads > 0 ? Json(s.num_global_kv_heads) : Json()},
      {"head_dim", s.head_dim},
      {"global_head_dim", s.global_head_dim},
      {"attention_k_eq_v", s.k_eq_v},
      {"intermediate_size", s.intermediate_size},
      {"use_double_wide_mlp", s.double_wide_mlp},
      {"hidden_size_per_layer_input", s.ple_dim},
      {"vocab_size_per_layer_input", s.ple_dim > 0 ? s.vocab_size : 0},
      {"num_kv_shared_layers", s.num_kv_shared_layers},
      {"enable_moe_block", s.num_experts > 0},
      {"num_experts", s.num_experts > 0 ? Json(s.num_experts) : Json()},
      {"top_k_experts", s.num_experts > 0 ? Json(s.top_k_experts) : Json()},
      {"moe_intermediate_size", s.num_experts > 0 ? Json(s.moe_intermediate_size) : Json()},
      {"sliding_window", s.sliding_window},
      {"layer_types", types},
      {"max_position_embeddings", s.max_position_embeddings},
      {"final_logit_softcapping", 30.0},
      {"vocab_size", s.vocab_size},
      {"rms_norm_eps", 1e-6},
      {"hidden_activation", "gelu_pytorch_tanh"},
      {"tie_word_embeddings", true},
      {"attention_bias", false},
      {"rope_parameters",
       {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
        {"full_attention",
         {{"rope_type", "proportional"},
          {"partial_rotary_factor", 0.25},
          {"rope_theta", 1000000.0}}}}},
  };
  Json config;
  const bool nested = s.model_type != "gemma4_text";
  if (nested) {
    config = {{"architectures",
               {s.model_type == "gemma4_unified" ? "Gemma4UnifiedForConditionalGeneration"
                                                 : "Gemma4ForConditionalGeneration"}},
              {"model_type", s.model_type},
              {"text_config", text},
              {"image_token_id", std::min(258880, s.vocab_size - 1)},
              {"eos_token_id", {1, 106}},
              {"tie_word_embeddings", true}};
  } else {
    config = text;
    config["architectures"] = {"Gemma4ForCausalLM"};
  }
  if (Status st = WriteText(dir + "/config.json", config.dump(2)); !st.ok()) return st;
  Json gen = {
      {"bos_token_id", 2}, {"eos_token_id", {1, 106}}, {"pad_token_id", 0}, {"do_sample", false}};
  if (Status st = WriteText(dir + "/generation_config.json", gen.dump(2)); !st.ok()) return st;

  // ---- tokenizer
  std::string tok_json;
  if (!s.tokenizer_json.empty()) {
    Result<std::string> t = ReadTextFile(s.tokenizer_json);
    if (!t.ok()) return t.status();
    tok_json = std::move(*t);
  } else {
    tok_json = SyntheticTokenizerJson(s.vocab_size);
  }
  if (Status st = WriteText(dir + "/tokenizer.json", tok_json); !st.ok()) return st;
  Json tok_cfg = {{"tokenizer_class", "GemmaTokenizer"},
                  {"add_bos_token", false},
                  {"bos_token", "<bos>"},
                  {"eos_token", "<eos>"},
                  {"pad_token", "<pad>"},
                  {"unk_token", "<unk>"}};
  if (Status st = WriteText(dir + "/tokenizer_config.json", tok_cfg.dump(2)); !st.ok()) return st;

  // ---- tensors
  const std::string pre = nested ? "model.language_model." : "model.";
  const int64_t H = s.hidden_size, V = s.vocab_size, P = s.ple_dim, L = s.num_layers;
  std::vector<TensorSpec> specs;
  std::vector<Init> inits;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, Init init) {
    specs.push_back({pre + name, s.dtype, std::move(shape)});
    inits.push_back(init);
  };
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols) {
    add(name, {rows, cols},
        {0.0f, std::sqrt(3.0f / static_cast<float>(cols))});  // unit-variance outputs
  };
  auto norm = [&](const std::string& name, int64_t n) { add(name, {n}, {1.0f, 0.25f}); };
  // Embedding rows of std ~ gain / sqrt(H): logits (normed hidden · row) then have std ~ gain.
  add("embed_tokens.weight", {V, H},
      {0.0f, s.logit_gain * std::sqrt(3.0f) / std::sqrt(static_cast<float>(H))});
  norm("norm.weight", H);
  if (P > 0) {
    add("embed_tokens_per_layer.weight", {V, L * P},
        {0.0f, std::sqrt(3.0f) / std::sqrt(static_cast<float>(P))});
    mat("per_layer_model_projection.weight", L * P, H);
    norm("per_layer_projection_norm.weight", P);
  }
  const int first_shared = s.num_layers - s.num_kv_shared_layers;
  for (int i = 0; i < s.num_layers; ++i) {
    const bool full = types[static_cast<size_t>(i)] == "full_attention";
    const int hd = full ? s.global_head_dim : s.head_dim;
    const bool keqv = full && s.k_eq_v;
    const int nkv = keqv && s.num_global_kv_heads > 0 ? s.num_global_kv_heads : s.num_kv_heads;
    const int ff = s.intermediate_size * ((s.double_wide_mlp && i >= first_shared) ? 2 : 1);
    const std::string p = "layers." + std::to_string(i) + ".";
    for (const char* n : {"input_layernorm", "post_attention_layernorm",
                          "pre_feedforward_layernorm", "post_feedforward_layernorm"}) {
      norm(p + n + ".weight", H);
    }
    add(p + "layer_scalar", {1}, {0.75f, 0.25f});
    mat(p + "self_attn.q_proj.weight", s.num_heads * hd, H);
    add(p + "self_attn.q_norm.weight", {hd}, {s.qk_norm_scale, 0.25f * s.qk_norm_scale});
    if (i < first_shared) {
      mat(p + "self_attn.k_proj.weight", nkv * hd, H);
      add(p + "self_attn.k_norm.weight", {hd}, {s.qk_norm_scale, 0.25f * s.qk_norm_scale});
      if (!keqv) mat(p + "self_attn.v_proj.weight", nkv * hd, H);
    }
    mat(p + "self_attn.o_proj.weight", H, s.num_heads * hd);
    mat(p + "mlp.gate_proj.weight", ff, H);
    mat(p + "mlp.up_proj.weight", ff, H);
    mat(p + "mlp.down_proj.weight", H, ff);
    if (s.num_experts > 0) {
      const int64_t E = s.num_experts, F = s.moe_intermediate_size;
      for (const char* n : {"pre_feedforward_layernorm_2", "post_feedforward_layernorm_1",
                            "post_feedforward_layernorm_2"}) {
        norm(p + n + ".weight", H);
      }
      mat(p + "router.proj.weight", E, H);
      add(p + "router.scale", {H}, {s.router_gain, 0.25f * s.router_gain});
      add(p + "router.per_expert_scale", {E}, {1.0f, 0.25f});
      add(p + "experts.gate_up_proj", {E, 2 * F, H},
          {0.0f, std::sqrt(3.0f / static_cast<float>(H))});
      add(p + "experts.down_proj", {E, H, F}, {0.0f, std::sqrt(3.0f / static_cast<float>(F))});
    }
    if (P > 0) {
      mat(p + "per_layer_input_gate.weight", P, H);
      mat(p + "per_layer_projection.weight", H, P);
      norm(p + "post_per_layer_input_norm.weight", H);
    }
  }

  return WriteTensors(dir, specs, inits, s.seed, s.shards);
}

RandomAssistantSpec AssistantPresetFor(const std::string& preset) {
  RandomAssistantSpec a;
  if (preset == "e2b-small") {
    a.hidden_size = 128;
    a.intermediate_size = 512;
    a.num_centroids = 256;
    a.centroid_top_k = 8;
  } else if (preset == "e2b-full") {  // the released E2B assistant's widths
    a.hidden_size = 256;
    a.num_heads = 4;
    a.intermediate_size = 2048;
    a.num_centroids = 2048;
    a.centroid_top_k = 32;
  } else if (preset == "31b-shallow") {
    a.hidden_size = 1024;
    a.num_heads = 32;
    a.intermediate_size = 8192;
    a.centroid_head = false;
  } else if (preset == "26b-a4b-shallow") {  // the released 26B-A4B assistant's widths
    a.hidden_size = 1024;
    a.num_heads = 16;
    a.intermediate_size = 8192;
    a.centroid_head = false;
  } else if (preset == "31b-tiny" || preset == "12b-tiny" || preset == "26b-a4b-tiny") {
    a.centroid_head = false;
  }
  return a;
}

Status WriteRandomAssistant(const RandomAssistantSpec& a, const RandomTargetSpec& t,
                            const std::string& dir) {
  ::mkdir(dir.c_str(), 0755);
  const std::vector<std::string> types = {"sliding_attention", "sliding_attention",
                                          "sliding_attention", "full_attention"};
  Json text = {{"model_type", "gemma4_text"},
               {"hidden_size", a.hidden_size},
               {"num_hidden_layers", 4},
               {"num_attention_heads", a.num_heads},
               {"num_key_value_heads", t.num_kv_heads},
               {"num_global_key_value_heads",
                t.num_global_kv_heads > 0 ? Json(t.num_global_kv_heads) : Json()},
               {"head_dim", t.head_dim},
               {"global_head_dim", t.global_head_dim},
               {"attention_k_eq_v", t.k_eq_v},
               {"intermediate_size", a.intermediate_size},
               {"use_double_wide_mlp", false},
               {"hidden_size_per_layer_input", 0},
               {"vocab_size_per_layer_input", 0},
               {"num_kv_shared_layers", 4},
               {"enable_moe_block", false},
               {"sliding_window", t.sliding_window},
               {"layer_types", types},
               {"max_position_embeddings", t.max_position_embeddings},
               {"final_logit_softcapping", nullptr},
               {"vocab_size", t.vocab_size},
               {"rms_norm_eps", 1e-6},
               {"hidden_activation", "gelu_pytorch_tanh"},
               {"tie_word_embeddings", true},
               {"rope_parameters",
                {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
                 {"full_attention",
                  {{"rope_type", "proportional"},
                   {"partial_rotary_factor", 0.25},
                   {"rope_theta", 1000000.0}}}}}};
  const bool unified = t.model_type == "gemma4_unified";
  Json config = {{"architectures",
                  {unified ? "Gemma4UnifiedAssistantForCausalLM" : "Gemma4AssistantForCausalLM"}},
                 {"model_type", unified ? "gemma4_unified_assistant" : "gemma4_assistant"},
                 {"backbone_hidden_size", t.hidden_size},
                 {"use_ordered_embeddings", a.centroid_head},
                 {"num_centroids", a.num_centroids},
                 {"centroid_intermediate_top_k", a.centroid_top_k},
                 {"tie_word_embeddings", true},
                 {"text_config", text}};
  if (Status st = WriteText(dir + "/config.json", config.dump(2)); !st.ok()) return st;
  Json gen = {{"bos_token_id", 2}, {"eos_token_id", {1, 106}}, {"pad_token_id", 0}};
  if (a.num_assistant_tokens > 0) gen["num_assistant_tokens"] = a.num_assistant_tokens;
  if (Status st = WriteText(dir + "/generation_config.json", gen.dump(2)); !st.ok()) return st;

  const int64_t Hd = a.hidden_size, Hb = t.hidden_size, V = t.vocab_size;
  std::vector<TensorSpec> specs;
  std::vector<Init> inits;
  std::vector<int64_t> ordering;
  if (a.centroid_head) {  // a random permutation: cluster c owns ordering[c*V/C .. (c+1)*V/C)
    ordering.resize(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) ordering[static_cast<size_t>(i)] = i;
    for (int64_t i = V - 1; i > 0; --i)
      std::swap(
          ordering[static_cast<size_t>(i)],
          ordering[Mix(a.seed * 31 + static_cast<uint64_t>(i)) % static_cast<uint64_t>(i + 1)]);
    specs.push_back({"masked_embedding.token_ordering", DType::kI64, {V}});
    inits.push_back({0, 0, &ordering});
  }
  auto add = [&](const std::string& name, std::vector<int64_t> shape, Init init) {
    specs.push_back({name, a.dtype, std::move(shape)});
    inits.push_back(init);
  };
  auto mat = [&](const std::string& name, int64_t rows, int64_t cols) {
    add(name, {rows, cols}, {0.0f, std::sqrt(3.0f / static_cast<float>(cols))});
  };
  auto norm = [&](const std::string& name, int64_t n) { add(name, {n}, {1.0f, 0.25f}); };
  mat("pre_projection.weight", Hd, 2 * Hb);
  mat("post_projection.weight", Hb, Hd);
  add("model.embed_tokens.weight", {V, Hd},
      {0.0f, 4.0f * std::sqrt(3.0f) / std::sqrt(static_cast<float>(Hd))});
  norm("model.norm.weight", Hd);
  if (a.centroid_head) mat("masked_embedding.centroids.weight", a.num_centroids, Hd);
  for (int l = 0; l < 4; ++l) {
    const bool full = l == 3;
    const int hd = full ? t.global_head_dim : t.head_dim;
    const std::string p = "model.layers." + std::to_string(l) + ".";
    for (const char* n : {"input_layernorm", "post_attention_layernorm",
                          "pre_feedforward_layernorm", "post_feedforward_layernorm"})
      norm(p + n + ".weight", Hd);
    add(p + "layer_scalar", {1}, {0.75f, 0.25f});
    mat(p + "self_attn.q_proj.weight", a.num_heads * hd, Hd);
    norm(p + "self_attn.q_norm.weight", hd);
    mat(p + "self_attn.o_proj.weight", Hd, a.num_heads * hd);
    mat(p + "mlp.gate_proj.weight", a.intermediate_size, Hd);
    mat(p + "mlp.up_proj.weight", a.intermediate_size, Hd);
    mat(p + "mlp.down_proj.weight", Hd, a.intermediate_size);
  }
  return WriteTensors(dir, specs, inits, a.seed, 1);
}

std::string SyntheticTokenizerJson(int vocab_size) {
  // Special and chat tokens at Gemma's ids; unused slots below 108 are <unusedN>.
  std::map<int, std::string> special = {{0, "<pad>"},
                                        {1, "<eos>"},
                                        {2, "<bos>"},
                                        {3, "<unk>"},
                                        {46, "<|tool>"},
                                        {47, "<tool|>"},
                                        {48, "<|tool_call>"},
                                        {49, "<tool_call|>"},
                                        {50, "<|tool_response>"},
                                        {51, "<tool_response|>"},
                                        {52, "<|\"|>"},
                                        {98, "<|think|>"},
                                        {100, "<|channel>"},
                                        {101, "<channel|>"},
                                        {105, "<|turn>"},
                                        {106, "<turn|>"}};
  std::vector<std::string> pieces;
  Json added = Json::array();
  for (int id = 0; id < 107; ++id) {
    auto it = special.find(id);
    const std::string piece =
        it != special.end() ? it->second : "<unused" + std::to_string(id) + ">";
    pieces.push_back(piece);
    added.push_back({{"id", id},
                     {"content", piece},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", it != special.end()}});
  }
  pieces.push_back("\n");  // 107, as in Gemma
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    pieces.push_back(name);
  }
  const std::string mark = "\xE2\x96\x81";
  std::vector<std::string> chars = {mark, "\t"};
  for (int c = 33; c < 127; ++c) chars.push_back(std::string(1, static_cast<char>(c)));
  for (const auto& c : chars) pieces.push_back(c);

  // Train merges on a fixed sample until the vocabulary is full.
  const std::string sample =
      "the quick brown fox jumps over the lazy dog. hello world! this is a test of the tokenizer "
      "and the model. int main() { return 0; } for (int i = 0; i < n; ++i) sum += x[i]; "
      "def forward(self, x): return self.proj(x) the cat sat on the mat and the dog ran in the "
      "park "
      "speculative decoding with a small drafter makes generation faster without changing tokens";
  std::vector<std::vector<std::string>> words;
  std::string cur;
  for (char ch : sample) {
    if (ch == ' ') {
      if (!cur.empty()) words.push_back({});
      for (char c2 : cur) words.back().push_back(std::string(1, c2));
      cur.clear();
      words.push_back({mark});
    } else {
      cur.push_back(ch);
    }
  }
  if (!cur.empty()) {
    words.push_back({});
    for (char c2 : cur) words.back().push_back(std::string(1, c2));
  }
  // Join "▁" with the following word so merges learn "▁the" etc.
  std::vector<std::vector<std::string>> seqs;
  for (size_t i = 0; i < words.size(); ++i) {
    if (words[i].size() == 1 && words[i][0] == mark && i + 1 < words.size()) {
      std::vector<std::string> w = {mark};
      w.insert(w.end(), words[i + 1].begin(), words[i + 1].end());
      seqs.push_back(w);
      ++i;
    } else {
      seqs.push_back(words[i]);
    }
  }
  Json merges = Json::array();
  std::map<std::string, int> have;
  for (size_t i = 0; i < pieces.size(); ++i) have[pieces[i]] = static_cast<int>(i);
  while (static_cast<int>(pieces.size()) < vocab_size) {
    std::map<std::pair<std::string, std::string>, int> counts;
    for (const auto& w : seqs) {
      for (size_t i = 0; i + 1 < w.size(); ++i) ++counts[{w[i], w[i + 1]}];
    }
    std::pair<std::string, std::string> best;
    int best_n = 0;
    for (const auto& [pr, n] : counts) {
      if (n > best_n && !have.count(pr.first + pr.second)) {
        best = pr;
        best_n = n;
      }
    }
    if (best_n == 0) break;
    const std::string merged = best.first + best.second;
    merges.push_back({best.first, best.second});
    have[merged] = static_cast<int>(pieces.size());
    pieces.push_back(merged);
    for (auto& w : seqs) {
      std::vector<std::string> nw;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == best.first && w[i + 1] == best.second) {
          nw.push_back(merged);
          ++i;
        } else {
          nw.push_back(w[i]);
        }
      }
      w = std::move(nw);
    }
  }
  while (static_cast<int>(pieces.size()) < vocab_size)
    pieces.push_back("<unused" + std::to_string(pieces.size()) + ">");
  pieces.resize(static_cast<size_t>(vocab_size));
  Json vocab = Json::object();
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = i;
  Json merges_kept = Json::array();
  for (const Json& m : merges) {
    if (vocab.contains(m[0].get<std::string>() + m[1].get<std::string>())) merges_kept.push_back(m);
  }
  Json tok = GemmaSpaceRules();
  tok.update(Json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", mark}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}}}}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges_kept}}},
  });
  return tok.dump();
}

}  // namespace specula
