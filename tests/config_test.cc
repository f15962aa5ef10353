// Config parsing: the released checkpoints' per-size hyper-parameters (config.json) give the
// derived layer facts (KV-sharing sources, drafter source layers, MLP widths); bad configs name
// the field.
#include <gtest/gtest.h>

#include <fstream>
#include <tuple>

#include "specula/formats/generation_config.h"
#include "specula/models/gemma4_config.h"
#include "test_util.h"

namespace specula {
namespace {

Json TextConfig(int H, int L, int period, int heads, int kv, Json global_kv, bool keqv, int ff,
                int ple, int shared, bool dw) {
  std::vector<std::string> types;
  for (int i = 0; i < L; ++i)
    types.push_back(i % period == period - 1 ? "full_attention" : "sliding_attention");
  return {
      {"hidden_size", H},
      {"num_hidden_layers", L},
      {"num_attention_heads", heads},
      {"num_key_value_heads", kv},
      {"num_global_key_value_heads", global_kv},
      {"head_dim", 256},
      {"global_head_dim", 512},
      {"attention_k_eq_v", keqv},
      {"intermediate_size", ff},
      {"use_double_wide_mlp", dw},
      {"hidden_size_per_layer_input", ple},
      {"vocab_size_per_layer_input", 262144},
      {"num_kv_shared_layers", shared},
      {"sliding_window", 512},
      {"layer_types", types},
      {"max_position_embeddings", 131072},
      {"final_logit_softcapping", 30.0},
      {"vocab_size", 262144},
      {"rms_norm_eps", 1e-6},
      {"rope_parameters",
       {{"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}},
        {"full_attention",
         {{"rope_type", "proportional"}, {"partial_rotary_factor", 0.25}, {"rope_theta", 1e6}}}}}};
}

Gemma4Config Parse(const Json& text, const std::string& type = "gemma4") {
  Result<Gemma4Config> c =
      Gemma4Config::FromJson({{"model_type", type}, {"text_config", text}}, "config.json");
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? *c : Gemma4Config{};
}

TEST(Config, E2BDerivedFacts) {
  const Gemma4Config c = Parse(TextConfig(1536, 35, 5, 8, 1, nullptr, false, 6144, 256, 20, true));
  EXPECT_EQ(c.tensor_prefix, "model.language_model.");
  EXPECT_EQ(c.layers[4].type, AttnType::kFull);
  EXPECT_EQ(c.layers[4].head_dim, 512);
  EXPECT_EQ(c.layers[4].num_kv_heads, 1);  // k_eq_v false: global KV heads not used
  EXPECT_TRUE(c.layers[14].owns_kv);
  EXPECT_FALSE(c.layers[15].owns_kv);
  EXPECT_EQ(c.layers[15].kv_source, 13);  // sliding shared layers read layer 13
  EXPECT_EQ(c.layers[19].kv_source, 14);  // full shared layers read layer 14
  EXPECT_EQ(c.layers[34].kv_source, 14);
  EXPECT_EQ(c.layers[14].ffn_dim, 6144);
  EXPECT_EQ(c.layers[15].ffn_dim, 12288);  // double-wide MLP on KV-shared layers
  EXPECT_EQ(c.LastKvOwner(AttnType::kSliding), 13);
  EXPECT_EQ(c.LastKvOwner(AttnType::kFull), 14);
  EXPECT_EQ(c.rope_full.rotated_pairs, 64);
  EXPECT_EQ(c.rope_sliding.rotated_pairs, 128);
}

TEST(Config, DrafterSourceLayersPerSize) {  // the layers each size's assistant reads
  const Gemma4Config e4b =
      Parse(TextConfig(2560, 42, 6, 8, 2, nullptr, false, 10240, 256, 18, false));
  EXPECT_EQ(e4b.LastKvOwner(AttnType::kSliding), 22);
  EXPECT_EQ(e4b.LastKvOwner(AttnType::kFull), 23);
  const Gemma4Config b12 =
      Parse(TextConfig(3840, 48, 6, 16, 8, 1, true, 15360, 0, 0, false), "gemma4_unified");
  EXPECT_EQ(b12.LastKvOwner(AttnType::kSliding), 46);
  EXPECT_EQ(b12.LastKvOwner(AttnType::kFull), 47);
  const Gemma4Config b31 = Parse(TextConfig(5376, 60, 6, 32, 16, 4, true, 21504, 0, 0, false));
  EXPECT_EQ(b31.LastKvOwner(AttnType::kSliding), 58);
  EXPECT_EQ(b31.LastKvOwner(AttnType::kFull), 59);
  EXPECT_EQ(b31.layers[5].num_kv_heads, 4);  // full layers: num_global_key_value_heads
  EXPECT_EQ(b31.layers[4].num_kv_heads, 16);
  EXPECT_TRUE(b31.layers[5].k_eq_v);
  EXPECT_FALSE(b31.layers[4].k_eq_v);
}

TEST(Config, TextOnlyConfigUsesModelPrefix) {
  Json t = TextConfig(1536, 35, 5, 8, 1, nullptr, false, 6144, 256, 20, true);
  t["model_type"] = "gemma4_text";
  Result<Gemma4Config> c = Gemma4Config::FromJson(t, "config.json");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->tensor_prefix, "model.");
}

TEST(Config, MixtureOfExpertsFieldsAreValidated) {
  Json moe = TextConfig(64, 6, 6, 4, 1, nullptr, false, 128, 0, 0, false);
  moe["enable_moe_block"] = true;
  moe["num_experts"] = 8;
  moe["top_k_experts"] = 2;
  moe["moe_intermediate_size"] = 32;
  Result<Gemma4Config> ok =
      Gemma4Config::FromJson({{"model_type", "gemma4"}, {"text_config", moe}}, "m/config.json");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_TRUE(ok->moe());
  EXPECT_EQ(ok->num_experts, 8);
  EXPECT_EQ(ok->top_k_experts, 2);
  EXPECT_EQ(ok->moe_intermediate_size, 32);
  for (const auto& [key, value, expect] :
       {std::tuple<std::string, Json, std::string>{
            "top_k_experts", 9, "text_config.top_k_experts: must be in [1, num_experts = 8]"},
        {"top_k_experts", 0, "text_config.top_k_experts: must be in [1"},
        {"num_experts", 0, "text_config.num_experts: must be a positive integer"},
        {"moe_intermediate_size", -4,
         "text_config.moe_intermediate_size: must be a positive integer"},
        {"moe_intermediate_size", "wide",
         "text_config.moe_intermediate_size: expected an integer"}}) {
    Json t = moe;
    t[key] = value;
    Result<Gemma4Config> r =
        Gemma4Config::FromJson({{"model_type", "gemma4"}, {"text_config", t}}, "m/config.json");
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_NE(r.status().message().find(expect), std::string::npos) << r.status().message();
  }
  // A dense config ignores the expert fields.
  moe["enable_moe_block"] = false;
  Result<Gemma4Config> dense =
      Gemma4Config::FromJson({{"model_type", "gemma4"}, {"text_config", moe}}, "m/config.json");
  ASSERT_TRUE(dense.ok());
  EXPECT_FALSE(dense->moe());
}

TEST(Config, BadConfigsNameTheField) {
  const Json good = TextConfig(64, 6, 6, 4, 1, nullptr, false, 128, 0, 0, false);
  struct Case {
    std::string key;
    Json value;
    std::string expect;
  } cases[] = {
      {"hidden_size", nullptr, "text_config.hidden_size: required field is missing"},
      {"hidden_size", "64", "text_config.hidden_size: expected an integer"},
      {"hidden_size", -3, "text_config.hidden_size: must be a positive integer"},
      {"hidden_size", int64_t{4294967360}, "text_config.hidden_size: must fit in 32 bits"},
      {"num_key_value_heads", 3, "text_config.num_key_value_heads: must divide"},
      {"layer_types",
       {"sliding_attention"},
       "text_config.layer_types: must have num_hidden_layers"},
      {"layer_types", {"a", "b", "c", "d", "e", "f"}, "entry 0 is 'a'"},
      {"enable_moe_block", true, "text_config.num_experts: required field is missing"},
      {"hidden_activation", "relu", "text_config.hidden_activation"},
      {"num_kv_shared_layers", 6, "text_config.num_kv_shared_layers"},
      {"head_dim", 31, "text_config.head_dim: must be even"},
      {"rope_parameters", {{"full_attention", {{"rope_type", "yarn"}}}}, "unsupported RoPE type"},
      {"rms_norm_eps", "x", "text_config.rms_norm_eps: expected a number"},
  };
  for (const Case& c : cases) {
    Json t = good;
    if (c.value.is_null()) {
      t.erase(c.key);
    } else {
      t[c.key] = c.value;
    }
    Result<Gemma4Config> r =
        Gemma4Config::FromJson({{"model_type", "gemma4"}, {"text_config", t}}, "m/config.json");
    ASSERT_FALSE(r.ok()) << c.key;
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().rfind("m/config.json: ", 0), 0u) << r.status().message();
  }
  Result<Gemma4Config> r = Gemma4Config::FromJson({{"model_type", "llama"}}, "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("model_type: unknown model_type"), std::string::npos);
  r = Gemma4Config::FromJson({{"model_type", "gemma4"}}, "config.json");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("text_config"), std::string::npos);
  r = Gemma4Config::FromJson(Json::array(), "config.json");
  EXPECT_FALSE(r.ok());
}

// GGUF metadata strings are raw bytes: an error about one that is not UTF-8 is a message with the
// bytes replaced, not an exception; a long value is cut on a character boundary (fuzz_gguf found
// the first as a crash: tests/fuzz/corpus/gguf/regress-field-error-non-utf8.gguf).
TEST(Config, FieldErrorsShowValuesThatAreNotUtf8) {
  const Json md = {{"general.architecture", "gemma\xFF"}};
  FieldReader r(md, "m.gguf");
  r.Fail("general.architecture", "expected gemma4");
  EXPECT_EQ(r.status().message(),
            "m.gguf: general.architecture: expected gemma4 (got \"gemma\xEF\xBF\xBD\")");
  std::string wide;  // 3-byte characters: the first 57 bytes end inside one
  for (int i = 0; i < 40; ++i) wide += "\xE6\x97\xA5";
  const Json cfg = {{"k", wide}};
  FieldReader w(cfg, "c.json");
  w.Fail("k", "bad");
  EXPECT_NO_THROW((void)Json(w.status().message()).dump()) << "message is not valid UTF-8";
  EXPECT_NE(w.status().message().find("\xE6\x97\xA5...)"), std::string::npos);
}

TEST(GenerationConfigTest, ReadsStopIdsAndSampling) {
  const std::string dir = test::TempDir("genconf");
  std::ofstream(dir + "/generation_config.json")
      << R"({"eos_token_id": [1, 106], "do_sample": true, "temperature": 1.0, )"
      << R"("top_k": 64, "top_p": 0.95})";
  Result<GenerationConfig> g = GenerationConfig::LoadFromDir(dir);
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(g->eos_token_ids, (std::vector<int>{1, 106}));
  EXPECT_TRUE(g->do_sample);
  EXPECT_EQ(*g->top_k, 64);
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": "one"})";
  g = GenerationConfig::LoadFromDir(dir);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("eos_token_id"), std::string::npos);
  std::ofstream(dir + "/generation_config.json") << R"({"top_p": 2})";
  EXPECT_FALSE(GenerationConfig::LoadFromDir(dir).ok());
}

}  // namespace
}  // namespace specula
