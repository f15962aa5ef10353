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
  c->add_option("--type", f->type, "q8_0 | q4_0 | q6_k | q5_k | q4_k (GGUF block layouts)");
  return [f]() {
    DType t;
    if (f->type == "q8_0" || f->type == "Q8_0") {
      t = DType::kQ8_0;
    } else if (f->type == "q4_0" || f->type == "Q4_0") {
      t = DType::kQ4_0;
    } else if (f->type == "q6_k" || f->type == "Q6_K") {
      t = DType::kQ6_K;
    } else if (f->type == "q5_k" || f->type == "Q5_K") {
      t = DType::kQ5_K;
    } else if (f->type == "q4_k" || f->type == "Q4_K") {
      t = DType::kQ4_K;
    } else {
      return Fail("--type: expected q8_0, q4_0, q6_k, q5_k or q4_k (got '" + f->type + "')");
    }
    Result<QuantizeStats> s = QuantizeCheckpoint(f->in, f->out, t);
    if (!s.ok()) return Fail(s.status().message());
    std::fprintf(stderr, "quantized %d tensors, kept %d exact: %.1f MB -> %.1f MB in %s\n",
                 s->quantized, s->kept, s->bytes_in / 1e6, s->bytes_out / 1e6, f->out.c_str());
    return 0;
  };
}

}  // namespace specula::cli
