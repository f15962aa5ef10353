// The MTP assistant: one draft step against the naive reference (both heads, past the sliding
// window), and refusal of assistants that do not fit their target.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "reference_assistant.h"
#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/formats/safetensors.h"
#include "specula/models/gemma4_assistant.h"
#include "test_util.h"

namespace specula {
namespace {

struct Case {
  std::string preset;
  bool centroid;
};

class DraftStepVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(DraftStepVsReference, MatchesSpecPseudocode) {
  const auto [tdir, adir] = test::MakePair(GetParam().preset, GetParam().centroid);
  auto target = std::move(*Gemma4Model::Load(tdir));
  Result<std::unique_ptr<Gemma4Assistant>> asst = Gemma4Assistant::Load(adir, *target);
  ASSERT_TRUE(asst.ok()) << asst.status().message();
  const Gemma4Config& tc = target->config();
  std::mt19937 rng(3);
  std::vector<int> ids = {2};
  while (ids.size() < 37) ids.push_back(static_cast<int>(rng() % 512));  // > 2 sliding windows
  ThreadPool pool(2);
  auto cache = target->NewCache(64);
  ForwardOutput out;
  ASSERT_TRUE(target->Forward({.ids = ids, .cache = cache.get()}, pool, &out).ok());
  const test::RefOutput run = test::ReferenceGemma4(tc, target->store()).Forward(ids);
  const int P = static_cast<int>(ids.size());
  // Two chained steps: the first from the target's hidden state, the second from h_out.
  std::vector<float> h(out.hidden.end() - tc.hidden_size, out.hidden.end());
  std::vector<double> h_ref(h.begin(), h.end());
  int token = 77;
  for (int step = 0; step < 2; ++step) {
    DraftStepOutput got;
    (*asst)->Step({.token = token, .h_in = h.data(), .pos = P, .cache = cache.get()}, pool,
                  *(*asst)->NewScratch(), &got);
    const test::RefDraftStep want = test::ReferenceDraftStep(
        (*asst)->config(), (*asst)->store(), tc, target->store(), run, token, h_ref, P);
    // f32 against a double reference, through the target's layers and two chained steps: the
    // largest gaps seen were 4e-4 to 1.6e-3 (|h| up to 3.2) and move with the kernels' summation
    // order at equal per-matmul accuracy (~2e-7 relative); a real error is orders larger.
    for (size_t i = 0; i < want.h_out.size(); ++i)
      ASSERT_NEAR(got.h_out[i], want.h_out[i], 3e-3) << "step " << step;
    for (size_t i = 0; i < want.hidden.size(); ++i)
      ASSERT_NEAR(got.hidden[i], want.hidden[i], 3e-3);
    if (GetParam().centroid) {
      ASSERT_EQ(got.candidates, want.candidates);  // same clusters in the same order
      for (size_t i = 0; i < want.candidate_logits.size(); ++i)
        ASSERT_NEAR(got.logits[i], want.candidate_logits[i], 5e-3);
      EXPECT_EQ(got.candidates.size(), 4u * 32);  // top 4 of 16 clusters, 32 tokens each
    } else {
      ASSERT_TRUE(got.candidates.empty());
      for (size_t i = 0; i < want.dense_logits.size(); ++i)
        ASSERT_NEAR(got.logits[i], want.dense_logits[i], 5e-3);
    }
    h = got.h_out;
    h_ref = want.h_out;  // each side continues from its own state, as the loop does
    token = 300;
  }
  EXPECT_EQ((*asst)->SourceLayer(AttnType::kSliding), tc.LastKvOwner(AttnType::kSliding));
}

INSTANTIATE_TEST_SUITE_P(Pairs, DraftStepVsReference,
                         ::testing::Values(Case{"e2b-tiny", true}, Case{"e2b-tiny", false},
                                           Case{"31b-tiny", false}, Case{"12b-tiny", false},
                                           Case{"e4b-tiny", true}),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           std::string n =
                               i.param.preset + (i.param.centroid ? "_centroid" : "_dense");
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Writes an assistant whose config.json has one field replaced, then loads it.
Status LoadEdited(const std::string& name, const std::function<void(Json&)>& edit,
                  const std::string& target_preset = "e2b-tiny") {
  const auto [tdir, adir] = test::MakePair(target_preset, true);
  const std::string dir = test::TempDir("asst-" + name);
  std::system(("cp " + adir + "/* " + dir + "/").c_str());
  Json cfg = *ReadJsonFile(dir + "/config.json");
  edit(cfg);
  std::ofstream(dir + "/config.json") << cfg.dump();
  auto target = std::move(*Gemma4Model::Load(tdir));
  Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(dir, *target);
  return a.status();
}

TEST(Assistant, MismatchedPairsAreRefused) {
  struct Bad {
    std::string name, expect;
    std::function<void(Json&)> edit;
  } cases[] = {
      {"width", "backbone_hidden_size 96 != target hidden_size 64",
       [](Json& c) { c["backbone_hidden_size"] = 96; }},
      {"vocab", "vocab_size 1024 != target vocab_size 512",
       [](Json& c) { c["text_config"]["vocab_size"] = 1024; }},
      {"kvheads", "sliding KV heads 2 != target layer 5 KV heads 1",
       [](Json& c) { c["text_config"]["num_key_value_heads"] = 2; }},
      {"headdim", "full head dim 32 != target layer 4 head dim 64",
       [](Json& c) { c["text_config"]["global_head_dim"] = 32; }},
      {"window", "sliding_window 64 exceeds the target's 16",
       [](Json& c) { c["text_config"]["sliding_window"] = 64; }},
      {"type", "not a Gemma 4 assistant", [](Json& c) { c["model_type"] = "gemma4"; }},
      {"shared", "num_kv_shared_layers: must equal num_hidden_layers",
       [](Json& c) { c["text_config"]["num_kv_shared_layers"] = 2; }},
      {"centroids", "num_centroids: must be positive and divide vocab_size",
       [](Json& c) { c["num_centroids"] = 7; }},
      {"missing", "backbone_hidden_size: required field is missing",
       [](Json& c) { c.erase("backbone_hidden_size"); }},
  };
  for (const Bad& b : cases) {
    Status s = LoadEdited(b.name, b.edit);
    ASSERT_FALSE(s.ok()) << b.name;
    EXPECT_NE(s.message().find(b.expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("config.json"), std::string::npos) << s.message();
  }
}

TEST(Assistant, BadTensorsAreRefused) {
  const auto [tdir, adir] = test::MakePair("e2b-tiny", true);
  auto target = std::move(*Gemma4Model::Load(tdir));
  const std::string dir = test::TempDir("asst-tensors");
  std::system(("cp " + adir + "/*.json " + dir + "/").c_str());
  Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(adir + "/model.safetensors");
  std::vector<TensorToWrite> ts;
  std::vector<int64_t> ordering;
  for (const auto& [n, t] : (*f)->tensors()) {
    if (n == "masked_embedding.token_ordering") {
      ordering.resize(512);
      std::memcpy(ordering.data(), t.data, 512 * 8);
      ordering[7] = ordering[8];  // not a permutation any more
      ts.push_back({n, t.dtype, t.shape, ordering.data()});
    } else if (n != "model.layers.2.self_attn.q_proj.weight") {
      ts.push_back({n, t.dtype, t.shape, t.data});
    }
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", ts).ok());
  Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(dir, *target);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("model.layers.2.self_attn.q_proj.weight"), std::string::npos)
      << a.status().message();
  // Restore q_proj: now the ordering is the problem.
  for (const auto& [n, t] : (*f)->tensors()) {
    if (n == "model.layers.2.self_attn.q_proj.weight") ts.push_back({n, t.dtype, t.shape, t.data});
  }
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", ts).ok());
  a = Gemma4Assistant::Load(dir, *target);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("must be a permutation"), std::string::npos)
      << a.status().message();
}

}  // namespace
}  // namespace specula
