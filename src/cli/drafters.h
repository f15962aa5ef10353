// --drafter: which drafter speculative decoding uses, as generate, bench and serve name it.
//   model   the MTP assistant given with -md/--draft (the default when one is given)
//   lookup  prompt lookup: continues the longest recent n-gram match; needs no assistant
//   hybrid  per round the better of the two, by expected tokens per second (needs -md)
//   tree    the MTP assistant's best-first token tree of --tree-width choices per step (needs -md)
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "specula/spec/hybrid_drafter.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/spec/mtp_tree_drafter.h"

namespace specula::cli {

struct DrafterFlags {
  std::string kind;  // empty: "model" with -md, no drafter without
  int lookup_min = 2, lookup_max = 4;
  TreeOptions tree;  // --tree-width, --tree-depth
};

void AddDrafterFlags(CLI::App& c, DrafterFlags& f);

// The drafter kind the flags ask for ("" = none), checked against whether -md was given.
Result<std::string> ResolveDrafter(const DrafterFlags& f, bool have_assistant);

// One run's drafter and the drafters it is built from.
struct Drafters {
  std::unique_ptr<MtpDrafter> model;
  std::unique_ptr<Drafter> derived;  // NgramDrafter, HybridDrafter over `model`, MtpTreeDrafter
  Drafter* get() const { return derived ? derived.get() : model.get(); }
};

// `kind` from ResolveDrafter; `assistant` non-null for "model", "hybrid" and "tree". Other kinds
// (none, or bench's "replay") give no drafter.
Drafters MakeDrafters(const std::string& kind, const Gemma4Assistant* assistant,
                      const DrafterFlags& f);

}  // namespace specula::cli
