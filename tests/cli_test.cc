// The `specula` binary end to end: outputs, JSON shape, and one-line errors with non-zero exits.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "specula/base/json.h"
#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "specula/runtime/generate.h"
#include "specula/tokenizer/tokenizer.h"
#include "test_util.h"

namespace specula {
namespace {

using test::RunCli;

Json ParseOut(const test::RunResult& r) {
  Result<Json> j = ParseJson(r.out, "stdout");
  EXPECT_TRUE(j.ok()) << r.out << r.err;
  return j.ok() ? *j : Json();
}

TEST(Cli, GenerateJsonMatchesLibraryAndStreamedText) {
  const std::string m = test::MakePreset("e2b-tiny");
  const test::RunResult r =
      RunCli("generate -m " + m + " -p 'the quick brown fox' -n 24 --json -t 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = ParseOut(r);
  for (const char* k : {"prompt_ids", "ids", "text", "stop_reason"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"prompt_tokens", "generated_tokens", "prefill_s", "decode_s",
                        "decode_tok_per_s", "target_forwards"}) {
    EXPECT_TRUE(j["stats"].contains(k)) << k;
  }
  EXPECT_EQ(j["prompt_ids"][0], 2);  // BOS
  const std::vector<int> prompt = j["prompt_ids"].get<std::vector<int>>();
  const std::vector<int> ids = j["ids"].get<std::vector<int>>();
  // Same greedy tokens as the library's plain loop.
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(m);
  ThreadPool pool(1);
  auto cache = (*model)->NewCache(4096);
  GenerateOptions opt;
  opt.max_new_tokens = 24;
  opt.stop_ids = {1, 106};
  Result<GenerateResult> lib = test::ReferenceGeneratePlain(**model, pool, *cache, prompt, opt);
  ASSERT_TRUE(lib.ok());
  EXPECT_EQ(ids, lib->ids);
  EXPECT_EQ(j["stats"]["generated_tokens"], static_cast<int>(ids.size()));
  EXPECT_EQ(j["stats"]["target_forwards"],
            static_cast<int>(ids.size()) + (ids.size() == 24 ? 0 : 1));
  // Streamed text (no --json) equals the JSON text.
  const test::RunResult s = RunCli("generate -m " + m + " -p 'the quick brown fox' -n 24");
  ASSERT_EQ(s.exit_code, 0);
  EXPECT_EQ(s.out, j["text"].get<std::string>() + "\n");
  EXPECT_NE(s.err.find("tok/s"), std::string::npos);
}

TEST(Cli, PromptIdsFileChatAndSampling) {
  const std::string m = test::MakePreset("e2b-tiny");
  test::RunResult r = RunCli("generate -m " + m + " --prompt-ids 2,461,364 -n 5 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseOut(r)["prompt_ids"], Json({2, 461, 364}));
  const std::string f = test::TempDir("cli-file") + "/p.txt";
  std::ofstream(f) << "hello world";
  r = RunCli("generate -m " + m + " -f " + f + " -n 3 --json --chat");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<int> p = ParseOut(r)["prompt_ids"].get<std::vector<int>>();
  ASSERT_GE(p.size(), 6u);
  EXPECT_EQ(p[0], 2);    // <bos>
  EXPECT_EQ(p[1], 105);  // <|turn>user\n ... <turn|>\n <|turn>model\n
  EXPECT_EQ(std::count(p.begin(), p.end(), 105), 2);
  EXPECT_EQ(std::count(p.begin(), p.end(), 106), 1);
  EXPECT_EQ(p.back(), 107);  // "\n" after "model"
  const std::string a =
      RunCli("generate -m " + m +
             " -p hi -n 12 --json --temp 1.5 --top-k 50 --top-p 0.95 --min-p 0.01 --seed 5")
          .out;
  const std::string b =
      RunCli("generate -m " + m +
             " -p hi -n 12 --json --temp 1.5 --top-k 50 --top-p 0.95 --min-p 0.01 --seed 5")
          .out;
  const std::string c =
      RunCli("generate -m " + m +
             " -p hi -n 12 --json --temp 1.5 --top-k 50 --top-p 0.95 --min-p 0.01 --seed 6")
          .out;
  Json ja = Json::parse(a), jb = Json::parse(b), jc = Json::parse(c);
  EXPECT_EQ(ja["ids"], jb["ids"]);  // seeded
  EXPECT_NE(ja["ids"], jc["ids"]);
}

TEST(Cli, SpeculativeGenerateMatchesPlainAndReportsStats) {
  const auto [m, a] = test::MakePair("e2b-tiny", true);
  const std::string trace = test::TempDir("cli-trace") + "/t.jsonl";
  const test::RunResult plain =
      RunCli("generate -m " + m + " -p 'the quick brown fox' -n 60 --json");
  const test::RunResult spec =
      RunCli("generate -m " + m + " -md " + a +
             " --draft-max 4 -p 'the quick brown fox' -n 60 --json --trace " + trace);
  ASSERT_EQ(spec.exit_code, 0) << spec.err;
  const Json p = ParseOut(plain), s = ParseOut(spec);
  EXPECT_EQ(s["ids"], p["ids"]);
  EXPECT_EQ(s["text"], p["text"]);
  const Json& st = s["stats"];
  for (const char* k : {"draft_rounds", "drafted", "accepted", "acceptance_rate",
                        "mean_tokens_per_round", "accepted_per_position"}) {
    EXPECT_TRUE(st.contains(k)) << k;
  }
  EXPECT_EQ(st["draft_max"], 4);
  EXPECT_EQ(st["accepted_per_position"].size(), 4u);
  EXPECT_GT(st["drafted"].get<int>(), 0);
  std::ifstream in(trace);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const Json j = Json::parse(line);
    EXPECT_TRUE(j.contains("pos") && j.contains("drafted") && j.contains("accepted") &&
                j.contains("bonus"));
    ++lines;
  }
  EXPECT_EQ(lines, st["draft_rounds"].get<int>());
  // The assistant's token trees: the same text; every round a tree, traced with its parents and
  // the accepted path.
  const std::string tree_trace = test::TempDir("cli-trace-tree") + "/t.jsonl";
  const test::RunResult tree =
      RunCli("generate -m " + m + " -md " + a + " --drafter tree --tree-width 3 --draft-max 6 " +
             "-p 'the quick brown fox' -n 60 --json --trace " + tree_trace);
  ASSERT_EQ(tree.exit_code, 0) << tree.err;
  const Json t = ParseOut(tree);
  EXPECT_EQ(t["ids"], p["ids"]);
  EXPECT_EQ(t["stats"]["drafter"], "tree");
  EXPECT_GT(t["stats"]["tree_rounds"].get<int>(), 0);
  EXPECT_EQ(t["stats"]["tree_rounds"], t["stats"]["draft_rounds"]);
  std::ifstream tin(tree_trace);
  ASSERT_TRUE(std::getline(tin, line));
  const Json round = Json::parse(line);
  EXPECT_EQ(round["parents"].size(), round["drafted"].size());
  EXPECT_EQ(round["path"].size(), round["accepted"].get<size_t>());
  // Adaptive policy, the assistant's num_assistant_tokens default, and sampling all run.
  const test::RunResult ad =
      RunCli("generate -m " + m + " -md " + a + " --draft-policy adaptive -p hi -n 30 --json");
  ASSERT_EQ(ad.exit_code, 0) << ad.err;
  EXPECT_EQ(ParseOut(ad)["stats"]["draft_max"], 3);  // no num_assistant_tokens: the default
  const test::RunResult smp = RunCli("generate -m " + m + " -md " + a +
                                     " -p hi -n 30 --json --temp 0.8 --top-k 20 --seed 3");
  ASSERT_EQ(smp.exit_code, 0) << smp.err;
}

// --prompt-ids-file decodes many prompts together; each output equals that prompt decoded alone
// (greedy, plain and speculative; sampled with seed + line index), in file order.
TEST(Cli, PromptIdsFileDecodesEachPromptAsAlone) {
  const auto [m, a] = test::MakePair("e2b-tiny", true);
  const std::string dir = test::TempDir("cli-batch");
  const std::vector<std::string> prompts = {"2,461,364", "2,17,99,100,5", "2,8", "2,300,301,302"};
  {
    std::ofstream f(dir + "/p.txt");
    for (const std::string& p : prompts) f << p << "\n\n";  // blank lines are skipped
  }
  const std::string args = " --prompt-ids-file " + dir + "/p.txt -n 12 --parallel 3";
  for (const std::string& mode :
       {std::string(), " -md " + a + " --draft-max 3", std::string(" --temp 0.9 --seed 5")}) {
    const test::RunResult r = RunCli("generate -m " + m + args + mode);
    ASSERT_EQ(r.exit_code, 0) << mode << r.err;
    std::istringstream lines(r.out);
    std::string line;
    size_t i = 0;
    for (; std::getline(lines, line); ++i) {
      ASSERT_LT(i, prompts.size()) << line;
      const Json got = Json::parse(line);
      EXPECT_EQ(got["index"], i);
      const uint64_t seed = 5 + i;
      const std::string alone_args = mode.find("--temp") != std::string::npos
                                         ? " --temp 0.9 --seed " + std::to_string(seed)
                                         : mode;
      const Json alone = ParseOut(RunCli("generate -m " + m + " --prompt-ids " + prompts[i] +
                                         " -n 12 --json" + alone_args));
      EXPECT_EQ(got["ids"], alone["ids"]) << "prompt " << i << mode;
      EXPECT_EQ(got["text"], alone["text"]) << "prompt " << i << mode;
      EXPECT_EQ(got["prompt_ids"], alone["prompt_ids"]);
    }
    EXPECT_EQ(i, prompts.size()) << mode;
  }
  {
    std::ofstream f(dir + "/bad.txt");
    f << "2,3\n2,x\n";
  }
  const std::vector<std::pair<std::string, std::string>> bad = {
      {" --prompt-ids-file " + dir + "/bad.txt", "bad.txt: line 2: 'x' is not a token id"},
      {" --prompt-ids-file " + dir + "/missing.txt", "--prompt-ids-file"},
      {" --prompt-ids-file " + dir + "/p.txt --parallel 0", "--parallel: must be in [1, 256]"},
      {" --prompt-ids-file " + dir + "/p.txt --json", "--json and --trace do not apply"},
      {" --prompt-ids-file " + dir + "/p.txt -p hi", "give exactly one of"},
  };
  for (const auto& [flags, want] : bad) {
    const test::RunResult r = RunCli("generate -m " + m + flags);
    EXPECT_NE(r.exit_code, 0) << flags;
    EXPECT_NE(r.err.find(want), std::string::npos) << flags << ": " << r.err;
  }
}

// `convert` writes GGUF files that `generate` runs like the directories they came from: the same
// ids plain and speculative, with the tokenizer and stop tokens read from the file.
TEST(Cli, ConvertedGgufGeneratesTheSame) {
  const auto [m, a] = test::MakePair("e2b-tiny", true);
  const std::string dir = test::TempDir("cli-gguf");
  const test::RunResult ct = RunCli("convert " + m + " " + dir + "/t.gguf");
  ASSERT_EQ(ct.exit_code, 0) << ct.err;
  const test::RunResult ca =
      RunCli("convert " + a + " " + dir + "/a.gguf --tokenizer " + m + "/tokenizer.json");
  ASSERT_EQ(ca.exit_code, 0) << ca.err;
  const std::string args = " -p 'the quick brown fox' -n 40 --json";
  const Json want = ParseOut(RunCli("generate -m " + m + args));
  const Json plain = ParseOut(RunCli("generate -m " + dir + "/t.gguf" + args));
  const Json spec = ParseOut(
      RunCli("generate -m " + dir + "/t.gguf -md " + dir + "/a.gguf --draft-max 3" + args));
  EXPECT_EQ(plain["ids"], want["ids"]);
  EXPECT_EQ(plain["text"], want["text"]);
  EXPECT_EQ(spec["ids"], want["ids"]);
  EXPECT_GT(spec["stats"]["drafted"].get<int>(), 0);
  const test::RunResult tok = RunCli("tokenize -m " + dir + "/t.gguf -p 'the cat' --json");
  EXPECT_EQ(tok.out, RunCli("tokenize -m " + m + " -p 'the cat' --json").out);
}

// A checkpoint that samples by default (generation_config.json) samples the same way from its
// converted file: same seed, same tokens, and not the greedy ones.
TEST(Cli, ConvertedGgufSamplesAsItsDirectory) {
  const std::string m = test::TempDir("cli-gguf-sampling");
  std::filesystem::copy(test::MakePreset("e2b-tiny"), m, std::filesystem::copy_options::recursive);
  std::ofstream(m + "/generation_config.json")
      << R"({"bos_token_id": 2, "eos_token_id": [1, 106], "do_sample": true, "temperature": 1.5,
            "top_k": 200, "top_p": 0.98})";
  const std::string gguf = test::TempDir("cli-gguf-sampling-out") + "/t.gguf";
  const test::RunResult ct = RunCli("convert " + m + " " + gguf);
  ASSERT_EQ(ct.exit_code, 0) << ct.err;
  const std::string args = " -p 'the quick brown fox' -n 24 --json --seed 7";
  const Json dir = ParseOut(RunCli("generate -m " + m + args));
  const Json file = ParseOut(RunCli("generate -m " + gguf + args));
  const Json greedy = ParseOut(RunCli("generate -m " + m + args + " --temp 0"));
  ASSERT_GE(dir["ids"].size(), 8u);
  EXPECT_NE(dir["ids"], greedy["ids"]);  // the directory does sample
  EXPECT_EQ(file["ids"], dir["ids"]);
  EXPECT_EQ(file["text"], dir["text"]);
}

// Prompt files are read only as far as the context could hold them: an endless device or a file
// too large for the context is refused at once naming the flag and the path; a file that fits is
// read whole, also from a pipe; one that tokenizes past the context gets the context error.
TEST(Cli, PromptFilesAreBoundedByTheContext) {
  const std::string m = test::MakePreset("e2b-tiny");
  const std::string dir = test::TempDir("cli-prompt-file");
  const auto t0 = std::chrono::steady_clock::now();
  test::RunResult r = RunCli("generate -m " + m + " -f /dev/zero -n 1");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("-f/--file: /dev/zero: not a regular file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("raise -c/--ctx-size"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  r = RunCli("tokenize -m " + m + " -f /dev/zero");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("-f/--file: /dev/zero: not a regular file"), std::string::npos) << r.err;
  r = RunCli("generate -m " + m + " -f " + dir + " -n 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("-f/--file: " + dir + ": is a directory"), std::string::npos) << r.err;

  // A piece of the longest vocabulary string is one token: prompts of them pack the most bytes
  // into the context, so they show where a sound byte limit has to lie.
  Result<std::unique_ptr<Tokenizer>> tok = Tokenizer::LoadFile(m + "/tokenizer.json");
  ASSERT_TRUE(tok.ok());
  std::string longest;
  for (int id = 0; id < (*tok)->vocab_size(); ++id) {
    const std::string& p = (*tok)->Piece(id);
    if (p.size() > longest.size() && (*tok)->Encode(p) == std::vector<int>{id}) longest = p;
  }
  ASSERT_GE(longest.size(), 8u);
  const int ctx = 64;
  auto write = [&](const std::string& name, int pieces) {
    std::string text;
    for (int i = 0; i < pieces; ++i) text += longest;
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  };
  const std::string c = " -n 1 --json -c " + std::to_string(ctx);
  const std::string fits = write("fits.txt", ctx - 2);  // + BOS: one position left
  r = RunCli("generate -m " + m + " -f " + fits + c);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseOut(r)["stats"]["prompt_tokens"], ctx - 1);
  r = RunCli("generate -m " + m + " -f /dev/stdin" + c + " < " + fits);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseOut(r)["stats"]["prompt_tokens"], ctx - 1);
  const std::string full = write("full.txt", ctx - 1);
  r = RunCli("generate -m " + m + " -f " + full + c);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("-f/--file: " + full + ": prompt: 64 tokens do not fit the context of 64"),
            std::string::npos)
      << r.err;
  const std::string big = write("big.txt", 100000);
  r = RunCli("generate -m " + m + " -f " + big + c);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("-f/--file: " + big + ": " + std::to_string(100000 * longest.size()) +
                       " bytes, past the limit"),
            std::string::npos)
      << r.err;
}

TEST(Cli, TokenizeAndInspect) {
  const std::string m = test::MakePreset("31b-tiny");
  test::RunResult r = RunCli("tokenize -m " + m + " -p 'the cat' --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = ParseOut(r);
  EXPECT_FALSE(j["ids"].empty());
  EXPECT_NE(j["ids"][0], 2);  // no BOS
  r = RunCli("tokenize -m " + m + " -p 'the cat'");
  EXPECT_EQ(r.out.find(','), r.out.find_first_of(",")) << r.out;
  r = RunCli("inspect " + m);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("attention_k_eq_v      true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("BF16"), std::string::npos);
}

TEST(Cli, InspectDescribesAssistantsAndTheirFit) {
  const auto [m, a] = test::MakePair("e2b-tiny", true);
  test::RunResult r = RunCli("inspect " + a);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("(MTP assistant)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("head                  centroid: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("I64"), std::string::npos) << r.out;  // token_ordering
  // With its target: the layers it reads are the target's last KV-owning ones of each type.
  r = RunCli("inspect " + a + " -m " + m);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("fits; reads its layer 5 (sliding) and layer 4 (full)"), std::string::npos)
      << r.out;
  // The same through GGUF files.
  const std::string dir = test::TempDir("cli-inspect");
  ASSERT_EQ(RunCli("convert " + m + " " + dir + "/t.gguf").exit_code, 0);
  ASSERT_EQ(
      RunCli("convert " + a + " " + dir + "/a.gguf --tokenizer " + m + "/tokenizer.json").exit_code,
      0);
  r = RunCli("inspect " + dir + "/a.gguf -m " + dir + "/t.gguf");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("fits; reads its layer 5 (sliding) and layer 4 (full)"), std::string::npos)
      << r.out;
  // A target it does not fit: one line naming the mismatch.
  const std::string other = test::MakePreset("31b-tiny");
  r = RunCli("inspect " + a + " -m " + other);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("assistant does not fit the target"), std::string::npos) << r.err;
  r = RunCli("inspect " + m + " -m " + other);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("-m: only an assistant"), std::string::npos) << r.err;
}

TEST(Cli, BenchReportsReplayCeilingSamplingAndTimeSplit) {
  const auto [m, a] = test::MakePair("e2b-tiny", true);
  // Greedy replay: every draft accepted, K + 1 tokens per pass (the last round may be shorter),
  // and the decode time split into shares that sum to one.
  test::RunResult r =
      RunCli("bench -m " + m + " --drafter replay --draft-max 1,3 -n 24 --reps 1 -t 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Json j = ParseOut(r);
  EXPECT_EQ(j["sampling"]["temperature"], 0.0);
  // Start-up: opening the target, then the first (cold) prefill, adding up to the first token.
  const Json& up = j["startup"];
  EXPECT_GT(up["load_s"].get<double>(), 0.0);
  EXPECT_GT(up["first_prefill_s"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(up["time_to_first_token_s"].get<double>(),
                   up["load_s"].get<double>() + up["first_prefill_s"].get<double>());
  ASSERT_EQ(j["results"].size(), 3u);
  for (const Json& row : j["results"]) {
    if (row["mode"] != "spec") continue;
    const int k = row["draft_max"].get<int>();
    EXPECT_EQ(row["acceptance_rate"], 1.0);
    EXPECT_GT(row["tokens_per_forward"].get<double>(), k + 0.5);
    const double t = row["time_in_target"].get<double>(), d = row["time_in_drafter"].get<double>(),
                 o = row["time_other"].get<double>();
    EXPECT_GT(t, 0.0);
    EXPECT_GE(d, 0.0);
    EXPECT_GE(o, 0.0);
    EXPECT_NEAR(t + d + o, 1.0, 1e-9);
  }
  // Sampled: the replayed plain draws are drafts with q = 1, accepted with probability p < 1.
  r = RunCli("bench -m " + m + " -md " + a +
             " --drafter replay --draft-max 3 -n 48 --reps 1 -t 1 --temp 0.7 --seed 5 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = ParseOut(r);
  EXPECT_NEAR(j["sampling"]["temperature"].get<double>(), 0.7, 1e-6);
  EXPECT_LT(j["results"][1]["acceptance_rate"].get<double>(), 1.0);
  // Batched greedy replay: still every draft accepted.
  r = RunCli("bench -m " + m + " --drafter replay --draft-max 2 --batch 2 -n 16 --reps 1 -t 1 " +
             "--json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = ParseOut(r);
  EXPECT_EQ(j["results"][1]["acceptance_rate"], 1.0);
  EXPECT_EQ(j["results"][1]["batch"], 2);
  r = RunCli("bench -m " + m + " --drafter replay --temp -1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--temp"), std::string::npos) << r.err;
}

TEST(Cli, ScoreAgreesWithGenerate) {
  // score's rows are the logits generate decodes from: row i's best token is greedy token i + 1,
  // its log-probabilities are those of the next ids, and text gets BOS as in generate.
  const std::string m = test::MakePreset("e2b-tiny");
  const Json gen = ParseOut(RunCli("generate -m " + m + " -p 'the quick brown fox' -n 20 --json"));
  std::vector<int> seq = gen["prompt_ids"].get<std::vector<int>>();
  const std::vector<int> ids = gen["ids"].get<std::vector<int>>();
  const size_t P = seq.size();
  seq.insert(seq.end(), ids.begin(), ids.end());
  std::string list;
  for (int id : seq) {
    if (!list.empty()) list += ',';
    list += std::to_string(id);
  }
  const test::RunResult r = RunCli("score -m " + m + " --prompt-ids " + list + " --top 3 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Json j = ParseOut(r);
  ASSERT_EQ(j["rows"].size(), seq.size());
  EXPECT_EQ(j["scored_tokens"], seq.size() - 1);
  double nll = 0;
  for (size_t i = 0; i < seq.size(); ++i) {
    const Json& row = j["rows"][i];
    ASSERT_EQ(row["top"].size(), 3u);
    EXPECT_GE(row["top"][0][1].get<double>(), row["top"][1][1].get<double>());
    if (i + 1 < seq.size()) {
      EXPECT_EQ(row["next"], seq[i + 1]);
      EXPECT_LE(row["logprob"].get<double>(), 0.0);
      nll -= row["logprob"].get<double>();
    } else {
      EXPECT_FALSE(row.contains("next"));
    }
    if (i + 1 >= P && i + 1 < seq.size()) {
      EXPECT_EQ(row["top"][0][0], seq[i + 1]) << i;
    }
  }
  EXPECT_NEAR(j["mean_nll"].get<double>(), nll / static_cast<double>(seq.size() - 1), 1e-9);
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(j["mean_nll"].get<double>()), 1e-6);
  // Text: BOS + the tokenizer's ids, as generate; a plain run prints one summary line.
  const Json t = ParseOut(RunCli("score -m " + m + " -p 'the quick brown fox' --json"));
  EXPECT_EQ(t["ids"], gen["prompt_ids"]);
  const test::RunResult plain = RunCli("score -m " + m + " -p 'the quick brown fox'");
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_NE(plain.out.find("tokens scored: mean NLL"), std::string::npos) << plain.out;
}

TEST(Cli, BadInputIsOneLineErrorAndNonZeroExit) {
  const std::string m = test::MakePreset("e2b-tiny");
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"generate -m /nonexistent -p hi", "/nonexistent"},
      {"generate -m " + m + " -p hi --bogus-flag", "bogus-flag"},
      {"generate -m " + m, "exactly one of -p/--prompt"},
      {"generate -m " + m + " -p ''", "empty prompt"},
      {"generate -m " + m + " --prompt-ids 2,99999", "token id 99999 is out of range"},
      {"generate -m " + m + " --prompt-ids 2,x", "--prompt-ids: 'x' is not a token id"},
      {"generate -m " + m + " --prompt-ids 2,,3", "empty entry"},
      {"generate -m " + m + " -p hi -n -4", "-n/--n-predict"},
      {"generate -m " + m + " -p hi --temp -1", "--temp"},
      {"generate -m " + m + " -p hi --top-p 7", "--top-p"},
      {"generate -m " + m + " -p hi -n abc", "abc"},
      {"generate -m " + m + " -p 'the quick brown fox jumps over' -c 8",
       "do not fit the context of 8"},
      {"generate -m " + m + " -f /nonexistent.txt", "/nonexistent.txt"},
      {"tokenize -m " + m, "-p/--prompt"},
      {"inspect /nonexistent", "/nonexistent"},
      {"frobnicate", "unknown command 'frobnicate'"},
      {"make-random " + test::TempDir("cli-bad") + " --preset nope", "unknown preset 'nope'"},
      {"generate -m " + m + " -md /nonexistent -p hi", "/nonexistent/config.json"},
      {"generate -m " + m + " -md " + m + " -p hi", "not a Gemma 4 assistant"},
      {"generate -m " + m + " -md " + test::MakePair("31b-tiny", false).second + " -p hi",
       "assistant does not fit the target"},
      {"generate -m " + m + " -md " + test::MakePair("e2b-tiny", true).second +
           " --draft-max 0 -p hi",
       "--draft-max: must be in [1, 32]"},
      {"generate -m " + m + " -md " + test::MakePair("e2b-tiny", true).second +
           " --draft-max 100000 -p hi",
       "--draft-max"},
      {"generate -m " + m + " -md " + test::MakePair("e2b-tiny", true).second +
           " --draft-policy greedy -p hi",
       "--draft-policy: expected fixed, adaptive or auto"},
      {"generate -m " + m + " --draft-max 4 -p hi", "need a drafter"},
      {"generate -m " + m + " --trace /tmp/x.jsonl -p hi", "--trace: needs a drafter"},
      {"generate -m " + m + " --drafter nope -p hi",
       "--drafter: expected model, lookup, hybrid or tree (got 'nope')"},
      {"generate -m " + m + " --drafter hybrid -p hi", "--drafter hybrid: needs an MTP assistant"},
      {"generate -m " + m + " --drafter tree -p hi", "--drafter tree: needs an MTP assistant"},
      {"generate -m " + m + " --drafter lookup --lookup-min 0 -p hi", "min_n: must be >= 1"},
      {"generate -m " + m + " --drafter lookup --lookup-min 3 --lookup-max 2 -p hi",
       "--lookup-min/--lookup-max"},
      {"generate -m " + m + " --drafter lookup --lookup-max 65 -p hi",
       "--lookup-max: must be <= 64"},
      {"generate -m " + m + " --drafter lookup --tree-width 0 -p hi", "--tree-width"},
      {"bench -m " + m + " --drafter tree", "--drafter tree: needs -md/--draft DIR"},
      {"bench -m " + m + " --drafter replay --tree-width 9",
       "--tree-width/--tree-depth: tree width: 9 is outside [1, 8]"},
      {"serve -m " + m + " --drafter bogus", "--drafter: expected model, lookup, hybrid or tree"},
      {"generate -md " + test::MakePair("e2b-tiny", true).second + " -p hi", "--model is required"},
      {"serve -m /nonexistent", "/nonexistent/config.json"},
      {"serve -m " + m + " --port 99999", "--port: must be in [0, 65535]"},
      {"serve -m " + m + " --parallel 0", "--parallel: must be in [1, 256]"},
      {"serve -m " + m + " --queue -1", "--queue"},
      {"serve -m " + m + " --draft-max 33", "--draft-max: must be in [1, 32]"},
      {"serve -m " + m + " -md /nonexistent", "/nonexistent/config.json"},
      {"serve -m " + m + " --host 203.0.113.7 --port 0", "cannot listen on 203.0.113.7"},
      {"serve -m " + m + " --bogus", "bogus"},
      {"convert " + m + " " + test::TempDir("cli-bad") + "/x.bin",
       "expected a path ending in .gguf"},
      {"convert " + test::MakePair("e2b-tiny", true).second + " " + test::TempDir("cli-bad") +
           "/a.gguf",
       "has no tokenizer.json; pass the target's"},
      {"convert /nonexistent " + test::TempDir("cli-bad") + "/x.gguf", "/nonexistent/config.json"},
      {"generate -m /nonexistent.gguf -p hi", "/nonexistent.gguf"},
      {"generate -m " + m + "/config.json.gguf -p hi", "config.json.gguf"},
      {"score -m " + m, "exactly one of -p/--prompt"},
      {"score -m " + m + " -p hi --top -1", "--top: must be in [0, 1000]"},
      {"score -m " + m + " --prompt-ids 2,99999", "token id 99999 is out of range"},
      {"score -m " + m + " --prompt-ids 2,,3", "--prompt-ids: empty entry in '2,,3'"},
      {"score -m " + m + " -p 'the quick brown fox jumps' -c 4", "do not fit the context of 4"},
      {"score -m /nonexistent -p hi", "/nonexistent"},
  };
  for (const Case& c : cases) {
    const test::RunResult r = RunCli(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_LT(r.exit_code, 128) << "crashed: " << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  }
  // A corrupt tokenizer.json is named.
  const std::string dir = test::TempDir("cli-badtok");
  std::system(("cp " + m + "/* " + dir + "/").c_str());
  std::ofstream(dir + "/tokenizer.json") << "{\"model\": ";
  const test::RunResult r = RunCli("generate -m " + dir + " -p hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("tokenizer.json: malformed JSON"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace specula
