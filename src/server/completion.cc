#include "src/server/completion.h"

#include <algorithm>
#include <chrono>

#include "specula/runtime/prompt.h"

namespace specula::server {

std::optional<ApiError> PrepareCompletion(const CompletionContext& ctx, std::string_view body,
                                          Endpoint endpoint, PreparedCompletion* out) {
  CompletionRequest& cr = out->request;
  if (auto e = ParseCompletionRequest(body, endpoint, &cr)) return e;
  if (!cr.model.empty() && cr.model != ctx.model_name) {
    return ApiError{.status = 404,
                    .message = "the model '" + cr.model + "' does not exist; this server serves '" +
                               ctx.model_name + "'",
                    .param = "model",
                    .code = "model_not_found"};
  }
  out->job = std::make_shared<Job>();
  Job& job = *out->job;
  const Tokenizer& tok = *ctx.tokenizer;
  const GenerationConfig& gen = *ctx.generation;
  std::vector<int>& prompt = job.prompt;
  if (endpoint == Endpoint::kChat) {
    prompt = EncodeChatPrompt(tok, cr.messages);
  } else if (!cr.prompt_ids.empty()) {
    prompt = cr.prompt_ids;
    for (int id : prompt) {
      if (id >= ctx.vocab_size) {
        return ApiError{.message = "prompt token id " + std::to_string(id) +
                                   " is out of range [0, " + std::to_string(ctx.vocab_size) + ")",
                        .param = "prompt"};
      }
    }
  } else {
    prompt = EncodeTextPrompt(tok, gen, cr.prompt);
  }
  const std::string param = endpoint == Endpoint::kChat ? "messages" : "prompt";
  const int n = static_cast<int>(prompt.size());
  if (n >= ctx.context) {
    return ApiError{.message = "the prompt has " + std::to_string(n) + " tokens; the context is " +
                               std::to_string(ctx.context),
                    .param = param};
  }
  // OpenAI's completions default is 16 tokens; chat runs to a stop or the end of the context.
  const int room = ctx.context - n;
  const int max_tokens =
      cr.max_tokens.value_or(endpoint == Endpoint::kChat ? room : std::min(16, room));
  if (max_tokens > room) {
    return ApiError{.message = "max_tokens " + std::to_string(max_tokens) + " + the prompt's " +
                               std::to_string(n) + " tokens exceed the context of " +
                               std::to_string(ctx.context),
                    .param = "max_tokens"};
  }
  GenerateOptions& base = job.options.base;
  base.max_new_tokens = max_tokens;
  base.stop_ids = StopIds(gen, &tok, endpoint == Endpoint::kChat);
  SamplingParams& sp = base.sampling;
  sp = ResolveSampling(gen, {.temperature = cr.temperature,
                             .top_p = cr.top_p,
                             .min_p = cr.min_p,
                             .top_k = cr.top_k,
                             .seed = cr.seed.value_or(static_cast<uint64_t>(
                                 std::chrono::steady_clock::now().time_since_epoch().count()))});
  if (Status s = sp.Validate(); !s.ok()) {  // "top_p: ...": the parameter is the request field
    return ApiError{.message = s.message(), .param = s.message().substr(0, s.message().find(':'))};
  }
  const bool spec = cr.speculative.value_or(ctx.have_drafter || cr.drafter.has_value());
  if (spec && cr.drafter) {
    const auto it = ctx.drafters.find(*cr.drafter);
    if (it == ctx.drafters.end()) {
      std::string offered;
      for (const auto& [name, d] : ctx.drafters) offered += (offered.empty() ? "" : ", ") + name;
      return ApiError{.message = "drafter '" + *cr.drafter + "' is not offered by this server" +
                                 (offered.empty() ? "" : " (offered: " + offered + ")"),
                      .param = "drafter"};
    }
    job.options.drafter = it->second;
  } else if (spec && !ctx.have_drafter) {
    return ApiError{.message =
                        "speculative decoding needs a drafter: start the server with -md DIR "
                        "or --drafter lookup, or name one in 'drafter'",
                    .param = "speculative"};
  }
  job.options.draft_max = spec ? cr.draft_max.value_or(ctx.draft_max) : 0;
  job.options.resume = cr.cache_prompt;
  if (spec) {
    // A seeded sampled request promises the same tokens every time, and which K a cost-aware
    // policy picks depends on measured time (which tokens a sampled draft yields depends on K):
    // such requests draft a fixed K. Greedy output is the target's whatever K is.
    const std::string name = cr.seed && !sp.greedy() ? "fixed" : ctx.draft_policy;
    Result<std::unique_ptr<DraftPolicy>> policy = MakeDraftPolicy(name, job.options.draft_max);
    if (!policy.ok()) return ApiError{.status = 500, .message = policy.status().message()};
    job.policy = std::move(*policy);
    job.options.policy = job.policy.get();
  }
  return std::nullopt;
}

std::string CompletionText::Add(std::span<const int> tokens, std::span<const TokenOrigin> origins,
                                Json* marks) {
  std::string text;
  for (size_t i = 0; i < tokens.size() && !stops_.stopped(); ++i) {
    const int t = tokens[i];
    const bool draft = i < origins.size() && origins[i] == TokenOrigin::kDraft;
    ++tokens_;
    draft_tokens_ += draft;
    const bool stop_id = std::find(stop_ids_.begin(), stop_ids_.end(), t) != stop_ids_.end();
    const std::string piece = stop_id ? "" : stops_.Push(decoder_.Push(t));
    if (marks) marks->push_back(Json{{"text", piece}, {"draft", draft}});
    text += piece;
  }
  return text;
}

std::string CompletionText::Finish(Json* marks) {
  if (stops_.stopped()) return "";
  std::string text = stops_.Push(decoder_.Flush());
  text += stops_.Flush();
  if (marks && !text.empty()) marks->push_back(Json{{"text", text}});
  return text;
}

std::string FinishReason(bool stop_string_matched, StopReason engine_stop) {
  return stop_string_matched || engine_stop == StopReason::kStopToken ? "stop" : "length";
}

}  // namespace specula::server
