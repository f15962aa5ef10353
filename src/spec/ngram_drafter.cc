#include "specula/spec/ngram_drafter.h"

#include <string>

#include "specula/runtime/generate.h"

namespace specula {

Status NgramOptions::Validate() const {
  if (min_n < 1) return Error("ngram min_n: must be >= 1 (got " + std::to_string(min_n) + ")");
  if (max_n < min_n) {
    return Error("ngram max_n: must be >= min_n = " + std::to_string(min_n) + " (got " +
                 std::to_string(max_n) + ")");
  }
  return Status();
}

// One pass from the newest end backwards; each candidate end is scored by how many tokens before
// it agree with the history's own suffix. Costs O(length of the history) per round, typically a
// few microseconds per thousand tokens: no index to keep in step with rollbacks.
NgramMatch FindNgram(std::span<const int> history, const NgramOptions& options) {
  NgramMatch best;
  const int len = static_cast<int>(history.size());
  // `end`: the candidate continuation's first index; the suffix itself ends at len.
  for (int end = len - 1; end >= options.min_n; --end) {
    int m = 0;
    while (m < options.max_n && m < end && history[end - 1 - m] == history[len - 1 - m]) ++m;
    if (m >= options.min_n && m > best.length) {
      best = {.length = m, .start = end};
      if (m == options.max_n) break;
    }
  }
  return best;
}

Draft NgramContinuation(std::span<const int> history, const NgramMatch& match, int max_tokens,
                        std::span<const int> stop_ids) {
  Draft d;
  d.source = DraftSource::kLookup;
  const size_t len = history.size();
  if (match.length == 0 || max_tokens <= 0 || static_cast<size_t>(match.start) >= len) return d;
  for (size_t at = static_cast<size_t>(match.start);
       d.tokens.size() < static_cast<size_t>(max_tokens); ++at) {
    const int tok = at < len ? history[at] : d.tokens[at - len];
    d.tokens.push_back(tok);
    if (IsStop(stop_ids, tok)) break;
  }
  return d;
}

Draft NgramDrafter::Propose(const DraftRequest& req, ThreadPool&) {
  return NgramContinuation(req.history, FindNgram(req.history, options_), req.max_tokens,
                           req.stop_ids);
}

}  // namespace specula
