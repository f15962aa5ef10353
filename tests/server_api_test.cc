// The OpenAI request parser and response builders of `specula serve`, without sockets: every field
// is typed and range-checked with the field named, stop strings are cut exactly even when split
// across tokens, and mutated bodies never crash the parser.
#include <gtest/gtest.h>

#include <random>
#include <tuple>

#include "specula/server/openai_api.h"

namespace specula::server {
namespace {

std::optional<ApiError> Parse(const std::string& body, Endpoint e = Endpoint::kCompletions,
                              CompletionRequest* out = nullptr) {
  CompletionRequest r;
  return ParseCompletionRequest(body, e, out ? out : &r);
}

TEST(ServerApi, ParsesEveryField) {
  CompletionRequest r;
  ASSERT_FALSE(
      Parse(R"({"prompt":"hi","max_tokens":7,"temperature":0.5,"top_p":0.9,"top_k":20,"min_p":0.1,
                        "seed":-3,"stop":["a","bc"],"stream":true,
                        "stream_options":{"include_usage":true},
                        "speculative":false,"draft_max":5,"n":1,"user":"x","presence_penalty":0})",
            Endpoint::kCompletions, &r));
  EXPECT_EQ(r.prompt, "hi");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(*r.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*r.top_p, 0.9f);
  EXPECT_EQ(r.top_k, 20);
  EXPECT_FLOAT_EQ(*r.min_p, 0.1f);
  EXPECT_EQ(r.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.speculative, false);
  EXPECT_EQ(r.draft_max, 5);

  ASSERT_FALSE(
      Parse(R"({"prompt":[2,5,7],"stop":"x","max_tokens":3.0})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.prompt_ids, (std::vector<int>{2, 5, 7}));
  EXPECT_EQ(r.stop, (std::vector<std::string>{"x"}));
  EXPECT_EQ(r.max_tokens, 3);

  ASSERT_FALSE(Parse(
      R"({"messages":[{"role":"developer","content":"be brief"},
                        {"role":"user","content":[{"type":"text","text":"a"},
                                                  {"type":"text","text":"b"}]},
                        {"role":"assistant","content":null}],"max_completion_tokens":4})",
      Endpoint::kChat, &r));
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.max_tokens, 4);
}

TEST(ServerApi, ErrorsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"prompt":"hi","max_tokens":0})", "max_tokens"},
      {R"({"prompt":"hi","max_tokens":"5"})", "max_tokens"},
      {R"({"prompt":"hi","max_tokens":1e12})", "max_tokens"},
      {R"({"prompt":"hi","temperature":-1})", "temperature"},
      {R"({"prompt":"hi","temperature":null,"top_p":1.5})", "top_p"},
      {R"({"prompt":"hi","top_k":-1})", "top_k"},
      {R"({"prompt":"hi","seed":"7"})", "seed"},
      {R"({"prompt":"hi","stop":""})", "stop"},
      {R"({"prompt":"hi","stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o",)"
       R"("p","q"]})",
       "stop"},
      {R"({"prompt":"hi","stream_options":{"include_usage":1}})", "stream_options.include_usage"},
      {R"({"prompt":"hi","draft_max":33})", "draft_max"},
      {R"({"prompt":"hi","n":3})", "n"},
      {R"({"prompt":"hi","best_of":2})", "best_of"},
      {R"({"prompt":"hi","echo":true})", "echo"},
      {R"({"prompt":"hi","logprobs":true})", "logprobs"},
      {R"({"prompt":"hi","frequency_penalty":0.5})", "frequency_penalty"},
      {R"({"prompt":"hi","suffix":"x"})", "suffix"},
      {R"({"prompt":"hi","logit_bias":{"5":1}})", "logit_bias"},
      {R"({"prompt":["a","b"]})", "prompt"},
      {R"({"prompt":[1,-2]})", "prompt"},
      {R"({"prompt":7})", "prompt"},
      {R"({"max_tokens":3})", "prompt"},
  };
  for (const auto& [body, param] : cases) {
    const std::optional<ApiError> e = Parse(body);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->param, param) << body << ": " << e->message;
    EXPECT_FALSE(e->message.empty());
  }
  const std::vector<std::pair<std::string, std::string>> chat = {
      {R"({"messages":"hi"})", "messages"},
      {R"({"messages":[{"content":"hi"}]})", "messages[0].role"},
      {R"({"messages":[{"role":"user","content":5}]})", "messages[0].content"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", "messages[0].content"},
      {R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}})",
       "response_format"},
      {R"({"messages":[{"role":"user","content":"hi"}],"tools":[{}]})", "tools"},
  };
  for (const auto& [body, param] : chat) {
    const std::optional<ApiError> e = Parse(body, Endpoint::kChat);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->param, param) << body << ": " << e->message;
  }
  EXPECT_TRUE(Parse("{\"prompt\": \"hi\"")->param.empty());  // not JSON
  EXPECT_NE(Parse("[]")->message.find("object"), std::string::npos);
}

// fuzz_openai_request crashed on these (tests/fuzz/corpus/openai_request/regress-*): a "type" not
// a string threw from json::value() (a 500 from the server), and the integral float 2^63 was
// converted to int64 (undefined behavior). All are 400s naming the field; int64's extremes parse.
TEST(ServerApi, WrongTypesAndIntegersPastInt64AreFieldErrors) {
  const std::vector<std::tuple<std::string, Endpoint, std::string>> cases = {
      {R"({"messages":[{"role":"user","content":[{"type":["text"],"text":"hi"}]}]})",
       Endpoint::kChat, "messages[0].content"},
      {R"({"messages":[{"role":"user","content":"hi"}],"response_format":{"type":5}})",
       Endpoint::kChat, "response_format"},
      {R"({"prompt":"hi","seed":9223372036854775808.0})", Endpoint::kCompletions, "seed"},
      {R"({"prompt":"hi","seed":9223372036854775808})", Endpoint::kCompletions, "seed"},
      {R"({"prompt":"hi","seed":-9.3e18})", Endpoint::kCompletions, "seed"},
      {R"({"prompt":"hi","max_tokens":2147483648.0})", Endpoint::kCompletions, "max_tokens"},
  };
  for (const auto& [body, endpoint, param] : cases) {
    const std::optional<ApiError> e = Parse(body, endpoint);
    ASSERT_TRUE(e.has_value()) << body;
    EXPECT_EQ(e->status, 400) << body;
    EXPECT_EQ(e->param, param) << body << ": " << e->message;
  }
  CompletionRequest r;
  ASSERT_FALSE(Parse(R"({"prompt":"hi","seed":9223372036854775807,"max_tokens":2147483647.0})",
                     Endpoint::kCompletions, &r));
  EXPECT_EQ(r.seed, uint64_t{0x7FFFFFFFFFFFFFFF});
  EXPECT_EQ(r.max_tokens, 2147483647);
  ASSERT_FALSE(Parse(R"({"prompt":"hi","seed":-9223372036854775808})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.seed, uint64_t{0x8000000000000000});
  ASSERT_FALSE(
      Parse(R"({"prompt":"hi","seed":-9223372036854775808.0})", Endpoint::kCompletions, &r));
  EXPECT_EQ(r.seed, uint64_t{0x8000000000000000});
}

TEST(ServerApi, StopMatcherCutsSplitStopStringsAndHoldsBackOnlyPrefixes) {
  StopMatcher m({"END", "\n\n"});
  std::string out;
  for (const char* piece : {"Hello", " E", "N", "ext", " wo", "rld E", "ND tail"})
    out += m.Push(piece);
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(out, "Hello ENext world ");
  EXPECT_EQ(m.Push("more"), "");
  EXPECT_EQ(m.Flush(), "");

  StopMatcher held({"abc"});
  EXPECT_EQ(held.Push("xxab"), "xx");  // "ab" may start "abc"
  EXPECT_EQ(held.Push("d"), "abd");
  EXPECT_EQ(held.Push("a"), "");
  EXPECT_EQ(held.Flush(), "a");  // generation ended: the tail was text after all
  EXPECT_FALSE(held.stopped());

  StopMatcher none({});
  EXPECT_EQ(none.Push("anything"), "anything");
}

TEST(ServerApi, ResponsesHaveTheOpenAIShape) {
  SpecStats s;
  s.draft_rounds = 2;
  s.drafted = 6;
  s.accepted = 3;
  s.round_tokens = 5;
  s.accepted_per_position = {2, 1, 0};
  const Json spec = SpeculativeBlock(true, 3, s);
  EXPECT_EQ(spec["accepted"], 3);
  EXPECT_DOUBLE_EQ(spec["acceptance_rate"].get<double>(), 0.5);
  EXPECT_EQ(SpeculativeBlock(false, 3, s), Json({{"enabled", false}}));

  const CompletionInfo chat{
      .id = "chatcmpl-1", .model = "m", .created = 5, .endpoint = Endpoint::kChat};
  const Json r = CompletionResponse(chat, "hi", "stop",
                                    {.usage = {.prompt_tokens = 4, .completion_tokens = 2},
                                     .speculative = spec,
                                     .timings = TimingsBlock({.prompt_tokens = 4,
                                                              .cached_tokens = 3,
                                                              .generated_tokens = 2,
                                                              .prefill_s = 0.5,
                                                              .decode_s = 0.25})});
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(r["usage"]["total_tokens"], 6);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(r["timings"]["cache_n"], 3);
  EXPECT_EQ(r["timings"]["prompt_n"], 1);
  EXPECT_DOUBLE_EQ(r["timings"]["prompt_per_second"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(r["timings"]["predicted_ms"].get<double>(), 250.0);
  EXPECT_DOUBLE_EQ(r["timings"]["predicted_per_second"].get<double>(), 4.0);  // after the first
  const std::string first = StreamChunk(chat, {.first = true});
  ASSERT_EQ(first.rfind("data: ", 0), 0u);
  ASSERT_EQ(first.substr(first.size() - 2), "\n\n");
  const Json j = Json::parse(first.substr(6));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  const Json fin =
      Json::parse(StreamFinalChunk(chat, "length",
                                   {.usage = {.prompt_tokens = 1, .completion_tokens = 9},
                                    .speculative = spec,
                                    .timings = TimingsBlock({})})
                      .substr(6));
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(fin["usage"]["completion_tokens"], 9);

  const CompletionInfo text{
      .id = "cmpl-1", .model = "m", .created = 5, .endpoint = Endpoint::kCompletions};
  const Json t =
      Json::parse(StreamChunk(text, {.text = "\xff ok"}).substr(6));  // invalid UTF-8 survives
  EXPECT_EQ(t["object"], "text_completion");
  EXPECT_EQ(t["choices"][0]["text"], "\xEF\xBF\xBD ok");
  EXPECT_NE(ErrorBody({.status = 400, .message = "m", .param = "p"}).find("\"param\":\"p\""),
            std::string::npos);
}

TEST(ServerApi, DeeplyNestedBodiesAreRefusedNotOverflowed) {
  // 100,000 levels in a field whose error message quotes the value (a recursive dump crashed).
  for (const char* field : {"n", "stop", "prompt", "max_tokens"}) {
    const std::string body = std::string(R"({"prompt":"hi",")") + field +
                             "\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
    const std::optional<ApiError> e = Parse(body);
    ASSERT_TRUE(e) << field;
    EXPECT_EQ(e->status, 400);
    EXPECT_NE(e->message.find("nests"), std::string::npos) << e->message;
  }
  // Brackets inside strings do not count; a sane depth parses.
  EXPECT_FALSE(Parse(R"({"prompt":")" + std::string(5000, '[') + R"(","max_tokens":2})"));
  // A long value is shown cut, not whole.
  const std::optional<ApiError> e =
      Parse(R"({"prompt":"hi","max_tokens":[)" + std::string(20000, '1') + "]}");
  ASSERT_TRUE(e);
  EXPECT_LT(e->message.size(), 200u);
}

TEST(ServerApi, NullMaxCompletionTokensLeavesMaxTokens) {
  CompletionRequest r;
  ASSERT_FALSE(Parse(R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":3,
                         "max_completion_tokens":null})",
                     Endpoint::kChat, &r));
  EXPECT_EQ(r.max_tokens, 3);
  ASSERT_FALSE(Parse(R"({"messages":[{"role":"user","content":"hi"}],"max_tokens":3,
                         "max_completion_tokens":5})",
                     Endpoint::kChat, &r));
  EXPECT_EQ(r.max_tokens, 5);
}

TEST(ServerApi, MutatedBodiesNeverCrash) {
  const std::string seed =
      R"({"prompt":[2,3],"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],)"
      R"("max_tokens":5,"temperature":0.7,"stop":["a"],"stream":true,)"
      R"("stream_options":{"include_usage":true},"n":1,"seed":9})";
  std::mt19937 rng(3);
  const std::string alphabet = "{}[]\":,0123456789.-eE truefalsnul\\";
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string b = seed;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % (b.size() + 1);
      switch (rng() % 3) {
        case 0:
          b.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        case 1:
          if (at < b.size()) b.erase(at, 1);
          break;
        default:
          if (at < b.size()) b[at] = alphabet[rng() % alphabet.size()];
          break;
      }
    }
    for (Endpoint e : {Endpoint::kCompletions, Endpoint::kChat}) {
      CompletionRequest r;
      const std::optional<ApiError> err = ParseCompletionRequest(b, e, &r);
      if (err) {
        EXPECT_EQ(err->status, 400);
        EXPECT_FALSE(err->message.empty());
      } else {
        ++accepted;
      }
    }
  }
  EXPECT_GT(accepted, 0);  // the mutations do not only produce garbage
}

}  // namespace
}  // namespace specula::server
