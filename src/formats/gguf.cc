#include "specula/formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

namespace specula {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kDefaultAlignment = 32;
// Deeper nesting than an array of arrays is never written by llama.cpp; refusing it bounds
// recursion.
constexpr int kMaxArrayDepth = 2;

// ggml tensor types this engine computes with, by their number in the file.
constexpr std::pair<uint32_t, DType> kGgmlTypes[] = {
    {0, DType::kF32},     {1, DType::kF16},     {2, DType::kQ4_0},  {3, DType::kQ4_1},
    {6, DType::kQ5_0},    {7, DType::kQ5_1},    {8, DType::kQ8_0},  {10, DType::kQ2_K},
    {11, DType::kQ3_K},   {12, DType::kQ4_K},   {13, DType::kQ5_K}, {14, DType::kQ6_K},
    {20, DType::kIQ4_NL}, {23, DType::kIQ4_XS}, {26, DType::kI32},  {30, DType::kBF16},
};
bool TensorDType(uint32_t ggml_type, DType* out) {
  for (const auto& [id, t] : kGgmlTypes) {
    if (id == ggml_type) {
      *out = t;
      return true;
    }
  }
  return false;
}
uint32_t GgmlType(DType t) {
  for (const auto& [id, dt] : kGgmlTypes) {
    if (dt == t) return id;
  }
  return UINT32_MAX;
}
std::string GgmlTypeName(uint32_t t) {
  static const char* const kNames[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16"};
  return t < std::size(kNames) ? kNames[t] : "type " + std::to_string(t);
}

// Bounds-checked little-endian reads over the mapped bytes; the first failure sticks.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  template <class T>
  T Read(const char* what) {
    T v{};
    if (!status_.ok()) return v;
    if (sizeof(T) > size_ - pos_) {
      Fail(std::string("truncated file reading ") + what + " at byte " + std::to_string(pos_));
      return v;
    }
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string String(const std::string& what) {
    const uint64_t n = Read<uint64_t>(what.c_str());
    if (!status_.ok()) return {};
    if (n > size_ - pos_) {
      Fail(what + ": string of " + std::to_string(n) + " bytes runs past the end of the file");
      return {};
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  // A count of items of at least `min_item_bytes` each must fit in what is left of the file.
  uint64_t Count(const std::string& what, uint64_t min_item_bytes) {
    const uint64_t n = Read<uint64_t>(what.c_str());
    if (status_.ok() && n > (size_ - pos_) / min_item_bytes) {
      Fail(what + " " + std::to_string(n) + " cannot fit in the " + std::to_string(size_ - pos_) +
           " bytes left (truncated or corrupt file)");
    }
    return n;
  }
  void Fail(const std::string& problem) {
    if (status_.ok()) status_ = Error(path_ + ": " + problem);
  }
  size_t pos() const { return pos_; }
  const Status& status() const { return status_; }
  bool ok() const { return status_.ok(); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
  Status status_;
};

// Minimum bytes one value of `t` occupies (array and string: their length fields).
uint64_t MinBytes(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kString:
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    case GgufType::kArray:
      return 12;
  }
  return 1;
}

Json ReadValue(Cursor& c, GgufType t, const std::string& key, int depth) {
  switch (t) {
    case GgufType::kU8:
      return c.Read<uint8_t>(key.c_str());
    case GgufType::kI8:
      return c.Read<int8_t>(key.c_str());
    case GgufType::kU16:
      return c.Read<uint16_t>(key.c_str());
    case GgufType::kI16:
      return c.Read<int16_t>(key.c_str());
    case GgufType::kU32:
      return c.Read<uint32_t>(key.c_str());
    case GgufType::kI32:
      return c.Read<int32_t>(key.c_str());
    case GgufType::kF32:
      return c.Read<float>(key.c_str());
    case GgufType::kU64:
      return c.Read<uint64_t>(key.c_str());
    case GgufType::kI64:
      return c.Read<int64_t>(key.c_str());
    case GgufType::kF64:
      return c.Read<double>(key.c_str());
    case GgufType::kBool: {
      const uint8_t b = c.Read<uint8_t>(key.c_str());
      if (b > 1) c.Fail(key + ": bool value " + std::to_string(b) + " is neither 0 nor 1");
      return b != 0;
    }
    case GgufType::kString:
      return c.String(key);
    case GgufType::kArray: {
      const auto elem = static_cast<GgufType>(c.Read<uint32_t>(key.c_str()));
      if (!c.ok()) return nullptr;
      if (static_cast<uint32_t>(elem) > static_cast<uint32_t>(GgufType::kF64)) {
        c.Fail(key + ": unknown array element type " + std::to_string(static_cast<uint32_t>(elem)));
        return nullptr;
      }
      if (elem == GgufType::kArray && depth >= kMaxArrayDepth) {
        c.Fail(key + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth));
        return nullptr;
      }
      const uint64_t n = c.Count(key + ": array length", MinBytes(elem));
      Json a = Json::array();
      if (!c.ok()) return a;
      a.get_ref<Json::array_t&>().reserve(n);
      for (uint64_t i = 0; i < n && c.ok(); ++i) a.push_back(ReadValue(c, elem, key, depth + 1));
      return a;
    }
  }
  c.Fail(key + ": unknown value type " + std::to_string(static_cast<uint32_t>(t)));
  return nullptr;
}

// One entry of the tensor table as read, before it is checked.
struct TensorEntry {
  std::string name;
  std::vector<uint64_t> ne;  // GGUF order: innermost first
  uint32_t type = 0;
  uint64_t offset = 0;
};

// Reads one tensor-table entry; a failure sticks in the cursor. Only the dimension count is
// checked here, since it sizes the rest of the entry.
TensorEntry ReadTensorEntry(Cursor& c, uint64_t index) {
  TensorEntry e;
  e.name = c.String("tensor name #" + std::to_string(index));
  const uint32_t n_dims = c.Read<uint32_t>("tensor dimensions");
  if (!c.ok()) return e;
  if (n_dims < 1 || n_dims > 4) {
    c.Fail("tensor '" + e.name + "': " + std::to_string(n_dims) + " dimensions (1 to 4 are valid)");
    return e;
  }
  for (uint32_t d = 0; d < n_dims; ++d) e.ne.push_back(c.Read<uint64_t>("a tensor dimension"));
  e.type = c.Read<uint32_t>("a tensor type");
  e.offset = c.Read<uint64_t>("a tensor offset");
  return e;
}

// Checks an entry on its own (dimensions, type, whole blocks, alignment) and describes it in
// `view` (no data yet).
Status CheckTensorEntry(const TensorEntry& e, uint64_t alignment, const std::string& path,
                        TensorView* view) {
  const std::string where = path + ": tensor '" + e.name + "'";
  uint64_t numel = 1;
  for (const uint64_t v : e.ne) {
    if (v == 0 || v > (uint64_t{1} << 40) || numel > (uint64_t{1} << 42) / v) {
      return Error(where + ": dimension " + std::to_string(v) + " is out of range");
    }
    numel *= v;
  }
  if (!TensorDType(e.type, &view->dtype)) {
    return Error(where + ": ggml type " + GgmlTypeName(e.type) +
                 " is not supported (F32, F16, BF16, I32 and " + BlockTypeNames() + " are)");
  }
  if (IsBlockType(view->dtype) && e.ne[0] % static_cast<uint64_t>(BlockValues(view->dtype)) != 0) {
    return Error(where + ": rows of " + std::to_string(e.ne[0]) + " values are not whole " +
                 std::string(DTypeName(view->dtype)) + " blocks");
  }
  if (e.offset % alignment != 0) {
    return Error(where + ": data offset " + std::to_string(e.offset) +
                 " is not a multiple of the " + std::to_string(alignment) + "-byte alignment");
  }
  view->name = e.name;
  view->shape.assign(e.ne.rbegin(), e.ne.rend());
  view->nbytes = StorageBytes(view->dtype, static_cast<int64_t>(numel));
  return OkStatus();
}

// ggml limits tensor names to 63 bytes; a longer "name" after the table is not an entry.
constexpr uint64_t kMaxProbedNameBytes = 256;

bool IsPrintable(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char ch) { return static_cast<unsigned char>(ch) >= 0x20; });
}

}  // namespace

bool IsGgufPath(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

Json GgufFile::TakeMetadata(std::string_view prefix) {
  Json taken = Json::object();
  for (auto it = metadata_.begin(); it != metadata_.end();) {
    if (it.key().starts_with(prefix)) {
      taken[it.key()] = std::move(it.value());
      it = metadata_.erase(it);
    } else {
      ++it;
    }
  }
  return taken;
}

Result<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  Result<std::unique_ptr<MappedFile>> f = MappedFile::Open(path);
  if (!f.ok()) return f.status();
  Result<std::unique_ptr<GgufFile>> g = Parse((*f)->data(), (*f)->size(), path);
  if (!g.ok()) return g.status();
  (*g)->file_ = std::move(*f);
  return g;
}

namespace {

Status ReadMetadata(Cursor& c, uint64_t n_kv, const std::string& path, Json& metadata) {
  for (uint64_t i = 0; i < n_kv && c.ok(); ++i) {
    std::string key = c.String("metadata key #" + std::to_string(i));
    const auto type = static_cast<GgufType>(c.Read<uint32_t>("a metadata type"));
    if (!c.ok()) break;
    if (static_cast<uint32_t>(type) > static_cast<uint32_t>(GgufType::kF64)) {
      return Error(path + ": metadata '" + key + "': unknown value type " +
                   std::to_string(static_cast<uint32_t>(type)));
    }
    Json v = ReadValue(c, type, "metadata '" + key + "'", 0);
    if (metadata.contains(key)) return Error(path + ": metadata '" + key + "' appears twice");
    metadata[key] = std::move(v);
  }
  return c.status();
}

Result<uint64_t> AlignmentOf(const Json& metadata, const std::string& path) {
  const auto it = metadata.find("general.alignment");
  if (it == metadata.end()) return kDefaultAlignment;
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > 65536 ||
      (it->get<uint64_t>() & (it->get<uint64_t>() - 1)) != 0) {
    return Error(path +
                 ": metadata 'general.alignment': expected a power of two up to 65536, got " +
                 ShowJson(*it));
  }
  return it->get<uint64_t>();
}

// A tensor entry read from the table, before its data is placed.
struct Pending {
  TensorView view;
  uint64_t offset;
};

struct TableShape {
  uint64_t count = 0;      // entries the header declares
  uint64_t alignment = 0;  // of every tensor's data
};

Result<std::vector<Pending>> ReadTensorTable(Cursor& c, const TableShape& t,
                                             const std::string& path) {
  std::vector<Pending> pending;
  for (uint64_t i = 0; i < t.count && c.ok(); ++i) {
    const TensorEntry e = ReadTensorEntry(c, i);
    if (c.ok() && e.name.empty()) c.Fail("a tensor entry has no name");
    if (!c.ok()) {
      // Past the first entry, a table that stops parsing usually means a count larger than it.
      if (pending.empty()) return c.status();
      return Error(c.status().message() + " (entry #" + std::to_string(i) + " of the " +
                   std::to_string(t.count) + " the tensor count declares, after tensor '" +
                   pending.back().view.name + "')");
    }
    Pending p{{}, e.offset};
    if (Status st = CheckTensorEntry(e, t.alignment, path, &p.view); !st.ok()) return st;
    pending.push_back(std::move(p));
  }
  if (!c.ok()) return c.status();
  return pending;
}

// A count smaller than the table leaves entries where the data is taken to start, shifting every
// tensor onto other bytes. Writers pad the table with zeros, and tensor data practically never
// reads as a whole entry (a short printable name, 1-4 sane dimensions, a known type, an aligned
// offset inside the file), so such an entry right after the counted ones means the count is
// wrong. The name length is looked at first so that data is never copied out as a huge name.
Status CheckNoEntryFollows(const Cursor& c, const TableShape& t, size_t size,
                           const std::vector<Pending>& pending, const std::string& path) {
  Cursor peek = c;
  const uint64_t next_name_bytes = peek.Read<uint64_t>("a tensor name");
  if (!peek.ok() || next_name_bytes < 1 || next_name_bytes > kMaxProbedNameBytes) return OkStatus();
  Cursor probe = c;
  const TensorEntry extra = ReadTensorEntry(probe, t.count);
  TensorView unused;
  if (probe.ok() && IsPrintable(extra.name) &&
      CheckTensorEntry(extra, t.alignment, path, &unused).ok() && unused.nbytes <= size &&
      extra.offset <= size - unused.nbytes) {
    return Error(path + ": tensor count " + std::to_string(t.count) +
                 " is smaller than the tensor table: an entry for tensor '" + extra.name +
                 "' follows " +
                 (pending.empty() ? std::string("the metadata")
                                  : "tensor '" + pending.back().view.name + "'"));
  }
  return OkStatus();
}

// Tensors sharing bytes would each be read as the other's data; sorted by offset, any overlap
// shows between neighbours.
Status CheckNoOverlap(const std::vector<Pending>& pending, const std::string& path) {
  std::vector<const Pending*> by_offset;
  by_offset.reserve(pending.size());
  for (const Pending& p : pending) by_offset.push_back(&p);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Pending* a, const Pending* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const Pending& a = *by_offset[i - 1];
    const Pending& b = *by_offset[i];
    if (b.offset < a.offset + a.view.nbytes) {
      return Error(path + ": tensors '" + a.view.name + "' (data [" + std::to_string(a.offset) +
                   ", +" + std::to_string(a.view.nbytes) + ")) and '" + b.view.name + "' (data [" +
                   std::to_string(b.offset) + ", +" + std::to_string(b.view.nbytes) + ")) overlap");
    }
  }
  return OkStatus();
}

}  // namespace

Result<std::unique_ptr<GgufFile>> GgufFile::Parse(const uint8_t* data, size_t size,
                                                  const std::string& path) {
  auto g = std::make_unique<GgufFile>();
  g->path_ = path;
  Cursor c(data, size, g->path_);
  const uint32_t magic = c.Read<uint32_t>("the magic number");
  if (c.ok() && magic != kMagic) return Error(path + ": not a GGUF file (bad magic number)");
  g->version_ = c.Read<uint32_t>("the version");
  if (c.ok() && g->version_ != 2 && g->version_ != 3) {
    return Error(path + ": GGUF version " + std::to_string(g->version_) +
                 " is not supported (2 and 3 are)");
  }
  // A tensor entry takes at least 8 (name) + 4 (dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes.
  const uint64_t n_tensors = c.Count("tensor count", 32);
  const uint64_t n_kv = c.Count("metadata count", 12);
  if (Status s = ReadMetadata(c, n_kv, path, g->metadata_); !s.ok()) return s;
  Result<uint64_t> alignment = AlignmentOf(g->metadata_, path);
  if (!alignment.ok()) return alignment.status();
  const TableShape table{.count = n_tensors, .alignment = *alignment};
  Result<std::vector<Pending>> pending = ReadTensorTable(c, table, path);
  if (!pending.ok()) return pending.status();
  if (Status s = CheckNoEntryFollows(c, table, size, *pending, path); !s.ok()) return s;

  const uint64_t data_start = (c.pos() + *alignment - 1) / *alignment * *alignment;
  if (data_start > size && !pending->empty()) {
    return Error(path + ": truncated file: tensor data would start at byte " +
                 std::to_string(data_start) + " of " + std::to_string(size));
  }
  for (Pending& p : *pending) {
    const uint64_t avail = size - data_start;
    if (p.offset > avail || p.view.nbytes > avail - p.offset) {
      return Error(path + ": tensor '" + p.view.name + "': data [" + std::to_string(p.offset) +
                   ", +" + std::to_string(p.view.nbytes) + ") runs past the end of the file");
    }
    p.view.data = data + data_start + p.offset;
    p.view.file = &g->path_;
    if (!g->tensors_.emplace(p.view.name, p.view).second) {
      return Error(path + ": tensor '" + p.view.name + "' appears twice in the tensor table");
    }
  }
  if (Status s = CheckNoOverlap(*pending, path); !s.ok()) return s;
  return g;
}

namespace {

class Writer {
 public:
  explicit Writer(std::ofstream& out) : out_(out) {}
  template <class T>
  void Put(T v) {
    out_.write(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void Str(const std::string& s) {
    Put<uint64_t>(s.size());
    out_.write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  Status Value(GgufType t, const Json& v, GgufType elem, const std::string& key) {
    try {
      switch (t) {
        case GgufType::kU8:
          Put(v.get<uint8_t>());
          break;
        case GgufType::kI8:
          Put(v.get<int8_t>());
          break;
        case GgufType::kU16:
          Put(v.get<uint16_t>());
          break;
        case GgufType::kI16:
          Put(v.get<int16_t>());
          break;
        case GgufType::kU32:
          Put(v.get<uint32_t>());
          break;
        case GgufType::kI32:
          Put(v.get<int32_t>());
          break;
        case GgufType::kF32:
          Put(v.get<float>());
          break;
        case GgufType::kU64:
          Put(v.get<uint64_t>());
          break;
        case GgufType::kI64:
          Put(v.get<int64_t>());
          break;
        case GgufType::kF64:
          Put(v.get<double>());
          break;
        case GgufType::kBool:
          Put<uint8_t>(v.get<bool>() ? 1 : 0);
          break;
        case GgufType::kString:
          Str(v.get<std::string>());
          break;
        case GgufType::kArray:
          if (!v.is_array() || elem == GgufType::kArray)
            return Error(key + ": expected a flat array");
          Put(static_cast<uint32_t>(elem));
          Put<uint64_t>(v.size());
          for (const Json& e : v) {
            if (Status s = Value(elem, e, GgufType::kU8, key); !s.ok()) return s;
          }
          break;
      }
    } catch (const Json::exception& e) {
      return Error(key + ": " + e.what());
    }
    return OkStatus();
  }
  void Pad(uint64_t alignment) {
    const auto pos = static_cast<uint64_t>(out_.tellp());
    for (uint64_t i = pos; i % alignment != 0; ++i) out_.put(0);
  }

 private:
  std::ofstream& out_;
};

}  // namespace

Status WriteGguf(const std::string& path, const std::vector<GgufKv>& kvs,
                 const std::vector<TensorToWrite>& tensors) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(path + ": cannot open for writing");
  Writer w(out);
  w.Put(kMagic);
  w.Put<uint32_t>(3);
  w.Put<uint64_t>(tensors.size());
  w.Put<uint64_t>(kvs.size());
  for (const GgufKv& kv : kvs) {
    w.Str(kv.key);
    w.Put(static_cast<uint32_t>(kv.type));
    if (Status s = w.Value(kv.type, kv.value, kv.elem, path + ": metadata '" + kv.key + "'");
        !s.ok()) {
      return s;
    }
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const TensorToWrite& t : tensors) {
    const uint32_t type = GgmlType(t.dtype);
    if (type == UINT32_MAX || t.shape.empty() || t.shape.size() > 4) {
      return Error(path + ": tensor '" + t.name + "' cannot be written to GGUF (" +
                   std::string(DTypeName(t.dtype)) + ", " + std::to_string(t.shape.size()) +
                   " dimensions)");
    }
    w.Str(t.name);
    w.Put(static_cast<uint32_t>(t.shape.size()));
    int64_t numel = 1;
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) {
      w.Put(static_cast<uint64_t>(*d));
      numel *= *d;
    }
    w.Put(type);
    w.Put(offset);
    offsets.push_back(offset);
    offset += (StorageBytes(t.dtype, numel) + kDefaultAlignment - 1) / kDefaultAlignment *
              kDefaultAlignment;
  }
  w.Pad(kDefaultAlignment);
  for (const TensorToWrite& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    out.write(static_cast<const char*>(t.data),
              static_cast<std::streamsize>(StorageBytes(t.dtype, numel)));
    w.Pad(kDefaultAlignment);
  }
  out.close();
  if (!out) return Error(path + ": write failed");
  return OkStatus();
}

}  // namespace specula
