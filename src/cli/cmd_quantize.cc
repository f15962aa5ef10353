#include <cctype>
#include <cstdio>
#include <optional>

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
  c->add_option(
      "--type", f->type,
      "a GGUF block type: q8_0, q6_k, q5_k, q4_k, q5_1, q5_0, q4_1, q4_0, iq4_xs, iq4_nl");
  return [f]() {
    const auto lower = [](std::string s) {
      for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      return s;
    };
    std::optional<DType> t;
    for (DType b : kBlockTypes) {
      if (f->type == lower(std::string(DTypeName(b))) || f->type == DTypeName(b)) t = b;
    }
    if (!t) {
      return Fail("--type: expected one of " + lower(BlockTypeNames()) + " (got '" + f->type +
                  "')");
    }
    Result<QuantizeStats> s = QuantizeCheckpoint(f->in, f->out, *t);
    if (!s.ok()) return Fail(s.status().message());
    std::fprintf(stderr, "quantized %d tensors, kept %d exact: %.1f MB -> %.1f MB in %s\n",
                 s->quantized, s->kept, s->bytes_in / 1e6, s->bytes_out / 1e6, f->out.c_str());
    return 0;
  };
}

}  // namespace specula::cli
