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
      if (!it.value().is_string())
        return Error(index + ": weight_map." + it.key() + ": expected a file name");
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
    // Quantized tensors of this file: U8 [..., rows, row_bytes] -> block dtype [..., rows, cols]
    // (a matrix, or a stack of them such as a layer's experts).
    std::map<std::string, DType> quant;
    std::map<std::string, const TensorView*> retyped;
    if (auto m = f->metadata().find("specula_quant"); m != f->metadata().end()) {
      Result<Json> q = ParseJson(m->second, f->path() + " (__metadata__.specula_quant)");
      if (!q.ok()) return q.status();
      if (!q->is_object())
        return Error(f->path() + ": __metadata__.specula_quant: expected a JSON object");
      for (auto it = q->begin(); it != q->end(); ++it) {
        const std::string type = it.value().is_string() ? it.value().get<std::string>() : "";
        for (DType t : kBlockTypes) {
          if (type == DTypeName(t)) quant[it.key()] = t;
        }
        if (!quant.count(it.key())) {
          return Error(f->path() + ": __metadata__.specula_quant." + it.key() +
                       ": expected a block type (" + BlockTypeNames() + ")");
        }
      }
    }
    for (const auto& [qname, qtype] : quant) {
      auto t = f->tensors().find(qname);
      if (t == f->tensors().end())
        return Error(f->path() + ": quantized tensor '" + qname + "' is missing");
      const TensorView& raw = t->second;
      const int64_t block = static_cast<int64_t>(DTypeSize(qtype));
      if (raw.dtype != DType::kU8 || raw.shape.size() < 2 || raw.shape.size() > 3 ||
          raw.shape.back() % block != 0) {
        return Error(f->path() + ": tensor '" + qname + "': a " + std::string(DTypeName(qtype)) +
                     " tensor must be U8 [rows, k * " + std::to_string(block) +
                     "] or [n, rows, k * " + std::to_string(block) + "], got " +
                     std::string(DTypeName(raw.dtype)) + " " + raw.ShapeString());
      }
      TensorView v = raw;
      v.dtype = qtype;
      v.shape.back() = raw.shape.back() / block * BlockValues(qtype);
      store->retyped_.push_back(std::move(v));
      retyped[qname] = &store->retyped_.back();  // deque: pointers stay valid as it grows
    }
    for (const auto& [name, view] : f->tensors()) {
      // With an index, a tensor counts only in the shard the index names for it.
      if (!weight_map.empty()) {
        auto w = weight_map.find(name);
        if (w == weight_map.end() || dir + "/" + w->second != f->path()) continue;
      }
      if (store->index_.count(name))
        return Error(f->path() + ": tensor '" + name + "' appears twice");
      auto q = retyped.find(name);
      store->index_[name] = q != retyped.end() ? q->second : &view;
    }
  }
  for (const auto& [name, file] : weight_map) {
    if (!store->index_.count(name)) {
      return Error(index + ": tensor '" + name + "' is listed for " + file +
                   " but not found there");
    }
  }
  return store;
}

Result<std::unique_ptr<WeightStore>> WeightStore::FromGguf(
    std::unique_ptr<GgufFile> file, const std::function<std::string(const std::string&)>& rename) {
  auto store = std::make_unique<WeightStore>();
  for (const auto& [gguf_name, view] : file->tensors()) {
    std::string name = rename(gguf_name);
    if (name.empty()) continue;
    if (store->index_.count(name)) {
      return Error(file->path() + ": tensors '" + gguf_name + "' and another both map to '" + name +
                   "'");
    }
    TensorView v = view;
    v.name = name;
    store->retyped_.push_back(std::move(v));
    store->index_[name] = &store->retyped_.back();  // the views keep pointing into file's map
  }
  file->ReleaseMetadata();  // the config and tokenizer were read from it before
  store->gguf_ = std::move(file);
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
  if (t->dtype != DType::kF32 && t->dtype != DType::kF16 && t->dtype != DType::kBF16 &&
      !IsBlockType(t->dtype)) {
    return Error(where + ": dtype " + std::string(DTypeName(t->dtype)) +
                 " is not a weight type (F32, F16, BF16, " + BlockTypeNames() + ")");
  }
  if (IsBlockType(t->dtype) && t->shape.size() != 2 && t->shape.size() != 3) {
    return Error(where + ": a quantized tensor must be a matrix or a stack of matrices (shape " +
                 t->ShapeString() + ")");
  }
  if (t->shape != shape) {
    TensorView expect;
    expect.shape = shape;
    return Error(where + ": shape " + t->ShapeString() +
                 " disagrees with the config, which implies " + expect.ShapeString() + suffix);
  }
  return t;
}

}  // namespace specula
