// A completion request turned into an engine job, and the job's tokens turned back into the text a
// client sees. No sockets here: http_server.cc drives these from its connections.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "specula/formats/generation_config.h"
#include "specula/server/openai_api.h"
#include "specula/server/scheduler.h"
#include "specula/tokenizer/tokenizer.h"

namespace specula::server {

// What building a job needs to know of the server.
struct CompletionContext {
  const Tokenizer* tokenizer = nullptr;
  const GenerationConfig* generation = nullptr;
  int vocab_size = 0;
  int context = 0;            // positions per sequence
  std::string model_name;     // a request naming another model gets 404 model_not_found
  bool have_drafter = false;  // speculative by default, with the default drafter
  std::map<std::string, Drafter*> drafters;  // those a request may name
  int draft_max = 3;                         // per-request default
  std::string draft_policy = "auto";         // each speculative request gets its own policy
};

struct PreparedCompletion {
  CompletionRequest request;
  std::shared_ptr<Job> job;
};

// Parses the body and builds the job (prompt ids, stop ids, sampling, draft length). Errors name
// the field. Tokenizes the prompt, so it is the costly part of a request before the engine.
std::optional<ApiError> PrepareCompletion(const CompletionContext& ctx, std::string_view body,
                                          Endpoint endpoint, PreparedCompletion* out);

// Follows a job's tokens: stop ids are not shown, UTF-8 is decoded across token boundaries, and the
// text ends before the first stop string.
class CompletionText {
 public:
  CompletionText(const Tokenizer& tokenizer, const CompletionRequest& request,
                 std::vector<int> stop_ids)
      : decoder_(tokenizer),
        stops_(request.stop),
        stop_ids_(std::move(stop_ids)),
        marked_(request.token_origins) {}

  // The text that is safe to send, given the tokens generated since the last call and how each
  // came. With `marks`, appends one StreamDelta::token_origins entry per token taken.
  std::string Add(std::span<const int> tokens, std::span<const TokenOrigin> origins,
                  Json* marks = nullptr);
  // The held-back tail, once the job is done (with `marks`: as an entry without "draft").
  std::string Finish(Json* marks = nullptr);
  bool stopped() const { return stops_.stopped(); }
  // Tokens generated up to the one that completed a stop string (all of them without a stop), and
  // how many of those were accepted draft tokens.
  int tokens() const { return tokens_; }
  int draft_tokens() const { return draft_tokens_; }
  bool marked() const { return marked_; }  // the request asked for token_origins

 private:
  StreamDecoder decoder_;
  StopMatcher stops_;
  std::vector<int> stop_ids_;
  bool marked_ = false;
  int tokens_ = 0;
  int draft_tokens_ = 0;
};

// The OpenAI finish_reason of a finished job.
std::string FinishReason(bool stop_string_matched, StopReason engine_stop);

}  // namespace specula::server
