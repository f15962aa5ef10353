#include "specula/formats/generation_config.h"

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"
#include "specula/formats/gguf.h"

namespace specula {

namespace {

// GGUF keys. llama.cpp's own (gguf-py constants.py, Keys.General.SAMPLING_* and
// Keys.Tokenizer.*) where it has one; llama.cpp reads the sampling ones as defaults for its
// sampler and ignores the specula.* ones.
constexpr char kTempKey[] = "general.sampling.temp";
constexpr char kTopKKey[] = "general.sampling.top_k";
constexpr char kTopPKey[] = "general.sampling.top_p";
constexpr char kMinPKey[] = "general.sampling.min_p";
constexpr char kBosKey[] = "tokenizer.ggml.bos_token_id";
constexpr char kEosKey[] = "tokenizer.ggml.eos_token_id";
constexpr char kEosListKey[] = "specula.eos_token_ids";
constexpr char kAssistantTokensKey[] = "specula.num_assistant_tokens";

constexpr int64_t kMaxTokenId = int64_t{1} << 30;

// The filters both sources share, read from `r` under the given keys and range-checked alike.
void ReadFilters(FieldReader& r, const char* top_k, const char* top_p, const char* min_p,
                 GenerationConfig* g) {
  if (!r.IsNull(top_p)) g->top_p = static_cast<float>(r.Float(top_p));
  if (!r.IsNull(min_p)) g->min_p = static_cast<float>(r.Float(min_p));
  if (!r.IsNull(top_k)) g->top_k = r.Int32(top_k);
  if (g->top_p && (*g->top_p <= 0 || *g->top_p > 1)) r.Fail(top_p, "must be in (0, 1]");
  if (g->min_p && (*g->min_p < 0 || *g->min_p > 1)) r.Fail(min_p, "must be in [0, 1]");
  if (g->top_k && *g->top_k < 0) r.Fail(top_k, "must be >= 0");
}

void ReadEosList(FieldReader& r, const char* key, GenerationConfig* g) {
  for (int64_t id : r.IntOrIntList(key)) {
    if (id < 0 || id > kMaxTokenId) r.Fail(key, "token ids must be in [0, 2^30]");
    g->eos_token_ids.push_back(static_cast<int>(id));
  }
}

}  // namespace

// What `specula convert` wrote (GgufMetadata), else what a file from llama.cpp's converter says:
// its general.sampling.* keys, and stop tokens from the tokenizer keys (end of sequence, end of
// turn, and a token spelled <turn|>, which llama.cpp also stops at).
Result<GenerationConfig> GenerationConfig::FromGgufMetadata(const Json& md,
                                                            const std::string& path) {
  GenerationConfig g;
  FieldReader r(md, path);
  if (r.Has(kEosListKey)) {
    ReadEosList(r, kEosListKey, &g);
  } else {
    for (const char* key : {kEosKey, "tokenizer.ggml.eot_token_id"}) {
      const int64_t id = r.Int(key, -1);
      if (id >= 0 && id < kMaxTokenId) g.eos_token_ids.push_back(static_cast<int>(id));
    }
    if (auto t = md.find("tokenizer.ggml.tokens"); t != md.end() && t->is_array()) {
      for (size_t id = 0; id < t->size(); ++id) {
        if ((*t)[id] == "<turn|>" || (*t)[id] == "<end_of_turn>") {
          g.eos_token_ids.push_back(static_cast<int>(id));
        }
      }
    }
  }
  if (g.eos_token_ids.empty()) g.eos_token_ids = {1};
  g.bos_token_id = r.Int32(kBosKey, 2);
  // llama.cpp has no do_sample: it samples unless the temperature is 0. A file without the key
  // decodes greedily, as before files carried it.
  if (!r.IsNull(kTempKey)) {
    const double temp = r.Float(kTempKey);
    if (temp < 0) r.Fail(kTempKey, "must be >= 0");
    g.do_sample = temp > 0;
    if (g.do_sample) g.temperature = static_cast<float>(temp);
  }
  ReadFilters(r, kTopKKey, kTopPKey, kMinPKey, &g);
  if (!r.IsNull(kAssistantTokensKey)) {
    g.num_assistant_tokens = r.Int32(kAssistantTokensKey);
  }
  if (!r.ok()) return r.status();
  return g;
}

Result<GenerationConfig> GenerationConfig::LoadFromDir(const std::string& dir) {
  if (IsGgufPath(dir)) {
    Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(dir);
    if (!f.ok()) return f.status();
    return FromGgufMetadata((*f)->metadata(), dir);
  }
  GenerationConfig g;
  const std::string path = dir + "/generation_config.json";
  if (!FileExists(path)) {
    g.eos_token_ids = {1};
    return g;
  }
  Result<Json> j = ReadJsonFile(path);
  if (!j.ok()) return j.status();
  FieldReader r(*j, path);
  ReadEosList(r, "eos_token_id", &g);
  if (g.eos_token_ids.empty()) g.eos_token_ids = {1};
  g.bos_token_id = r.Int32("bos_token_id", 2);
  g.do_sample = r.Bool("do_sample", false);
  if (!r.IsNull("temperature")) g.temperature = static_cast<float>(r.Float("temperature"));
  if (g.temperature && *g.temperature < 0) r.Fail("temperature", "must be >= 0");
  ReadFilters(r, "top_k", "top_p", "min_p", &g);
  if (!r.IsNull("num_assistant_tokens")) {
    g.num_assistant_tokens = r.Int32("num_assistant_tokens");
  }
  if (!r.ok()) return r.status();
  return g;
}

std::vector<GgufKv> GenerationConfig::GgufMetadata() const {
  // Greedy is temperature 0 for llama.cpp; HF's default temperature applies when sampling sets
  // none, so the file states the temperature the engine would use.
  std::vector<GgufKv> kvs = {
      {kTempKey, GgufType::kF32, do_sample ? temperature.value_or(1.0f) : 0.0f},
      {kBosKey, GgufType::kU32, bos_token_id},
  };
  if (!eos_token_ids.empty()) {
    kvs.push_back({kEosKey, GgufType::kU32, eos_token_ids.front()});
    kvs.push_back({kEosListKey, GgufType::kArray, eos_token_ids, GgufType::kU32});
  }
  if (top_k) kvs.push_back({kTopKKey, GgufType::kI32, *top_k});
  if (top_p) kvs.push_back({kTopPKey, GgufType::kF32, *top_p});
  if (min_p) kvs.push_back({kMinPKey, GgufType::kF32, *min_p});
  if (num_assistant_tokens) {
    kvs.push_back({kAssistantTokensKey, GgufType::kU32, *num_assistant_tokens});
  }
  return kvs;
}

}  // namespace specula
