// Quantized checkpoints: `quantize` output loads, follows the per-tensor policy, matches the
// reference on the dequantized weights, and keeps speculative decoding lossless.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "reference_gemma4.h"
#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/formats/quantize.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/spec/generate_one.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/replay_drafter.h"
#include "test_util.h"

namespace specula {
namespace {

std::string Quantized(const std::string& src, DType t, const std::string& name) {
  const std::string out = test::TempDir("quant-" + name);
  Result<QuantizeStats> s = QuantizeCheckpoint(src, out, t);
  EXPECT_TRUE(s.ok()) << s.status().message();
  EXPECT_GT(s->quantized, 0);
  EXPECT_LT(s->bytes_out, s->bytes_in);
  return out;
}

TEST(Quantize, PolicyKeepsSensitiveTensorsExact) {
  EXPECT_EQ(
      QuantizedType("model.layers.0.mlp.up_proj.weight", DType::kBF16, {128, 64}, DType::kQ4_0),
      DType::kQ4_0);
  EXPECT_EQ(QuantizedType("model.language_model.embed_tokens.weight", DType::kBF16, {512, 64},
                          DType::kQ4_0),
            DType::kQ8_0);
  EXPECT_EQ(
      QuantizedType("model.layers.0.input_layernorm.weight", DType::kBF16, {64}, DType::kQ8_0),
      DType::kBF16);
  EXPECT_EQ(
      QuantizedType("masked_embedding.centroids.weight", DType::kBF16, {16, 32}, DType::kQ8_0),
      DType::kBF16);
  EXPECT_EQ(QuantizedType("masked_embedding.token_ordering", DType::kI64, {512}, DType::kQ8_0),
            DType::kI64);
  EXPECT_EQ(QuantizedType("x.weight", DType::kBF16, {64, 48}, DType::kQ8_0),
            DType::kBF16);  // 48 % 32 != 0
  // Expert stacks [E, rows, cols] are quantized by rows; the router that picks them is not.
  EXPECT_EQ(QuantizedType("model.layers.0.experts.gate_up_proj", DType::kBF16, {16, 64, 256},
                          DType::kQ4_K),
            DType::kQ4_K);
  EXPECT_EQ(
      QuantizedType("model.layers.0.experts.down_proj", DType::kBF16, {16, 256, 64}, DType::kQ4_K),
      DType::kQ8_0);  // rows of 64: too short for super-blocks
  EXPECT_EQ(
      QuantizedType("model.layers.0.router.proj.weight", DType::kBF16, {16, 256}, DType::kQ8_0),
      DType::kBF16);
}

class QuantizedModel : public ::testing::TestWithParam<DType> {};

// The engine's Q8_0/Q4_0/Q6_K matmuls quantize each activation row to int16 codes (kernels_test
// checks that rule exactly), so a quantized model differs from the exact math on its dequantized
// weights by more than f32 rounding. The tiny random models amplify any perturbation of that size
// along the sequence (a double reference with and without the activation rounding differs as much),
// so the check is relative: the activation rounding must cost far less than quantizing the weights
// already did, at every position.
TEST_P(QuantizedModel, MatchesReferenceOnDequantizedWeights) {
  for (const char* preset : {"e2b-tiny", "31b-tiny", "26b-a4b-tiny"}) {
    const std::string src = test::MakePreset(preset);
    const std::string dir =
        Quantized(src, GetParam(), std::string(preset) + std::string(DTypeName(GetParam())));
    Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(dir);
    Result<std::unique_ptr<Gemma4Model>> orig = Gemma4Model::Load(src);
    ASSERT_TRUE(m.ok() && orig.ok()) << m.status().message();
    // The 31B-like shape has rows of 256 values (full-layer o_proj), so the super-block types are
    // exercised too, not only their Q8_0 fallback for shorter rows.
    int typed = 0;
    for (const auto& [name, t] : (*m)->store().all()) typed += t->dtype == GetParam();
    if (std::string(preset) == "31b-tiny") {
      EXPECT_GT(typed, 0) << DTypeName(GetParam());
    }
    std::vector<int> ids = {2};
    for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % 512);
    ThreadPool pool(2);
    auto cache = (*m)->NewCache(64);
    ForwardOutput out;
    ASSERT_TRUE(
        (*m)->Forward({.ids = ids, .cache = cache.get(), .all_logits = true}, pool, &out).ok());
    const test::RefOutput r = test::ReferenceGemma4((*m)->config(), (*m)->store()).Forward(ids);
    const test::RefOutput r0 =
        test::ReferenceGemma4((*orig)->config(), (*orig)->store()).Forward(ids);
    int compared = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      // A router whose k-th and next expert are closer than the activation rounding moves
      // probabilities (~1e-5 here) may pick the other one: such positions are not comparable.
      if (r.router_margin[t] < 5e-5) continue;
      ++compared;
      double err = 0, weight_err = 0;
      for (size_t v = 0; v < 512; ++v) {
        err = std::max(err, std::fabs(out.logits[t * 512 + v] - r.logits[t][v]));
        weight_err = std::max(weight_err, std::fabs(r0.logits[t][v] - r.logits[t][v]));
      }
      EXPECT_LT(err, 0.1 * weight_err + 2e-3) << preset << " position " << t;
    }
    EXPECT_GT(compared, static_cast<int>(ids.size()) / 2) << preset;
  }
}

TEST_P(QuantizedModel, SpeculativeStaysLossless) {
  for (const char* preset : {"e2b-tiny", "26b-a4b-tiny"}) {
    SCOPED_TRACE(preset);
    const auto [tdir, adir] = test::MakePair(preset, std::string(preset) == "e2b-tiny");
    const std::string tag = std::string(preset) + std::string(DTypeName(GetParam()));
    const std::string qt = Quantized(tdir, GetParam(), "spec-t-" + tag),
                      qa = Quantized(adir, GetParam(), "spec-a-" + tag);
    auto target = std::move(*Gemma4Model::Load(qt));
    Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(qa, *target);
    ASSERT_TRUE(a.ok()) << a.status().message();
    const std::vector<int> prompt = {2, 461, 364, 446, 450};
    ThreadPool pool(2);
    GenerateOptions o;
    o.max_new_tokens = 300;
    auto c1 = target->NewCache(400);
    const GenerateResult plain = *test::ReferenceGeneratePlain(*target, pool, *c1, prompt, o);
    std::vector<int> seq = prompt;
    seq.insert(seq.end(), plain.ids.begin(), plain.ids.end());
    MtpDrafter mtp(**a);
    ReplayDrafter noisy(seq, 512, 0.3, 7);
    for (Drafter* d : {static_cast<Drafter*>(&mtp), static_cast<Drafter*>(&noisy)}) {
      auto c2 = target->NewCache(400, 5);
      SeqOptions so{.base = o, .draft_max = 4};
      Result<SpecResult> s = GenerateSpeculative(*target, *d, pool, *c2, prompt, so, nullptr);
      ASSERT_TRUE(s.ok());
      EXPECT_EQ(s->gen.ids, plain.ids);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizedModel, ::testing::ValuesIn(kBlockTypes),
                         [](const auto& i) { return std::string(DTypeName(i.param)); });

TEST(Quantize, BadInputs) {
  const std::string src = test::MakePreset("31b-tiny");
  EXPECT_FALSE(QuantizeCheckpoint(src, src, DType::kQ8_0).ok());  // in place
  EXPECT_FALSE(QuantizeCheckpoint("/nonexistent", test::TempDir("q-x"), DType::kQ8_0).ok());
  EXPECT_FALSE(
      QuantizeCheckpoint(src, test::TempDir("q-y"), DType::kBF16).ok());  // not a quant type
  EXPECT_EQ(QuantizedType("w", DType::kBF16, {8, 96}, DType::kQ6_K),
            DType::kQ8_0);  // rows shorter than 256
  const std::string once = Quantized(src, DType::kQ8_0, "twice");
  Result<QuantizeStats> again = QuantizeCheckpoint(once, test::TempDir("q-z"), DType::kQ8_0);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already quantized"), std::string::npos);
  // Malformed quant metadata names the file and the tensor.
  const std::string dir = test::TempDir("q-badmeta");
  std::system(("cp " + src + "/*.json " + dir + "/").c_str());
  std::vector<float> v(64, 1.0f);
  Status s = WriteSafetensors(dir + "/model.safetensors", {{"w", DType::kF32, {2, 32}, v.data()}},
                              {{"specula_quant", R"({"w": "Q8_0"})"}});
  ASSERT_TRUE(s.ok());
  Result<std::unique_ptr<WeightStore>> ws = WeightStore::OpenDir(dir);
  ASSERT_FALSE(ws.ok());
  EXPECT_NE(ws.status().message().find("tensor 'w': a Q8_0 tensor must be U8"), std::string::npos)
      << ws.status().message();
  s = WriteSafetensors(dir + "/model.safetensors", {{"w", DType::kF32, {2, 32}, v.data()}},
                       {{"specula_quant", R"({"w": "Q3_K"})"}});
  ws = WeightStore::OpenDir(dir);
  ASSERT_FALSE(ws.ok());
  EXPECT_NE(ws.status().message().find("specula_quant.w"), std::string::npos)
      << ws.status().message();
}

TEST(Quantize, CliWritesALoadableCheckpoint) {
  const std::string out = test::TempDir("q-cli");
  test::RunResult r =
      test::RunCli("quantize " + test::MakePreset("e2b-tiny") + " " + out + " --type q4_0");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::RunCli("inspect " + out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("Q4_0"), std::string::npos);
  EXPECT_NE(r.out.find("Q8_0"), std::string::npos);  // the embedding table
  r = test::RunCli("generate -m " + out + " -p hi -n 4 --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::RunCli("quantize " + test::MakePreset("e2b-tiny") + " " + out + "2 --type q2_k");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(
      r.err.find("--type: expected one of q8_0, q4_0, q6_k, q5_k, q4_k, iq4_nl, iq4_xs, q4_1"),
      std::string::npos);
}

}  // namespace
}  // namespace specula
