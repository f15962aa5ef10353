// generation_config.json: stop ids and the sampling defaults a checkpoint ships with.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "specula/base/status.h"
#include "specula/formats/gguf.h"

namespace specula {

struct GenerationConfig {
  std::vector<int> eos_token_ids;  // stop on any of these
  int bos_token_id = 2;
  bool do_sample = false;
  std::optional<float> temperature, top_p, min_p;
  std::optional<int> top_k;
  std::optional<int> num_assistant_tokens;  // assistants: default draft length

  // Missing file -> defaults (greedy, eos = {1}); malformed file -> error naming the field. A .gguf
  // path reads what GgufMetadata() writes (a file without those keys: greedy, stop tokens from its
  // tokenizer keys).
  static Result<GenerationConfig> LoadFromDir(const std::string& dir);
  // The same from an opened GGUF file's metadata (`path` names it in errors).
  static Result<GenerationConfig> FromGgufMetadata(const Json& metadata, const std::string& path);

  // This config as GGUF metadata, for `specula convert`: the sampling defaults under llama.cpp's
  // general.sampling.* keys (do_sample false is general.sampling.temp 0, llama.cpp's greedy), BOS
  // and the first stop token under tokenizer.ggml.*, the whole stop list and an assistant's
  // num_assistant_tokens under specula.*, which llama.cpp has no keys for.
  std::vector<GgufKv> GgufMetadata() const;
};

}  // namespace specula
