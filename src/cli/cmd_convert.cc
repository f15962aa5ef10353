#include <cstdio>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/formats/gguf.h"
#include "specula/models/gemma4_gguf.h"
#include "src/cli/commands.h"

namespace specula::cli {

Runner AddConvert(CLI::App& app) {
  struct Flags {
    std::string in, out, tokenizer;
    bool drop_centroids = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* c = app.add_subcommand(
      "convert",
      "Write a checkpoint directory (target or assistant) as one GGUF file, in llama.cpp's layout");
  c->add_option("in", f->in, "input checkpoint directory (bf16/f16/f32 or specula-quantized)")
      ->required();
  c->add_option("out", f->out, "output .gguf file")->required();
  c->add_option("--tokenizer", f->tokenizer,
                "tokenizer.json to embed (default: IN/tokenizer.json; assistants ship none, so "
                "give the target's)");
  c->add_flag("--drop-centroids", f->drop_centroids,
              "assistants: leave out the centroid head, as llama.cpp's converter does (llama.cpp "
              "refuses files with it); the file then drafts with the dense head");
  return [f]() {
    if (!IsGgufPath(f->out))
      return Fail("out: expected a path ending in .gguf (got '" + f->out + "')");
    Result<Json> cfg = ReadJsonFile(f->in + "/config.json");
    if (!cfg.ok()) return Fail(cfg.status().message());
    const std::string type = cfg->is_object() ? cfg->value("model_type", "") : "";
    const bool assistant = type.find("assistant") != std::string::npos;
    const std::string tok = f->tokenizer.empty() ? f->in + "/tokenizer.json" : f->tokenizer;
    if (assistant && !FileExists(tok)) {
      return Fail("--tokenizer: " + f->in +
                  " is an assistant and has no tokenizer.json; pass the target's");
    }
    if (!assistant && f->drop_centroids) return Fail("--drop-centroids: only for assistants");
    Result<GgufConvertStats> s =
        assistant
            ? ConvertGemma4AssistantToGguf(
                  f->in, {.tokenizer_json = tok, .keep_centroids = !f->drop_centroids}, f->out)
            : ConvertGemma4ToGguf(f->in, tok, f->out);
    if (!s.ok()) return Fail(s.status().message());
    std::fprintf(stderr, "wrote %d tensors (%.1f MB) to %s\n", s->tensors, s->bytes / 1e6,
                 f->out.c_str());
    return 0;
  };
}

}  // namespace specula::cli
