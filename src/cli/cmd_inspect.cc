#include <iomanip>
#include <iostream>
#include <map>

#include "specula/formats/gguf.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "src/cli/commands.h"

namespace specula::cli {
namespace {

// Whether `path` holds an MTP assistant: config.json's model_type, or the GGUF architecture.
bool IsAssistant(const std::string& path) {
  if (IsGgufPath(path)) {
    Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(path);
    if (!f.ok()) return false;  // the target loader reports the error
    const Json& arch = (*f)->metadata().contains("general.architecture")
                           ? (*f)->metadata()["general.architecture"]
                           : Json();
    return arch.is_string() && arch.get<std::string>() == "gemma4-assistant";
  }
  Result<Json> j = ReadJsonFile(path + "/config.json");
  if (!j.ok() || !j->is_object() || !(*j)["model_type"].is_string()) return false;
  return (*j)["model_type"].get<std::string>().find("assistant") != std::string::npos;
}

void PrintTensors(const WeightStore& store) {
  std::map<std::string, std::pair<size_t, size_t>> by_dtype;  // dtype -> (count, bytes)
  for (const auto& [name, t] : store.all()) {
    auto& e = by_dtype[std::string(DTypeName(t->dtype))];
    ++e.first;
    e.second += t->nbytes;
  }
  std::cout << "tensors               " << store.all().size() << " (" << std::fixed
            << std::setprecision(1) << store.TotalBytes() / 1e6 << " MB)\n";
  for (const auto& [dt, e] : by_dtype) {
    std::cout << "  " << std::left << std::setw(20) << dt << e.first << " tensors, "
              << e.second / 1e6 << " MB\n";
  }
}

// An assistant alone: its config and tensors; with a target, the exact layers it reads and
// whether it fits.
int InspectAssistant(const std::string& path, const std::string& target_path) {
  Result<AssistantCheckpoint> ck = OpenAssistantCheckpoint(path);
  if (!ck.ok()) return Fail(ck.status().message());
  std::cout << ck->config.Describe();
  if (!target_path.empty()) {
    Result<std::unique_ptr<Gemma4Model>> target = Gemma4Model::Load(target_path);
    if (!target.ok()) return Fail("-m: " + target.status().message());
    Result<std::unique_ptr<Gemma4Assistant>> a = Gemma4Assistant::Load(path, **target);
    if (!a.ok()) return Fail(a.status().message());
    std::cout << "with target           " << target_path << ": fits; reads its layer "
              << (*a)->SourceLayer(AttnType::kSliding) << " (sliding) and layer "
              << (*a)->SourceLayer(AttnType::kFull) << " (full)\n";
  }
  PrintTensors(*ck->store);
  return 0;
}

}  // namespace

Runner AddInspect(CLI::App& app) {
  struct Flags {
    std::string path, target;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* c = app.add_subcommand(
      "inspect",
      "Validate a checkpoint (target or MTP assistant) and print its config and tensors");
  c->add_option("dir", f->path, "checkpoint directory or .gguf file")->required();
  c->add_option("-m,--model", f->target,
                "assistants: the target to pair it with (checks the fit, names the layers read)");
  return [f]() {
    if (IsAssistant(f->path)) return InspectAssistant(f->path, f->target);
    if (!f->target.empty()) return Fail("-m: only an assistant is inspected against a target");
    Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(f->path);
    if (!m.ok()) return Fail(m.status().message());
    std::cout << (*m)->config().Describe();
    PrintTensors((*m)->store());
    return 0;
  };
}

}  // namespace specula::cli
