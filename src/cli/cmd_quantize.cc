#include <cstdio>

#include "specula/formats/quantize.h"
#include "src/cli/commands.h"

namespace specula::cli {

Runner AddQuantize(CLI::App& app) {
  struct Flags {
    std::string in, out, type = "q8_0";
  };
  auto f = std::make_shared<Flags>();
  CLI::App* c = app.add_subcommand("quantize",
                                   "Write a quantized copy of a checkpoint (target or assistant)");
  c->add_option("in", f->in, "input checkpoint directory")->required();
  c->add_option("out", f->out, "output directory")->required();
  c->add_option("--type", f->type,
                "a block type (q8_0, q6_k, q5_k, q4_k, q3_k, q2_k, q5_1, q5_0, q4_1, q4_0, "
                "iq4_xs, iq4_nl) or one of llama.cpp's mixes (q4_k_m, q4_k_s, q5_k_m, q5_k_s, "
                "q3_k_l, q3_k_m, q3_k_s; q2_k, iq4_xs and iq4_nl are mixes too)");
  return [f]() {
    Result<QuantRecipe> recipe = ParseQuantRecipe(f->type);
    if (!recipe.ok()) return Fail("--type: " + recipe.status().message());
    Result<QuantizeStats> s = QuantizeCheckpoint(f->in, f->out, *recipe);
    if (!s.ok()) return Fail(s.status().message());
    std::string types;  // "120 Q4_K, 30 Q6_K"
    for (const auto& [t, n] : s->types)
      types += (types.empty() ? "" : ", ") + std::to_string(n) + " " + std::string(DTypeName(t));
    std::fprintf(stderr, "%s: quantized %d tensors (%s), kept %d exact: %.1f MB -> %.1f MB in %s\n",
                 recipe->name.c_str(), s->quantized, types.c_str(), s->kept, s->bytes_in / 1e6,
                 s->bytes_out / 1e6, f->out.c_str());
    return 0;
  };
}

}  // namespace specula::cli
