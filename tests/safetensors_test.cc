#include "specula/formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "specula/base/mapped_file.h"
#include "specula/formats/weight_store.h"
#include "test_util.h"

namespace specula {
namespace {

std::string WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string ValidFile(const std::string& dir) {
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3f80, 0x4000, 0x4040};
  std::vector<int64_t> c = {7, -8};
  const std::string path = dir + "/v.safetensors";
  Status s = WriteSafetensors(path,
                              {{"a", DType::kF32, {2, 3}, a.data()},
                               {"b", DType::kBF16, {3}, b.data()},
                               {"c", DType::kI64, {2}, c.data()}},
                              {{"format", "pt"}});
  EXPECT_TRUE(s.ok()) << s.message();
  return path;
}

std::string Slurp(const std::string& path) {
  Result<std::string> t = ReadTextFile(path);
  return t.ok() ? *t : "";
}

TEST(Safetensors, RoundTrip) {
  const std::string dir = test::TempDir("st-roundtrip");
  Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(ValidFile(dir));
  ASSERT_TRUE(f.ok()) << f.status().message();
  const auto& t = (*f)->tensors();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.at("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(LoadAsF32(DType::kF32, t.at("a").data, 5), 6.0f);
  EXPECT_EQ(LoadAsF32(DType::kBF16, t.at("b").data, 2), 3.0f);
  int64_t c1;
  std::memcpy(&c1, static_cast<const uint8_t*>(t.at("c").data) + 8, 8);
  EXPECT_EQ(c1, -8);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
}

Status Parse(const std::string& bytes) {
  std::map<std::string, TensorView> t;
  std::map<std::string, std::string> m;
  const std::string name = "x.safetensors";
  return SafetensorsFile::ParseInto(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                    &name, &t, &m);
}

std::string WithHeader(const std::string& json, size_t data_bytes) {
  std::string s(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(s.data(), &n, 8);
  return s + json + std::string(data_bytes, '\0');
}

TEST(Safetensors, CorruptFilesGiveClearErrors) {
  const std::string valid = Slurp(ValidFile(test::TempDir("st-corrupt")));
  struct Case {
    std::string bytes, expect;
  } cases[] = {
      {valid.substr(0, 5), "truncated"},
      {valid.substr(0, valid.size() - 4), "outside the data section"},
      {WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0),
       "outside"},
      {WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
       "needs 12"},
      {WithHeader("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8),
       "unsupported dtype"},
      {WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8),
       "non-negative"},
      {WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8),
       "outside"},
      {WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8), "data_offsets"},
      {WithHeader("{\"a\": [1,2", 8), "malformed JSON"},
      {WithHeader("[1,2,3]", 0), "not a JSON object"},
      {WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":"
                  "[0,8]}}",
                  8),
       "too large"},
      // A dimension past int64 after a 0 (was read as a negative dimension; the header of
      // tests/fuzz/corpus/safetensors/regress-zero-then-huge-dim.safetensors).
      {WithHeader(
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775808],\"data_offsets\":[0,0]}}",
           0),
       "too large"},
  };
  for (const Case& c : cases) {
    Status s = Parse(c.bytes);
    ASSERT_FALSE(s.ok()) << c.expect;
    EXPECT_NE(s.message().find(c.expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("x.safetensors"), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos);  // one line
  }
  // Header length beyond the file.
  std::string huge = valid;
  const uint64_t n = 1ull << 40;
  std::memcpy(huge.data(), &n, 8);
  EXPECT_NE(Parse(huge).message().find("exceeds the file size"), std::string::npos);
}

// Headers whose table does not describe the data consistently would load tensors reading other
// tensors' bytes (or lose one of two same-named entries): each is refused naming the tensor(s).
TEST(Safetensors, InconsistentTableIsRefused) {
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  int begin, int end) {
    // Appended piece by piece: GCC 12 flags a chain of literal + string as overlapping memcpy.
    std::string e = "\"";
    e += name;
    e += "\":{\"dtype\":\"";
    e += dtype;
    e += "\",\"shape\":";
    e += shape;
    e += ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
    return e;
  };
  auto object = [](const std::vector<std::string>& entries) {
    std::string o = "{";
    for (const std::string& e : entries) {
      if (o.size() > 1) o += ",";
      o += e;
    }
    return o + "}";
  };
  struct Case {
    std::string what, header;
    std::vector<std::string> expect;
  } cases[] = {
      {"overlapping data",
       object({entry("a", "F32", "[4]", 0, 16), entry("b", "F32", "[2]", 8, 16)}),
       {"tensors 'a'", "and 'b'", "overlap"}},
      {"the same data",
       object({entry("a", "F32", "[2]", 0, 8), entry("b", "I32", "[2]", 0, 8)}),
       {"'a'", "'b'", "overlap"}},
      {"overlap between neighbours by offset, not by name",
       object({entry("a", "F32", "[2]", 16, 24), entry("b", "F32", "[2]", 0, 8),
               entry("c", "F32", "[2]", 4, 12)}),
       {"tensors 'b'", "and 'c'", "overlap"}},
      {"a name twice",
       object({entry("a", "F32", "[2]", 0, 8), entry("a", "F32", "[2]", 8, 16)}),
       {"tensor 'a' appears twice"}},
      {"offsets outside the data",
       object({entry("a", "F32", "[2]", 24, 32)}),
       {"tensor 'a'", "outside the data section"}},
      {"byte count and shape disagree",
       object({entry("a", "BF16", "[2, 3]", 0, 16)}),
       {"tensor 'a'", "holds 16 bytes", "needs 12"}},
  };
  for (const Case& c : cases) {
    const Status s = Parse(WithHeader(c.header, 24));
    if (s.ok()) {
      ADD_FAILURE() << c.what << ": loaded";
      continue;
    }
    EXPECT_EQ(s.message().rfind("x.safetensors: ", 0), 0u) << c.what << ": " << s.message();
    for (const std::string& e : c.expect) {
      EXPECT_NE(s.message().find(e), std::string::npos) << c.what << ": " << s.message();
    }
  }
  // Empty tensors hold no bytes, so they share an offset with anything; adjacent ones touch.
  EXPECT_TRUE(
      Parse(WithHeader(object({entry("e", "F32", "[0]", 4, 4), entry("a", "F32", "[2]", 0, 8),
                               entry("b", "F32", "[4]", 8, 24)}),
                       24))
          .ok());
}

// Randomized mutation fuzzing: flipped bytes, truncations and splices of a valid file must yield
// either a valid parse whose views stay inside the buffer, or an error; never a crash (run under
// ASan/UBSan in the sanitizer build).
TEST(Safetensors, MutationFuzz) {
  const std::string valid = Slurp(ValidFile(test::TempDir("st-fuzz")));
  std::mt19937 rng(12345);
  int errors = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string s = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:
          s[rng() % s.size()] = static_cast<char>(rng());
          break;
        case 1:
          s.resize(rng() % (s.size() + 1));
          break;
        case 2:
          if (!s.empty()) s.insert(rng() % s.size(), 1, "{}[],:\"0123456789"[rng() % 17]);
          break;
        default:
          if (s.size() > 8) s[8 + rng() % (s.size() - 8)] = "{}[],:\"0123456789eE-"[rng() % 20];
          break;
      }
      if (s.empty()) break;
    }
    std::map<std::string, TensorView> t;
    std::map<std::string, std::string> m;
    const auto* base = reinterpret_cast<const uint8_t*>(s.data());
    Status st = SafetensorsFile::ParseInto(base, s.size(), nullptr, &t, &m);
    if (!st.ok()) {
      ++errors;
      continue;
    }
    for (const auto& [name, v] : t) {
      const auto* p = static_cast<const uint8_t*>(v.data);
      ASSERT_GE(p, base);
      ASSERT_LE(p + v.nbytes, base + s.size());
    }
  }
  EXPECT_GT(errors, 1000);  // the mutations do hit the error paths
}

TEST(WeightStore, ShardedIndexErrors) {
  const std::string dir = test::TempDir("ws-index");
  ValidFile(dir);
  std::rename((dir + "/v.safetensors").c_str(),
              (dir + "/model-00001-of-00001.safetensors").c_str());
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"weight_map": {"a": "model-00001-of-00001.safetensors", )"
             R"("zz": "model-00001-of-00001.safetensors"}})");
  Result<std::unique_ptr<WeightStore>> s = WeightStore::OpenDir(dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("'zz'"), std::string::npos) << s.status().message();
  WriteBytes(dir + "/model.safetensors.index.json", R"({"weight_map": {"a": "../etc/passwd"}})");
  s = WeightStore::OpenDir(dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("bad shard file name"), std::string::npos);
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"weight_map": {"a": "missing.safetensors"}})");
  s = WeightStore::OpenDir(dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("missing.safetensors"), std::string::npos);
  WriteBytes(dir + "/model.safetensors.index.json",
             R"({"weight_map": {"a": "model-00001-of-00001.safetensors"}})");
  s = WeightStore::OpenDir(dir);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_NE((*s)->Find("a"), nullptr);
  EXPECT_EQ((*s)->Find("b"), nullptr);  // not listed in the index: not part of the checkpoint
  EXPECT_FALSE(WeightStore::OpenDir(test::TempDir("ws-empty")).ok());
}

}  // namespace
}  // namespace specula
