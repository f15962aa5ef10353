// Prompt lookup: a drafter that costs no model pass. It finds the most recent earlier occurrence of
// the sequence's last n tokens (the prompt and the text generated so far) and proposes what
// followed it there. Pays on text that copies its input: code edits, summaries, answers quoting a
// document, JSON that repeats keys.
#pragma once

#include <span>

#include "specula/base/status.h"
#include "specula/spec/drafter.h"

namespace specula {

struct NgramOptions {
  int min_n = 2;  // the shortest suffix that counts as a match
  int max_n = 4;  // longer suffixes are preferred up to this length
  Status Validate() const;
};

// The match a lookup found: the continuation starts at `start` in the history.
struct NgramMatch {
  int length = 0;  // matched suffix length; 0 = no match of at least min_n tokens
  int start = 0;   // index of the first proposed token in the history
};

// The longest suffix of `history` (up to max_n, at least min_n tokens) that also ends earlier in
// it, at its most recent such end.
NgramMatch FindNgram(std::span<const int> history, const NgramOptions& options);

// Up to `max_tokens` tokens from match.start on, ending after a stop id. A continuation that runs
// into the matched suffix goes on with its own proposals: a repeating pattern keeps repeating.
Draft NgramContinuation(std::span<const int> history, const NgramMatch& match, int max_tokens,
                        std::span<const int> stop_ids);

class NgramDrafter : public Drafter {
 public:
  explicit NgramDrafter(const NgramOptions& options) : options_(options) {}
  // Drafts are point masses (Draft::q empty) also when sampling: rejection sampling against a
  // deterministic proposal accepts with probability p(token), which keeps the target's law.
  Draft Propose(const DraftRequest& request, ThreadPool& pool) override;
  const NgramOptions& options() const { return options_; }

 private:
  NgramOptions options_;
};

}  // namespace specula
