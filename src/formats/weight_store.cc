#include "specula/formats/weight_store.h"

#include <set>

#include "specula/base/json.h"

namespace specula {

Result<std::unique_ptr<WeightStore>> WeightStore::OpenDir(const std::string& dir) {
  auto store = std::make_unique<WeightStore>();
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  if (FileExists(index)) {
    Result<Json> j = ReadJsonFile(index);
    if (!j.ok()) return j.status();
    FieldReader r(*j, index);
    const Json* wm = r.Object("weight_map", /*required=*/true);
    if (!r.ok()) return r.status();
    std::set<std::string> seen;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) return Error(index + ": weight_map." + it.key() + ": expected a file name");
      const std::string file = it.value().get<std::string>();
      if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
        return Error(index + ": weight_map." + it.key() + ": bad shard file name '" + file + "'");
      }
      weight_map[it.key()] = file;
      if (seen.insert(file).second) shard_files.push_back(file);
    }
  } else if (FileExists(single)) {
    shard_files.push_back("model.safetensors");
  } else {
    return Error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const std::string& f : shard_files) {
    Result<std::unique_ptr<SafetensorsFile>> sf = SafetensorsFile::Open(dir + "/" + f);
    if (!sf.ok()) return sf.status();
    store->files_.push_back(std::move(*sf));
  }
  for (const auto& f : store->files_) {
    for (const auto& [name, view] : f->tensors()) {
      // With an index, a tensor counts only in the shard the index names for it.
      if (!weight_map.empty()) {
        auto w = weight_map.find(name);
        if (w == weight_map.end() || dir + "/" + w->second != f->path()) continue;
      }
      if (store->index_.count(name)) return Error(f->path() + ": tensor '" + name + "' appears twice");
      store->index_[name] = &view;
    }
  }
  for (const auto& [name, file] : weight_map) {
    if (!store->index_.count(name)) {
      return Error(index + ": tensor '" + name + "' is listed for " + file + " but not found there");
    }
  }
  return store;
}

const TensorView* WeightStore::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

size_t WeightStore::TotalBytes() const {
  size_t n = 0;
  for (const auto& [name, t] : index_) n += t->nbytes;
  return n;
}

Result<const TensorView*> RequireTensor(const WeightStore& store, const std::string& name,
                                        const std::vector<int64_t>& shape, const std::string& why) {
  const TensorView* t = store.Find(name);
  const std::string suffix = why.empty() ? "" : " (" + why + ")";
  if (t == nullptr) return Error("missing tensor '" + name + "'" + suffix);
  const std::string where = (t->file ? *t->file + ": " : std::string()) + "tensor '" + name + "'";
  if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16) {
    return Error(where + ": dtype " + std::string(DTypeName(t->dtype)) +
                 " is not a float type (F32, F16, BF16)");
  }
  if (t->shape != shape) {
    TensorView expect;
    expect.shape = shape;
    return Error(where + ": shape " + t->ShapeString() + " disagrees with the config, which implies " +
                 expect.ShapeString() + suffix);
  }
  return t;
}

}  // namespace specula
