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
#include "specula/spec/generate_one.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/commands.h"
#include "src/cli/drafters.h"

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
  DrafterFlags drafter;
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

// Which of the mutually exclusive prompt inputs was given on the command line.
struct Input {
  bool prompt = false, file = false, ids = false, ids_file = false;
};

Status CheckFlags(const GenerateFlags& f, const Input& in) {
  if (int(in.prompt) + int(in.file) + int(in.ids) + int(in.ids_file) != 1) {
    return Error(
        "generate: give exactly one of -p/--prompt, -f/--file, --prompt-ids, --prompt-ids-file");
  }
  if (f.parallel < 1 || f.parallel > 256)
    return Error("--parallel: must be in [1, 256] (got " + std::to_string(f.parallel) + ")");
  if (in.ids_file && (f.json || !f.trace.empty()))
    return Error("--prompt-ids-file: prints JSON lines already; --json and --trace do not apply");
  if (f.n_predict < 0)
    return Error("-n/--n-predict: must be >= 0 (got " + std::to_string(f.n_predict) + ")");
  if (Status s = CheckThreadsAndContext(f.threads, f.ctx_size); !s.ok()) return s;
  if (f.draft_max && (*f.draft_max < 1 || *f.draft_max > kMaxDraftMax)) {
    return Error("--draft-max: must be in [1, " + std::to_string(kMaxDraftMax) + "] (got " +
                 std::to_string(*f.draft_max) + ")");
  }
  Result<std::string> kind = ResolveDrafter(f.drafter, !f.draft.empty());
  if (!kind.ok()) return kind.status();
  if (kind->empty() && (f.draft_max || f.draft_policy != "fixed"))
    return Error(
        "--draft-max/--draft-policy: need a drafter (-md/--draft DIR or --drafter lookup)");
  if ((in.ids || in.ids_file) && f.chat)
    return Error("--chat: cannot be combined with --prompt-ids or --prompt-ids-file");
  return OkStatus();
}

// The target and what goes with it: its generation config, its tokenizer and the context.
struct Loaded {
  std::unique_ptr<Gemma4Model> model;
  GenerationConfig gen;
  std::unique_ptr<Tokenizer> tok;  // null only when ids come in and the checkpoint has none
  int context = 0;                 // positions per sequence
};

Result<Loaded> Load(const GenerateFlags& f, const Input& in) {
  Loaded l;
  // The tokenizer is needed for text in and out; with --prompt-ids and --json it is optional.
  const bool ids_in = in.ids || in.ids_file;
  Result<Target> target = LoadTarget(
      f.model, !ids_in || IsGgufPath(f.model) || FileExists(f.model + "/tokenizer.json"));
  if (!target.ok()) return target.status();
  l.model = std::move(target->model);
  l.gen = std::move(target->generation);
  l.tok =
      std::move(target->tokenizer);  // ids the model cannot embed are rejected by ValidatePrompt
  l.context = ContextSize(f.ctx_size, l.model->config().max_position_embeddings);
  return l;
}

// The prompt of -p/--prompt, -f/--file or --prompt-ids as token ids, not yet checked against the
// model.
Result<std::vector<int>> ReadPrompt(const GenerateFlags& f, const Input& in, const Loaded& l) {
  if (in.ids) return ParseTokenIds(f.prompt_ids, "--prompt-ids");
  std::string text = f.prompt;
  if (in.file) {
    Result<std::string> t = ReadPromptFile(f.file, *l.tok, l.context);
    if (!t.ok()) return t.status();
    text = std::move(*t);
  }
  if (text.empty()) return Error("prompt: empty prompt");
  return f.chat ? EncodeChatPrompt(*l.tok, {{"user", text}})
                : EncodeTextPrompt(*l.tok, l.gen, text);
}

// Either the one prompt or, with --prompt-ids-file, the batch of them (already checked).
struct Prompts {
  std::vector<int> one;
  std::vector<std::vector<int>> batch;
};

Result<Prompts> ReadPrompts(const GenerateFlags& f, const Input& in, const Loaded& l) {
  Prompts p;
  if (in.ids_file) {
    Result<std::vector<std::vector<int>>> batch =
        ReadPromptIdsFile(f.prompt_ids_file, l.model->config().vocab_size, l.context);
    if (!batch.ok()) return batch.status();
    p.batch = std::move(*batch);
  } else {
    Result<std::vector<int>> one = ReadPrompt(f, in, l);
    if (!one.ok()) return one.status();
    p.one = std::move(*one);
  }
  return p;
}

// Checked after the sampling settings, so that their errors come first.
Status CheckPrompt(const GenerateFlags& f, const Input& in, const Loaded& l,
                   const std::vector<int>& prompt) {
  const Status s = ValidatePrompt(prompt, l.model->config().vocab_size, l.context);
  if (s.ok()) return s;
  return Error((in.file ? "-f/--file: " + f.file + ": " : std::string()) + s.message() +
               (static_cast<int>(prompt.size()) >= l.context ? " (raise -c/--ctx-size)" : ""));
}

// The flags over generation_config.json's sampling defaults.
Result<GenerateOptions> ResolveOptions(const GenerateFlags& f, const Loaded& l) {
  GenerateOptions opt;
  opt.max_new_tokens = f.n_predict;
  opt.stop_ids = StopIds(l.gen, l.tok.get(), f.chat);
  opt.sampling = ResolveSampling(l.gen, {.temperature = f.temp,
                                         .top_p = f.top_p,
                                         .min_p = f.min_p,
                                         .top_k = f.top_k,
                                         .seed = f.seed});
  if (Status s = opt.sampling.Validate(); !s.ok()) return s;
  return opt;
}

// Speculative decoding: all empty (and draft_max 0) without a drafter.
struct Drafting {
  std::string kind;  // --drafter as resolved: "", model, lookup or hybrid
  std::unique_ptr<Gemma4Assistant> assistant;
  int draft_max = 0;
  std::unique_ptr<DraftPolicy> policy;  // the one prompt's: batched sequences each get their own
  std::ofstream trace;                  // open with --trace
};

// --draft-max, else the assistant's num_assistant_tokens, else kDefaultDraftMax.
Result<int> DraftMax(const GenerateFlags& f) {
  if (f.draft_max) return *f.draft_max;
  if (f.draft.empty()) return kDefaultDraftMax;
  Result<GenerationConfig> ag = GenerationConfig::LoadFromDir(f.draft);
  if (!ag.ok()) return ag.status();
  return std::clamp(ag->num_assistant_tokens.value_or(kDefaultDraftMax), 1, kMaxDraftMax);
}

// The assistant, when given, is validated against the target before anything runs.
Result<Drafting> LoadDrafting(const GenerateFlags& f, const Gemma4Model& target) {
  Drafting d;
  Result<std::unique_ptr<Gemma4Assistant>> assistant = LoadAssistant(f.draft, target);
  if (!assistant.ok()) return assistant.status();
  d.assistant = std::move(*assistant);
  Result<std::string> kind = ResolveDrafter(f.drafter, d.assistant != nullptr);
  if (!kind.ok()) return kind.status();
  d.kind = *kind;
  if (!d.kind.empty()) {
    Result<int> k = DraftMax(f);
    if (!k.ok()) return k.status();
    d.draft_max = *k;
    Result<std::unique_ptr<DraftPolicy>> p = MakeDraftPolicy(f.draft_policy, d.draft_max);
    if (!p.ok()) return p.status();
    d.policy = std::move(*p);
  }
  if (!f.trace.empty()) {
    if (d.kind.empty())
      return Error("--trace: needs a drafter (-md/--draft DIR or --drafter lookup)");
    d.trace.open(f.trace, std::ios::trunc);
    if (!d.trace) return Error("--trace: cannot create '" + f.trace + "'");
  }
  return d;
}

// What decoding needs once everything is loaded and checked.
struct Setup {
  const GenerateFlags& f;
  Gemma4Model& model;
  const Tokenizer* tok;  // null: ids only, no "text"
  const GenerateOptions& opt;
  int context = 0;
  Drafting& drafting;
  ThreadPool& pool;
};

struct Decoded {
  SpecResult result;
  std::string text;  // without stop tokens; empty without a tokenizer
};

// Speculative with an assistant, plain without.
Result<SpecResult> Generate(const Setup& s, KvCache& cache, const std::vector<int>& prompt,
                            const TokenCallback& on_token) {
  Drafting& d = s.drafting;
  if (d.kind.empty()) return GeneratePlain(s.model, s.pool, cache, prompt, s.opt, on_token);
  const Drafters drafters = MakeDrafters(d.kind, d.assistant.get(), s.f.drafter);
  SeqOptions so{.base = s.opt,
                .draft_max = d.draft_max,
                .policy = d.policy.get(),
                .trace = d.trace.is_open() ? &d.trace : nullptr};
  return GenerateSpeculative(s.model, *drafters.get(), s.pool, cache, prompt, so, on_token);
}

// Without --json the text goes to stdout as it is decoded.
Result<Decoded> Decode(const Setup& s, const std::vector<int>& prompt) {
  std::unique_ptr<KvCache> cache = s.model.NewCache(s.context, HeadroomFor(s.drafting.draft_max));
  std::optional<StreamDecoder> stream;
  if (s.tok) stream.emplace(*s.tok);
  Decoded out;
  auto on_token = [&](int t) {
    if (!stream || IsStop(s.opt.stop_ids, t)) return;
    const std::string piece = stream->Push(t);
    out.text += piece;
    if (!s.f.json) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
  };
  Result<SpecResult> r = Generate(s, *cache, prompt, on_token);
  if (!r.ok()) return r.status();
  out.result = std::move(*r);
  if (stream) {
    const std::string tail = stream->Flush();
    out.text += tail;
    if (!s.f.json) std::fwrite(tail.data(), 1, tail.size(), stdout);
  }
  return out;
}

// With --json, one object; otherwise the streamed text is ended with a newline.
void PrintResult(const Setup& s, const std::vector<int>& prompt, const Decoded& d) {
  if (!s.f.json) {
    std::cout << std::endl;
    return;
  }
  const GenerateResult& r = d.result.gen;
  const GenerateStats& st = r.stats;
  nlohmann::ordered_json out = {{"prompt_ids", prompt},
                                {"ids", r.ids},
                                {"text", d.text},
                                {"stop_reason", StopReasonName(r.stop)},
                                {"stats",
                                 {{"prompt_tokens", st.prompt_tokens},
                                  {"generated_tokens", st.generated_tokens},
                                  {"prefill_s", st.prefill_s},
                                  {"decode_s", st.decode_s},
                                  {"decode_tok_per_s", st.decode_tok_per_s()},
                                  {"target_forwards", d.result.spec.target_forwards}}}};
  if (!s.drafting.kind.empty()) {
    const SpecStats& spec = d.result.spec;
    nlohmann::ordered_json& o = out["stats"];
    o["drafter"] = s.drafting.kind;
    o["draft_max"] = s.drafting.draft_max;
    o["draft_policy"] = s.f.draft_policy;
    o["draft_rounds"] = spec.draft_rounds;
    o["drafted"] = spec.drafted;
    o["accepted"] = spec.accepted;
    o["acceptance_rate"] = spec.acceptance_rate();
    o["mean_tokens_per_round"] = spec.mean_tokens_per_round();
    o["accepted_per_position"] = spec.accepted_per_position;
    o["lookup_drafted"] = spec.lookup_drafted;
    o["lookup_accepted"] = spec.lookup_accepted;
    o["tree_rounds"] = spec.tree_rounds;
  }
  std::cout << out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
            << std::endl;
}

// ", of which prompt lookup a/b" when lookup drafted anything, ", t token trees" when trees were
// verified.
std::string LookupShare(const SpecStats& spec) {
  std::string s;
  if (spec.lookup_drafted > 0) {
    s = ", of which prompt lookup " + std::to_string(spec.lookup_accepted) + "/" +
        std::to_string(spec.lookup_drafted);
  }
  if (spec.tree_rounds > 0) s += ", " + std::to_string(spec.tree_rounds) + " token trees";
  return s;
}

void PrintTimings(const Setup& s, const Decoded& d) {
  if (!s.drafting.kind.empty()) {
    const SpecStats& spec = d.result.spec;
    std::fprintf(
        stderr,
        "speculative: %s drafter, K=%d (%s), %ld rounds, %ld/%ld drafts accepted (%.1f%%), %.2f "
        "tokens per round%s\n",
        s.drafting.kind.c_str(), s.drafting.draft_max, s.f.draft_policy.c_str(), spec.draft_rounds,
        spec.accepted, spec.drafted, 100.0 * spec.acceptance_rate(), spec.mean_tokens_per_round(),
        LookupShare(spec).c_str());
  }
  const GenerateStats& st = d.result.gen.stats;
  std::fprintf(
      stderr,
      "prompt: %d tokens in %.3f s (%.1f tok/s) | generated: %d tokens in %.3f s (%.2f tok/s) | "
      "stop: %s | threads %d, kernels %s\n",
      st.prompt_tokens, st.prefill_s, st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0.0,
      st.generated_tokens, st.decode_s, st.decode_tok_per_s(), StopReasonName(d.result.gen.stop),
      s.pool.num_threads(), BestKernels().target);
}

int RunOne(const Setup& s, const std::vector<int>& prompt) {
  Result<Decoded> d = Decode(s, prompt);
  if (!d.ok()) return Fail(d.status().message());
  PrintResult(s, prompt, *d);
  PrintTimings(s, *d);
  return 0;
}

struct BatchDecoded {
  std::vector<SpecResult> results;  // in file order
  double seconds = 0.0;             // prefill included
};

// Every prompt through the continuous-batching engine, up to --parallel at once; each output
// equals decoding its prompt alone. A sampled prompt i uses seed + i.
Result<BatchDecoded> DecodeBatch(const Setup& s, const std::vector<std::vector<int>>& prompts) {
  const Drafting& d = s.drafting;
  const Drafters drafters = MakeDrafters(d.kind, d.assistant.get(), s.f.drafter);
  const size_t n = prompts.size();
  std::vector<std::unique_ptr<DraftPolicy>> policies(n);
  BatchDecoded out;
  out.results.resize(n);
  Status failure;
  BatchEngine engine(s.model, drafters.get(), s.pool,
                     {.max_running = s.f.parallel, .context = s.context});
  const double t0 = NowSeconds();
  for (size_t i = 0; i < n; ++i) {
    SeqOptions so{.base = s.opt, .draft_max = d.draft_max};
    so.base.sampling.seed += i;
    if (d.draft_max > 0) {
      Result<std::unique_ptr<DraftPolicy>> p = MakeDraftPolicy(s.f.draft_policy, d.draft_max);
      if (!p.ok()) return p.status();
      policies[i] = std::move(*p);
      so.policy = policies[i].get();
    }
    Result<int> id =
        engine.Add(prompts[i], so, nullptr, [&, i](const SpecResult& r, const Status& st) {
          out.results[i] = r;
          if (!st.ok() && failure.ok()) failure = st;
        });
    if (!id.ok()) return id.status();
  }
  while (!engine.idle()) engine.Step();
  if (!failure.ok()) return failure;
  out.seconds = NowSeconds() - t0;
  return out;
}

// One JSON line per prompt on stdout, in file order; the totals on stderr.
void PrintBatch(const Setup& s, const std::vector<std::vector<int>>& prompts,
                const BatchDecoded& d) {
  SpecStats spec;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const SpecResult& r = d.results[i];
    spec.Add(r.spec);
    nlohmann::ordered_json out = {{"index", i}, {"prompt_ids", prompts[i]}, {"ids", r.gen.ids}};
    if (s.tok) {
      std::vector<int> shown;
      for (int t : r.gen.ids) {
        if (!IsStop(s.opt.stop_ids, t)) shown.push_back(t);
      }
      out["text"] = s.tok->Decode(shown);
    }
    out["stop_reason"] = StopReasonName(r.gen.stop);
    std::cout << out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  }
  std::cout << std::flush;
  if (s.drafting.draft_max > 0) {
    std::fprintf(stderr, "speculative: %s drafter, K=%d (%s), %ld/%ld drafts accepted (%.1f%%)%s\n",
                 s.drafting.kind.c_str(), s.drafting.draft_max, s.f.draft_policy.c_str(),
                 spec.accepted, spec.drafted, 100.0 * spec.acceptance_rate(),
                 LookupShare(spec).c_str());
  }
  std::fprintf(stderr,
               "%zu prompts, up to %d at once: %ld tokens generated in %.3f s (%.1f tok/s with "
               "prefill) | threads %d, kernels %s\n",
               prompts.size(), s.f.parallel, spec.generated, d.seconds,
               d.seconds > 0 ? static_cast<double>(spec.generated) / d.seconds : 0.0,
               s.pool.num_threads(), BestKernels().target);
}

int RunBatch(const Setup& s, const std::vector<std::vector<int>>& prompts) {
  Result<BatchDecoded> d = DecodeBatch(s, prompts);
  if (!d.ok()) return Fail(d.status().message());
  PrintBatch(s, prompts, *d);
  return 0;
}

int Run(const GenerateFlags& f, const Input& in) {
  if (Status s = CheckFlags(f, in); !s.ok()) return Fail(s.message());
  Result<Loaded> loaded = Load(f, in);
  if (!loaded.ok()) return Fail(loaded.status().message());
  Result<Prompts> prompts = ReadPrompts(f, in, *loaded);
  if (!prompts.ok()) return Fail(prompts.status().message());
  Result<GenerateOptions> opt = ResolveOptions(f, *loaded);
  if (!opt.ok()) return Fail(opt.status().message());
  if (!in.ids_file) {
    if (Status s = CheckPrompt(f, in, *loaded, prompts->one); !s.ok()) return Fail(s.message());
  }
  Result<Drafting> drafting = LoadDrafting(f, *loaded->model);
  if (!drafting.ok()) return Fail(drafting.status().message());
  ThreadPool pool(ThreadCount(f.threads));
  const Setup s{.f = f,
                .model = *loaded->model,
                .tok = loaded->tok.get(),
                .opt = *opt,
                .context = loaded->context,
                .drafting = *drafting,
                .pool = pool};
  return in.ids_file ? RunBatch(s, prompts->batch) : RunOne(s, prompts->one);
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
  AddDrafterFlags(*c, f->drafter);
  c->add_option("--trace", f->trace, "write one JSON line per speculative round to FILE");
  return [f, p, file, ids, ids_file]() {
    return Run(*f, {.prompt = p->count() > 0,
                    .file = file->count() > 0,
                    .ids = ids->count() > 0,
                    .ids_file = ids_file->count() > 0});
  };
}

}  // namespace specula::cli
