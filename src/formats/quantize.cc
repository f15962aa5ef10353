#include "specula/formats/quantize.h"

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "specula/base/json.h"
#include "specula/formats/safetensors.h"

namespace specula {

DType QuantizedType(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    DType target) {
  const bool weight = dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
  // Matrices, and stacks of them (a layer's experts [E, rows, cols]), by rows of `cols` values.
  if (!weight || shape.size() < 2 || shape.size() > 3 || shape.back() % kQuantBlock != 0)
    return dtype;
  if (name.find("masked_embedding.centroids") != std::string::npos) return dtype;
  if (name.find("router.proj") != std::string::npos) return dtype;
  if (IsSuperBlockType(target) && shape.back() % kSuperBlock != 0)
    return DType::kQ8_0;  // rows too short for super-blocks
  if (name.find("embed_tokens") != std::string::npos) {
    // 4- and 5-bit embedding tables (also the tied LM head) cost too much accuracy: the 32-value
    // types keep Q8_0, Q4_K, Q5_K and IQ4_XS keep Q6_K, as llama.cpp's Q4_K_M and Q5_K_M do.
    if (!IsSuperBlockType(target) && target != DType::kQ8_0) return DType::kQ8_0;
    if (IsScaleMinType(target) || target == DType::kIQ4_XS) return DType::kQ6_K;
  }
  return target;
}

Result<QuantizeStats> QuantizeCheckpoint(const std::string& in_dir, const std::string& out_dir,
                                         DType target) {
  namespace fs = std::filesystem;
  if (!IsBlockType(target)) return Error("type: expected a block type (" + BlockTypeNames() + ")");
  std::error_code ec;
  if (!fs::is_directory(in_dir, ec)) return Error(in_dir + ": not a directory");
  if (fs::equivalent(in_dir, out_dir, ec))
    return Error(out_dir + ": must differ from the input directory");
  fs::create_directories(out_dir, ec);
  if (ec) return Error(out_dir + ": cannot create: " + ec.message());
  QuantizeStats st;
  std::vector<std::string> shards;
  for (const auto& e : fs::directory_iterator(in_dir)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (name.size() > 12 && name.substr(name.size() - 12) == ".safetensors") {
      shards.push_back(name);
    } else {  // configs, tokenizer, index (tensor names and shard files are unchanged)
      fs::copy_file(e.path(), fs::path(out_dir) / name, fs::copy_options::overwrite_existing, ec);
      if (ec) return Error(out_dir + "/" + name + ": cannot write: " + ec.message());
    }
  }
  if (shards.empty()) return Error(in_dir + ": no .safetensors files");
  for (const std::string& shard : shards) {
    Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(in_dir + "/" + shard);
    if (!f.ok()) return f.status();
    if ((*f)->metadata().count("specula_quant"))
      return Error(in_dir + "/" + shard + ": already quantized");
    std::vector<TensorSpec> specs;
    std::vector<const TensorView*> src;
    std::vector<DType> types;
    Json quant = Json::object();
    for (const auto& [name, t] : (*f)->tensors()) {
      const DType q = QuantizedType(name, t.dtype, t.shape, target);
      src.push_back(&t);
      types.push_back(q);
      st.bytes_in += t.nbytes;
      if (IsBlockType(q)) {
        quant[name] = std::string(DTypeName(q));
        std::vector<int64_t> stored = t.shape;  // [..., rows, row_bytes]
        stored.back() = static_cast<int64_t>(StorageBytes(q, t.shape.back()));
        specs.push_back({name, DType::kU8, stored});
        ++st.quantized;
      } else {
        specs.push_back({name, t.dtype, t.shape});
        ++st.kept;
      }
      st.bytes_out += StorageBytes(specs.back().dtype, specs.back().numel());
    }
    // Larger elements first keeps every tensor aligned to its element size.
    std::vector<size_t> order(specs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return DTypeSize(specs[a].dtype) > DTypeSize(specs[b].dtype);
    });
    std::vector<TensorSpec> ordered;
    for (size_t i : order) ordered.push_back(specs[i]);
    std::vector<uint8_t> cache;  // the current tensor, quantized
    size_t cached = SIZE_MAX;
    std::vector<float> row;
    std::map<std::string, std::string> meta = (*f)->metadata();
    meta["specula_quant"] = quant.dump();
    Status s = WriteSafetensorsStreaming(
        out_dir + "/" + shard, ordered,
        [&](size_t k, int64_t off, int64_t n, void* out) {
          const size_t i = order[k];
          const TensorView& t = *src[i];
          if (!IsBlockType(types[i])) {
            const size_t es = DTypeSize(t.dtype);
            std::memcpy(out, static_cast<const uint8_t*>(t.data) + static_cast<size_t>(off) * es,
                        static_cast<size_t>(n) * es);
            return;
          }
          if (cached != i) {
            const int64_t cols = t.shape.back(), rows = t.numel() / cols;
            const size_t rb = StorageBytes(types[i], cols);
            cache.resize(static_cast<size_t>(rows) * rb);
            row.resize(static_cast<size_t>(cols));
            for (int64_t r = 0; r < rows; ++r) {
              for (int64_t c = 0; c < cols; ++c)
                row[static_cast<size_t>(c)] =
                    LoadAsF32(t.dtype, t.data, static_cast<size_t>(r * cols + c));
              QuantizeRow(types[i], row.data(), cols, cache.data() + static_cast<size_t>(r) * rb);
            }
            cached = i;
          }
          std::memcpy(out, cache.data() + off, static_cast<size_t>(n));
        },
        meta);
    if (!s.ok()) return s;
  }
  return st;
}

}  // namespace specula
