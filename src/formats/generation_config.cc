#include "specula/formats/generation_config.h"

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/formats/gguf.h"

namespace specula {

namespace {

// A GGUF file records stop tokens in its tokenizer keys and no sampling defaults: greedy, and stop
// at end of sequence or end of turn (llama.cpp also stops at a token spelled <turn|>).
Result<GenerationConfig> FromGguf(const std::string& path) {
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
  if (!f.ok()) return f.status();
  GenerationConfig g;
  FieldReader r((*f)->metadata(), path);
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    const int64_t id = r.Int(key, -1);
    if (id >= 0 && id < (1 << 30)) g.eos_token_ids.push_back(static_cast<int>(id));
  }
  g.bos_token_id = static_cast<int>(r.Int("tokenizer.ggml.bos_token_id", 2));
  if (!r.ok()) return r.status();
  const Json& md = (*f)->metadata();
  if (auto t = md.find("tokenizer.ggml.tokens"); t != md.end() && t->is_array()) {
    for (size_t id = 0; id < t->size(); ++id) {
      if ((*t)[id] == "<turn|>" || (*t)[id] == "<end_of_turn>") {
        g.eos_token_ids.push_back(static_cast<int>(id));
      }
    }
  }
  if (g.eos_token_ids.empty()) g.eos_token_ids = {1};
  return g;
}

}  // namespace

Result<GenerationConfig> GenerationConfig::LoadFromDir(const std::string& dir) {
  if (IsGgufPath(dir)) return FromGguf(dir);
  GenerationConfig g;
  const std::string path = dir + "/generation_config.json";
  if (!FileExists(path)) {
    g.eos_token_ids = {1};
    return g;
  }
  Result<Json> j = ReadJsonFile(path);
  if (!j.ok()) return j.status();
  FieldReader r(*j, path);
  for (int64_t id : r.IntOrIntList("eos_token_id")) {
    if (id < 0 || id > (1 << 30)) r.Fail("eos_token_id", "token ids must be non-negative");
    g.eos_token_ids.push_back(static_cast<int>(id));
  }
  if (g.eos_token_ids.empty()) g.eos_token_ids = {1};
  g.bos_token_id = static_cast<int>(r.Int("bos_token_id", 2));
  g.do_sample = r.Bool("do_sample", false);
  if (!r.IsNull("temperature")) g.temperature = static_cast<float>(r.Float("temperature"));
  if (!r.IsNull("top_p")) g.top_p = static_cast<float>(r.Float("top_p"));
  if (!r.IsNull("min_p")) g.min_p = static_cast<float>(r.Float("min_p"));
  if (!r.IsNull("top_k")) g.top_k = static_cast<int>(r.Int("top_k"));
  if (!r.IsNull("num_assistant_tokens")) {
    g.num_assistant_tokens = static_cast<int>(r.Int("num_assistant_tokens"));
  }
  if (g.temperature && *g.temperature < 0) r.Fail("temperature", "must be >= 0");
  if (g.top_p && (*g.top_p <= 0 || *g.top_p > 1)) r.Fail("top_p", "must be in (0, 1]");
  if (g.min_p && (*g.min_p < 0 || *g.min_p > 1)) r.Fail("min_p", "must be in [0, 1]");
  if (g.top_k && *g.top_k < 0) r.Fail("top_k", "must be >= 0");
  if (!r.ok()) return r.status();
  return g;
}

}  // namespace specula
