// `specula generate`: llama.cpp-style flags, streamed text on stdout, timing on stderr, or one JSON
// object on stdout with --json.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/base/sysinfo.h"
#include "specula/base/thread_pool.h"
#include "specula/formats/generation_config.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/runtime/generate.h"
#include "specula/runtime/prompt.h"
#include "specula/spec/batch_engine.h"
#include "specula/spec/draft_policy.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/spec_loop.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/commands.h"

namespace specula::cli {
namespace {

struct GenerateFlags {
  std::string model, prompt, file, prompt_ids, prompt_ids_file;
  int n_predict = 128;
  int parallel = 8;
  std::optional<float> temp, top_p, min_p;
  std::optional<int> top_k;
  uint64_t seed = 0;
  int threads = 0;
  int ctx_size = 0;
  bool chat = false;
  bool json = false;
  std::string draft, draft_policy = "fixed", trace;
  std::optional<int>
      draft_max;  // unset: the assistant's num_assistant_tokens, else kDefaultDraftMax
};

// Measured on E2B-shaped pairs with the replay drafter (README): K = 3 is where the verify cost
// and the acceptance of trained drafters balance on CPU.
constexpr int kDefaultDraftMax = 3;
constexpr int kMaxDraftMax = 32;

// Reads the -f/--file prompt, but never more of it than a context of `context` tokens can hold:
// each token stands for at most tok.MaxInputBytesPerToken() bytes of text, so a longer file
// encodes to more than `context` tokens and would be refused after tokenizing anyway. Stopping at
// that bound keeps a huge file or an endless device (/dev/zero) from being read into memory.
Result<std::string> ReadPromptFile(const std::string& path, const Tokenizer& tok, int context) {
  const std::optional<size_t> per_token = tok.MaxInputBytesPerToken();
  const uint64_t fit =
      per_token ? static_cast<uint64_t>(context) * *per_token : kMaxPromptFileBytes;
  const uint64_t limit = std::min(fit, kMaxPromptFileBytes);
  const std::string why =
      limit < kMaxPromptFileBytes
          ? "a context of " + std::to_string(context) + " tokens holds at most " +
                std::to_string(limit) + " bytes of text with this tokenizer, at most " +
                std::to_string(*per_token) + " bytes per token; raise -c/--ctx-size"
          : "prompt files are read up to " + std::to_string(kMaxPromptFileBytes) + " bytes";
  Result<std::string> text = ReadFileAtMost(path, limit, why);
  if (!text.ok()) return text.status().WithContext("-f/--file");
  return text;
}

// --prompt-ids-file: one comma-separated id list per line (blank lines are skipped), every one
// checked before anything runs; errors name the line.
Result<std::vector<std::vector<int>>> ReadPromptIdsFile(const std::string& path, int vocab,
                                                        int context) {
  const std::string flag = "--prompt-ids-file: " + path;
  Result<std::string> text = ReadFileAtMost(
      path, kMaxPromptFileBytes,
      "prompt files are read up to " + std::to_string(kMaxPromptFileBytes) + " bytes");
  if (!text.ok()) return text.status().WithContext("--prompt-ids-file");
  std::vector<std::vector<int>> prompts;
  std::stringstream lines(*text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (line.back() == '\r') line.pop_back();
    const std::string where = flag + ": line " + std::to_string(n);
    Result<std::vector<int>> ids = ParseTokenIds(line, where);
    if (!ids.ok()) return ids.status();
    if (Status s = ValidatePrompt(*ids, vocab, context); !s.ok()) {
      return Error(where + ": " + s.message() +
                   (static_cast<int>(ids->size()) >= context ? " (raise -c/--ctx-size)" : ""));
    }
    prompts.push_back(std::move(*ids));
  }
  if (prompts.empty()) return Error(flag + ": no prompts (one comma-separated id list per line)");
  return prompts;
}

struct BatchJob {
  const std::vector<std::vector<int>>& prompts;
  const GenerateOptions& opt;
  int parallel = 8;
  int context = 0;
  int draft_max = 0;  // 0: plain decoding
  const std::string& draft_policy;
  const Tokenizer* tok = nullptr;  // null: no "text" field
};

// Decodes every prompt of --prompt-ids-file through the continuous-batching engine (up to
// --parallel at once; each output equals decoding its prompt alone) and prints one JSON line per
// prompt, in file order. A sampled prompt i uses seed + i.
int RunBatch(const BatchJob& job, TargetModel& model, Drafter* drafter, ThreadPool& pool) {
  const size_t n = job.prompts.size();
  std::vector<std::unique_ptr<DraftPolicy>> policies(n);
  std::vector<SpecResult> results(n);
  Status failure;
  BatchEngine engine(
      model, drafter, pool,
      {.max_running = job.parallel, .context = job.context, .prefill_rows = job.opt.prefill_chunk});
  const double t0 = NowSeconds();
  for (size_t i = 0; i < n; ++i) {
    SeqOptions so{.base = job.opt, .draft_max = job.draft_max};
    so.base.sampling.seed += i;
    if (job.draft_max > 0) {
      Result<std::unique_ptr<DraftPolicy>> p = MakeDraftPolicy(job.draft_policy, job.draft_max);
      if (!p.ok()) return Fail(p.status().message());
      policies[i] = std::move(*p);
      so.policy = policies[i].get();
    }
    Result<int> id = engine.Add(
        job.prompts[i], so, [](int) {},
        [&, i](const SpecResult& r, const Status& st) {
          results[i] = r;
          if (!st.ok() && failure.ok()) failure = st;
        });
    if (!id.ok()) return Fail(id.status().message());
  }
  while (!engine.idle()) engine.Step();
  if (!failure.ok()) return Fail(failure.message());
  const double seconds = NowSeconds() - t0;
  SpecStats spec;
  for (size_t i = 0; i < n; ++i) {
    const SpecResult& r = results[i];
    spec.Add(r.spec);
    nlohmann::ordered_json out = {{"index", i}, {"prompt_ids", job.prompts[i]}, {"ids", r.gen.ids}};
    if (job.tok) {
      std::vector<int> shown;
      for (int t : r.gen.ids) {
        if (!IsStop(job.opt.stop_ids, t)) shown.push_back(t);
      }
      out["text"] = job.tok->Decode(shown);
    }
    out["stop_reason"] = StopReasonName(r.gen.stop);
    std::cout << out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  }
  std::cout << std::flush;
  if (job.draft_max > 0) {
    std::fprintf(stderr, "speculative: K=%d (%s), %ld/%ld drafts accepted (%.1f%%)\n",
                 job.draft_max, job.draft_policy.c_str(), spec.accepted, spec.drafted,
                 100.0 * spec.acceptance_rate());
  }
  std::fprintf(stderr,
               "%zu prompts, up to %d at once: %ld tokens generated in %.3f s (%.1f tok/s with "
               "prefill) | threads %d, kernels %s\n",
               n, job.parallel, spec.generated, seconds,
               seconds > 0 ? static_cast<double>(spec.generated) / seconds : 0.0,
               pool.num_threads(), BestKernels().target);
  return 0;
}

int Run(const GenerateFlags& f, bool have_prompt, bool have_file, bool have_ids,
        bool have_ids_file) {
  if (int(have_prompt) + int(have_file) + int(have_ids) + int(have_ids_file) != 1) {
    return Fail(
        "generate: give exactly one of -p/--prompt, -f/--file, --prompt-ids, --prompt-ids-file");
  }
  if (f.parallel < 1 || f.parallel > 256)
    return Fail("--parallel: must be in [1, 256] (got " + std::to_string(f.parallel) + ")");
  if (have_ids_file && (f.json || !f.trace.empty()))
    return Fail("--prompt-ids-file: prints JSON lines already; --json and --trace do not apply");
  if (f.n_predict < 0)
    return Fail("-n/--n-predict: must be >= 0 (got " + std::to_string(f.n_predict) + ")");
  if (Status s = CheckThreadsAndContext(f.threads, f.ctx_size); !s.ok()) return Fail(s.message());
  if (f.draft_max && (*f.draft_max < 1 || *f.draft_max > kMaxDraftMax)) {
    return Fail("--draft-max: must be in [1, " + std::to_string(kMaxDraftMax) + "] (got " +
                std::to_string(*f.draft_max) + ")");
  }
  if (f.draft.empty() && (f.draft_max || f.draft_policy != "fixed")) {
    return Fail("--draft-max/--draft-policy: need a drafter (-md/--draft DIR)");
  }
  if ((have_ids || have_ids_file) && f.chat)
    return Fail("--chat: cannot be combined with --prompt-ids or --prompt-ids-file");

  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(f.model);
  if (!model.ok()) return Fail(model.status().message());
  const Gemma4Config& cfg = (*model)->config();
  Result<GenerationConfig> gen = GenerationConfig::LoadFromDir(f.model);
  if (!gen.ok()) return Fail(gen.status().message());
  // The tokenizer is needed for text in and out; with --prompt-ids and --json it is optional.
  std::unique_ptr<Tokenizer> tok;
  const bool ids_in = have_ids || have_ids_file;
  if (!ids_in || IsGgufPath(f.model) || FileExists(f.model + "/tokenizer.json")) {
    Result<std::unique_ptr<Tokenizer>> t = LoadCheckpointTokenizer(f.model);
    if (!t.ok()) return Fail(t.status().message());
    tok = std::move(*t);  // ids the model cannot embed are rejected by ValidatePrompt
  }

  const int context = ContextSize(f.ctx_size, cfg.max_position_embeddings);
  std::vector<int> prompt;
  std::vector<std::vector<int>> batch;
  if (have_ids_file) {
    Result<std::vector<std::vector<int>>> b =
        ReadPromptIdsFile(f.prompt_ids_file, cfg.vocab_size, context);
    if (!b.ok()) return Fail(b.status().message());
    batch = std::move(*b);
  } else if (have_ids) {
    Result<std::vector<int>> ids = ParseTokenIds(f.prompt_ids, "--prompt-ids");
    if (!ids.ok()) return Fail(ids.status().message());
    prompt = std::move(*ids);
  } else {
    std::string text = f.prompt;
    if (have_file) {
      Result<std::string> t = ReadPromptFile(f.file, *tok, context);
      if (!t.ok()) return Fail(t.status().message());
      text = std::move(*t);
    }
    if (text.empty()) return Fail("prompt: empty prompt");
    prompt = f.chat ? EncodeChatPrompt(*tok, {{"user", text}}) : EncodeTextPrompt(*tok, *gen, text);
  }

  GenerateOptions opt;
  opt.max_new_tokens = f.n_predict;
  opt.stop_ids = StopIds(*gen, tok.get(), f.chat);
  opt.sampling = ResolveSampling(*gen, {.temperature = f.temp,
                                        .top_p = f.top_p,
                                        .min_p = f.min_p,
                                        .top_k = f.top_k,
                                        .seed = f.seed});
  const SamplingParams& sp = opt.sampling;
  if (Status s = sp.Validate(); !s.ok()) return Fail(s.message());

  Status valid = have_ids_file ? OkStatus() : ValidatePrompt(prompt, cfg.vocab_size, context);
  if (!valid.ok()) {
    const Status& s = valid;
    return Fail((have_file ? "-f/--file: " + f.file + ": " : std::string()) + s.message() +
                (static_cast<int>(prompt.size()) >= context ? " (raise -c/--ctx-size)" : ""));
  }
  // The assistant, when given, is validated against the target before anything runs.
  Result<std::unique_ptr<Gemma4Assistant>> a = LoadAssistant(f.draft, **model);
  if (!a.ok()) return Fail(a.status().message());
  std::unique_ptr<Gemma4Assistant> assistant = std::move(*a);
  int draft_max = f.draft_max.value_or(0);
  std::unique_ptr<DraftPolicy> policy;
  if (assistant) {
    if (!f.draft_max) {
      Result<GenerationConfig> ag = GenerationConfig::LoadFromDir(f.draft);
      if (!ag.ok()) return Fail(ag.status().message());
      draft_max = ag->num_assistant_tokens.value_or(kDefaultDraftMax);
      draft_max = std::clamp(draft_max, 1, kMaxDraftMax);
    }
    Result<std::unique_ptr<DraftPolicy>> p = MakeDraftPolicy(f.draft_policy, draft_max);
    if (!p.ok()) return Fail(p.status().message());
    policy = std::move(*p);
  }
  std::ofstream trace;
  if (!f.trace.empty()) {
    if (!assistant) return Fail("--trace: needs a drafter (-md/--draft DIR)");
    trace.open(f.trace, std::ios::trunc);
    if (!trace) return Fail("--trace: cannot create '" + f.trace + "'");
  }
  ThreadPool pool(ThreadCount(f.threads));
  if (have_ids_file) {
    std::optional<MtpDrafter> drafter;
    if (assistant) drafter.emplace(*assistant);
    return RunBatch({.prompts = batch,
                     .opt = opt,
                     .parallel = f.parallel,
                     .context = context,
                     .draft_max = assistant ? draft_max : 0,
                     .draft_policy = f.draft_policy,
                     .tok = tok.get()},
                    **model, drafter ? &*drafter : nullptr, pool);
  }
  std::unique_ptr<KvCache> cache = (*model)->NewCache(context, std::max(64, draft_max + 1));

  std::optional<StreamDecoder> stream;
  if (tok) stream.emplace(*tok);
  std::string text;
  auto on_token = [&](int t) {
    if (!stream || IsStop(opt.stop_ids, t)) return;
    const std::string piece = stream->Push(t);
    text += piece;
    if (!f.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  Result<SpecResult> sr = Error("unreachable");
  if (assistant) {
    MtpDrafter drafter(*assistant);
    SpecOptions so{.base = opt,
                   .draft_max = draft_max,
                   .policy = policy.get(),
                   .trace = trace.is_open() ? &trace : nullptr};
    sr = GenerateSpeculative(**model, drafter, pool, *cache, prompt, so, on_token);
  } else {
    sr = GeneratePlain(**model, pool, *cache, prompt, opt, on_token);
  }
  if (!sr.ok()) return Fail(sr.status().message());
  const GenerateResult* r = &sr->gen;
  const SpecStats* spec = assistant ? &sr->spec : nullptr;
  if (stream) {
    const std::string tail = stream->Flush();
    text += tail;
    if (!f.json) std::fwrite(tail.data(), 1, tail.size(), stdout);
  }
  const GenerateStats& st = r->stats;
  if (f.json) {
    nlohmann::ordered_json out = {{"prompt_ids", prompt},
                                  {"ids", r->ids},
                                  {"text", text},
                                  {"stop_reason", StopReasonName(r->stop)},
                                  {"stats",
                                   {{"prompt_tokens", st.prompt_tokens},
                                    {"generated_tokens", st.generated_tokens},
                                    {"prefill_s", st.prefill_s},
                                    {"decode_s", st.decode_s},
                                    {"decode_tok_per_s", st.decode_tok_per_s()},
                                    {"target_forwards", sr->spec.target_forwards}}}};
    if (spec) {
      nlohmann::ordered_json& s = out["stats"];
      s["draft_max"] = draft_max;
      s["draft_policy"] = f.draft_policy;
      s["draft_rounds"] = spec->draft_rounds;
      s["drafted"] = spec->drafted;
      s["accepted"] = spec->accepted;
      s["acceptance_rate"] = spec->acceptance_rate();
      s["mean_tokens_per_round"] = spec->mean_tokens_per_round();
      s["accepted_per_position"] = spec->accepted_per_position;
    }
    std::cout << out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
              << std::endl;
  } else {
    std::cout << std::endl;
  }
  if (spec) {
    std::fprintf(
        stderr,
        "speculative: K=%d (%s), %ld rounds, %ld/%ld drafts accepted (%.1f%%), %.2f tokens "
        "per round\n",
        draft_max, f.draft_policy.c_str(), spec->draft_rounds, spec->accepted, spec->drafted,
        100.0 * spec->acceptance_rate(), spec->mean_tokens_per_round());
  }
  std::fprintf(
      stderr,
      "prompt: %d tokens in %.3f s (%.1f tok/s) | generated: %d tokens in %.3f s (%.2f tok/s) | "
      "stop: %s | threads %d, kernels %s\n",
      st.prompt_tokens, st.prefill_s, st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0.0,
      st.generated_tokens, st.decode_s, st.decode_tok_per_s(), StopReasonName(r->stop),
      pool.num_threads(), BestKernels().target);
  return 0;
}

}  // namespace

Runner AddGenerate(CLI::App& app) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* c = app.add_subcommand("generate", "Generate text from a prompt");
  c->add_option("-m,--model", f->model, "checkpoint directory (Hugging Face layout)")->required();
  auto* p = c->add_option("-p,--prompt", f->prompt, "prompt text");
  auto* file = c->add_option("-f,--file", f->file, "read the prompt from a file");
  auto* ids = c->add_option("--prompt-ids", f->prompt_ids, "comma-separated token ids, used as is");
  auto* ids_file = c->add_option(
      "--prompt-ids-file", f->prompt_ids_file,
      "many prompts, one comma-separated id list per line, decoded together; prints one JSON "
      "line per prompt");
  c->add_option("--parallel", f->parallel,
                "with --prompt-ids-file: sequences decoded at once (default 8)");
  c->add_option("-n,--n-predict", f->n_predict, "max tokens to generate (default 128)");
  c->add_option("--temp", f->temp,
                "temperature; 0 = greedy (default: generation_config.json, else greedy)");
  AddSamplingFilterFlags(*c, f->top_k, f->top_p, f->min_p, f->seed);
  AddThreadsFlag(*c, f->threads);
  AddCtxSizeFlag(*c, f->ctx_size);
  c->add_flag("--chat", f->chat, "wrap the prompt in the Gemma 4 chat template");
  c->add_flag("--json", f->json, "print one JSON object with ids, text and stats");
  c->add_option("--draft", f->draft,
                "MTP assistant checkpoint directory (also -md): speculative decoding");
  c->add_option(
      "--draft-max", f->draft_max,
      "max tokens drafted per round (default: the assistant's num_assistant_tokens, else 3)");
  c->add_option("--draft-policy", f->draft_policy,
                "fixed | adaptive (shorten or pause drafting when acceptance is low) | auto (the K "
                "that maximises expected tokens per second, from measured pass costs)");
  c->add_option("--trace", f->trace, "write one JSON line per speculative round to FILE");
  return [f, p, file, ids, ids_file]() {
    return Run(*f, p->count() > 0, file->count() > 0, ids->count() > 0, ids_file->count() > 0);
  };
}

}  // namespace specula::cli
