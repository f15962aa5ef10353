// Feeds the bytes as a whole .gguf file to GgufFile::Parse (header, metadata, tensor table), then
// what a loader does next with an accepted file: tensor names to their HF names, the metadata read
// as a target's and as an assistant's config.json and validated, and the tokenizer.ggml.* keys
// rebuilt into a tokenizer that encodes a short string.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "specula/formats/gguf.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/models/gemma4_config.h"
#include "specula/models/gemma4_gguf.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"

namespace specula {
namespace {

void Run(const uint8_t* data, size_t size) {
  const std::string path = "fuzz.gguf";
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Parse(data, size, path);
  if (!f.ok()) return;
  for (const auto& [name, t] : (*f)->tensors()) {
    const auto* p = static_cast<const uint8_t*>(t.data);
    if (p < data || t.nbytes > size || static_cast<size_t>(p - data) > size - t.nbytes) abort();
    (void)Gemma4HfName(name, "model.");
    (void)Gemma4AssistantHfName(name);
  }
  if (Result<Json> j = Gemma4ConfigFromGguf(**f); j.ok()) {
    (void)Gemma4Config::FromJson(*j, path);
  }
  if (Result<Json> j = Gemma4AssistantConfigFromGguf(**f); j.ok()) {
    (void)Gemma4AssistantConfig::FromJson(*j, path);
  }
  Result<Json> tj = TokenizerJsonFromGguf((*f)->TakeMetadata(), path);
  if (!tj.ok()) return;
  Result<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromJson(*tj, path);
  if (!tok.ok()) return;
  for (int id : (*tok)->Encode("a b\xE2\x96\x81<|turn>\xE6\x97\xA5\xFF")) {
    if (id < 0 || id >= (*tok)->vocab_size()) abort();
  }
}

}  // namespace
}  // namespace specula

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  specula::Run(data, size);
  return 0;
}
