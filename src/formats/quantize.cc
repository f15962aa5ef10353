#include "specula/formats/quantize.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>

#include "specula/base/json.h"
#include "specula/formats/safetensors.h"

namespace specula {

namespace {

// Vision and audio tower tensors (which llama.cpp keeps in a separate projector file): no role and
// no layer in the text decoder's mix.
bool InTower(const std::string& name) {
  for (const char* tower : {"vision_tower", "audio_tower", "embed_vision", "embed_audio"}) {
    if (name.find(tower) != std::string::npos) return true;
  }
  return false;
}

// A tensor's role in llama.cpp's mixes, from its Hugging Face name.
enum class Role { kOther, kAttnV, kAttnOutput, kFfnDown };
Role RoleOf(const std::string& name) {
  if (InTower(name)) return Role::kOther;
  if (name.find("self_attn.v_proj.") != std::string::npos) return Role::kAttnV;
  if (name.find("self_attn.o_proj.") != std::string::npos) return Role::kAttnOutput;
  if (name.find("mlp.down_proj.") != std::string::npos ||
      name.find("experts.down_proj") != std::string::npos)
    return Role::kFfnDown;
  return Role::kOther;
}

// N of "layers.N." in a tensor's name, or -1.
int LayerOf(const std::string& name) {
  const size_t at = name.find("layers.");
  if (at == std::string::npos || InTower(name)) return -1;
  int n = -1;
  for (size_t i = at + 7; i < name.size() && name[i] >= '0' && name[i] <= '9' && n < 1000000; ++i)
    n = (n < 0 ? 0 : 10 * n) + (name[i] - '0');
  return n;
}

// llama.cpp's "more bits" layers: the first and last eighth, and every third in between.
bool MoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

// The type a mix gives a tensor of `role` in layer i (-1: none) of place.layers.
DType MixType(const QuantRecipe& r, Role role, int i, const TensorPlace& place) {
  using Mix = QuantRecipe::Mix;
  int n = place.layers;
  if (role == Role::kAttnV && !place.v_layers.empty()) {  // count among the layers with a v_proj
    const auto at = std::find(place.v_layers.begin(), place.v_layers.end(), i);
    i = at == place.v_layers.end() ? -1 : static_cast<int>(at - place.v_layers.begin());
    n = static_cast<int>(place.v_layers.size());
  }
  const bool layered = i >= 0 && n > 0;
  const bool v = role == Role::kAttnV, o = role == Role::kAttnOutput, down = role == Role::kFfnDown;
  switch (r.mix) {
    case Mix::kQ2K:
      if (v) return place.gqa >= 4 ? DType::kQ4_K : DType::kQ3_K;
      if (o || down) return DType::kQ3_K;
      break;
    case Mix::kS:
      if (r.base == DType::kQ4_K && layered && ((v && i < 4) || (down && i < n / 8)))
        return DType::kQ5_K;
      break;
    case Mix::kM:
      if (r.base == DType::kQ3_K) {
        if (v) return layered && i < 2 ? DType::kQ5_K : DType::kQ4_K;
        if (o) return DType::kQ4_K;
        if (down) return layered && i < n / 16 ? DType::kQ5_K : DType::kQ4_K;
      } else if ((v || down) && layered && MoreBits(i, n)) {
        return DType::kQ6_K;
      }
      break;
    case Mix::kL:
      if (v || o || down) return DType::kQ5_K;
      break;
    case Mix::kIQ4:
      if ((v && place.gqa >= 4) || (down && layered && i < n / 8)) return DType::kQ5_K;
      break;
    case Mix::kNone:
      break;
  }
  return r.base;
}

struct RecipeName {
  const char* name;
  DType base;
  QuantRecipe::Mix mix;
};
constexpr RecipeName kMixes[] = {
    {"q2_k", DType::kQ2_K, QuantRecipe::Mix::kQ2K},
    {"q3_k_s", DType::kQ3_K, QuantRecipe::Mix::kS},
    {"q3_k_m", DType::kQ3_K, QuantRecipe::Mix::kM},
    {"q3_k_l", DType::kQ3_K, QuantRecipe::Mix::kL},
    {"q4_k_s", DType::kQ4_K, QuantRecipe::Mix::kS},
    {"q4_k_m", DType::kQ4_K, QuantRecipe::Mix::kM},
    {"q5_k_s", DType::kQ5_K, QuantRecipe::Mix::kS},
    {"q5_k_m", DType::kQ5_K, QuantRecipe::Mix::kM},
    {"iq4_xs", DType::kIQ4_XS, QuantRecipe::Mix::kIQ4},
    {"iq4_nl", DType::kIQ4_NL, QuantRecipe::Mix::kIQ4},
};

std::string Lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Decoder layers and those with a v_proj (from the tensor names), and query heads per KV head
// (config.json, text_config first; 1 when absent) of a checkpoint.
TensorPlace PlaceOf(const std::string& in_dir, const std::vector<std::string>& names) {
  TensorPlace p;
  for (const std::string& name : names) {
    p.layers = std::max(p.layers, LayerOf(name) + 1);
    if (RoleOf(name) == Role::kAttnV && LayerOf(name) >= 0) p.v_layers.push_back(LayerOf(name));
  }
  std::sort(p.v_layers.begin(), p.v_layers.end());
  p.v_layers.erase(std::unique(p.v_layers.begin(), p.v_layers.end()), p.v_layers.end());
  Result<Json> cfg = ReadJsonFile(in_dir + "/config.json");
  if (!cfg.ok() || !cfg->is_object()) return p;
  const Json& text = cfg->contains("text_config") && (*cfg)["text_config"].is_object()
                         ? (*cfg)["text_config"]
                         : *cfg;
  const Json heads = text.value("num_attention_heads", Json()),
             kv = text.value("num_key_value_heads", Json());
  if (heads.is_number_integer() && kv.is_number_integer() && kv.get<int64_t>() > 0 &&
      heads.get<int64_t>() > 0 && heads.get<int64_t>() <= (int64_t{1} << 20))
    p.gqa = static_cast<int>(std::max<int64_t>(1, heads.get<int64_t>() / kv.get<int64_t>()));
  return p;
}

}  // namespace

QuantRecipe PureRecipe(DType t) {
  return {.base = t, .mix = QuantRecipe::Mix::kNone, .name = Lower(std::string(DTypeName(t)))};
}

Result<QuantRecipe> ParseQuantRecipe(const std::string& name) {
  const std::string low = Lower(name);
  for (const RecipeName& m : kMixes) {
    if (low == m.name) return QuantRecipe{.base = m.base, .mix = m.mix, .name = low};
  }
  for (DType t : kBlockTypes) {
    if (low == Lower(std::string(DTypeName(t)))) return PureRecipe(t);
  }
  return Error("expected one of " + QuantRecipeNames() + " (got '" + name + "')");
}

std::string QuantRecipeNames() {
  std::string out;
  for (const RecipeName& m : kMixes) out += (out.empty() ? "" : ", ") + std::string(m.name);
  for (DType t : kBlockTypes) {
    const std::string n = Lower(std::string(DTypeName(t)));
    bool listed = false;
    for (const RecipeName& m : kMixes) listed = listed || n == m.name;
    if (!listed) out += ", " + n;
  }
  return out;
}

DType QuantizedType(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    const QuantRecipe& recipe, const TensorPlace& place) {
  const bool weight = dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
  // Matrices, and stacks of them (a layer's experts [E, rows, cols]), by rows of `cols` values.
  if (!weight || shape.size() < 2 || shape.size() > 3 || shape.back() % kQuantBlock != 0)
    return dtype;
  if (name.find("masked_embedding.centroids") != std::string::npos) return dtype;
  if (name.find("router.proj") != std::string::npos) return dtype;
  DType target = MixType(recipe, RoleOf(name), LayerOf(name), place);
  if (name.find("embed_tokens") != std::string::npos) {
    // 4- and 5-bit embedding tables (also the tied LM head) cost too much accuracy: the 32-value
    // types keep Q8_0, the other super-block types Q6_K, as llama.cpp's K-quant mixes do.
    if (!IsSuperBlockType(recipe.base) && recipe.base != DType::kQ8_0) target = DType::kQ8_0;
    if (IsSuperBlockType(recipe.base)) target = DType::kQ6_K;
  }
  if (IsSuperBlockType(target) && shape.back() % kSuperBlock != 0)
    return DType::kQ8_0;  // rows too short for super-blocks
  return target;
}

Result<QuantizeStats> QuantizeCheckpoint(const std::string& in_dir, const std::string& out_dir,
                                         const QuantRecipe& recipe) {
  namespace fs = std::filesystem;
  if (!IsBlockType(recipe.base))
    return Error("type: expected a block type (" + BlockTypeNames() + ")");
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
  std::vector<std::string> names;  // every shard's, for the layer count of the per-layer rules
  for (const std::string& shard : shards) {
    Result<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(in_dir + "/" + shard);
    if (!f.ok()) return f.status();
    for (const auto& [name, t] : (*f)->tensors()) names.push_back(name);
  }
  const TensorPlace place = PlaceOf(in_dir, names);
  std::map<DType, int> written;
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
      const DType q = QuantizedType(name, t.dtype, t.shape, recipe, place);
      src.push_back(&t);
      types.push_back(q);
      st.bytes_in += t.nbytes;
      if (IsBlockType(q)) {
        quant[name] = std::string(DTypeName(q));
        std::vector<int64_t> stored = t.shape;  // [..., rows, row_bytes]
        stored.back() = static_cast<int64_t>(StorageBytes(q, t.shape.back()));
        specs.push_back({name, DType::kU8, stored});
        ++st.quantized;
        ++written[q];
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
  for (DType t : kBlockTypes) {
    if (written.count(t)) st.types.emplace_back(t, written[t]);
  }
  return st;
}

}  // namespace specula
