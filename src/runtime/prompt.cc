#include "specula/runtime/prompt.h"

#include <algorithm>

namespace specula {

std::vector<int> EncodeTextPrompt(const Tokenizer& tok, const GenerationConfig& gen,
                                  std::string_view text) {
  std::vector<int> ids = {gen.bos_token_id};
  const std::vector<int> body = tok.Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::vector<int> EncodeChatPrompt(const Tokenizer& tok, const std::vector<ChatMessage>& messages) {
  return tok.Encode(RenderGemma4Chat(messages, /*add_generation_prompt=*/true));
}

std::vector<int> StopIds(const GenerationConfig& gen, const Tokenizer* tok, bool chat) {
  std::vector<int> ids = gen.eos_token_ids;
  if (chat && tok) {
    const std::optional<int> eot = tok->TokenId("<turn|>");
    if (eot && std::find(ids.begin(), ids.end(), *eot) == ids.end()) ids.push_back(*eot);
  }
  return ids;
}

SamplingParams ResolveSampling(const GenerationConfig& gen, const SamplingRequest& request) {
  SamplingParams sp;
  if (gen.do_sample) {
    sp.temperature = gen.temperature.value_or(1.0f);
    sp.top_k = gen.top_k.value_or(0);
    sp.top_p = gen.top_p.value_or(1.0f);
    sp.min_p = gen.min_p.value_or(0.0f);
  }
  sp.temperature = request.temperature.value_or(sp.temperature);
  sp.top_k = request.top_k.value_or(sp.top_k);
  sp.top_p = request.top_p.value_or(sp.top_p);
  sp.min_p = request.min_p.value_or(sp.min_p);
  sp.seed = request.seed;
  return sp;
}

}  // namespace specula
