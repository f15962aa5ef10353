// generation_config.json: stop ids and the sampling defaults a checkpoint ships with.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "specula/base/status.h"

namespace specula {

struct GenerationConfig {
  std::vector<int> eos_token_ids;  // stop on any of these
  int bos_token_id = 2;
  bool do_sample = false;
  std::optional<float> temperature, top_p, min_p;
  std::optional<int> top_k;
  std::optional<int> num_assistant_tokens;  // assistants: default draft length

  // Missing file -> defaults (greedy, eos = {1}); malformed file -> error naming the field. A .gguf
  // path reads the stop tokens from its tokenizer keys.
  static Result<GenerationConfig> LoadFromDir(const std::string& dir);
};

}  // namespace specula
