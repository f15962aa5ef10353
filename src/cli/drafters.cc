#include "src/cli/drafters.h"

namespace specula::cli {

void AddDrafterFlags(CLI::App& c, DrafterFlags& f) {
  c.add_option("--drafter", f.kind,
               "model (the -md assistant; default with -md) | lookup (prompt lookup: continues "
               "the longest recent n-gram match, no assistant needed) | hybrid (each round the "
               "better of the two, needs -md)");
  c.add_option("--lookup-min", f.lookup_min, "prompt lookup: shortest n-gram match (default 2)");
  c.add_option("--lookup-max", f.lookup_max,
               "prompt lookup: longest n-gram matched, preferred (default 4)");
}

Result<std::string> ResolveDrafter(const DrafterFlags& f, bool have_assistant) {
  const NgramOptions ngram{.min_n = f.lookup_min, .max_n = f.lookup_max};
  if (Status s = ngram.Validate(); !s.ok()) return s.WithContext("--lookup-min/--lookup-max");
  if (ngram.max_n > 64)
    return Error("--lookup-max: must be <= 64 (got " + std::to_string(f.lookup_max) + ")");
  if (f.kind.empty()) return std::string(have_assistant ? "model" : "");
  if (f.kind != "model" && f.kind != "lookup" && f.kind != "hybrid")
    return Error("--drafter: expected model, lookup or hybrid (got '" + f.kind + "')");
  if (f.kind != "lookup" && !have_assistant)
    return Error("--drafter " + f.kind + ": needs an MTP assistant (-md/--draft DIR)");
  return f.kind;
}

Drafters MakeDrafters(const std::string& kind, const Gemma4Assistant* assistant,
                      const DrafterFlags& f) {
  Drafters d;
  const NgramOptions ngram{.min_n = f.lookup_min, .max_n = f.lookup_max};
  if (kind == "lookup") {
    d.lookup = std::make_unique<NgramDrafter>(ngram);
    return d;
  }
  if ((kind != "model" && kind != "hybrid") || assistant == nullptr) return d;
  d.model = std::make_unique<MtpDrafter>(*assistant);
  if (kind == "hybrid") {
    HybridOptions options;
    options.ngram = ngram;
    d.lookup = std::make_unique<HybridDrafter>(*d.model, options);
  }
  return d;
}

}  // namespace specula::cli
