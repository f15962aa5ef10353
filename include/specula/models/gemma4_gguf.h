// Gemma 4 targets as GGUF files in llama.cpp's layout (architecture "gemma4", tensor names
// token_embd, blk.N.attn_q, ...). Reading turns the file's metadata into the config.json object it
// stands for, which Gemma4Config::FromJson then validates like any other, and renames the tensors
// to their Hugging Face names, so one loader and one set of shape checks serve both formats.
// Writing is the inverse, for `specula convert` (and llama.cpp side-by-side runs on the same
// weights).
#pragma once

#include <string>
#include <vector>

#include "specula/base/json.h"
#include "specula/base/status.h"
#include "specula/formats/gguf.h"
#include "specula/models/gemma4_config.h"

namespace specula {

// The HF-style config.json object (model_type "gemma4_text") a gemma4 GGUF file describes. Errors
// name the file and the GGUF key.
Result<Json> Gemma4ConfigFromGguf(const GgufFile& f);

// The same for an MTP assistant (architecture "gemma4-assistant": nextn.pre_projection, ...; the
// centroid head as masked_embd_centroids / masked_embd_ordering when the file keeps it).
Result<Json> Gemma4AssistantConfigFromGguf(const GgufFile& f);
std::string Gemma4AssistantHfName(const std::string& gguf_name);
std::string Gemma4AssistantGgufName(const std::string& hf_name);

// GGUF tensor name -> the HF name under `prefix` ("model."), or "" for tensors the engine derives
// from the config instead (rope_freqs) or does not know.
std::string Gemma4HfName(const std::string& gguf_name, const std::string& prefix);
// The inverse for the tensors of `c` (HF names under c.tensor_prefix, or lm_head.weight); "" for
// names with no GGUF counterpart.
std::string Gemma4GgufName(const std::string& hf_name, const Gemma4Config& c);

// The gemma4.* and general.* keys describing `c` as llama.cpp expects them.
std::vector<GgufKv> Gemma4GgufMetadata(const Gemma4Config& c, const std::string& name);
// Writes the target checkpoint directory `dir` (bf16/f16/f32 or `specula quantize`d) as one GGUF
// file: its metadata, the tokenizer `tokenizer_json` (normally dir/tokenizer.json) and the tensors
// the forward pass binds, matrices in their stored dtype (1-D tensors as F32, as llama.cpp stores
// them).
struct GgufConvertStats {
  int tensors = 0;
  size_t bytes = 0;
};
Result<GgufConvertStats> ConvertGemma4ToGguf(const std::string& dir,
                                             const std::string& tokenizer_json,
                                             const std::string& out);
// An assistant directory likewise. Assistants ship no tokenizer, but llama.cpp wants the target's
// in every file: `tokenizer_json` names it. `keep_centroids` false leaves the centroid head out, as
// llama.cpp's converter does (its loader, as of build de3ff81, refuses files that carry it); the
// file then drafts with the dense tied head.
struct AssistantGgufOptions {
  std::string tokenizer_json;
  bool keep_centroids = true;
};
Result<GgufConvertStats> ConvertGemma4AssistantToGguf(const std::string& dir,
                                                      const AssistantGgufOptions& options,
                                                      const std::string& out);

// llama.cpp's rope_freqs tensor for full layers of head size `global_head_dim` rotated as `full`:
// 1 for rotated pairs, 1e30 for the rest.
std::vector<float> Gemma4RopeFreqs(int global_head_dim, const RopeSpec& full);

}  // namespace specula
