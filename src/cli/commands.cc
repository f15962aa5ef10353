// Helpers shared by several subcommands of the `specula` tool.
#include "src/cli/commands.h"

#include "specula/base/thread_pool.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"

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

Result<Target> LoadTarget(const std::string& path) {
  Result<std::unique_ptr<Gemma4Model>> model = Gemma4Model::Load(path);
  if (!model.ok()) return model.status();
  Result<GenerationConfig> gen = GenerationConfig::LoadFromDir(path);
  if (!gen.ok()) return gen.status();
  return Target{.model = std::move(*model), .generation = std::move(*gen)};
}

Result<std::unique_ptr<Gemma4Assistant>> LoadAssistant(const std::string& dir,
                                                       const Gemma4Model& target) {
  if (dir.empty()) return std::unique_ptr<Gemma4Assistant>();
  return Gemma4Assistant::Load(dir, target);
}

}  // namespace specula::cli
