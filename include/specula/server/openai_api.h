// The OpenAI-compatible request and response shapes of `specula serve`, as pure functions: request
// bodies are parsed and validated here (every user error becomes an ApiError naming the field),
// responses and Server-Sent Event chunks are built here. No sockets, no model.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "specula/base/json.h"
#include "specula/runtime/chat.h"
#include "specula/runtime/sampler.h"
#include "specula/spec/generate_one.h"

namespace specula::server {

// An error returned to the client as {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message = "";
  std::string param = "";  // the offending field, or empty
  std::string type = "invalid_request_error";
  std::string code = "";  // OpenAI's machine-readable code (e.g. "model_not_found"), or empty
};
std::string ErrorBody(const ApiError& e);

// Serializes a response; invalid UTF-8 (a model can emit any bytes) becomes U+FFFD, never an error.
inline std::string Dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

enum class Endpoint { kCompletions, kChat };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  std::string model;                  // empty: whatever the server serves
  std::string prompt;                 // completions: text (the server adds BOS)
  std::vector<int> prompt_ids;        // completions: token ids given directly (no BOS added)
  std::vector<ChatMessage> messages;  // chat
  std::optional<int> max_tokens;
  std::optional<float> temperature, top_p, min_p;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  std::optional<bool> speculative;
  std::optional<int> draft_max;
  std::optional<std::string> drafter;  // model | lookup | hybrid (those the server offers)
  // Specula's extension for a stream: each chunk lists its tokens' text and whether each was an
  // accepted draft token (`token_origins`), which is what the web chat marks.
  bool token_origins = false;
  // llama.cpp's field: false computes the whole prompt, resuming nothing (a cold measurement);
  // the request still leaves its cache for later ones.
  bool cache_prompt = true;
};

constexpr int kMaxDraftMax = 32;
constexpr int kMaxStopStrings = 16;

// Parses a request body. Unknown fields are ignored unless they ask for something this server
// does not do (n > 1, logprobs, tools, penalties, echo, ...): those are errors, not silently
// dropped wishes.
std::optional<ApiError> ParseCompletionRequest(std::string_view body, Endpoint endpoint,
                                               CompletionRequest* out);

// Finds stop strings in streamed text. Text that might be the start of a stop string is held back
// until it is known not to be.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds decoded text; returns the text that is now safe to send. After a match, stopped() is true
  // and the text up to (not including) the stop string has been returned.
  std::string Push(std::string_view text);
  std::string Flush();  // the held-back tail, at the end of generation
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

// What one finished (or streaming) request reports.
struct CompletionInfo {
  std::string id;     // "cmpl-..." / "chatcmpl-..."
  std::string model;  // the served model's name
  long created = 0;   // unix seconds
  Endpoint endpoint = Endpoint::kCompletions;
};

struct CompletionUsage {
  int prompt_tokens = 0;
  int cached_tokens = 0;  // of the prompt, resumed from a slot or a prompt-cache copy
  int completion_tokens = 0;
  // Speculative decoding in OpenAI's Predicted Outputs terms: generated tokens that were accepted
  // drafts, and draft tokens the target rejected.
  int accepted_draft_tokens = 0;
  long rejected_draft_tokens = 0;
};

// The per-request `speculative` block: null when the request decoded plainly.
Json SpeculativeBlock(bool enabled, int draft_max, const SpecStats& stats);
// The per-request `timings` block, named as llama.cpp's server names it: prompt tokens computed
// (`prompt_n`) and resumed from the prompt cache (`cache_n`), generated tokens (`predicted_n`),
// and their milliseconds and rates.
Json TimingsBlock(const GenerateStats& stats);

// What a finished request reports beside its text.
struct CompletionReport {
  CompletionUsage usage;
  Json speculative;
  Json timings;
};

Json CompletionResponse(const CompletionInfo& info, const std::string& text,
                        const std::string& finish_reason, const CompletionReport& report);
// What one stream chunk carries.
struct StreamDelta {
  std::string text = "";
  const std::string* finish_reason = nullptr;
  bool first = false;  // the chat endpoint's first chunk carries the assistant role
  // With CompletionRequest::token_origins: [{"text": piece, "draft": bool}, ...], one per token
  // (a piece may be empty: a stop id, a UTF-8 sequence the next token completes); text held back
  // until the end comes as a last entry without "draft". Null: not sent.
  Json token_origins = nullptr;
};
// One SSE event ("data: {...}\n\n"). The chunk with the finish reason also carries the report.
std::string StreamChunk(const CompletionInfo& info, const StreamDelta& delta);
std::string StreamFinalChunk(const CompletionInfo& info, const std::string& finish_reason,
                             const CompletionReport& report);
std::string StreamUsageChunk(const CompletionInfo& info, const CompletionUsage& usage);
inline constexpr std::string_view kStreamDone = "data: [DONE]\n\n";

}  // namespace specula::server
