#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "specula/base/thread_pool.h"
#include "specula/runtime/sampler.h"
#include "specula/spec/batch_engine.h"

namespace specula::test {

std::string TempDir(const std::string& name) {
  const std::string root = SPECULA_TEST_TMP;
  ::mkdir(root.c_str(), 0755);
  const std::string dir = root + "/" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

std::string MakeCheckpoint(const std::string& name, const RandomTargetSpec& spec) {
  static std::map<std::string, std::string> made;
  auto it = made.find(name);
  if (it != made.end()) return it->second;
  const std::string dir = TempDir("ckpt-" + name + "-" + std::to_string(::getpid()));
  Status s = WriteRandomTarget(spec, dir);
  EXPECT_TRUE(s.ok()) << s.message();
  made[name] = dir;
  return dir;
}

std::string MakePreset(const std::string& preset, DType dtype) {
  Result<RandomTargetSpec> spec = TargetPreset(preset);
  EXPECT_TRUE(spec.ok());
  spec->dtype = dtype;
  return MakeCheckpoint(preset + "-" + std::string(DTypeName(dtype)), *spec);
}

std::pair<std::string, std::string> MakePair(const std::string& preset, bool centroid_head) {
  const std::string target = MakePreset(preset);
  const std::string dir = target + (centroid_head ? "-asst-centroid" : "-asst-dense");
  static std::map<std::string, bool> made;
  if (!made[dir]) {
    RandomAssistantSpec a = AssistantPresetFor(preset);
    a.centroid_head = centroid_head;
    Status s = WriteRandomAssistant(a, *TargetPreset(preset), dir);
    EXPECT_TRUE(s.ok()) << s.message();
    made[dir] = true;
  }
  return {target, dir};
}

RunResult RunCli(const std::string& args) {
  static int counter = 0;
  const std::string base = std::string(SPECULA_TEST_TMP) + "/cli-" + std::to_string(::getpid()) +
                           "-" + std::to_string(counter++);
  ::mkdir(SPECULA_TEST_TMP, 0755);
  const std::string cmd =
      std::string(SPECULA_BIN) + " " + args + " >" + base + ".out 2>" + base + ".err";
  const int rc = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  std::ifstream o(base + ".out"), e(base + ".err");
  std::stringstream so, se;
  so << o.rdbuf();
  se << e.rdbuf();
  r.out = so.str();
  r.err = se.str();
  return r;
}

LoadedPair LoadPair(const std::string& preset, bool centroid_head) {
  const auto [tdir, adir] = MakePair(preset, centroid_head);
  LoadedPair p;
  Result<std::unique_ptr<Gemma4Model>> t = Gemma4Model::Load(tdir);
  EXPECT_TRUE(t.ok()) << t.status().message();
  if (!t.ok()) return p;
  p.target = std::move(*t);
  Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(adir, *p.target);
  EXPECT_TRUE(a.ok()) << a.status().message();
  if (a.ok()) p.assistant = std::move(*a);
  return p;
}

Result<GenerateResult> ReferenceGeneratePlain(Gemma4Model& model, ThreadPool& pool, KvCache& cache,
                                              std::span<const int> prompt,
                                              const GenerateOptions& options) {
  const int vocab = model.config().vocab_size;
  if (Status s = ValidatePrompt(prompt, vocab, cache.context()); !s.ok()) return s;
  GenerateResult res;
  res.stats.prompt_tokens = static_cast<int>(prompt.size());
  if (options.max_new_tokens == 0) return res;
  Sampler sampler(options.sampling);
  ForwardOutput out;
  if (Status s = model.Forward({.ids = prompt, .cache = &cache}, pool, &out); !s.ok()) return s;
  for (int token = sampler.Sample(out.logits.data(), vocab);;) {
    res.ids.push_back(token);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) !=
        options.stop_ids.end()) {
      res.stop = StopReason::kStopToken;
      break;
    }
    if (static_cast<int>(res.ids.size()) >= options.max_new_tokens) {
      res.stop = StopReason::kLength;
      break;
    }
    if (cache.length() >= cache.context()) {
      res.stop = StopReason::kContext;
      break;
    }
    const int one[1] = {token};
    if (Status s = model.Forward({.ids = one, .cache = &cache}, pool, &out); !s.ok()) return s;
    token = sampler.Sample(out.logits.data(), vocab);
  }
  res.stats.generated_tokens = static_cast<int>(res.ids.size());
  return res;
}

std::string ParamName(std::string name) {
  for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name;
}

std::vector<int> RandomIds(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids = {2};
  while (static_cast<int>(ids.size()) < n)
    ids.push_back(static_cast<int>(rng() % static_cast<uint32_t>(vocab)));
  return ids;
}

void ExpectSeededSameAloneAndBatched(Gemma4Model& target, const SeededBatchCheck& check) {
  const auto run = [&](std::span<const std::vector<int>> batch) {
    ThreadPool pool(2);
    std::unique_ptr<Drafter> drafter = check.make_drafter();
    BatchEngine engine(target, drafter.get(), pool, {.max_running = 4, .context = 256});
    std::vector<std::vector<int>> out(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      SeqOptions o;
      o.base.max_new_tokens = check.max_new_tokens;
      o.base.sampling = {.temperature = 1.0f,
                         .top_k = 8,
                         .top_p = 1.0f,
                         .min_p = 0.0f,
                         .seed = static_cast<uint64_t>(5 + batch[i][1])};
      o.draft_max = check.draft_max;
      EXPECT_TRUE(engine
                      .Add(batch[i], o, nullptr,
                           [&out, i](const SpecResult& r, const Status&) { out[i] = r.gen.ids; })
                      .ok());
    }
    while (!engine.idle()) engine.Step();
    return out;
  };
  const std::vector<std::vector<int>> together = run(check.prompts);
  for (size_t i = 0; i < check.prompts.size(); ++i) {
    EXPECT_EQ(run({&check.prompts[i], 1})[0], together[i]) << "prompt " << i;
    EXPECT_EQ(together[i].size(), static_cast<size_t>(check.max_new_tokens));
  }
}

}  // namespace specula::test
