#include "src/cli/drafters.h"

namespace specula::cli {

void AddDrafterFlags(CLI::App& c, DrafterFlags& f) {
  c.add_option("--drafter", f.kind,
               "model (the -md assistant; default with -md) | lookup (prompt lookup: continues "
               "the longest recent n-gram match, no assistant needed) | hybrid (each round the "
               "better of the two, needs -md) | tree (the assistant's token tree, needs -md)");
  c.add_option("--lookup-min", f.lookup_min, "prompt lookup: shortest n-gram match (default 2)");
  c.add_option("--lookup-max", f.lookup_max,
               "prompt lookup: longest n-gram matched, preferred (default 4)");
  c.add_option("--tree-width", f.tree.width,
               "tree drafting: choices per step and nodes expanded per depth, 1-8 (default 2); "
               "--draft-max is the tree's number of nodes");
  c.add_option("--tree-depth", f.tree.depth,
               "tree drafting: deepest node, i.e. drafter steps per round (default: --draft-max)");
  c.add_flag("!--tree-fixed", f.tree.by_cost,
             "tree drafting: always --draft-max nodes (default: as many as pay for their rows)");
}

Result<std::string> ResolveDrafter(const DrafterFlags& f, bool have_assistant) {
  const NgramOptions ngram{.min_n = f.lookup_min, .max_n = f.lookup_max};
  if (Status s = ngram.Validate(); !s.ok()) return s.WithContext("--lookup-min/--lookup-max");
  if (ngram.max_n > 64)
    return Error("--lookup-max: must be <= 64 (got " + std::to_string(f.lookup_max) + ")");
  if (Status s = f.tree.Validate(); !s.ok()) return s.WithContext("--tree-width/--tree-depth");
  if (f.kind.empty()) return std::string(have_assistant ? "model" : "");
  if (f.kind != "model" && f.kind != "lookup" && f.kind != "hybrid" && f.kind != "tree")
    return Error("--drafter: expected model, lookup, hybrid or tree (got '" + f.kind + "')");
  if (f.kind != "lookup" && !have_assistant)
    return Error("--drafter " + f.kind + ": needs an MTP assistant (-md/--draft DIR)");
  return f.kind;
}

Drafters MakeDrafters(const std::string& kind, const Gemma4Assistant* assistant,
                      const DrafterFlags& f) {
  Drafters d;
  const NgramOptions ngram{.min_n = f.lookup_min, .max_n = f.lookup_max};
  if (kind == "lookup") {
    d.derived = std::make_unique<NgramDrafter>(ngram);
    return d;
  }
  if (kind == "tree" && assistant != nullptr) {
    d.derived = std::make_unique<MtpTreeDrafter>(*assistant, f.tree);
    return d;
  }
  if ((kind != "model" && kind != "hybrid") || assistant == nullptr) return d;
  d.model = std::make_unique<MtpDrafter>(*assistant);
  if (kind == "hybrid") {
    HybridOptions options;
    options.ngram = ngram;
    d.derived = std::make_unique<HybridDrafter>(*d.model, options);
  }
  return d;
}

}  // namespace specula::cli
