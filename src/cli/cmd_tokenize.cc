#include <iostream>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/commands.h"

namespace specula::cli {
namespace {
struct TokenizeFlags {
  std::string model, prompt, file;
  bool json = false;
};
}  // namespace

Runner AddTokenize(CLI::App& app) {
  auto flags = std::make_shared<TokenizeFlags>();
  CLI::App* c = app.add_subcommand("tokenize", "Print the token ids of a text (no BOS)");
  c->add_option("-m,--model", flags->model,
                "checkpoint directory (its tokenizer.json) or .gguf file")
      ->required();
  auto* p = c->add_option("-p,--prompt", flags->prompt, "text to tokenize");
  auto* f = c->add_option("-f,--file", flags->file, "file whose text to tokenize");
  p->excludes(f);
  c->add_flag("--json", flags->json, "print {\"ids\": [...], \"pieces\": [...]}");
  return [flags, p, f]() {
    if (p->count() == 0 && f->count() == 0)
      return Fail("tokenize: give -p/--prompt TEXT or -f/--file FILE");
    std::string text = flags->prompt;
    if (f->count() > 0) {
      Result<std::string> t = ReadFileAtMost(
          flags->file, kMaxPromptFileBytes,
          "text files are read up to " + std::to_string(kMaxPromptFileBytes) + " bytes");
      if (!t.ok()) return Fail("-f/--file: " + t.status().message());
      text = std::move(*t);
    }
    Result<std::unique_ptr<Tokenizer>> tok = LoadCheckpointTokenizer(flags->model);
    if (!tok.ok()) return Fail(tok.status().message());
    const std::vector<int> ids = (*tok)->Encode(text);
    if (flags->json) {
      Json pieces = Json::array();
      for (int id : ids) pieces.push_back((*tok)->Piece(id));
      std::cout << Json{{"ids", ids}, {"pieces", pieces}}.dump(-1, ' ', false,
                                                               Json::error_handler_t::replace)
                << "\n";
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
      std::cout << "\n";
    }
    return 0;
  };
}

}  // namespace specula::cli
