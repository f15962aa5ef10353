// Feeds the bytes as the body of POST /v1/completions and of POST /v1/chat/completions to
// ParseCompletionRequest. A rejected body must give an error body that is valid JSON; an accepted
// one must hold only values in the documented ranges, its chat messages render through the Gemma 4
// template, and the response built from the prompt (cut by the request's stop strings, fed in small
// pieces as a stream would) serializes.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "specula/runtime/chat.h"
#include "specula/server/openai_api.h"

namespace specula::server {
namespace {

void CheckRanges(const CompletionRequest& r) {
  if (r.max_tokens && *r.max_tokens < 1) abort();
  if (r.temperature && !(*r.temperature >= 0 && *r.temperature <= 100)) abort();
  if (r.top_p && !(*r.top_p > 0 && *r.top_p <= 1)) abort();
  if (r.min_p && !(*r.min_p >= 0 && *r.min_p <= 1)) abort();
  if (r.top_k && *r.top_k < 0) abort();
  if (r.draft_max && (*r.draft_max < 1 || *r.draft_max > kMaxDraftMax)) abort();
  if (r.stop.size() > static_cast<size_t>(kMaxStopStrings)) abort();
  for (const std::string& s : r.stop) {
    if (s.empty()) abort();
  }
  for (int id : r.prompt_ids) {
    if (id < 0) abort();
  }
}

// Streams `text` through the stop matcher three bytes at a time: the output must be the text up to
// the earliest stop string, whichever way the pieces fall.
std::string CutAtStop(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = std::string::npos;
  for (const std::string& s : stops) cut = std::min(cut, text.find(s));
  StopMatcher m(stops);
  std::string out;
  for (size_t i = 0; i < text.size() && !m.stopped(); i += 3) out += m.Push(text.substr(i, 3));
  out += m.Flush();
  if (out != text.substr(0, cut) || m.stopped() != (cut != std::string::npos)) abort();
  return out;
}

void Run(std::string_view body, Endpoint endpoint) {
  CompletionRequest r;
  if (std::optional<ApiError> e = ParseCompletionRequest(body, endpoint, &r)) {
    if (e->status < 400 || e->status > 599 || e->message.empty()) abort();
    if (Json::parse(ErrorBody(*e), nullptr, /*allow_exceptions=*/false).is_discarded()) abort();
    return;
  }
  CheckRanges(r);
  const std::string prompt = endpoint == Endpoint::kChat
                                 ? RenderGemma4Chat(r.messages, /*add_generation_prompt=*/true)
                                 : r.prompt;
  const CompletionInfo info{.id = "cmpl-fuzz", .model = "m", .created = 1, .endpoint = endpoint};
  const std::string text = CutAtStop(prompt, r.stop);
  const std::string finish = "stop";
  (void)Dump(CompletionResponse(
      info, text, finish,
      {.usage = {.prompt_tokens = 1, .completion_tokens = 2},
       .speculative =
           SpeculativeBlock(r.speculative.value_or(false), r.draft_max.value_or(3), SpecStats{}),
       .timings = TimingsBlock(GenerateStats{})}));
  (void)StreamChunk(info,
                    {.text = text, .finish_reason = r.stream ? nullptr : &finish, .first = true});
}

}  // namespace
}  // namespace specula::server

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  specula::server::Run(body, specula::server::Endpoint::kCompletions);
  specula::server::Run(body, specula::server::Endpoint::kChat);
  return 0;
}
