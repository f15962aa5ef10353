#include <iostream>

#include "src/cli/commands.h"
#include "src/testing/random_checkpoint.h"

namespace specula::cli {
namespace {
struct MakeRandomFlags {
  std::string out, preset = "e2b-tiny", dtype = "bf16", tokenizer, assistant, head = "auto";
  bool assistant_only = false;
  uint64_t seed = 1;
  int shards = 1;
  float logit_gain = 0, qk_norm = 0;
};
}  // namespace

Runner AddMakeRandom(CLI::App& app) {
  auto flags = std::make_shared<MakeRandomFlags>();
  CLI::App* c = app.add_subcommand(
      "make-random", "Write a Gemma 4 checkpoint with random weights (for tests and benchmarks)");
  c->add_option("out", flags->out, "output directory")->required();
  std::string names;
  for (const auto& n : TargetPresetNames()) names += (names.empty() ? "" : ", ") + n;
  c->add_option("--preset", flags->preset, "shape: " + names);
  c->add_option("--dtype", flags->dtype, "bf16 | f16 | f32");
  c->add_option("--seed", flags->seed, "random seed");
  c->add_option("--shards", flags->shards, "number of safetensors shards (>1 writes an index)");
  c->add_option("--tokenizer", flags->tokenizer,
                "copy this tokenizer.json instead of a synthetic one");
  c->add_option("--logit-gain", flags->logit_gain, "embedding scale: logits get about this std");
  c->add_option("--qk-norm", flags->qk_norm, "q/k norm weight scale");
  c->add_option("--assistant", flags->assistant,
                "also write a matching MTP assistant to this directory");
  c->add_flag("--assistant-only", flags->assistant_only,
              "write only the assistant (the target exists)");
  c->add_option("--assistant-head", flags->head,
                "auto | centroid | dense (auto: centroid for E-series shapes)");
  return [flags]() {
    Result<RandomTargetSpec> spec = TargetPreset(flags->preset);
    if (!spec.ok()) return Fail("--preset: " + spec.status().message());
    if (flags->dtype == "bf16") {
      spec->dtype = DType::kBF16;
    } else if (flags->dtype == "f16") {
      spec->dtype = DType::kF16;
    } else if (flags->dtype == "f32") {
      spec->dtype = DType::kF32;
    } else {
      return Fail("--dtype: expected bf16, f16 or f32 (got '" + flags->dtype + "')");
    }
    if (flags->shards < 1 || flags->shards > 999) return Fail("--shards: must be in [1, 999]");
    spec->seed = flags->seed;
    if (flags->logit_gain > 0) spec->logit_gain = flags->logit_gain;
    if (flags->qk_norm > 0) spec->qk_norm_scale = flags->qk_norm;
    spec->shards = flags->shards;
    spec->tokenizer_json = flags->tokenizer;
    if (flags->assistant_only && flags->assistant.empty())
      return Fail("--assistant-only: needs --assistant DIR");
    if (!flags->assistant_only) {
      if (Status s = WriteRandomTarget(*spec, flags->out); !s.ok()) return Fail(s.message());
      std::cerr << "wrote " << flags->preset << " checkpoint to " << flags->out << "\n";
    }
    if (!flags->assistant.empty()) {
      RandomAssistantSpec a = AssistantPresetFor(flags->preset);
      if (flags->head == "centroid") {
        a.centroid_head = true;
      } else if (flags->head == "dense") {
        a.centroid_head = false;
      } else if (flags->head != "auto") {
        return Fail("--assistant-head: expected auto, centroid or dense (got '" + flags->head +
                    "')");
      }
      a.dtype = spec->dtype;
      a.seed = flags->seed + 1000;
      if (Status s = WriteRandomAssistant(a, *spec, flags->assistant); !s.ok())
        return Fail(s.message());
      std::cerr << "wrote its assistant to " << flags->assistant << "\n";
    }
    return 0;
  };
}

}  // namespace specula::cli
