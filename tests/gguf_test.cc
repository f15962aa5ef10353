// GGUF input: the parser (round trip, corrupt files, mutation fuzzing), and Gemma 4 targets
// converted to GGUF loading to the same model, bit for bit, with the same tokenizer.
#include "specula/formats/gguf.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/formats/generation_config.h"
#include "specula/formats/quantize.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/models/gemma4_gguf.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "test_util.h"

namespace specula {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::unique_ptr<GgufFile>> ParseBytes(const std::string& bytes) {
  return GgufFile::Parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.gguf");
}

// A small file with every value type and three tensors.
std::string ValidFile(const std::string& dir) {
  static const float a[6] = {1, 2, 3, 4, 5, 6};
  static uint16_t b[64];
  for (int i = 0; i < 64; ++i) b[i] = F32ToBF16(static_cast<float>(i) - 20.5f);
  static uint8_t q[2 * 34] = {};
  const std::string path = dir + "/v.gguf";
  Status s = WriteGguf(
      path,
      {{"general.architecture", GgufType::kString, "test"},
       {"u8", GgufType::kU8, 200},
       {"i8", GgufType::kI8, -5},
       {"u16", GgufType::kU16, 60000},
       {"i16", GgufType::kI16, -30000},
       {"u32", GgufType::kU32, 4000000000u},
       {"i32", GgufType::kI32, -7},
       {"f32", GgufType::kF32, 0.25},
       {"u64", GgufType::kU64, uint64_t{1} << 40},
       {"i64", GgufType::kI64, -(int64_t{1} << 40)},
       {"f64", GgufType::kF64, 1e-300},
       {"flag", GgufType::kBool, true},
       {"ints", GgufType::kArray, Json::array({1, -2, 3}), GgufType::kI32},
       {"words", GgufType::kArray, Json::array({"a b", "", "\xE2\x96\x81x"}), GgufType::kString},
       {"bools", GgufType::kArray, Json::array({true, false}), GgufType::kBool}},
      {{"a", DType::kF32, {2, 3}, a},
       {"b", DType::kBF16, {64}, b},
       {"q", DType::kQ8_0, {2, 32}, q}});
  EXPECT_TRUE(s.ok()) << s.message();
  return path;
}

TEST(Gguf, RoundTrip) {
  const std::string path = ValidFile(test::TempDir("gguf-rt"));
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const Json& m = (*f)->metadata();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ(m["general.architecture"], "test");
  EXPECT_EQ(m["u8"], 200);
  EXPECT_EQ(m["i8"], -5);
  EXPECT_EQ(m["u16"], 60000);
  EXPECT_EQ(m["i16"], -30000);
  EXPECT_EQ(m["u32"], 4000000000u);
  EXPECT_EQ(m["i32"], -7);
  EXPECT_EQ(m["f32"].get<double>(), 0.25);
  EXPECT_EQ(m["u64"], uint64_t{1} << 40);
  EXPECT_EQ(m["i64"], -(int64_t{1} << 40));
  EXPECT_EQ(m["f64"].get<double>(), 1e-300);
  EXPECT_EQ(m["flag"], true);
  EXPECT_EQ(m["ints"], Json::array({1, -2, 3}));
  EXPECT_EQ(m["words"], Json::array({"a b", "", "\xE2\x96\x81x"}));
  EXPECT_EQ(m["bools"], Json::array({true, false}));
  // A prefix's keys can be handed over (the tokenizer's, while the model keeps the rest).
  const Json taken = (*f)->TakeMetadata("i");
  EXPECT_EQ(taken, Json({{"i8", -5},
                         {"i16", -30000},
                         {"i32", -7},
                         {"i64", -(int64_t{1} << 40)},
                         {"ints", Json::array({1, -2, 3})}}));
  EXPECT_EQ(m.size(), 15u - 5u);
  EXPECT_FALSE(m.contains("i8"));
  EXPECT_EQ(m["u8"], 200);
  const auto& t = (*f)->tensors();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.at("a").shape, (std::vector<int64_t>{2, 3}));  // GGUF ne {3, 2}
  EXPECT_EQ(t.at("a").dtype, DType::kF32);
  EXPECT_EQ(static_cast<const float*>(t.at("a").data)[5], 6.0f);
  EXPECT_EQ(t.at("b").dtype, DType::kBF16);
  EXPECT_EQ(BF16ToF32(static_cast<const uint16_t*>(t.at("b").data)[63]), 42.5f);
  EXPECT_EQ(t.at("q").dtype, DType::kQ8_0);
  EXPECT_EQ(t.at("q").nbytes, 68u);
  for (const auto& [name, v] : t) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % 32, 0u) << name;  // data section alignment
    EXPECT_EQ(*v.file, path);
  }
}

// Little-endian builders for hand-made headers.
struct Bytes {
  std::string s;
  template <class T>
  Bytes& Put(T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  Bytes& Str(const std::string& v) {
    Put<uint64_t>(v.size());
    s += v;
    return *this;
  }
};
// Header with no metadata and one tensor described by the arguments, followed by `data` bytes.
std::string OneTensor(uint32_t n_dims, std::vector<uint64_t> ne, uint32_t type, uint64_t offset,
                      size_t data) {
  Bytes b;
  b.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(1).Put<uint64_t>(0);
  b.Str("w").Put(n_dims);
  for (uint64_t d : ne) b.Put(d);
  b.Put(type).Put(offset);
  while (b.s.size() % 32) b.s += '\0';
  return b.s + std::string(data, '\0');
}

TEST(Gguf, CorruptFilesGiveClearErrors) {
  const std::string valid = Slurp(ValidFile(test::TempDir("gguf-corrupt")));
  Bytes dup;
  dup.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(0).Put<uint64_t>(2);
  dup.Str("k").Put<uint32_t>(4).Put<uint32_t>(1).Str("k").Put<uint32_t>(4).Put<uint32_t>(2);
  Bytes nested;
  nested.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(0).Put<uint64_t>(1);
  nested.Str("k")
      .Put<uint32_t>(9)
      .Put<uint32_t>(9)
      .Put<uint64_t>(1)
      .Put<uint32_t>(9)
      .Put<uint64_t>(1)
      .Put<uint32_t>(9)
      .Put<uint64_t>(0);
  Bytes badbool;
  badbool.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(0).Put<uint64_t>(1);
  badbool.Str("k").Put<uint32_t>(7).Put<uint8_t>(2);
  struct Case {
    std::string bytes, expect;
  } cases[] = {
      {valid.substr(0, 3), "truncated"},
      {"GGML" + valid.substr(4), "bad magic"},
      {valid.substr(0, 4) + std::string("\x04\0\0\0", 4) + valid.substr(8), "version 4"},
      {valid.substr(0, valid.size() - 40), "runs past the end"},
      {valid.substr(0, 200), "truncated"},
      {OneTensor(2, {256, 2}, 16, 0, 4096), "IQ2_XXS is not supported"},
      {OneTensor(0, {}, 0, 0, 64), "0 dimensions"},
      {OneTensor(5, {1, 1, 1, 1, 1}, 0, 0, 64), "5 dimensions"},
      {OneTensor(1, {0}, 0, 0, 64), "out of range"},
      {OneTensor(3, {1u << 20, 1u << 20, 1u << 20}, 0, 0, 64), "out of range"},
      {OneTensor(2, {33, 1}, 8, 0, 64), "not whole Q8_0 blocks"},
      {OneTensor(1, {4}, 0, 16, 64), "not a multiple"},
      {OneTensor(1, {64}, 0, 0, 64), "runs past the end"},
      {OneTensor(1, {4}, 0, uint64_t{1} << 62, 64), "runs past the end"},
      {dup.s, "appears twice"},
      {nested.s, "nested"},
      {badbool.s, "neither 0 nor 1"},
  };
  for (const Case& c : cases) {
    Result<std::unique_ptr<GgufFile>> f = ParseBytes(c.bytes);
    ASSERT_FALSE(f.ok()) << c.expect;
    const std::string msg = f.status().message();
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("x.gguf: ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos);
  }
  // Counts too large for the file are refused before anything is allocated for them.
  Bytes big;
  big.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(uint64_t{1} << 60).Put<uint64_t>(0);
  EXPECT_NE(ParseBytes(big.s).status().message().find("cannot fit"), std::string::npos);
  Bytes arr;
  arr.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(0).Put<uint64_t>(1);
  arr.Str("k").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(uint64_t{1} << 59);
  EXPECT_NE(ParseBytes(arr.s).status().message().find("cannot fit"), std::string::npos);
}

// A tensor-table entry for TableFile: F32 of `ne` (innermost first) at `offset`.
struct Entry {
  std::string name;
  std::vector<uint64_t> ne;
  uint64_t offset;
};
// A file whose header declares `count` tensors, followed by `entries`, zero padding to 32 bytes
// and `data` bytes of tensor data.
std::string TableFile(uint64_t count, const std::vector<Entry>& entries, size_t data) {
  Bytes b;
  b.Put<uint32_t>(0x46554747).Put<uint32_t>(3).Put<uint64_t>(count).Put<uint64_t>(0);
  for (const Entry& e : entries) {
    b.Str(e.name).Put(static_cast<uint32_t>(e.ne.size()));
    for (uint64_t d : e.ne) b.Put(d);
    b.Put<uint32_t>(0).Put(e.offset);
  }
  while (b.s.size() % 32) b.s += '\0';
  std::string out = b.s;
  for (size_t i = 0; i < data; ++i) out += static_cast<char>(0x40 + i % 7);  // not zeros
  return out;
}

// Tables that do not describe the data consistently would load and compute with other bytes than
// the tensors' own: each is refused, naming the file and the tensor.
TEST(Gguf, InconsistentTensorTableIsRefused) {
  const Entry a{"a", {16}, 0}, b{"b", {8}, 64}, c{"c", {8}, 96};  // 64 + 32 + 32 bytes
  ASSERT_TRUE(ParseBytes(TableFile(3, {a, b, c}, 128)).ok());
  struct Case {
    std::string what, bytes;
    std::vector<std::string> expect;
  } cases[] = {
      {"overlapping data",
       TableFile(3, {a, {"b", {8}, 32}, c}, 128),
       {"tensors 'a'", "and 'b'", "overlap"}},
      {"the same data", TableFile(2, {a, {"b", {16}, 0}}, 64), {"'a'", "'b'", "overlap"}},
      {"overlap found only after sorting",
       TableFile(3, {{"b", {8}, 32}, c, a}, 128),
       {"'a'", "'b'", "overlap"}},
      {"a name twice", TableFile(3, {a, b, {"a", {8}, 96}}, 128), {"tensor 'a' appears twice"}},
      {"count below the entries",
       TableFile(2, {a, b, c}, 128),
       {"tensor count 2 is smaller than the tensor table", "tensor 'c'", "follows tensor 'b'"}},
      {"count of none", TableFile(0, {a}, 64), {"tensor count 0", "tensor 'a'"}},
      {"count above the entries",
       TableFile(4, {a, b, c}, 128),
       {"entry #3 of the 4 the tensor count declares", "after tensor 'c'"}},
      {"count above, data right after the table",
       TableFile(2, {a}, 64),
       {"entry #1 of the 2 the tensor count declares", "after tensor 'a'"}},
      {"data past the end",
       TableFile(3, {a, b, {"c", {8}, 128}}, 128),
       {"tensor 'c'", "runs past the end"}},
      {"unaligned offset",
       TableFile(3, {a, {"b", {8}, 72}, c}, 128),
       {"tensor 'b'", "not a multiple of the 32-byte alignment"}},
  };
  for (const Case& k : cases) {
    Result<std::unique_ptr<GgufFile>> f = ParseBytes(k.bytes);
    if (f.ok()) {
      ADD_FAILURE() << k.what << ": loaded";
      continue;
    }
    const std::string msg = f.status().message();
    EXPECT_EQ(msg.rfind("x.gguf: ", 0), 0u) << k.what << ": " << msg;
    for (const std::string& e : k.expect) {
      EXPECT_NE(msg.find(e), std::string::npos) << k.what << ": " << msg;
    }
  }
  // Files the engine writes still load (converted checkpoints: the GgufModel tests below).
  EXPECT_TRUE(GgufFile::Open(ValidFile(test::TempDir("gguf-table"))).ok());
}

// Flipped bytes, truncations and splices of a valid file: a parse whose views stay inside the
// buffer, or an error; never a crash or a hang (the sanitizer build runs this too).
// Inputs fuzz_gguf crashed on (kept in its seed corpus too): each reads as an error or a config,
// never as a crash or undefined behaviour (the ASan+UBSan build runs this test).
TEST(Gguf, FuzzFindingsAreErrors) {
  const std::string dir = std::string(SPECULA_SOURCE_DIR) + "/tests/fuzz/corpus/gguf/";
  for (const char* name : {"crash-alignment-not-utf8.gguf", "crash-head-dim-division-overflow.gguf",
                           "crash-ffn-double-overflow.gguf", "crash-rope-freqs-misaligned.gguf"}) {
    SCOPED_TRACE(name);
    const std::string bytes = Slurp(dir + name);
    ASSERT_FALSE(bytes.empty());
    Result<std::unique_ptr<GgufFile>> f = ParseBytes(bytes);
    if (!f.ok()) {
      EXPECT_FALSE(f.status().message().empty());
      continue;
    }
    Result<Json> j = Gemma4ConfigFromGguf(**f);
    if (j.ok()) (void)Gemma4Config::FromJson(*j, name);
  }
}

TEST(Gguf, MutationFuzz) {
  const std::string valid = Slurp(ValidFile(test::TempDir("gguf-fuzz")));
  std::mt19937 rng(2024);
  int errors = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = valid;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      switch (rng() % 4) {
        case 0:
          s[rng() % s.size()] = static_cast<char>(rng());
          break;
        case 1:
          s.resize(rng() % (s.size() + 1));
          break;
        case 2:
          s.insert(rng() % s.size(), 1, static_cast<char>(rng()));
          break;
        default: {  // a small or huge little-endian integer over a length or count field
          const size_t at = rng() % s.size();
          const uint64_t v = rng() % 2 ? rng() % 8 : ~uint64_t{0} >> (rng() % 64);
          std::memcpy(s.data() + at, &v, std::min<size_t>(8, s.size() - at));
        }
      }
    }
    Result<std::unique_ptr<GgufFile>> f = ParseBytes(s);
    if (!f.ok()) {
      ++errors;
      continue;
    }
    const auto* base = reinterpret_cast<const uint8_t*>(s.data());
    for (const auto& [name, v] : (*f)->tensors()) {
      const auto* p = static_cast<const uint8_t*>(v.data);
      ASSERT_GE(p, base);
      ASSERT_LE(p + v.nbytes, base + s.size());
    }
  }
  EXPECT_GT(errors, 5000);
}

std::vector<float> AllLogits(Gemma4Model& m, const std::vector<int>& ids) {
  ThreadPool pool(2);
  auto cache = m.NewCache(128);
  ForwardOutput out;
  Status s = m.Forward({.ids = ids, .cache = cache.get(), .all_logits = true}, pool, &out);
  EXPECT_TRUE(s.ok()) << s.message();
  return out.logits;
}

std::string Converted(const std::string& dir, const std::string& name) {
  const std::string out = test::TempDir("gguf-" + name) + "/model.gguf";
  Result<GgufConvertStats> s = ConvertGemma4ToGguf(dir, dir + "/tokenizer.json", out);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return out;
}

// Every preset shape (per-layer inputs, KV sharing and double-wide MLPs on E2B; k_eq_v full layers
// and their own KV-head count on 31B) and every stored dtype: the GGUF file loads to the same
// config and the same logits, bit for bit, as the directory it came from.
TEST(GgufModel, ConvertedCheckpointGivesIdenticalLogits) {
  struct Case {
    std::string preset;
    DType quant;  // kBF16: not quantized
  } cases[] = {
      {"e2b-tiny", DType::kBF16},   {"31b-tiny", DType::kBF16}, {"12b-tiny", DType::kBF16},
      {"e2b-tiny", DType::kQ8_0},   {"e2b-tiny", DType::kQ6_K}, {"31b-tiny", DType::kQ4_0},
      {"31b-tiny", DType::kQ4_K},   {"31b-tiny", DType::kQ5_K}, {"e2b-tiny", DType::kIQ4_NL},
      {"31b-tiny", DType::kIQ4_XS}, {"e2b-tiny", DType::kQ4_1}, {"e2b-tiny", DType::kQ5_0},
      {"31b-tiny", DType::kQ5_1},   {"31b-tiny", DType::kQ3_K}, {"31b-tiny", DType::kQ2_K}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.preset + " " + std::string(DTypeName(c.quant)));
    std::string dir = test::MakePreset(c.preset);
    const std::string tag = c.preset + "-" + std::string(DTypeName(c.quant));
    if (c.quant != DType::kBF16) {
      const std::string q = test::TempDir("gguf-q-" + tag);
      ASSERT_TRUE(QuantizeCheckpoint(dir, q, c.quant).ok());
      dir = q;
    }
    const std::string gguf = Converted(dir, tag);
    Result<std::unique_ptr<Gemma4Model>> a = Gemma4Model::Load(dir);
    Result<std::unique_ptr<Gemma4Model>> b = Gemma4Model::Load(gguf);
    ASSERT_TRUE(a.ok()) << a.status().message();
    ASSERT_TRUE(b.ok()) << b.status().message();
    // The same description but for model_type: a GGUF target reads as text-only gemma4_text.
    const std::string da = (*a)->config().Describe(), db = (*b)->config().Describe();
    EXPECT_EQ(da.substr(da.find('\n')), db.substr(db.find('\n')));
    const Gemma4Config& cfg = (*a)->config();
    const Gemma4Config& got = (*b)->config();
    EXPECT_EQ(got.rope_full.rotated_pairs, cfg.rope_full.rotated_pairs);
    EXPECT_EQ(got.rope_sliding.rotated_pairs, cfg.rope_sliding.rotated_pairs);
    EXPECT_EQ(got.rope_full.theta, cfg.rope_full.theta);
    EXPECT_EQ(got.rms_norm_eps, cfg.rms_norm_eps);
    for (size_t i = 0; i < cfg.layers.size(); ++i) {
      EXPECT_EQ(got.layers[i].ffn_dim, cfg.layers[i].ffn_dim);
      EXPECT_EQ(got.layers[i].kv_source, cfg.layers[i].kv_source);
      EXPECT_EQ(got.layers[i].k_eq_v, cfg.layers[i].k_eq_v);
      EXPECT_EQ(got.layers[i].num_kv_heads, cfg.layers[i].num_kv_heads);
    }
    std::vector<int> ids;
    for (int i = 0; i < 40; ++i) ids.push_back((i * 7919 + 13) % cfg.vocab_size);
    const std::vector<float> la = AllLogits(**a, ids), lb = AllLogits(**b, ids);
    ASSERT_EQ(la.size(), lb.size());
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0);
  }
}

// A 26B-A4B-shaped checkpoint whose expert rows are whole K-quant super-blocks (256 values).
std::string MoeCheckpoint() {
  RandomTargetSpec s = *TargetPreset("26b-a4b-tiny");
  s.hidden_size = 256;
  s.num_layers = 2;
  s.num_experts = 8;
  s.top_k_experts = 3;
  s.moe_intermediate_size = 256;
  return test::MakeCheckpoint("moe-256", s);
}

// Expert tensors ([E, rows, cols] stacks) in every stored type go through `quantize` and `convert`
// and load to the same logits, bit for bit; the router stays exact.
TEST(GgufModel, ExpertStacksRoundTripInEveryType) {
  const std::string base = MoeCheckpoint();
  for (DType t : {DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ6_K, DType::kQ4_K,
                  DType::kQ5_K, DType::kIQ4_NL, DType::kIQ4_XS, DType::kQ4_1, DType::kQ5_0,
                  DType::kQ5_1, DType::kQ3_K, DType::kQ2_K}) {
    const std::string tag = std::string("moe-") + std::string(DTypeName(t));
    SCOPED_TRACE(tag);
    std::string dir = base;
    if (t != DType::kBF16) {
      dir = test::TempDir("gguf-q-" + tag);
      ASSERT_TRUE(QuantizeCheckpoint(base, dir, t).ok());
    }
    Result<std::unique_ptr<Gemma4Model>> a = Gemma4Model::Load(dir);
    ASSERT_TRUE(a.ok()) << a.status().message();
    const std::string prefix = (*a)->config().tensor_prefix + "layers.1.";
    const TensorView* experts = (*a)->store().Find(prefix + "experts.gate_up_proj");
    ASSERT_NE(experts, nullptr);
    EXPECT_EQ(experts->dtype, t);
    EXPECT_EQ(experts->shape, (std::vector<int64_t>{8, 512, 256}));
    EXPECT_EQ((*a)->store().Find(prefix + "router.proj.weight")->dtype, DType::kBF16);
    Result<std::unique_ptr<Gemma4Model>> b = Gemma4Model::Load(Converted(dir, tag));
    ASSERT_TRUE(b.ok()) << b.status().message();
    EXPECT_EQ((*b)->config().num_experts, 8);
    EXPECT_EQ((*b)->config().top_k_experts, 3);
    EXPECT_EQ((*b)->config().moe_intermediate_size, 256);
    std::vector<int> ids;
    for (int i = 0; i < 24; ++i) ids.push_back((i * 7919 + 13) % 512);
    const std::vector<float> la = AllLogits(**a, ids), lb = AllLogits(**b, ids);
    ASSERT_EQ(la.size(), lb.size());
    EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0);
  }
}

// GGUF files may keep the experts' gate and up projections apart (ffn_gate_exps, ffn_up_exps):
// the same numbers, the same logits. A stack of the wrong shape is refused with its name.
TEST(GgufModel, SplitExpertProjectionsAndBadStacks) {
  const std::string dir = MoeCheckpoint();
  const std::string fused = Converted(dir, "moe-fused");
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(fused);
  ASSERT_TRUE(f.ok()) << f.status().message();
  Result<std::unique_ptr<Gemma4Model>> a = Gemma4Model::Load(dir);
  ASSERT_TRUE(a.ok());
  const Gemma4Config& c = (*a)->config();
  std::vector<GgufKv> kvs = Gemma4GgufMetadata(c, "moe");
  Result<Json> tok = ReadJsonFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  Result<std::vector<GgufKv>> tok_kvs = TokenizerGgufMetadata(*tok, "tokenizer.json", 512);
  ASSERT_TRUE(tok_kvs.ok()) << tok_kvs.status().message();
  kvs.insert(kvs.end(), tok_kvs->begin(), tok_kvs->end());
  std::deque<std::vector<uint8_t>> keep;  // split tensors' bytes
  const auto write = [&](const std::string& name, bool split, bool short_down) {
    std::vector<TensorToWrite> tensors;
    for (const auto& [n, v] : (*f)->tensors()) {
      if (split && n.find("ffn_gate_up_exps") != std::string::npos) {
        // [E, 2F, H] -> gate [E, F, H] and up [E, F, H], expert by expert.
        const int64_t E = v.shape[0], F = v.shape[1] / 2, H = v.shape[2];
        const size_t half = StorageBytes(v.dtype, F * H);
        const std::string layer = n.substr(0, n.find("ffn_gate_up_exps"));
        auto& gate = keep.emplace_back(static_cast<size_t>(E) * half);
        auto& up = keep.emplace_back(static_cast<size_t>(E) * half);
        for (int64_t e = 0; e < E; ++e) {
          const auto* src = static_cast<const uint8_t*>(v.data) + static_cast<size_t>(e) * 2 * half;
          std::memcpy(gate.data() + static_cast<size_t>(e) * half, src, half);
          std::memcpy(up.data() + static_cast<size_t>(e) * half, src + half, half);
        }
        tensors.push_back({layer + "ffn_gate_exps.weight", v.dtype, {E, F, H}, gate.data()});
        tensors.push_back({layer + "ffn_up_exps.weight", v.dtype, {E, F, H}, up.data()});
        continue;
      }
      std::vector<int64_t> shape = v.shape;
      if (short_down && n == "blk.1.ffn_down_exps.weight") shape[0] -= 1;  // one expert short
      tensors.push_back({n, v.dtype, shape, v.data});
    }
    const std::string out = test::TempDir("gguf-" + name) + "/model.gguf";
    EXPECT_TRUE(WriteGguf(out, kvs, tensors).ok());
    return out;
  };
  Result<std::unique_ptr<Gemma4Model>> split = Gemma4Model::Load(write("moe-split", true, false));
  ASSERT_TRUE(split.ok()) << split.status().message();
  std::vector<int> ids;
  for (int i = 0; i < 20; ++i) ids.push_back((i * 104729 + 3) % 512);
  const std::vector<float> la = AllLogits(**a, ids), lb = AllLogits(**split, ids);
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * sizeof(float)), 0);
  Result<std::unique_ptr<Gemma4Model>> bad = Gemma4Model::Load(write("moe-short", false, true));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("experts.down_proj"), std::string::npos)
      << bad.status().message();
}

// Assistants (centroid head on E2B shapes, dense tied head on 31B shapes) converted to GGUF draft
// the same tokens with the same bits, reading the target's cache whichever format it came from.
TEST(GgufModel, ConvertedAssistantDraftsIdentically) {
  for (const char* preset : {"e2b-tiny", "31b-tiny", "26b-a4b-tiny"}) {
    SCOPED_TRACE(preset);
    const auto [tdir, adir] = test::MakePair(preset, std::string(preset) == "e2b-tiny");
    const std::string gguf = test::TempDir(std::string("gguf-asst-") + preset) + "/asst.gguf";
    Result<GgufConvertStats> conv =
        ConvertGemma4AssistantToGguf(adir, {.tokenizer_json = tdir + "/tokenizer.json"}, gguf);
    ASSERT_TRUE(conv.ok()) << conv.status().message();
    Result<std::unique_ptr<Gemma4Model>> target =
        Gemma4Model::Load(Converted(tdir, std::string("t-") + preset));
    ASSERT_TRUE(target.ok()) << target.status().message();
    Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(adir, **target);
    Result<std::unique_ptr<Gemma4Assistant>> b = Gemma4Assistant::Load(gguf, **target);
    ASSERT_TRUE(a.ok()) << a.status().message();
    ASSERT_TRUE(b.ok()) << b.status().message();
    EXPECT_EQ((*a)->config().use_ordered_embeddings, (*b)->config().use_ordered_embeddings);
    if ((*a)->config().use_ordered_embeddings) {
      EXPECT_EQ((*a)->config().num_centroids, (*b)->config().num_centroids);
      EXPECT_EQ((*a)->config().centroid_top_k, (*b)->config().centroid_top_k);
    }
    EXPECT_EQ((*a)->config().LayerKvHeads(3), (*b)->config().LayerKvHeads(3));
    const Gemma4Config& tc = (*target)->config();
    std::vector<int> ids;
    for (int i = 0; i < 30; ++i) ids.push_back((i * 104729 + 7) % tc.vocab_size);
    ThreadPool pool(2);
    auto cache = (*target)->NewCache(128);
    ForwardOutput fwd;
    ASSERT_TRUE((*target)
                    ->Forward({.ids = ids, .cache = cache.get(), .all_logits = false}, pool, &fwd)
                    .ok());
    std::vector<float> ha(fwd.hidden.end() - tc.hidden_size, fwd.hidden.end()), hb = ha;
    int token = 5;
    for (int step = 0; step < 3; ++step) {
      DraftStepOutput oa, ob;
      std::unique_ptr<PassScratch> sa = (*a)->NewScratch(), sb = (*b)->NewScratch();
      const int pos = static_cast<int>(ids.size());
      (*a)->Step({.token = token, .h_in = ha.data(), .pos = pos, .cache = cache.get()}, pool, *sa,
                 &oa);
      (*b)->Step({.token = token, .h_in = hb.data(), .pos = pos, .cache = cache.get()}, pool, *sb,
                 &ob);
      ASSERT_EQ(oa.candidates, ob.candidates);
      ASSERT_EQ(oa.logits.size(), ob.logits.size());
      EXPECT_EQ(std::memcmp(oa.logits.data(), ob.logits.data(), oa.logits.size() * 4), 0);
      EXPECT_EQ(std::memcmp(oa.h_out.data(), ob.h_out.data(), oa.h_out.size() * 4), 0);
      ha = oa.h_out;
      hb = ob.h_out;
      EXPECT_EQ(std::string(preset) == "e2b-tiny", !oa.candidates.empty());
      token = static_cast<int>(std::max_element(oa.logits.begin(), oa.logits.end()) -
                               oa.logits.begin());
      if (!oa.candidates.empty()) token = oa.candidates[static_cast<size_t>(token)];
    }
  }
}

// Without the centroid head (llama.cpp's converter drops it) an E2B assistant file drafts with the
// dense tied head over the whole vocabulary.
TEST(GgufModel, AssistantWithoutCentroidsUsesTheDenseHead) {
  const auto [tdir, adir] = test::MakePair("e2b-tiny", true);
  const std::string gguf = test::TempDir("gguf-asst-dense") + "/asst.gguf";
  ASSERT_TRUE(ConvertGemma4AssistantToGguf(
                  adir, {.tokenizer_json = tdir + "/tokenizer.json", .keep_centroids = false}, gguf)
                  .ok());
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(gguf);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->tensors().count("masked_embd_centroids.weight"), 0u);
  EXPECT_EQ((*f)->tensors().count("masked_embd_ordering"), 0u);
  Result<std::unique_ptr<Gemma4Model>> target = Gemma4Model::Load(tdir);
  ASSERT_TRUE(target.ok());
  Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(gguf, **target);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_FALSE((*a)->config().use_ordered_embeddings);
  ThreadPool pool(2);
  auto cache = (*target)->NewCache(64);
  const std::vector<int> ids = {2, 10, 20, 30};
  ForwardOutput fwd;
  ASSERT_TRUE((*target)->Forward({.ids = ids, .cache = cache.get()}, pool, &fwd).ok());
  DraftStepOutput out;
  (*a)->Step({.token = 7,
              .h_in = fwd.hidden.data() + 3 * (*target)->config().hidden_size,
              .pos = 4,
              .cache = cache.get()},
             pool, *(*a)->NewScratch(), &out);
  EXPECT_TRUE(out.candidates.empty());
  EXPECT_EQ(out.logits.size(), static_cast<size_t>((*target)->config().vocab_size));
}

TEST(GgufModel, TokenizerAndStopTokensSurviveConversion) {
  const std::string dir = test::MakePreset("e2b-tiny");
  const std::string gguf = Converted(dir, "tok");
  Result<std::unique_ptr<Tokenizer>> a = LoadCheckpointTokenizer(dir);
  Result<std::unique_ptr<Tokenizer>> b = LoadCheckpointTokenizer(gguf);
  ASSERT_TRUE(a.ok()) << a.status().message();
  ASSERT_TRUE(b.ok()) << b.status().message();
  ASSERT_EQ((*a)->vocab_size(), (*b)->vocab_size());
  for (int id = 0; id < (*a)->vocab_size(); ++id) {
    ASSERT_EQ((*a)->Piece(id), (*b)->Piece(id)) << id;
    ASSERT_EQ((*a)->IsSpecial(id), (*b)->IsSpecial(id)) << id;
  }
  for (const char* text : {"Hello world", "  two  spaces\n\nand lines", "<start_of_turn>user\nhi",
                           "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", "", "a"}) {
    EXPECT_EQ((*a)->Encode(text), (*b)->Encode(text)) << text;
  }
  Result<GenerationConfig> g = GenerationConfig::LoadFromDir(gguf);
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_EQ(g->eos_token_ids.front(), 1);
  EXPECT_EQ(g->bos_token_id, 2);
}

// A copy of the e2b-tiny checkpoint whose generation_config.json is `gen`.
std::string WithGenerationConfig(const std::string& name, const Json& gen) {
  const std::string dir = test::TempDir(name);
  std::filesystem::copy(test::MakePreset("e2b-tiny"), dir,
                        std::filesystem::copy_options::recursive);
  std::ofstream(dir + "/generation_config.json") << gen.dump();
  return dir;
}

void ExpectSameGenerationConfig(const GenerationConfig& a, const GenerationConfig& b) {
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.do_sample, b.do_sample);
  EXPECT_EQ(a.temperature, b.temperature);
  EXPECT_EQ(a.top_k, b.top_k);
  EXPECT_EQ(a.top_p, b.top_p);
  EXPECT_EQ(a.min_p, b.min_p);
  EXPECT_EQ(a.num_assistant_tokens, b.num_assistant_tokens);
}

// The sampling defaults and stop tokens of generation_config.json travel into the converted file
// (llama.cpp's general.sampling.* keys), so a .gguf generates as its directory does.
TEST(GgufModel, GenerationConfigSurvivesConversion) {
  const std::string dir = WithGenerationConfig(
      "gencfg-sample", {{"bos_token_id", 2},
                        {"eos_token_id", {1, 106, 50}},  // 50: no stop token by name
                        {"pad_token_id", 0},
                        {"do_sample", true},
                        {"temperature", 0.7},
                        {"top_k", 40},
                        {"top_p", 0.9},
                        {"min_p", 0.05}});
  const std::string gguf = Converted(dir, "gen-sample");
  Result<GenerationConfig> want = GenerationConfig::LoadFromDir(dir);
  Result<GenerationConfig> got = GenerationConfig::LoadFromDir(gguf);
  ASSERT_TRUE(want.ok()) << want.status().message();
  ASSERT_TRUE(got.ok()) << got.status().message();
  ASSERT_TRUE(got->do_sample);
  ExpectSameGenerationConfig(*want, *got);
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(gguf);
  ASSERT_TRUE(f.ok());
  const Json& md = (*f)->metadata();
  EXPECT_FLOAT_EQ(md["general.sampling.temp"].get<float>(), 0.7f);
  EXPECT_EQ(md["general.sampling.top_k"], 40);
  EXPECT_FLOAT_EQ(md["general.sampling.top_p"].get<float>(), 0.9f);
  EXPECT_FLOAT_EQ(md["general.sampling.min_p"].get<float>(), 0.05f);
  EXPECT_EQ(md["tokenizer.ggml.eos_token_id"], 1);

  // Greedy checkpoints stay greedy, also for llama.cpp (temperature 0), whatever temperature
  // they name; without generation_config.json the directory's defaults are written.
  for (const Json& gen : {Json{{"do_sample", false}, {"temperature", 0.7}, {"top_k", 5}},
                          Json{{"eos_token_id", 106}}}) {
    SCOPED_TRACE(gen.dump());
    const std::string g = WithGenerationConfig("gencfg-greedy", gen);
    const std::string file = Converted(g, "gen-greedy");
    Result<GenerationConfig> a = GenerationConfig::LoadFromDir(g);
    Result<GenerationConfig> b = GenerationConfig::LoadFromDir(file);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_FALSE(b->do_sample);
    EXPECT_EQ(b->eos_token_ids, a->eos_token_ids);
    EXPECT_EQ(b->top_k, a->top_k);
    EXPECT_EQ(GgufFile::Open(file).value()->metadata()["general.sampling.temp"], 0.0);
  }
  const std::string bare = test::TempDir("gencfg-none");
  std::filesystem::copy(test::MakePreset("e2b-tiny"), bare);
  std::filesystem::remove(bare + "/generation_config.json");
  Result<GenerationConfig> none = GenerationConfig::LoadFromDir(Converted(bare, "gen-none"));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->eos_token_ids, std::vector<int>{1});  // the directory's default, not <turn|>
  EXPECT_FALSE(none->do_sample);
}

// Files from llama.cpp's converter carry general.sampling.* alone: a temperature above 0 samples,
// stop tokens come from the tokenizer keys, and a file without the keys decodes greedily. Values
// out of range name the key.
TEST(GgufModel, SamplingKeysOfOtherConverters) {
  const std::string path = test::TempDir("gguf-gen-keys") + "/g.gguf";
  auto load = [&](std::vector<GgufKv> kvs) {
    kvs.push_back({"tokenizer.ggml.eos_token_id", GgufType::kU32, 1});
    kvs.push_back({"tokenizer.ggml.eot_token_id", GgufType::kU32, 106});
    EXPECT_TRUE(WriteGguf(path, kvs, {}).ok());
    return GenerationConfig::LoadFromDir(path);
  };
  Result<GenerationConfig> g = load({{"general.sampling.temp", GgufType::kF32, 1.0},
                                     {"general.sampling.top_k", GgufType::kI32, 64},
                                     {"general.sampling.top_p", GgufType::kF32, 0.95}});
  ASSERT_TRUE(g.ok()) << g.status().message();
  EXPECT_TRUE(g->do_sample);
  EXPECT_EQ(g->temperature, 1.0f);
  EXPECT_EQ(g->top_k, 64);
  EXPECT_EQ(g->top_p, 0.95f);
  EXPECT_EQ(g->min_p, std::nullopt);
  EXPECT_EQ(g->eos_token_ids, (std::vector<int>{1, 106}));
  g = load({});
  ASSERT_TRUE(g.ok());
  EXPECT_FALSE(g->do_sample);
  EXPECT_EQ(g->top_k, std::nullopt);
  for (const GgufKv& bad : {GgufKv{"general.sampling.temp", GgufType::kF32, -1.0},
                            GgufKv{"general.sampling.top_p", GgufType::kF32, 1.5},
                            GgufKv{"general.sampling.min_p", GgufType::kF32, -0.1},
                            GgufKv{"general.sampling.top_k", GgufType::kI32, -3},
                            GgufKv{"general.sampling.temp", GgufType::kString, "hot"}}) {
    g = load({bad});
    ASSERT_FALSE(g.ok()) << bad.key;
    EXPECT_NE(g.status().message().find(path + ": " + bad.key), std::string::npos)
        << g.status().message();
  }
}

// Metadata with random values and types in place of a valid target's: an error naming the file, or
// a config that validates; never a crash (the sanitizer build runs this too).
TEST(GgufModel, MetadataFuzz) {
  const std::string dir = test::MakePreset("e2b-tiny");
  Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(dir);
  ASSERT_TRUE(m.ok());
  const Gemma4Config& c = (*m)->config();
  const std::vector<GgufKv> good = Gemma4GgufMetadata(c, "t");
  std::vector<TensorToWrite> tensors;
  for (const char* hf : {"embed_tokens.weight", "embed_tokens_per_layer.weight"}) {
    const TensorView* t = (*m)->store().Find(c.tensor_prefix + hf);
    ASSERT_NE(t, nullptr);
    tensors.push_back({Gemma4GgufName(c.tensor_prefix + hf, c), t->dtype, t->shape, t->data});
  }
  std::mt19937 rng(99);
  const std::string path = test::TempDir("gguf-mdfuzz") + "/m.gguf";
  int errors = 0;
  for (int iter = 0; iter < 400; ++iter) {
    std::vector<GgufKv> kvs = good;
    for (int e = 0; e < 1 + static_cast<int>(rng() % 3); ++e) {
      GgufKv& kv = kvs[rng() % kvs.size()];
      if (kv.key == "general.alignment") continue;  // the writer aligns to 32 regardless
      switch (rng() % 6) {
        case 0:
          kv = {kv.key, GgufType::kU32, rng() % 3};
          break;
        case 1:
          kv = {kv.key, GgufType::kI32, -static_cast<int>(rng() % 100)};
          break;
        case 2:
          kv = {kv.key, GgufType::kU32, 1u + rng()};
          break;
        case 3:
          kv = {kv.key, GgufType::kString, "x"};
          break;
        case 4:
          kv = {kv.key, GgufType::kF32, -1.5};
          break;
        default: {
          Json a = Json::array();
          for (uint32_t i = rng() % 14; i > 0; --i) a.push_back(static_cast<int>(rng() % 200) - 20);
          kv = {kv.key, GgufType::kArray, a, GgufType::kI32};
        }
      }
    }
    ASSERT_TRUE(WriteGguf(path, kvs, tensors).ok());
    Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    Result<Json> j = Gemma4ConfigFromGguf(**f);
    if (!j.ok()) {
      EXPECT_EQ(j.status().message().rfind(path, 0), 0u) << j.status().message();
      ++errors;
      continue;
    }
    Result<Gemma4Config> cfg = Gemma4Config::FromJson(*j, path);
    if (!cfg.ok()) ++errors;
  }
  EXPECT_GT(errors, 200);
}

// llama.cpp sizes the vocabulary from the token list, so conversion fits it to the embedding rows:
// tokens past them go (with the merges that build them), missing ids become unused pads, and
// everything the model can embed encodes as before.
TEST(GgufModel, TokenListFitsTheVocabulary) {
  const std::string dir = test::MakePreset("e2b-tiny");
  Result<Json> j = ReadJsonFile(dir + "/tokenizer.json");
  ASSERT_TRUE(j.ok());
  Result<std::unique_ptr<Tokenizer>> original = LoadCheckpointTokenizer(dir);
  ASSERT_TRUE(original.ok());
  const int v = (*original)->vocab_size();
  for (const int size : {v - 20, v + 8}) {
    SCOPED_TRACE(size);
    Result<std::vector<GgufKv>> kvs = TokenizerGgufMetadata(*j, "tokenizer.json", size);
    ASSERT_TRUE(kvs.ok()) << kvs.status().message();
    const std::string path = test::TempDir("gguf-vocab") + "/t.gguf";
    ASSERT_TRUE(WriteGguf(path, *kvs, {}).ok());
    Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
    ASSERT_TRUE(f.ok());
    const Json& md = (*f)->metadata();
    ASSERT_EQ(md["tokenizer.ggml.tokens"].size(), static_cast<size_t>(size));
    ASSERT_EQ(md["tokenizer.ggml.token_type"].size(), static_cast<size_t>(size));
    Result<std::unique_ptr<Tokenizer>> t = LoadCheckpointTokenizer(path);
    ASSERT_TRUE(t.ok()) << t.status().message();
    if (size > v) {
      EXPECT_EQ(md["tokenizer.ggml.tokens"][v + 3], "[PAD" + std::to_string(v + 3) + "]");
      EXPECT_EQ(md["tokenizer.ggml.token_type"][v + 3], static_cast<int>(GgufTokenType::kUnused));
      for (const char* text : {"Hello world", "the quick brown fox"}) {
        EXPECT_EQ((*t)->Encode(text), (*original)->Encode(text)) << text;
      }
    }
    for (const char* text : {"Hello world", "the quick brown fox", "print(x)\n"}) {
      for (const int id : (*t)->Encode(text)) EXPECT_LT(id, size) << text;
    }
  }
}

// GGUF files that are well formed but not a usable Gemma 4 target name the key that is wrong.
TEST(GgufModel, BadMetadataNamesTheKey) {
  const std::string dir = test::MakePreset("e2b-tiny");
  Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(dir);
  ASSERT_TRUE(m.ok());
  const Gemma4Config& c = (*m)->config();
  const std::vector<GgufKv> good = Gemma4GgufMetadata(c, "t");
  const TensorView* embed = (*m)->store().Find(c.tensor_prefix + "embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  const std::vector<TensorToWrite> tensors = {
      {"token_embd.weight", embed->dtype, embed->shape, embed->data}};
  auto with = [&](const std::string& key, const Json& value, bool drop = false) {
    std::vector<GgufKv> kvs;
    for (GgufKv kv : good) {
      if (kv.key == key) {
        if (drop) continue;
        kv.value = value;
        if (value.is_string()) kv.type = GgufType::kString;
      }
      kvs.push_back(kv);
    }
    const std::string path = test::TempDir("gguf-bad") + "/m.gguf";
    EXPECT_TRUE(WriteGguf(path, kvs, tensors).ok());
    Result<std::unique_ptr<Gemma4Model>> r = Gemma4Model::Load(path);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(with("general.architecture", "llama").find("general.architecture"), std::string::npos);
  EXPECT_NE(with("gemma4.block_count", 0, true).find("gemma4.block_count"), std::string::npos);
  EXPECT_NE(with("gemma4.attention.sliding_window_pattern", Json::array({true}))
                .find("gemma4.attention.sliding_window_pattern"),
            std::string::npos);
  Json ff = Json::array();
  for (size_t i = 0; i < c.layers.size(); ++i) ff.push_back(i == 0 ? 64 : 96);
  EXPECT_NE(with("gemma4.feed_forward_length", ff).find("gemma4.feed_forward_length"),
            std::string::npos);
  // Metadata fine, tensors missing: the error names the file and the missing tensor.
  const std::string missing = with("general.name", "t");
  EXPECT_NE(missing.find("m.gguf"), std::string::npos) << missing;
  EXPECT_NE(missing.find("'per_layer_token_embd.weight' is missing"), std::string::npos) << missing;
}

}  // namespace
}  // namespace specula
