// `specula score`: runs a text through the target once and reports how well the model predicts
// it (per-token log-probabilities, perplexity) and, with --top N, each row's N highest logits.
// Used to evaluate a trained model on held-out text and to check other implementations of the
// forward pass (tools/distill) against Specula's.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/base/thread_pool.h"
#include "specula/formats/generation_config.h"
#include "specula/models/gemma4.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/commands.h"

namespace specula::cli {
namespace {

struct ScoreFlags {
  std::string model, prompt, file, prompt_ids;
  int top = 0;
  int threads = 0;
  int ctx_size = 0;
  bool json = false;
};

constexpr int kMaxTop = 1000;
constexpr size_t kChunkRows = 256;  // rows per forward: bounds the [rows, vocab] logits buffer

// log softmax(logits)[id], in double.
double LogProb(const float* logits, int vocab, int id) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  return static_cast<double>(logits[id] - mx) - std::log(sum);
}

// The `n` highest logits of a row as [id, logit] pairs, highest first (ties: lower id first).
Json TopLogits(const float* logits, int vocab, int n) {
  std::vector<int> idx(static_cast<size_t>(vocab));
  std::iota(idx.begin(), idx.end(), 0);
  const auto by_logit = [&](int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  };
  std::partial_sort(idx.begin(), idx.begin() + n, idx.end(), by_logit);
  Json top = Json::array();
  for (int i = 0; i < n; ++i) top.push_back({idx[static_cast<size_t>(i)], logits[idx[i]]});
  return top;
}

// Which of the mutually exclusive inputs was given on the command line.
struct Input {
  bool prompt = false, file = false, ids = false;
};

Status CheckFlags(const ScoreFlags& f, const Input& in) {
  if (int(in.prompt) + int(in.file) + int(in.ids) != 1) {
    return Error("score: give exactly one of -p/--prompt, -f/--file, --prompt-ids");
  }
  if (f.top < 0 || f.top > kMaxTop) {
    return Error("--top: must be in [0, " + std::to_string(kMaxTop) + "] (got " +
                 std::to_string(f.top) + ")");
  }
  return CheckThreadsAndContext(f.threads, f.ctx_size);
}

// The text of -p/--prompt or -f/--file, encoded after BOS.
Result<std::vector<int>> EncodeText(const ScoreFlags& f, const Input& in) {
  Result<GenerationConfig> gen = GenerationConfig::LoadFromDir(f.model);
  if (!gen.ok()) return gen.status();
  Result<std::unique_ptr<Tokenizer>> tok = LoadCheckpointTokenizer(f.model);
  if (!tok.ok()) return tok.status();
  std::string text = f.prompt;
  if (in.file) {
    Result<std::string> t = ReadFileAtMost(
        f.file, kMaxPromptFileBytes,
        "text files are read up to " + std::to_string(kMaxPromptFileBytes) + " bytes");
    if (!t.ok()) return Error("-f/--file: " + t.status().message());
    text = std::move(*t);
  }
  if (text.empty()) return Error("score: empty text");
  std::vector<int> ids = {gen->bos_token_id};
  const std::vector<int> body = (*tok)->Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

// The tokens to score, each one checked against the model. Every row is scored, so all of them
// must fit the context (generation needs one more).
Result<std::vector<int>> TokensToScore(const ScoreFlags& f, const Input& in,
                                       const Gemma4Config& cfg, int context) {
  Result<std::vector<int>> ids =
      in.ids ? ParseTokenIds(f.prompt_ids, "--prompt-ids") : EncodeText(f, in);
  if (!ids.ok()) return ids;
  if (ids->empty()) return Error("score: no tokens to score");
  for (int id : *ids) {
    if (id < 0 || id >= cfg.vocab_size) {
      return Error("token id " + std::to_string(id) + " is out of range [0, " +
                   std::to_string(cfg.vocab_size) + ")");
    }
  }
  if (static_cast<int>(ids->size()) > context) {
    return Error("score: " + std::to_string(ids->size()) + " tokens do not fit the context of " +
                 std::to_string(context) + " (raise -c/--ctx-size)");
  }
  return ids;
}

struct Scores {
  double nll = 0.0;           // summed over the scored tokens (all but the first)
  Json rows = Json::array();  // with --json: a row per token
};

// One forward over the tokens, kChunkRows at a time; row i scores token i + 1.
Result<Scores> ScoreTokens(const ScoreFlags& f, Gemma4Model& model, const std::vector<int>& ids,
                           int context) {
  ThreadPool pool(ThreadCount(f.threads));
  std::unique_ptr<KvCache> cache = model.NewCache(context);
  const int V = model.config().vocab_size;
  Scores scores;
  const std::span<const int> all(ids);
  ForwardOutput out;
  for (size_t at = 0; at < ids.size(); at += kChunkRows) {
    const size_t n = std::min(kChunkRows, ids.size() - at);
    if (Status s = model.Forward(
            {.ids = all.subspan(at, n), .cache = cache.get(), .all_logits = true}, pool, &out);
        !s.ok()) {
      return s;
    }
    for (size_t r = 0; r < n; ++r) {
      const size_t i = at + r;
      const float* logits = out.logits.data() + r * static_cast<size_t>(V);
      Json row = Json::object();
      if (i + 1 < ids.size()) {
        const double lp = LogProb(logits, V, ids[i + 1]);
        scores.nll -= lp;
        row["next"] = ids[i + 1];
        row["logprob"] = lp;
      }
      if (f.top > 0) row["top"] = TopLogits(logits, V, std::min(f.top, V));
      if (f.json) scores.rows.push_back(std::move(row));
    }
  }
  return scores;
}

void PrintScores(const ScoreFlags& f, const std::vector<int>& ids, const Scores& scores) {
  const size_t scored = ids.size() - 1;
  const double mean = scored > 0 ? scores.nll / static_cast<double>(scored) : 0.0;
  if (f.json) {
    const nlohmann::ordered_json o = {{"ids", ids},
                                      {"scored_tokens", scored},
                                      {"mean_nll", mean},
                                      {"perplexity", std::exp(mean)},
                                      {"rows", scores.rows}};
    std::cout << o.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
  } else {
    std::printf("%zu tokens scored: mean NLL %.4f nats, perplexity %.3f\n", scored, mean,
                std::exp(mean));
  }
}

int Run(const ScoreFlags& f, const Input& in) {
  if (Status s = CheckFlags(f, in); !s.ok()) return Fail(s.message());
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(f.model);
  if (!model.ok()) return Fail(model.status().message());
  const int context = ContextSize(f.ctx_size, (*model)->config().max_position_embeddings);
  Result<std::vector<int>> ids = TokensToScore(f, in, (*model)->config(), context);
  if (!ids.ok()) return Fail(ids.status().message());
  Result<Scores> scores = ScoreTokens(f, **model, *ids, context);
  if (!scores.ok()) return Fail(scores.status().message());
  PrintScores(f, *ids, *scores);
  return 0;
}

}  // namespace

Runner AddScore(CLI::App& app) {
  auto f = std::make_shared<ScoreFlags>();
  CLI::App* c = app.add_subcommand(
      "score", "Score a text with the target: per-token log-probabilities and perplexity");
  c->add_option("-m,--model", f->model, "checkpoint directory or .gguf file")->required();
  auto* p = c->add_option("-p,--prompt", f->prompt, "text to score (BOS is added)");
  auto* file = c->add_option("-f,--file", f->file, "read the text from a file");
  auto* ids = c->add_option("--prompt-ids", f->prompt_ids, "comma-separated token ids, used as is");
  c->add_option("--top", f->top, "with --json: each row's N highest logits (default 0)");
  AddThreadsFlag(*c, f->threads);
  AddCtxSizeFlag(*c, f->ctx_size);
  c->add_flag("--json", f->json,
              "print {ids, scored_tokens, mean_nll, perplexity, rows: [{next, logprob, top}]}");
  return [f, p, file, ids]() {
    return Run(*f, {.prompt = p->count() > 0, .file = file->count() > 0, .ids = ids->count() > 0});
  };
}

}  // namespace specula::cli
