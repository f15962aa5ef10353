// Tokenizer mechanics on small handcrafted tokenizer.json files, the streaming decoder, and
// malformed-input handling. Exactness on the real Gemma vocabulary is tokenizer_reference_test.
#include "specula/tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "specula/base/json.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/testing/random_checkpoint.h"

namespace specula {
namespace {

// vocab: specials, bytes, a few characters and merges with known ranks.
std::string TinyJson(const Json& merges) {
  Json vocab = {{"<pad>", 0}, {"<eos>", 1}, {"<bos>", 2}, {"<unk>", 3}};
  int id = 4;
  for (int b = 0; b < 256; ++b) {
    char n[8];
    std::snprintf(n, sizeof(n), "<0x%02X>", b);
    vocab[n] = id++;
  }
  for (const char* p : {"a", "b", "c", "\xE2\x96\x81", "ab", "bc", "aa", "aaa",
                        "\xE2\x96\x81"
                        "a",
                        "abc", "é"})
    vocab[p] = id++;
  Json added = Json::array({{{"id", 0}, {"content", "<pad>"}, {"special", true}},
                            {{"id", 1}, {"content", "<eos>"}, {"special", true}},
                            {{"id", 2}, {"content", "<bos>"}, {"special", true}},
                            {{"id", 3}, {"content", "<unk>"}, {"special", true}},
                            {{"id", id}, {"content", "<t>"}, {"special", true}},
                            {{"id", id + 1}, {"content", "<tt>"}, {"special", false}}});
  Json tok = {{"added_tokens", added},
              {"normalizer",
               {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}},
              {"pre_tokenizer", nullptr},
              {"model",
               {{"type", "BPE"},
                {"unk_token", "<unk>"},
                {"byte_fallback", true},
                {"fuse_unk", true},
                {"vocab", vocab},
                {"merges", merges}}}};
  return tok.dump();
}

std::unique_ptr<Tokenizer> Tiny(const Json& merges) {
  Result<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJsonText(TinyJson(merges), "tiny.json");
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? std::move(*t) : nullptr;
}

std::vector<std::string> Pieces(const Tokenizer& t, const std::string& s) {
  std::vector<std::string> out;
  for (int id : t.Encode(s)) out.push_back(t.Piece(id));
  return out;
}

TEST(Tokenizer, MergesApplyByRankNotPosition) {
  // "abc": "bc" (rank 0) beats "ab" (rank 1) though "ab" is leftmost; then "a"+"bc" has no merge.
  auto t = Tiny(Json::array({{"b", "c"}, {"a", "b"}}));
  EXPECT_EQ(Pieces(*t, "abc"), (std::vector<std::string>{"a", "bc"}));
  auto u = Tiny(Json::array({{"a", "b"}, {"b", "c"}, {"ab", "c"}}));
  EXPECT_EQ(Pieces(*u, "abc"), (std::vector<std::string>{"abc"}));
}

TEST(Tokenizer, EqualRanksMergeLeftmostFirst) {
  auto t = Tiny(Json::array({{"a", "a"}}));
  EXPECT_EQ(Pieces(*t, "aaa"), (std::vector<std::string>{"aa", "a"}));
  EXPECT_EQ(Pieces(*t, "aaaaa"), (std::vector<std::string>{"aa", "aa", "a"}));
  // Then a later-rank merge: aa|aa|a -> "aa" + "a" is the only rank-1 pair.
  auto u = Tiny(Json::array({{"a", "a"}, {"aa", "a"}}));
  EXPECT_EQ(Pieces(*u, "aaaaa"), (std::vector<std::string>{"aa", "aaa"}));
}

TEST(Tokenizer, SpacesNormalizeAndDecodeBack) {
  auto t = Tiny(Json::array({{"\xE2\x96\x81", "a"}}));
  EXPECT_EQ(Pieces(*t, " a a"), (std::vector<std::string>{"\xE2\x96\x81"
                                                          "a",
                                                          "\xE2\x96\x81"
                                                          "a"}));
  EXPECT_EQ(t->Decode(t->Encode(" a  a ")), " a  a ");
}

TEST(Tokenizer, ByteFallbackForUnknownCharacters) {
  auto t = Tiny(Json::array());
  EXPECT_EQ(Pieces(*t,
                   "a\xE6\x97\xA5"
                   "b"),
            (std::vector<std::string>{"a", "<0xE6>", "<0x97>", "<0xA5>", "b"}));
  EXPECT_EQ(Pieces(*t, "é"), (std::vector<std::string>{"é"}));  // in vocab: no fallback
  EXPECT_EQ(t->Decode(t->Encode("a\xE6\x97\xA5😀b")), "a\xE6\x97\xA5😀b");
}

TEST(Tokenizer, AddedTokensMatchLeftmostLongestBeforeBpe) {
  auto t = Tiny(Json::array({{"a", "b"}}));
  EXPECT_EQ(Pieces(*t, "ab<tt>ab<t><t>x<bos>"),
            (std::vector<std::string>{"ab", "<tt>", "ab", "<t>", "<t>", "<0x78>", "<bos>"}));
  EXPECT_EQ(Pieces(*t, "<t"), (std::vector<std::string>{"<0x3C>", "<0x74>"}));
  EXPECT_EQ(t->Decode(t->Encode("a<t>b")), "a<t>b");
}

TEST(Tokenizer, StreamingNeverSplitsUtf8) {
  auto t = Tiny(Json::array());
  const std::string text = "aé日本😀b\xE2\x82\xAC";
  const std::vector<int> ids = t->Encode(text);
  StreamDecoder d(*t);
  std::string joined;
  for (int id : ids) {
    const std::string piece = d.Push(id);
    // Every emitted piece is complete UTF-8 on its own.
    for (size_t i = 0; i < piece.size();) {
      const auto c = static_cast<unsigned char>(piece[i]);
      const size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
      ASSERT_LE(i + n, piece.size()) << "broken UTF-8 emitted";
      i += n;
    }
    joined += piece;
  }
  joined += d.Flush();
  EXPECT_EQ(joined, text);
  // A dangling lead byte is replaced, not emitted raw.
  StreamDecoder e(*t);
  std::string s = e.Push(*t->TokenId("<0xE6>"));
  EXPECT_EQ(s, "");
  s += e.Push(*t->TokenId("a"));
  EXPECT_EQ(s,
            "\xEF\xBF\xBD"
            "a");
}

TEST(Tokenizer, SyntheticTokenizerRoundTrips) {
  Result<std::unique_ptr<Tokenizer>> t =
      Tokenizer::FromJsonText(SyntheticTokenizerJson(600), "syn.json");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ((*t)->vocab_size(), 600);
  EXPECT_EQ(*(*t)->TokenId("<|turn>"), 105);
  EXPECT_EQ(*(*t)->TokenId("<turn|>"), 106);
  for (const std::string s : {"the quick brown fox", "int main() { return 0; }\n\tx", "über 日本 😀",
                              "<|turn>user\nhi<turn|>\n"}) {
    EXPECT_EQ((*t)->Decode((*t)->Encode(s)), s);
  }
}

TEST(Tokenizer, MalformedFilesGiveErrors) {
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"{", "malformed JSON"},
      {"[]", "expected a JSON object"},
      {R"({"model": {"type": "Unigram", "vocab": {}}})", "only BPE"},
      {R"({"model": {"type": "BPE"}})", "model.vocab"},
      {R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "model.vocab.a"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}})",
       "model.merges[0]"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": 3}})", "model.merges"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}})",
       "unk_token"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},)"
       R"( "normalizer": {"type": "NFKC"}})",
       "normalizer"},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},)"
       R"( "added_tokens": [{"id": -1, "content": "x"}]})",
       "added_tokens"},
  };
  for (const Case& c : cases) {
    Result<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJsonText(c.text, "tok.json");
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos) << t.status().message();
    EXPECT_EQ(t.status().message().rfind("tok.json", 0), 0u);
  }
}

// Found by fuzz_tokenizer (tests/fuzz/corpus/tokenizer/regress-*): a field of another type where a
// string or bool belongs threw from json::value(); it is an error naming the section. The GGUF
// writer reads added tokens' "special" the same way.
TEST(Tokenizer, FieldsOfTheWrongTypeGiveErrors) {
  const std::string model = R"("model": {"type": "BPE", "vocab": {"a": 0, " ": 1}, "merges": []})";
  const std::pair<std::string, std::string> cases[] = {
      {R"("normalizer": {"type": {"String": " "}, "pattern": {"String": " "}, "content": "_"})",
       "normalizer"},
      {R"("normalizer": {"type": "Sequence", "normalizers": [{"type": 5}]})",
       "normalizer.normalizers[0]"},
      {R"("normalizer": {"type": null, "normalizers": []})", "normalizer"},
      {R"("pre_tokenizer": {"type": ["Split"], "pattern": {"String": " "}})", "pre_tokenizer"},
      {R"("pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "invert": "no"})",
       "pre_tokenizer"},
      {R"("pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": 3})",
       "pre_tokenizer.behavior"},
      {R"("added_tokens": [{"id": 2, "content": "<t>", "special": "yes"}])", "added_tokens"},
  };
  for (const auto& [section, expect] : cases) {
    const std::string text = "{" + model + ", " + section + "}";
    Result<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJsonText(text, "tok.json");
    ASSERT_FALSE(t.ok()) << text;
    EXPECT_EQ(t.status().message().rfind("tok.json: " + expect, 0), 0u) << t.status().message();
  }
  const Json added = Json::parse(R"({"model": {"vocab": {"a": 0}},)"
                                 R"( "added_tokens": [{"id": 1, "content": "b", "special": 1}]})");
  Result<std::vector<GgufKv>> kvs = TokenizerGgufMetadata(added, "tok.json");
  ASSERT_FALSE(kvs.ok());
  EXPECT_EQ(kvs.status().message().rfind("tok.json: added_tokens.special", 0), 0u)
      << kvs.status().message();
}

// fuzz_tokenizer hangs on these (tests/fuzz/corpus/tokenizer/regress-huge-id.json and
// regress-normalizer-growth.json): a few bytes of tokenizer.json could cost gigabytes, as tables
// sized by a lone huge id or as normalizers whose growth multiplies (six "a" -> 16 x "a" rules:
// 16^6 bytes per "a" of every text encoded). Both are refused at load; moderate gaps and growth
// still load.
TEST(Tokenizer, TinyFilesCannotAskForHugeTables) {
  const std::string big_id = R"({"model": {"vocab": {"a": 16777215}, "merges": []}})";
  Result<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJsonText(big_id, "tok.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message().rfind("tok.json: token id 16777215 is far past", 0), 0u)
      << t.status().message();
  const std::string rule = R"({"type": "Replace", "pattern": {"String": "a"}, "content": ")" +
                           std::string(16, 'a') + R"("})";
  std::string rules = rule;
  for (int i = 1; i < 6; ++i) rules += ", " + rule;
  t = Tokenizer::FromJsonText(R"({"model": {"vocab": {"a": 0}, "merges": []}, "normalizer": )"
                              R"({"type": "Sequence", "normalizers": [)" +
                                  rules + "]}}",
                              "tok.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message().rfind("tok.json: normalizer: its replacements can grow", 0), 0u)
      << t.status().message();

  t = Tokenizer::FromJsonText(
      R"({"model": {"vocab": {"a": 0, "b": 60000}, "merges": []},)"
      R"( "normalizer": {"type": "Sequence",)"
      R"( "normalizers": [{"type": "Replace", "pattern": {"String": "a"}, "content": "aaaaaaaa"},)"
      R"( {"type": "Replace", "pattern": {"String": "b"}, "content": "bbbbbbbb"}]}})",
      "tok.json");
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ((*t)->Encode("ab").size(), 16u);
}

// Random bytes (including invalid UTF-8) must encode without crashing and round-trip exactly: every
// byte is representable through byte fallback.
TEST(Tokenizer, FuzzEncodeDecodeRoundTrip) {
  auto t = Tiny(Json::array({{"a", "b"}, {"b", "c"}, {"a", "a"}}));
  std::mt19937 rng(3);
  const std::string alphabet = "abc <t><tt>\xE2\x96\x81\xC3\xA9\xE6\x97\xA5\x80\xFF\n";
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const size_t n = rng() % 40;
    for (size_t k = 0; k < n; ++k)
      s.push_back(rng() % 3 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng()));
    const std::vector<int> ids = t->Encode(s);
    for (int id : ids) ASSERT_TRUE(id >= 0 && id < t->vocab_size());
    // Valid UTF-8 input round-trips (invalid bytes decode to U+FFFD, as in HF's ByteFallback).
    bool valid = true;
    for (size_t k = 0; k < s.size();) {
      const auto c = static_cast<unsigned char>(s[k]);
      size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      if (len == 0 || k + len > s.size()) {
        valid = false;
        break;
      }
      for (size_t q = 1; q < len; ++q)
        valid &= (static_cast<unsigned char>(s[k + q]) & 0xC0) == 0x80;
      if (!valid) break;
      k += len;
    }
    if (valid) {
      ASSERT_EQ(t->Decode(ids), s);
    }
  }
}

// MaxInputBytesPerToken bounds how much text one token stands for (the CLI caps prompt files by
// it): every encoding of random text respects it, shrinking normalizers raise it, and tokenizers
// that can drop text or fuse it into one <unk> admit no bound.
TEST(Tokenizer, MaxInputBytesPerTokenBoundsEveryEncoding) {
  const Json merges = Json::array({{"a", "a"}, {"aa", "a"}, {"a", "b"}, {"b", "c"}, {"ab", "c"}});
  const Json base = Json::parse(TinyJson(merges));
  auto make = [](const Json& j) {
    Result<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJson(j, "tok.json");
    EXPECT_TRUE(t.ok()) << t.status().message();
    return t.ok() ? std::move(*t) : nullptr;
  };
  Json shrinking = base;  // "aaaa" -> "a" before BPE: four input bytes per normalized one
  shrinking["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       Json::array({base["normalizer"],
                    {{"type", "Replace"}, {"pattern", {{"String", "aaaa"}}}, {"content", "a"}}})}};
  const auto plain = make(base), shrink = make(shrinking);
  ASSERT_TRUE(plain && shrink);
  ASSERT_EQ(plain->MaxInputBytesPerToken(), std::optional<size_t>(6));  // "<0x00>" is longest
  ASSERT_EQ(shrink->MaxInputBytesPerToken(), std::optional<size_t>(24));
  std::mt19937 rng(11);
  const std::string alphabet = "aaaaabc <t><tt>\xC3\xA9\xE6\x97\xA5\xFF\n";
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const size_t n = rng() % 200;
    for (size_t k = 0; k < n; ++k) s.push_back(alphabet[rng() % alphabet.size()]);
    if (i % 10 == 0) s = std::string(n, 'a');  // the most any token here covers
    for (const Tokenizer* t : {plain.get(), shrink.get()}) {
      ASSERT_GE(t->Encode(s).size() * *t->MaxInputBytesPerToken(), s.size()) << s;
    }
  }
  Json deleting = base;
  deleting["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", "b"}}}, {"content", ""}};
  Json removing = base;
  removing["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}};
  Json fusing = base;  // no byte fallback: a run of unknown characters is one fused <unk>
  fusing["model"]["byte_fallback"] = false;
  Json dropping = fusing;  // no <unk> either: unknown characters vanish
  dropping["model"].erase("unk_token");
  for (const Json& j : {deleting, removing, fusing, dropping}) {
    const auto t = make(j);
    ASSERT_TRUE(t);
    EXPECT_EQ(t->MaxInputBytesPerToken(), std::nullopt) << j["normalizer"].dump();
  }
  Json unfused = fusing;  // one <unk> per character: at most 4 bytes each
  unfused["model"]["fuse_unk"] = false;
  EXPECT_EQ(make(unfused)->MaxInputBytesPerToken(), std::optional<size_t>(6));
}

}  // namespace
}  // namespace specula
