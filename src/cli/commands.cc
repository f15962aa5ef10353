// Helpers shared by several subcommands of the `specula` tool.
#include "src/cli/commands.h"

#include "specula/base/thread_pool.h"
#include "specula/formats/gguf.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/tokenizer/tokenizer_gguf.h"

namespace specula::cli {

int ThreadCount(int flag) { return flag > 0 ? flag : ThreadPool::DefaultThreads(); }

void AddThreadsFlag(CLI::App& c, int& threads) {
  c.add_option("-t,--threads", threads, "threads (default: physical cores)");
}

void AddCtxSizeFlag(CLI::App& c, int& ctx_size) {
  c.add_option("-c,--ctx-size", ctx_size,
               "context size (default min(4096, max_position_embeddings))");
}

Status CheckThreadsAndContext(int threads, int ctx_size) {
  if (threads < 0 || threads > 1024) return Error("-t/--threads: must be in [1, 1024]");
  if (ctx_size < 0) return Error("-c/--ctx-size: must be >= 0");
  return OkStatus();
}

namespace {

Result<Target> LoadGgufTarget(const std::string& path, bool with_tokenizer) {
  Result<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  if (!file.ok()) return file.status();
  Target t;
  Result<GenerationConfig> gen = GenerationConfig::FromGgufMetadata((*file)->metadata(), path);
  if (!gen.ok()) return gen.status();
  t.generation = std::move(*gen);
  // The model reads no tokenizer key (its vocabulary is the embedding table's rows).
  Json tokenizer_keys = (*file)->TakeMetadata("tokenizer.ggml.");
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::LoadGguf(std::move(*file), path);
  if (!model.ok()) return model.status();
  t.model = std::move(*model);
  if (with_tokenizer) {
    Result<std::unique_ptr<Tokenizer>> tok = TokenizerFromGguf(std::move(tokenizer_keys), path);
    if (!tok.ok()) return tok.status();
    t.tokenizer = std::move(*tok);
  }
  return t;
}

}  // namespace

Result<Target> LoadTarget(const std::string& path, bool with_tokenizer) {
  if (IsGgufPath(path)) return LoadGgufTarget(path, with_tokenizer);
  Target t;
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(path);
  if (!model.ok()) return model.status();
  t.model = std::move(*model);
  Result<GenerationConfig> gen = GenerationConfig::LoadFromDir(path);
  if (!gen.ok()) return gen.status();
  t.generation = std::move(*gen);
  if (with_tokenizer) {
    Result<std::unique_ptr<Tokenizer>> tok = LoadCheckpointTokenizer(path);
    if (!tok.ok()) return tok.status();
    t.tokenizer = std::move(*tok);
  }
  return t;
}

Result<std::unique_ptr<Gemma4Assistant>> LoadAssistant(const std::string& dir,
                                                       const Gemma4Model& target) {
  if (dir.empty()) return std::unique_ptr<Gemma4Assistant>();
  return Gemma4Assistant::Load(dir, target);
}

}  // namespace specula::cli
