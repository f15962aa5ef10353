// The Gemma 4 forward pass against the naive reference, and the cache/batching invariants that
// lossless speculative decoding depends on.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>

#include "reference_gemma4.h"
#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "test_util.h"

namespace specula {
namespace {

using test::RandomIds;

std::unique_ptr<Gemma4Model> Load(const std::string& dir) {
  Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(dir);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? std::move(*m) : nullptr;
}

ForwardOutput Forward(Gemma4Model& m, ThreadPool& pool, KvCache& cache, std::span<const int> ids,
                      bool all = true) {
  ForwardOutput out;
  Status s = m.Forward({.ids = ids, .cache = &cache, .all_logits = all}, pool, &out);
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

struct Shape {
  std::string preset;
  DType dtype;
};

class ModelVsReference : public ::testing::TestWithParam<Shape> {};

TEST_P(ModelVsReference, LogitsAndHiddenMatch) {
  const std::string dir = test::MakePreset(GetParam().preset, GetParam().dtype);
  auto model = Load(dir);
  ASSERT_NE(model, nullptr);
  const Gemma4Config& c = model->config();
  // 45 tokens: crosses the 16-token sliding window more than twice.
  const std::vector<int> ids = RandomIds(45, c.vocab_size, 7);
  ThreadPool pool(2);
  auto cache = model->NewCache(128);
  const ForwardOutput out = Forward(*model, pool, *cache, ids);
  const test::ReferenceGemma4 ref(c, model->store());
  const test::RefOutput r = ref.Forward(ids);
  double max_logit_err = 0, max_hidden_err = 0;
  int argmax_agree = 0, decisive = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* lg = &out.logits[t * static_cast<size_t>(c.vocab_size)];
    int best = 0, ref_best = 0;
    for (int v = 0; v < c.vocab_size; ++v) {
      max_logit_err =
          std::max(max_logit_err, std::fabs(lg[v] - r.logits[t][static_cast<size_t>(v)]));
      if (lg[v] > lg[best]) best = v;
      if (r.logits[t][static_cast<size_t>(v)] > r.logits[t][static_cast<size_t>(ref_best)])
        ref_best = v;
    }
    double second = -1e300;
    for (int v = 0; v < c.vocab_size; ++v) {
      if (v != ref_best) second = std::max(second, r.logits[t][static_cast<size_t>(v)]);
    }
    if (r.logits[t][static_cast<size_t>(ref_best)] - second > 1e-2) {
      ++decisive;
      argmax_agree += best == ref_best;
    }
    for (int i = 0; i < c.hidden_size; ++i) {
      max_hidden_err = std::max(
          max_hidden_err,
          std::fabs(out.hidden[t * static_cast<size_t>(c.hidden_size) + static_cast<size_t>(i)] -
                    r.hidden[t][static_cast<size_t>(i)]));
    }
  }
  // f32 activations against a double reference on identical stored weights.
  EXPECT_LT(max_logit_err, 5e-3) << GetParam().preset;  // wrong math gives O(1) errors
  EXPECT_LT(max_hidden_err, 5e-3) << GetParam().preset;
  EXPECT_EQ(argmax_agree, decisive);
  EXPECT_GT(decisive, 30);
}

INSTANTIATE_TEST_SUITE_P(
    Presets, ModelVsReference,
    ::testing::Values(Shape{"e2b-tiny", DType::kBF16}, Shape{"e2b-tiny", DType::kF32},
                      Shape{"e4b-tiny", DType::kF16}, Shape{"31b-tiny", DType::kBF16},
                      Shape{"12b-tiny", DType::kBF16}, Shape{"26b-a4b-tiny", DType::kBF16},
                      Shape{"26b-a4b-tiny", DType::kF32}),
    [](const ::testing::TestParamInfo<Shape>& i) {
      return test::ParamName(i.param.preset + "_" + std::string(DTypeName(i.param.dtype)));
    });

TEST(Model, TextOnlyLayoutLoads) {
  Result<RandomTargetSpec> s = TargetPreset("31b-tiny");
  s->model_type = "gemma4_text";
  auto model = Load(test::MakeCheckpoint("text-only", *s));
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->config().tensor_prefix, "model.");
  const std::vector<int> ids = RandomIds(20, 512, 3);
  ThreadPool pool(1);
  auto cache = model->NewCache(64);
  const ForwardOutput out = Forward(*model, pool, *cache, ids);
  const test::RefOutput r = test::ReferenceGemma4(model->config(), model->store()).Forward(ids);
  for (int v = 0; v < 512; ++v)
    EXPECT_NEAR(out.logits[19 * 512 + static_cast<size_t>(v)], r.logits[19][static_cast<size_t>(v)],
                2e-3);
}

// One T-token call == T one-token calls == any chunking, bit for bit (logits and hidden states).
TEST(Model, PrefillEqualsStepsBitExact) {
  for (const char* preset : {"e2b-tiny", "31b-tiny", "26b-a4b-tiny"}) {
    auto model = Load(test::MakePreset(preset));
    const int V = model->config().vocab_size, H = model->config().hidden_size;
    const std::vector<int> ids = RandomIds(70, V, 11);  // > 4 sliding windows
    ThreadPool pool(2);
    auto whole_cache = model->NewCache(128);
    const ForwardOutput whole = Forward(*model, pool, *whole_cache, ids);
    for (const std::vector<int>& chunks :
         {std::vector<int>(70, 1), std::vector<int>{7, 1, 13, 2, 30, 17}}) {
      auto cache = model->NewCache(128);
      size_t at = 0;
      for (int n : chunks) {
        const ForwardOutput part = Forward(
            *model, pool, *cache, std::span<const int>(ids).subspan(at, static_cast<size_t>(n)));
        for (int t = 0; t < n; ++t) {
          const size_t row = at + static_cast<size_t>(t);
          ASSERT_EQ(0, std::memcmp(&part.logits[static_cast<size_t>(t) * V], &whole.logits[row * V],
                                   V * sizeof(float)))
              << preset << " logits differ at position " << row;
          ASSERT_EQ(0, std::memcmp(&part.hidden[static_cast<size_t>(t) * H], &whole.hidden[row * H],
                                   H * sizeof(float)))
              << preset << " hidden differs at position " << row;
        }
        at += static_cast<size_t>(n);
      }
    }
  }
}

// Continuous batching: sequences at different positions, with different row counts (a prefill
// chunk without logits, one decode row, a verify block, rows wrapping the sliding ring) share one
// forward. Every row, and every later step, must be bit for bit what the sequence gets alone.
TEST(Model, BatchedForwardEqualsSoloBitExact) {
  for (const char* preset : {"e2b-tiny", "31b-tiny", "26b-a4b-tiny"}) {
    auto model = Load(test::MakePreset(preset));
    const int V = model->config().vocab_size, H = model->config().hidden_size;
    ThreadPool pool(2);
    constexpr int S = 3;
    std::vector<int> ids[S] = {RandomIds(60, V, 1), RandomIds(60, V, 2), RandomIds(60, V, 3)};
    std::unique_ptr<KvCache> solo[S], batched[S];
    for (int s = 0; s < S; ++s) {
      solo[s] = model->NewCache(96);
      batched[s] = model->NewCache(96);
    }
    size_t at[S] = {0, 0, 0};
    // rows per sequence per round; logits: 0 = none (prefill chunk), 1 = last row, 2 = all rows
    const int plan[][S][2] = {{{9, 0}, {1, 1}, {4, 2}},
                              {{1, 1}, {17, 0}, {5, 2}},
                              {{4, 2}, {2, 1}, {1, 1}},
                              {{20, 1}, {3, 2}, {13, 0}},
                              {{1, 2}, {1, 1}, {1, 0}}};
    std::unique_ptr<PassScratch> scratch = model->NewScratch();  // reused: passes of any shape
    for (const auto& round : plan) {
      std::vector<BatchSeq> seqs;
      for (int s = 0; s < S; ++s) {
        const int n = round[s][0];
        seqs.push_back({.ids = std::span<const int>(ids[s]).subspan(at[s], static_cast<size_t>(n)),
                        .cache = batched[s].get(),
                        .logit_rows = round[s][1] == 2 ? n : round[s][1],
                        .parents = {}});
      }
      BatchOutput b;
      ASSERT_TRUE(model->ForwardBatch(seqs, pool, *scratch, &b).ok());
      for (int s = 0; s < S; ++s) {
        const ForwardOutput alone =
            Forward(*model, pool, *solo[s], seqs[static_cast<size_t>(s)].ids, true);
        const int n = round[s][0], rows = seqs[static_cast<size_t>(s)].logit_rows;
        ASSERT_EQ(b.row_offset[static_cast<size_t>(s) + 1] - b.row_offset[static_cast<size_t>(s)],
                  n);
        ASSERT_EQ(
            0, std::memcmp(&b.hidden[static_cast<size_t>(b.row_offset[static_cast<size_t>(s)]) * H],
                           alone.hidden.data(), static_cast<size_t>(n * H) * sizeof(float)))
            << preset << " sequence " << s << " hidden";
        ASSERT_EQ(0,
                  std::memcmp(b.logits.data() +
                                  static_cast<size_t>(b.logit_offset[static_cast<size_t>(s)]) * V,
                              alone.logits.data() + static_cast<size_t>(n - rows) * V,
                              static_cast<size_t>(rows * V) * sizeof(float)))
            << preset << " sequence " << s << " logits";
        at[s] += static_cast<size_t>(n);
        ASSERT_EQ(batched[s]->length(), solo[s]->length());
      }
    }
  }
}

// Roll back rejected positions (as speculative verification does) across sliding-ring wraps: the
// continuation must equal a run that never saw the rejected tokens.
TEST(Model, TruncateRollsBackExactlyAcrossRingWraps) {
  auto model = Load(test::MakePreset("e2b-tiny"));
  const int V = model->config().vocab_size;
  const std::vector<int> ids = RandomIds(90, V, 5);
  ThreadPool pool(2);
  const int headroom = 6;  // ring = 16 + 6 slots
  auto clean = model->NewCache(128, headroom);
  auto spec = model->NewCache(128, headroom);
  std::mt19937 rng(9);
  size_t at = 0;
  while (at < ids.size()) {
    const int n = std::min<int>(1 + static_cast<int>(rng() % 4), static_cast<int>(ids.size() - at));
    std::vector<int> chunk(ids.begin() + static_cast<long>(at),
                           ids.begin() + static_cast<long>(at) + n);
    const ForwardOutput want = Forward(*model, pool, *clean, chunk);
    // Speculative side: the real tokens followed by up to `headroom - n` junk rows, then rollback.
    const int junk = static_cast<int>(rng() % static_cast<uint32_t>(headroom - n + 1));
    std::vector<int> padded = chunk;
    for (int j = 0; j < junk; ++j)
      padded.push_back(static_cast<int>(rng() % static_cast<uint32_t>(V)));
    const ForwardOutput got = Forward(*model, pool, *spec, padded);
    ASSERT_TRUE(spec->Truncate(static_cast<int>(at) + n).ok());
    ASSERT_EQ(0, std::memcmp(got.logits.data(), want.logits.data(),
                             static_cast<size_t>(n) * V * sizeof(float)))
        << "at " << at;
    at += static_cast<size_t>(n);
  }
  EXPECT_EQ(spec->length(), clean->length());
  // After the ring wrapped, rolling back more than the headroom must be refused, not silently
  // wrong.
  std::vector<int> many(10, 5);
  Forward(*model, pool, *spec, many);
  Status s = spec->Truncate(spec->length() - 10);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("headroom"), std::string::npos);
  EXPECT_TRUE(spec->Truncate(spec->length() - 5).ok());
}

TEST(Model, KvCacheAllocatesOnlyOwningLayers) {
  auto model = Load(test::MakePreset("e2b-tiny"));
  auto cache = model->NewCache(100, 8);
  EXPECT_EQ(cache->num_layers(), 6);  // 10 layers, the last 4 share KV
  // Owners 0-5: five sliding layers (ring 16 + 8 slots, 1*32 dims) and full layer 4 (100 slots,
  // 1*64 dims), K and V each.
  EXPECT_EQ(cache->BytesAllocated(), (5u * 24 * 32 + 1u * 100 * 64) * 2 * sizeof(float));
}

TEST(Model, KvCacheRunsFollowTheRing) {
  // A sliding layer (ring of 8 + 4 slots) and a full one, 2 dims each; position p stores 10p + c.
  KvCache cache({{.kv_dim = 2, .sliding = true}, {.kv_dim = 2, .sliding = false}},
                {.context = 40, .window = 8, .headroom = 4});
  std::vector<float> k, v;
  for (int p = 0; p < 30; ++p) {
    for (int c = 0; c < 2; ++c) {
      k.push_back(static_cast<float>(10 * p + c));
      v.push_back(static_cast<float>(-10 * p - c));
    }
  }
  for (int slot = 0; slot < 2; ++slot) cache.Append(slot, 30, k.data(), v.data());
  cache.Commit(30);
  KvRun runs[2];
  for (const auto& [slot, from, want_runs] : {std::tuple{0, 20, 2}, {0, 25, 1}, {1, 0, 1}}) {
    const size_t n = cache.Runs(slot, from, 30, 1, runs);
    ASSERT_EQ(n, static_cast<size_t>(want_runs)) << slot << " " << from;
    int p = from;
    for (size_t r = 0; r < n; ++r) {
      for (size_t e = 0; e < runs[r].n; ++e, ++p) {
        EXPECT_EQ(runs[r].k[e * runs[r].ld], 10.0f * p + 1) << slot << " " << p;
        EXPECT_EQ(runs[r].v[e * runs[r].ld], -10.0f * p - 1) << slot << " " << p;
      }
    }
    EXPECT_EQ(p, 30);
  }
}

TEST(Model, ShardedCheckpointEqualsSingleFile) {
  Result<RandomTargetSpec> s = TargetPreset("31b-tiny");
  auto single = Load(test::MakeCheckpoint("single", *s));
  s->shards = 3;
  const std::string sharded_dir = test::MakeCheckpoint("sharded", *s);
  EXPECT_TRUE(FileExists(sharded_dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(FileExists(sharded_dir + "/model-00003-of-00003.safetensors"));
  auto sharded = Load(sharded_dir);
  ThreadPool pool(1);
  const std::vector<int> ids = RandomIds(12, 512, 1);
  auto c1 = single->NewCache(32), c2 = sharded->NewCache(32);
  EXPECT_EQ(Forward(*single, pool, *c1, ids).logits, Forward(*sharded, pool, *c2, ids).logits);
}

TEST(Model, InputErrors) {
  auto model = Load(test::MakePreset("31b-tiny"));
  ThreadPool pool(1);
  auto cache = model->NewCache(8);
  ForwardOutput out;
  const int bad[] = {2, 512};
  Status s = model->Forward({.ids = bad, .cache = cache.get()}, pool, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("token id 512 is out of range [0, 512)"), std::string::npos);
  const int neg[] = {-1};
  EXPECT_FALSE(model->Forward({.ids = neg, .cache = cache.get()}, pool, &out).ok());
  EXPECT_FALSE(model->Forward({.ids = {}, .cache = cache.get()}, pool, &out).ok());
  const std::vector<int> long_ids(9, 3);
  s = model->Forward({.ids = long_ids, .cache = cache.get()}, pool, &out);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("context"), std::string::npos);
  EXPECT_EQ(cache->length(), 0);  // a failed call leaves the cache untouched
}

// Rewrites a generated checkpoint's safetensors with one tensor changed or removed.
std::string Tamper(const std::string& name,
                   const std::function<void(std::vector<TensorToWrite>&,
                                            std::vector<std::vector<uint8_t>>&)>& edit) {
  const std::string src = test::MakePreset("31b-tiny");
  const std::string dir = test::TempDir("tamper-" + name);
  std::system(("cp " + src + "/*.json " + dir + "/").c_str());
  Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(src + "/model.safetensors");
  std::vector<TensorToWrite> ts;
  std::vector<std::vector<uint8_t>> keep;
  for (const auto& [n, t] : (*f)->tensors()) ts.push_back({n, t.dtype, t.shape, t.data});
  edit(ts, keep);
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", ts).ok());
  return dir;
}

TEST(Model, BadWeightsNameTheTensor) {
  const std::string q = "model.language_model.layers.2.self_attn.q_proj.weight";
  struct Case {
    std::string name, expect;
    std::function<void(std::vector<TensorToWrite>&, std::vector<std::vector<uint8_t>>&)> edit;
  } cases[] = {
      {"missing", "missing tensor '" + q + "'",
       [&](auto& ts, auto&) {
         std::erase_if(ts, [&](const TensorToWrite& t) { return t.name == q; });
       }},
      {"shape", "shape [128, 32] disagrees with the config, which implies [128, 64]",
       [&](auto& ts, auto&) {
         for (auto& t : ts)
           if (t.name == q) t.shape = {128, 32};
       }},
      {"dtype", "dtype I32 is not a weight type",
       [&](auto& ts, auto&) {
         for (auto& t : ts)
           if (t.name == q) {
             t.dtype = DType::kI32;
             t.shape = {64, 64};
           }
       }},
      {"kv-missing", "model.language_model.layers.5.self_attn.k_proj.weight",
       [&](auto& ts, auto&) {
         std::erase_if(ts, [&](const TensorToWrite& t) {
           return t.name.find("layers.5.self_attn.k_proj") != std::string::npos;
         });
       }},
  };
  for (const Case& c : cases) {
    Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(Tamper(c.name, c.edit));
    ASSERT_FALSE(m.ok()) << c.name;
    EXPECT_NE(m.status().message().find(c.expect), std::string::npos) << m.status().message();
  }
}

TEST(Model, CorruptCheckpointFilesGiveErrors) {
  const std::string src = test::MakePreset("31b-tiny");
  const std::string dir = test::TempDir("corrupt-ckpt");
  std::system(("cp " + src + "/* " + dir + "/").c_str());
  ASSERT_EQ(0, ::truncate((dir + "/model.safetensors").c_str(), 5000));
  Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("model.safetensors"), std::string::npos)
      << m.status().message();
  std::system(("cp " + src + "/model.safetensors " + dir + "/").c_str());
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"gemma4\", \"text_config\": {";
  m = Gemma4Model::Load(dir);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("config.json: malformed JSON"), std::string::npos)
      << m.status().message();
}

}  // namespace
}  // namespace specula
