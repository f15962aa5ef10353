// Mutation fuzzing of the JSON-driven parsers (config.json of targets and assistants,
// generation_config.json, tokenizer.json): every mutated input must parse to a valid object or give
// an error naming the file; never crash, hang or assert (this runs under ASan+UBSan too).
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/formats/generation_config.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/models/gemma4_config.h"
#include "specula/tokenizer/tokenizer.h"
#include "src/testing/random_checkpoint.h"
#include "test_util.h"

namespace specula {
namespace {

// Text-level mutations: byte flips, truncation, insertion of JSON syntax, number swaps.
std::string Mutate(std::string s, std::mt19937& rng) {
  static const std::string kBits[] = {"{",     "}",           "[",    "]",     ",",    ":",
                                      "\"",    "-1",          "0",    "1e400", "null", "true",
                                      "\"x\"", "99999999999", "-0.5", "[]",    "{}"};
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && !s.empty(); ++e) {
    const size_t at = rng() % s.size();
    switch (rng() % 4) {
      case 0:
        s[at] = static_cast<char>(rng());
        break;
      case 1:
        s.resize(at);
        break;
      case 2:
        s.insert(at, kBits[rng() % std::size(kBits)]);
        break;
      default: {  // replace a number or literal with another token
        const size_t end = s.find_first_of(",}]", at);
        if (end != std::string::npos) s.replace(at, end - at, kBits[rng() % std::size(kBits)]);
      }
    }
  }
  return s;
}

TEST(ParserFuzz, ConfigsNeverCrash) {
  const std::string target = test::MakePreset("e2b-tiny");
  const auto pair = test::MakePair("31b-tiny", false);
  const std::string tcfg = *ReadTextFile(target + "/config.json");
  const std::string acfg = *ReadTextFile(pair.second + "/config.json");
  const std::string gcfg = *ReadTextFile(target + "/generation_config.json");
  std::mt19937 rng(2026);
  int ok = 0, errors = 0;
  const std::string dir = test::TempDir("fuzz-gen");
  for (int i = 0; i < 3000; ++i) {
    const std::string t = Mutate(tcfg, rng), a = Mutate(acfg, rng);
    Result<Json> jt = ParseJson(t, "config.json");
    if (jt.ok()) {
      Result<Gemma4Config> c = Gemma4Config::FromJson(*jt, "config.json");
      (c.ok() ? ok : errors)++;
      if (!c.ok()) {
        EXPECT_EQ(c.status().message().rfind("config.json", 0), 0u) << c.status().message();
      }
    } else {
      ++errors;
    }
    Result<Json> ja = ParseJson(a, "a/config.json");
    if (ja.ok()) {
      Result<Gemma4AssistantConfig> c = Gemma4AssistantConfig::FromJson(*ja, "a/config.json");
      (c.ok() ? ok : errors)++;
    }
    if (i % 10 == 0) {
      std::ofstream(dir + "/generation_config.json") << Mutate(gcfg, rng);
      Result<GenerationConfig> g = GenerationConfig::LoadFromDir(dir);
      (g.ok() ? ok : errors)++;
    }
  }
  EXPECT_GT(errors, 500);
  EXPECT_GT(ok, 100);  // many mutations (e.g. in values) still parse: both paths are exercised
}

TEST(ParserFuzz, TokenizerJsonNeverCrashes) {
  const std::string tok = SyntheticTokenizerJson(420);
  std::mt19937 rng(7);
  int ok = 0;
  for (int i = 0; i < 300; ++i) {
    Result<std::unique_ptr<Tokenizer>> t =
        Tokenizer::FromJsonText(Mutate(tok, rng), "tokenizer.json");
    if (t.ok()) {
      ++ok;
      const std::vector<int> ids = (*t)->Encode("the quick <|turn> fox \xE6\x97\xA5");
      for (int id : ids) ASSERT_TRUE(id >= 0 && id < (*t)->vocab_size());
      (void)(*t)->Decode(ids);
    } else {
      EXPECT_EQ(t.status().message().rfind("tokenizer.json", 0), 0u) << t.status().message();
    }
  }
  EXPECT_GT(ok, 0);
}

}  // namespace
}  // namespace specula
