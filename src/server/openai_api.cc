#include "specula/server/openai_api.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace specula::server {
namespace {

ApiError Bad(std::string param, std::string message) {
  return ApiError{.status = 400, .message = std::move(message), .param = std::move(param)};
}

std::string TypeName(const Json& v) { return v.type_name(); }

// Typed field readers: absent or null leaves `out` unset; a wrong type or range is an error.
std::optional<ApiError> ReadNumber(const Json& o, const char* key, double lo, double hi,
                                   std::optional<float>* out) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return std::nullopt;
  if (!it->is_number())
    return Bad(key, std::string("'") + key + "' must be a number, got " + TypeName(*it));
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi) {
    return Bad(key, std::string("'") + key + "' must be in [" + Json(lo).dump() + ", " +
                        Json(hi).dump() + "], got " + ShowJson(*it));
  }
  *out = static_cast<float>(v);
  return std::nullopt;
}

std::optional<ApiError> ReadInt(const Json& o, const char* key, int64_t lo, int64_t hi,
                                std::optional<int64_t>* out) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return std::nullopt;
  const auto out_of_range = [&] {
    return Bad(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "], got " + ShowJson(*it));
  };
  // Integers are compared exactly (as doubles, 2^63 - 1 and 2^63 are one value). Integral floats
  // (2.0) are accepted, as OpenAI does, 2.5 is not; one outside int64 cannot be converted at all.
  int64_t v = 0;
  if (it->is_number_unsigned()) {
    if (it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return out_of_range();
    }
    v = static_cast<int64_t>(it->get<uint64_t>());
  } else if (it->is_number_integer()) {
    v = it->get<int64_t>();
  } else if (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()) {
    const double d = it->get<double>();
    if (!(d >= -0x1p63 && d < 0x1p63)) return out_of_range();
    v = static_cast<int64_t>(d);
  } else {
    return Bad(key, std::string("'") + key + "' must be an integer, got " + ShowJson(*it));
  }
  if (v < lo || v > hi) return out_of_range();
  *out = v;
  return std::nullopt;
}

// The string at `key` of an object, or "" when absent or of another type (nlohmann's value()
// throws then: a request with {"type": 5} would be a server error, not a 400).
std::string StringAt(const Json& o, const char* key) {
  const auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<ApiError> ReadBool(const Json& o, const char* key, std::optional<bool>* out) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean())
    return Bad(key, std::string("'") + key + "' must be a boolean, got " + TypeName(*it));
  *out = it->get<bool>();
  return std::nullopt;
}

// Fields that would change the answer in ways this server does not implement.
std::optional<ApiError> RejectUnsupported(const Json& o) {
  std::optional<int64_t> i;
  if (auto e = ReadInt(o, "n", 1, 1, &i)) return Bad("n", "only n = 1 is supported");
  if (auto e = ReadInt(o, "best_of", 1, 1, &i))
    return Bad("best_of", "only best_of = 1 is supported");
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    std::optional<float> f;
    if (auto e = ReadNumber(o, key, 0.0, 0.0, &f))
      return Bad(key, std::string("'") + key + "' is not supported (only 0)");
  }
  std::optional<bool> b;
  if (auto e = ReadBool(o, "echo", &b)) return e;
  if (b.value_or(false)) return Bad("echo", "'echo' is not supported");
  for (const char* key : {"logprobs", "top_logprobs"}) {
    const auto it = o.find(key);
    if (it != o.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>()) &&
        !(it->is_number() && it->get<double>() == 0)) {
      return Bad(key, std::string("'") + key + "' is not supported");
    }
  }
  for (const char* key : {"tools", "functions"}) {
    const auto it = o.find(key);
    if (it != o.end() && !it->is_null() && !(it->is_array() && it->empty())) {
      return Bad(key, std::string("'") + key + "' (tool calling) is not supported");
    }
  }
  if (const auto it = o.find("suffix");
      it != o.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
    return Bad("suffix", "'suffix' is not supported");
  }
  if (const auto it = o.find("response_format"); it != o.end() && !it->is_null()) {
    if (!it->is_object() || StringAt(*it, "type") != "text") {
      return Bad("response_format", "only response_format {\"type\": \"text\"} is supported");
    }
  }
  if (const auto it = o.find("logit_bias");
      it != o.end() && !it->is_null() && !(it->is_object() && it->empty())) {
    return Bad("logit_bias", "'logit_bias' is not supported");
  }
  return std::nullopt;
}

std::optional<ApiError> ReadMessages(const Json& o, std::vector<ChatMessage>* out) {
  const auto it = o.find("messages");
  if (it == o.end()) return Bad("messages", "'messages' is required");
  if (!it->is_array()) return Bad("messages", "'messages' must be an array, got " + TypeName(*it));
  if (it->empty()) return Bad("messages", "'messages' is empty");
  bool any_text = false;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& m = (*it)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return Bad(where, where + " must be an object");
    const auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return Bad(where + ".role", where + ".role must be a string");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";
    if (r != "system" && r != "user" && r != "assistant") {
      return Bad(where + ".role",
                 where + ".role must be system, user or assistant, got '" + r + "'");
    }
    std::string text;
    const auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      text.clear();
    } else if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {  // [{"type": "text", "text": "..."}]
      for (const Json& part : *content) {
        if (!part.is_object() || StringAt(part, "type") != "text" || !part.contains("text") ||
            !part["text"].is_string()) {
          return Bad(where + ".content", where + ".content: only text parts are supported");
        }
        text += part["text"].get<std::string>();
      }
    } else {
      return Bad(where + ".content", where + ".content must be a string or an array of text parts");
    }
    any_text |= !text.empty();
    out->push_back({r, std::move(text)});
  }
  if (!any_text) return Bad("messages", "every message is empty");
  return std::nullopt;
}

std::optional<ApiError> ReadPrompt(const Json& o, CompletionRequest* out) {
  const auto it = o.find("prompt");
  if (it == o.end() || it->is_null()) return Bad("prompt", "'prompt' is required");
  if (it->is_string()) {
    out->prompt = it->get<std::string>();
    if (out->prompt.empty()) return Bad("prompt", "'prompt' is empty");
    return std::nullopt;
  }
  if (!it->is_array())
    return Bad("prompt", "'prompt' must be a string or an array, got " + TypeName(*it));
  if (it->empty()) return Bad("prompt", "'prompt' is empty");
  if (it->size() == 1 && (*it)[0].is_string()) {
    out->prompt = (*it)[0].get<std::string>();
    if (out->prompt.empty()) return Bad("prompt", "'prompt' is empty");
    return std::nullopt;
  }
  for (const Json& v : *it) {
    if (v.is_string()) return Bad("prompt", "several prompts in one request are not supported");
    if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
        v.get<int64_t>() > std::numeric_limits<int>::max()) {
      return Bad("prompt", "'prompt' token ids must be non-negative integers, got " + ShowJson(v));
    }
    out->prompt_ids.push_back(static_cast<int>(v.get<int64_t>()));
  }
  return std::nullopt;
}

std::optional<ApiError> ReadStop(const Json& o, std::vector<std::string>* out) {
  const auto it = o.find("stop");
  if (it == o.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) {
    if (it->get<std::string>().empty()) return Bad("stop", "'stop' entries must not be empty");
    out->push_back(it->get<std::string>());
    return std::nullopt;
  }
  const Json& list = *it;
  if (!list.is_array()) return Bad("stop", "'stop' must be a string or an array of strings");
  if (list.size() > static_cast<size_t>(kMaxStopStrings))
    return Bad("stop", "'stop' has more than " + std::to_string(kMaxStopStrings) + " strings");
  for (const Json& s : list) {
    if (!s.is_string()) return Bad("stop", "'stop' entries must be strings, got " + ShowJson(s));
    if (s.get<std::string>().empty()) return Bad("stop", "'stop' entries must not be empty");
    out->push_back(s.get<std::string>());
  }
  return std::nullopt;
}

}  // namespace

std::string ErrorBody(const ApiError& e) {
  // Messages can quote what the client sent (a path, a model name): invalid UTF-8 is replaced.
  return Dump(Json{{"error",
                    {{"message", e.message},
                     {"type", e.type},
                     {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
                     {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}}}});
}

std::optional<ApiError> ParseCompletionRequest(std::string_view body, Endpoint endpoint,
                                               CompletionRequest* out) {
  *out = CompletionRequest{};
  out->endpoint = endpoint;
  // (Before parsing: dumping or copying a value nested ~10^5 deep would overflow the stack.)
  if (JsonNestingDepth(body) > kMaxJsonDepth) {
    return Bad("", "the request body nests arrays and objects more than " +
                       std::to_string(kMaxJsonDepth) + " deep");
  }
  const Json o = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (o.is_discarded()) return Bad("", "the request body is not valid JSON");
  if (!o.is_object()) return Bad("", "the request body must be a JSON object");
  if (auto e = RejectUnsupported(o)) return e;
  if (const auto it = o.find("model"); it != o.end() && !it->is_null()) {
    if (!it->is_string()) return Bad("model", "'model' must be a string, got " + TypeName(*it));
    out->model = it->get<std::string>();
  }
  if (endpoint == Endpoint::kChat) {
    if (auto e = ReadMessages(o, &out->messages)) return e;
  } else {
    if (auto e = ReadPrompt(o, out)) return e;
  }
  std::optional<int64_t> i;
  // Chat's max_completion_tokens replaces max_tokens when it is given (not null).
  const auto mct = o.find("max_completion_tokens");
  const char* max_key = endpoint == Endpoint::kChat && mct != o.end() && !mct->is_null()
                            ? "max_completion_tokens"
                            : "max_tokens";
  if (auto e = ReadInt(o, max_key, 1, std::numeric_limits<int>::max(), &i)) return e;
  if (i) out->max_tokens = static_cast<int>(*i);
  if (auto e = ReadNumber(o, "temperature", 0.0, 100.0, &out->temperature)) return e;
  if (auto e = ReadNumber(o, "top_p", 0.0, 1.0, &out->top_p)) return e;
  if (out->top_p && *out->top_p <= 0.0f) return Bad("top_p", "'top_p' must be in (0, 1]");
  if (auto e = ReadNumber(o, "min_p", 0.0, 1.0, &out->min_p)) return e;
  i.reset();
  if (auto e = ReadInt(o, "top_k", 0, std::numeric_limits<int>::max(), &i)) return e;
  if (i) out->top_k = static_cast<int>(*i);
  i.reset();
  if (auto e = ReadInt(o, "seed", std::numeric_limits<int64_t>::min(),
                       std::numeric_limits<int64_t>::max(), &i))
    return e;
  if (i) out->seed = static_cast<uint64_t>(*i);
  if (auto e = ReadStop(o, &out->stop)) return e;
  std::optional<bool> b;
  if (auto e = ReadBool(o, "stream", &b)) return e;
  out->stream = b.value_or(false);
  if (const auto it = o.find("stream_options"); it != o.end() && !it->is_null()) {
    if (!it->is_object()) return Bad("stream_options", "'stream_options' must be an object");
    b.reset();
    if (auto e = ReadBool(*it, "include_usage", &b))
      return Bad("stream_options.include_usage", e->message);
    out->include_usage = b.value_or(false);
  }
  if (auto e = ReadBool(o, "speculative", &out->speculative)) return e;
  i.reset();
  if (auto e = ReadInt(o, "draft_max", 1, kMaxDraftMax, &i)) return e;
  if (i) out->draft_max = static_cast<int>(*i);
  if (const auto it = o.find("drafter"); it != o.end() && !it->is_null()) {
    if (!it->is_string()) return Bad("drafter", "'drafter' must be a string");
    out->drafter = it->get<std::string>();
  }
  b.reset();
  if (auto e = ReadBool(o, "token_origins", &b)) return e;
  out->token_origins = b.value_or(false);
  b.reset();
  if (auto e = ReadBool(o, "cache_prompt", &b)) return e;
  out->cache_prompt = b.value_or(true);
  return std::nullopt;
}

std::string StopMatcher::Push(std::string_view text) {
  if (stopped_) return "";
  held_ += text;
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) cut = std::min(cut, held_.find(s));
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, cut);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::Flush() {
  std::string out = stopped_ ? "" : held_;
  held_.clear();
  return out;
}

Json SpeculativeBlock(bool enabled, int draft_max, const SpecStats& s) {
  if (!enabled) return Json{{"enabled", false}};
  return Json{{"enabled", true},
              {"draft_max", draft_max},
              {"draft_rounds", s.draft_rounds},
              {"drafted", s.drafted},
              {"accepted", s.accepted},
              {"acceptance_rate", s.acceptance_rate()},
              {"mean_tokens_per_round", s.mean_tokens_per_round()},
              {"accepted_per_position", s.accepted_per_position},
              {"lookup_drafted", s.lookup_drafted},
              {"lookup_accepted", s.lookup_accepted},
              {"tree_rounds", s.tree_rounds}};
}

namespace {
Json Usage(const CompletionUsage& u) {
  return Json{{"prompt_tokens", u.prompt_tokens},
              {"completion_tokens", u.completion_tokens},
              {"total_tokens", u.prompt_tokens + u.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
              {"completion_tokens_details",
               {{"accepted_prediction_tokens", u.accepted_draft_tokens},
                {"rejected_prediction_tokens", u.rejected_draft_tokens}}}};
}
Json Envelope(const CompletionInfo& info, bool chunk) {
  const bool chat = info.endpoint == Endpoint::kChat;
  return Json{
      {"id", info.id},
      {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
      {"created", info.created},
      {"model", info.model}};
}
std::string Event(const Json& j) { return "data: " + Dump(j) + "\n\n"; }
}  // namespace

Json TimingsBlock(const GenerateStats& s) {
  const int computed = s.prompt_tokens - s.cached_tokens;
  const auto per_second = [](int n, double seconds) { return seconds > 0 ? n / seconds : 0.0; };
  return Json{{"cache_n", s.cached_tokens},
              {"prompt_n", computed},
              {"prompt_ms", s.prefill_s * 1e3},
              {"prompt_per_second", per_second(computed, s.prefill_s)},
              {"predicted_n", s.generated_tokens},
              {"predicted_ms", s.decode_s * 1e3},
              {"predicted_per_second", s.decode_tok_per_s()}};
}

Json CompletionResponse(const CompletionInfo& info, const std::string& text,
                        const std::string& finish_reason, const CompletionReport& report) {
  Json j = Envelope(info, false);
  Json choice = {{"index", 0}, {"finish_reason", finish_reason}};
  if (info.endpoint == Endpoint::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
    choice["logprobs"] = nullptr;
  }
  j["choices"] = Json::array({choice});
  j["usage"] = Usage(report.usage);
  j["speculative"] = report.speculative;
  j["timings"] = report.timings;
  return j;
}

std::string StreamChunk(const CompletionInfo& info, const StreamDelta& d) {
  Json j = Envelope(info, true);
  Json choice = {{"index", 0},
                 {"finish_reason", d.finish_reason ? Json(*d.finish_reason) : Json(nullptr)}};
  if (info.endpoint == Endpoint::kChat) {
    Json delta = Json::object();
    if (d.first) delta["role"] = "assistant";
    if (!d.text.empty() || d.first) delta["content"] = d.text;
    choice["delta"] = delta;
  } else {
    choice["text"] = d.text;
    choice["logprobs"] = nullptr;
  }
  if (!d.token_origins.is_null()) choice["token_origins"] = d.token_origins;
  j["choices"] = Json::array({choice});
  return Event(j);
}

std::string StreamFinalChunk(const CompletionInfo& info, const std::string& finish_reason,
                             const CompletionReport& report) {
  Json j = Json::parse(StreamChunk(info, {.finish_reason = &finish_reason}).substr(6));
  j["usage"] = Usage(report.usage);
  j["speculative"] = report.speculative;
  j["timings"] = report.timings;
  return Event(j);
}

std::string StreamUsageChunk(const CompletionInfo& info, const CompletionUsage& usage) {
  Json j = Envelope(info, true);
  j["choices"] = Json::array();
  j["usage"] = Usage(usage);
  return Event(j);
}

}  // namespace specula::server
