#include "specula/formats/safetensors.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>

#include "specula/base/json.h"

namespace specula {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit is 100 MB

bool ParseDType(const std::string& s, DType* out) {
  static constexpr DType kAll[] = {DType::kF32, DType::kF16, DType::kBF16,
                                   DType::kI64, DType::kI32, DType::kU8};
  for (DType t : kAll) {
    if (s == DTypeName(t)) {
      *out = t;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string TensorView::ShapeString() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Status SafetensorsFile::ParseInto(const uint8_t* data, size_t size, const std::string* path,
                                  std::map<std::string, TensorView>* tensors,
                                  std::map<std::string, std::string>* metadata) {
  const std::string where = path ? *path : std::string("<buffer>");
  if (size < 8)
    return Error(where + ": truncated safetensors file (" + std::to_string(size) +
                 " bytes, need at least 8 for the header length)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);  // little-endian on every supported host
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return Error(where + ": header length " + std::to_string(header_len) +
                 " exceeds the file size " + std::to_string(size));
  }
  const std::string header(reinterpret_cast<const char*>(data + 8), header_len);
  std::optional<std::string> duplicate;
  Result<Json> parsed = ParseJson(header, where + " (safetensors header)", &duplicate);
  if (!parsed.ok()) return parsed.status();
  if (duplicate) {
    return Error(where + ": " + (*duplicate == "__metadata__" ? "" : "tensor ") + "'" + *duplicate +
                 "' appears twice in the header");
  }
  const Json& j = *parsed;
  if (!j.is_object()) return Error(where + ": safetensors header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  struct Region {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Region> regions;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const Json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object()) return Error(where + ": __metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (m.value().is_string()) (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string at = where + ": tensor '" + name + "'";
    if (!e.is_object()) return Error(at + ": entry is not an object");
    auto dt = e.find("dtype"), sh = e.find("shape"), off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return Error(at + ": missing dtype");
    if (sh == e.end() || !sh->is_array()) return Error(at + ": missing shape");
    if (off == e.end() || !off->is_array() || off->size() != 2) {
      return Error(at + ": data_offsets must be [begin, end]");
    }
    TensorView t;
    t.name = name;
    t.file = path;
    if (!ParseDType(dt->get<std::string>(), &t.dtype)) {
      return Error(at + ": unsupported dtype " + dt->get<std::string>() +
                   " (supported: F32, F16, BF16, I64, I32, U8)");
    }
    uint64_t numel = 1;
    for (const Json& d : *sh) {
      if (!d.is_number_unsigned())
        return Error(at + ": shape entries must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      // Each dimension must fit the int64 shape on its own: after a 0 the product bounds nothing.
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (v != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / v)) {
        return Error(at + ": shape is too large");
      }
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      return Error(at + ": data_offsets must be non-negative integers");
    }
    const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return Error(at + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] point outside the data section (" + std::to_string(data_size) +
                   " bytes); the file may be truncated");
    }
    const uint64_t want = numel * DTypeSize(t.dtype);
    if (end - begin != want) {
      return Error(at + ": holds " + std::to_string(end - begin) + " bytes but shape " +
                   t.ShapeString() + " of " + std::string(DTypeName(t.dtype)) + " needs " +
                   std::to_string(want));
    }
    // Alignment is not guaranteed by the format: kernels use unaligned loads, scalars memcpy.
    t.data = data + data_start + begin;
    t.nbytes = static_cast<size_t>(want);
    (*tensors)[name] = std::move(t);
    if (begin < end) regions.push_back({begin, end, &name});
  }
  // Tensors sharing bytes would each be read as the other's data; sorted by offset, any overlap
  // shows between neighbours.
  std::sort(regions.begin(), regions.end(),
            [](const Region& a, const Region& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < regions.size(); ++i) {
    const Region& a = regions[i - 1];
    const Region& b = regions[i];
    if (b.begin < a.end) {
      return Error(where + ": tensors '" + *a.name + "' (data_offsets [" + std::to_string(a.begin) +
                   ", " + std::to_string(a.end) + "]) and '" + *b.name + "' ([" +
                   std::to_string(b.begin) + ", " + std::to_string(b.end) + "]) overlap");
    }
  }
  return OkStatus();
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  Result<std::unique_ptr<MappedFile>> mf = MappedFile::Open(path);
  if (!mf.ok()) return mf.status();
  auto f = std::make_unique<SafetensorsFile>();
  f->file_ = std::move(*mf);
  Status s =
      ParseInto(f->file_->data(), f->file_->size(), &f->file_->path(), &f->tensors_, &f->metadata_);
  if (!s.ok()) return s;
  return f;
}

Status WriteSafetensorsStreaming(const std::string& path, const std::vector<TensorSpec>& tensors,
                                 const TensorFill& fill,
                                 const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& t : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * DTypeSize(t.dtype);
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while ((8 + h.size()) % 8 != 0) h.push_back(' ');  // data section starts 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(path + ": cannot create");
  const uint64_t len = h.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(h.data(), static_cast<std::streamsize>(h.size()));
  std::vector<uint8_t> buf;
  constexpr int64_t kChunk = 1 << 20;  // elements per fill call
  for (size_t i = 0; i < tensors.size(); ++i) {
    const int64_t n = tensors[i].numel();
    const size_t es = DTypeSize(tensors[i].dtype);
    for (int64_t o = 0; o < n; o += kChunk) {
      const int64_t m = std::min(kChunk, n - o);
      buf.resize(static_cast<size_t>(m) * es);
      fill(i, o, m, buf.data());
      out.write(reinterpret_cast<const char*>(buf.data()),
                static_cast<std::streamsize>(buf.size()));
    }
  }
  out.flush();
  if (!out) return Error(path + ": write failed (disk full?)");
  return OkStatus();
}

Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  // Larger elements first keeps every tensor aligned to its element size.
  std::vector<TensorToWrite> ordered = tensors;
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const TensorToWrite& a, const TensorToWrite& b) {
                     return DTypeSize(a.dtype) > DTypeSize(b.dtype);
                   });
  std::vector<TensorSpec> specs;
  for (const TensorToWrite& t : ordered) specs.push_back({t.name, t.dtype, t.shape});
  return WriteSafetensorsStreaming(
      path, specs,
      [&](size_t i, int64_t off, int64_t n, void* out) {
        const size_t es = DTypeSize(ordered[i].dtype);
        std::memcpy(out,
                    static_cast<const uint8_t*>(ordered[i].data) + static_cast<size_t>(off) * es,
                    static_cast<size_t>(n) * es);
      },
      metadata);
}

}  // namespace specula
