// Feeds the bytes as config.json to Gemma4Config::FromJson (targets) and
// Gemma4AssistantConfig::FromJson (MTP assistants), and JSON objects without a model_type as
// generation_config.json to GenerationConfig::LoadFromDir, which only reads a directory: the bytes
// go to a per-process temp file. A config that validates must hold the per-layer facts the forward
// pass indexes with.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "specula/base/json.h"
#include "specula/formats/generation_config.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/models/gemma4_config.h"

namespace specula {
namespace {

void CheckTarget(const Gemma4Config& c) {
  if (c.num_layers <= 0 || c.layers.size() != static_cast<size_t>(c.num_layers)) abort();
  for (int i = 0; i < c.num_layers; ++i) {
    const Gemma4LayerSpec& l = c.layers[static_cast<size_t>(i)];
    if (l.head_dim <= 0 || l.head_dim % 2 != 0 || l.num_kv_heads <= 0) abort();
    if (c.num_heads % l.num_kv_heads != 0) abort();
    if (l.kv_source < 0 || l.kv_source > i || (l.owns_kv && l.kv_source != i)) abort();
    const Gemma4LayerSpec& src = c.layers[static_cast<size_t>(l.kv_source)];
    if (!src.owns_kv || src.type != l.type) abort();
  }
  if (c.rope_sliding.rotated_pairs < 0 || 2 * c.rope_sliding.rotated_pairs > c.head_dim) abort();
  if (c.rope_full.rotated_pairs < 0 || 2 * c.rope_full.rotated_pairs > c.global_head_dim) abort();
  (void)c.LastKvOwner(AttnType::kFull);
  (void)c.Describe();
}

void CheckAssistant(const Gemma4AssistantConfig& c) {
  for (int l = 0; l < static_cast<int>(c.layer_types.size()); ++l) {
    if (c.LayerHeadDim(l) <= 0 || c.LayerKvHeads(l) <= 0) abort();
    if (c.num_heads % c.LayerKvHeads(l) != 0) abort();
  }
}

// The per-process directory LoadFromDir reads, removed when the fuzzer exits normally.
struct TempDir {
  TempDir()
      : path(std::filesystem::temp_directory_path() /
             ("specula-fuzz-config-" + std::to_string(getpid()))) {
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::filesystem::path path;
};

void CheckGenerationConfig(const std::string& text) {
  static const TempDir dir;
  std::ofstream(dir.path / "generation_config.json", std::ios::binary | std::ios::trunc) << text;
  Result<GenerationConfig> g = GenerationConfig::LoadFromDir(dir.path.string());
  if (!g.ok()) return;
  if (g->eos_token_ids.empty()) abort();
  for (int id : g->eos_token_ids) {
    if (id < 0) abort();
  }
}

void Run(const std::string& text) {
  // LoadFromDir parses with the same ParseJson: malformed JSON is covered here.
  Result<Json> j = ParseJson(text, "config.json");
  if (!j.ok()) return;
  if (Result<Gemma4Config> c = Gemma4Config::FromJson(*j, "config.json"); c.ok()) CheckTarget(*c);
  if (Result<Gemma4AssistantConfig> a = Gemma4AssistantConfig::FromJson(*j, "config.json");
      a.ok()) {
    CheckAssistant(*a);
  }
  // Writing the file for every input would cost half the rate: only objects shaped like a
  // generation_config.json (no model_type) go there.
  if (j->is_object() && !j->contains("model_type")) CheckGenerationConfig(text);
}

}  // namespace
}  // namespace specula

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  specula::Run(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
