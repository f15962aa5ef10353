// Gemma's tokenizer inside a GGUF file (llama.cpp's tokenizer.ggml.* keys, model "gemma4"): the
// token list with its types and the BPE merges. Reading rebuilds the tokenizer.json object they
// came from — Gemma's fixed normalizer (" " -> "▁"), space-merging split and byte fallback, which
// GGUF does not record — so Tokenizer::FromJson validates and runs it like any tokenizer.json.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "specula/base/json.h"
#include "specula/base/status.h"
#include "specula/formats/gguf.h"
#include "specula/tokenizer/tokenizer.h"

namespace specula {

// GGUF token types (llama.cpp's numbering).
enum class GgufTokenType : int {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

// `metadata`: a GGUF file's (GgufFile::TakeMetadata); `path` names the file in errors.
Result<Json> TokenizerJsonFromGguf(Json metadata, const std::string& path);
// The normalizer and pre-tokenizer of Gemma's tokenizer.json: spaces become U+2581, and the text is
// split after each of them. A JSON object with those two keys.
Json GemmaSpaceRules();
// The tokenizer.ggml.* keys for a Gemma tokenizer.json object (`file` names it in errors). With
// `vocab_size` > 0 the token list gets exactly that many entries, since llama.cpp sizes the model's
// vocabulary from it: tokens the model cannot embed (a Gemma 3-era file's <image_soft_token>) are
// dropped with the merges that need them, and missing ids are padded as unused "[PADn]" tokens.
Result<std::vector<GgufKv>> TokenizerGgufMetadata(const Json& tokenizer_json,
                                                  const std::string& file, int64_t vocab_size = 0);

// The tokenizer of a checkpoint: DIR/tokenizer.json, or the one inside a .gguf file.
Result<std::unique_ptr<Tokenizer>> LoadCheckpointTokenizer(const std::string& checkpoint);
// The tokenizer inside an opened GGUF file, from its metadata (GgufFile::TakeMetadata).
Result<std::unique_ptr<Tokenizer>> TokenizerFromGguf(Json metadata, const std::string& path);

}  // namespace specula
