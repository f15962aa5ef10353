// How a request becomes prompt ids, stop ids and sampling settings from what the checkpoint
// ships (generation_config.json, tokenizer, the Gemma 4 chat template): one definition that the
// CLI and the server both use.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "specula/formats/generation_config.h"
#include "specula/runtime/chat.h"
#include "specula/runtime/sampler.h"
#include "specula/tokenizer/tokenizer.h"

namespace specula {

// A plain text prompt: BOS, then the encoded text.
std::vector<int> EncodeTextPrompt(const Tokenizer& tok, const GenerationConfig& gen,
                                  std::string_view text);

// A chat: the rendered template (which starts with <bos>) ending with the model's turn opener.
std::vector<int> EncodeChatPrompt(const Tokenizer& tok, const std::vector<ChatMessage>& messages);

// The config's eos ids, plus <turn|> for a chat: the model ends its turn with it, and a
// checkpoint whose generation_config.json lists only <eos> would otherwise run past the turn.
// `tok` may be null (token-id prompts without a tokenizer; never a chat).
std::vector<int> StopIds(const GenerationConfig& gen, const Tokenizer* tok, bool chat);

// Sampling settings a request did not set come from generation_config.json when it sets
// do_sample, else decoding is greedy.
struct SamplingRequest {
  std::optional<float> temperature, top_p, min_p;
  std::optional<int> top_k;
  uint64_t seed = 0;
};
SamplingParams ResolveSampling(const GenerationConfig& gen, const SamplingRequest& request);

}  // namespace specula
