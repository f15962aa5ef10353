#include <iomanip>
#include <iostream>
#include <map>

#include "specula/models/gemma4.h"
#include "src/cli/commands.h"

namespace specula::cli {

Runner AddInspect(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  CLI::App* c =
      app.add_subcommand("inspect", "Validate a checkpoint and print its config and tensors");
  c->add_option("dir", *dir, "checkpoint directory")->required();
  return [dir]() {
    Result<std::unique_ptr<Gemma4Model>> m = Gemma4Model::Load(*dir);
    if (!m.ok()) return Fail(m.status().message());
    const Gemma4Model& model = **m;
    std::cout << model.config().Describe();
    std::map<std::string, std::pair<size_t, size_t>> by_dtype;  // dtype -> (count, bytes)
    for (const auto& [name, t] : model.store().all()) {
      auto& e = by_dtype[std::string(DTypeName(t->dtype))];
      ++e.first;
      e.second += t->nbytes;
    }
    std::cout << "tensors               " << model.store().all().size() << " (" << std::fixed
              << std::setprecision(1) << model.store().TotalBytes() / 1e6 << " MB)\n";
    for (const auto& [dt, e] : by_dtype) {
      std::cout << "  " << std::left << std::setw(20) << dt << e.first << " tensors, "
                << e.second / 1e6 << " MB\n";
    }
    return 0;
  };
}

}  // namespace specula::cli
