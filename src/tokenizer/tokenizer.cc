#include "specula/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <queue>

#include "specula/base/json.h"
#include "specula/base/mapped_file.h"

namespace specula {
namespace {

constexpr char kSpaceMark[] = "\xE2\x96\x81";  // "▁"
constexpr size_t kMaxNormalizerGrowth = 64;

// Length of the UTF-8 sequence starting at s[i], or 1 for an invalid/truncated lead byte (such a
// byte is then its own symbol and goes through byte fallback).
size_t Utf8CharLen(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 1;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 1;
  }
  return n;
}

// Appends `bytes` as UTF-8 text; each byte of an invalid sequence becomes U+FFFD. Returns the
// number of trailing bytes that form an incomplete-but-valid prefix (kept by the caller when
// streaming; treated as invalid when `final`).
size_t AppendUtf8(std::string_view bytes, bool final, std::string* out) {
  size_t i = 0;
  while (i < bytes.size()) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    const size_t want = c < 0x80           ? 1
                        : (c >> 5) == 0x6  ? 2
                        : (c >> 4) == 0xe  ? 3
                        : (c >> 3) == 0x1e ? 4
                                           : 0;
    if (want == 0) {
      out->append("\xEF\xBF\xBD");
      ++i;
      continue;
    }
    size_t have = 1;
    while (have < want && i + have < bytes.size() &&
           (static_cast<unsigned char>(bytes[i + have]) & 0xc0) == 0x80) {
      ++have;
    }
    if (have == want) {
      out->append(bytes.substr(i, want));
      i += want;
    } else if (i + have == bytes.size() && !final) {
      return have;  // may complete with the next token
    } else {
      out->append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return 0;
}

// Optional fields of tokenizer.json objects. nlohmann's value() throws when the key holds another
// type; these read such a key as a value every caller refuses ("" or nullopt), so a malformed file
// is an error naming its section.
std::string StringField(const Json& o, const char* key, const std::string& fallback) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return fallback;
  return it->is_string() ? it->get<std::string>() : std::string();
}
std::optional<bool> BoolField(const Json& o, const char* key, bool fallback) {
  const auto it = o.find(key);
  if (it == o.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s->find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(*s, pos, hit - pos);
    out += to;
  }
  out.append(*s, pos, std::string::npos);
  *s = std::move(out);
}

// The BPE model's own fields; `vocab` points into the parsed file.
struct BpeModel {
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::string unk;
  const Json* vocab = nullptr;
};

Result<BpeModel> ReadBpeModel(const Json& model, const std::string& file) {
  FieldReader m(model, file, "model");
  BpeModel b;
  if (m.String("type", "BPE") != "BPE") m.Fail("type", "only BPE tokenizers are supported");
  b.byte_fallback = m.Bool("byte_fallback", false);
  b.fuse_unk = m.Bool("fuse_unk", false);
  b.unk = m.String("unk_token", "");
  b.vocab = m.Object("vocab", /*required=*/true);
  if (!m.ok()) return m.status();
  return b;
}

// The largest id of model.vocab (-1 if empty), each checked to be in [0, 2^24).
Result<int> MaxVocabId(const Json& vocab, const std::string& file) {
  int max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() >= (1 << 24)) {
      return Error(file + ": model.vocab." + it.key() + ": expected a token id in [0, 2^24)");
    }
    max_id = std::max(max_id, it.value().get<int>());
  }
  return max_id;
}

// The largest id of added_tokens (`max_id` if none is larger), each entry checked.
Result<int> MaxAddedId(const Json* added, int max_id, const std::string& file) {
  if (added == nullptr) return max_id;
  if (!added->is_array()) return Error(file + ": added_tokens: expected a list");
  for (const Json& a : *added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0 ||
        a["id"].get<int64_t>() >= (1 << 24) || a["content"].get<std::string>().empty() ||
        !BoolField(a, "special", false)) {
      return Error(file +
                   ": added_tokens: each entry needs an integer id and non-empty content (and "
                   "'special', if given, true or false)");
    }
    max_id = std::max(max_id, a["id"].get<int>());
  }
  return max_id;
}

// The size of the id -> piece tables: the largest id of model.vocab and added_tokens, plus one.
Result<size_t> IdTableSize(const Json& vocab, const Json* added, const std::string& file) {
  Result<int> vocab_max = MaxVocabId(vocab, file);
  if (!vocab_max.ok()) return vocab_max.status();
  Result<int> max_id = MaxAddedId(added, *vocab_max, file);
  if (!max_id.ok()) return max_id.status();
  if (*max_id < 0) return Error(file + ": model.vocab is empty");
  // The tables are sized by the largest id: ids far past the number of tokens would let a few
  // bytes of JSON allocate gigabytes (one token with id 2^24 - 1: 16M entries). Vocabularies are
  // dense; gaps of up to 2^16 ids plus one per token are allowed.
  const size_t tokens = vocab.size() + (added != nullptr ? added->size() : 0);
  if (static_cast<size_t>(*max_id) >= 2 * tokens + (size_t{1} << 16)) {
    return Error(file + ": token id " + std::to_string(*max_id) + " is far past the " +
                 std::to_string(tokens) +
                 " tokens of model.vocab and added_tokens (ids must be nearly dense)");
  }
  return static_cast<size_t>(*max_id) + 1;
}

std::string MergeError(const std::string& file, int rank, const char* problem) {
  return file + ": model.merges[" + std::to_string(rank) + "]: " + problem;
}

// One merge: ["a", "b"], or the legacy "a b" string.
Result<std::pair<std::string, std::string>> MergePair(const Json& mg, int rank,
                                                      const std::string& file) {
  if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
    return std::pair(mg[0].get<std::string>(), mg[1].get<std::string>());
  }
  if (!mg.is_string()) return Error(MergeError(file, rank, "expected a pair of strings"));
  const std::string s = mg.get<std::string>();
  const size_t sp = s.find(' ', 1);
  if (sp == std::string::npos) return Error(MergeError(file, rank, "malformed merge"));
  return std::pair(s.substr(0, sp), s.substr(sp + 1));
}

// Each Replace can grow text ceil(|to| / |from|) times and a Sequence multiplies the factors: a few
// short rules would turn every prompt into gigabytes. Gemma's grows it 3x (" " -> "▁").
Status CheckNormalizerGrowth(const std::vector<std::pair<std::string, std::string>>& replace,
                             const std::string& file) {
  size_t growth = 1;
  for (const auto& [from, to] : replace) {
    if (from.empty()) continue;  // ReplaceAll skips it
    growth *= std::max<size_t>(1, (to.size() + from.size() - 1) / from.size());
    if (growth > kMaxNormalizerGrowth) {
      return Error(file + ": normalizer: its replacements can grow text more than " +
                   std::to_string(kMaxNormalizerGrowth) + " times");
    }
  }
  return OkStatus();
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> Tokenizer::LoadFile(const std::string& path) {
  Result<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  return FromJsonText(*text, path);
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJsonText(const std::string& text,
                                                           const std::string& file) {
  Result<Json> parsed = ParseJson(text, file);
  if (!parsed.ok()) return parsed.status();
  return FromJson(*parsed, file);
}

// The steps run in the order their errors are reported: the model's fields, the ids, the unknown
// token, merges, normalizer, pre-tokenizer.
Result<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(const Json& j, const std::string& file) {
  auto tok = std::make_unique<Tokenizer>();
  FieldReader root(j, file);
  const Json* model = root.Object("model", /*required=*/true);
  if (!root.ok()) return root.status();
  Result<BpeModel> bpe = ReadBpeModel(*model, file);
  if (!bpe.ok()) return bpe.status();
  tok->byte_fallback_ = bpe->byte_fallback;
  tok->fuse_unk_ = bpe->fuse_unk;

  // Vocabulary and added tokens define id -> piece.
  const Json* added = root.Has("added_tokens") ? &j["added_tokens"] : nullptr;
  Result<size_t> n = IdTableSize(*bpe->vocab, added, file);
  if (!n.ok()) return n.status();
  tok->FillIdTables(*bpe->vocab, added, *n);
  tok->IndexByteTokens();
  if (!bpe->unk.empty()) {
    auto it = tok->vocab_.find(bpe->unk);
    if (it == tok->vocab_.end())
      return Error(file + ": model.unk_token '" + bpe->unk + "' is not in the vocabulary");
    tok->unk_id_ = it->second;
  }

  if (Status s = tok->ReadMerges(*model, file); !s.ok()) return s;
  if (Status s = tok->ReadNormalizer(j, file); !s.ok()) return s;
  if (Status s = tok->ReadPreTokenizer(j, file); !s.ok()) return s;
  tok->max_input_bytes_per_token_ = tok->ComputeMaxInputBytesPerToken();
  return tok;
}

// `vocab` and `added` as IdTableSize checked them; `n` is its size.
void Tokenizer::FillIdTables(const Json& vocab, const Json* added, size_t n) {
  pieces_.assign(n, "");
  special_.assign(n, 0);
  byte_of_.assign(n, -1);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int id = it.value().get<int>();
    pieces_[static_cast<size_t>(id)] = it.key();
    vocab_[it.key()] = id;
  }
  trie_.emplace_back();
  if (added == nullptr) return;
  for (const Json& a : *added) {
    const int id = a["id"].get<int>();
    const std::string content = a["content"].get<std::string>();
    pieces_[static_cast<size_t>(id)] = content;
    vocab_[content] = id;
    special_[static_cast<size_t>(id)] = *BoolField(a, "special", false) ? 1 : 0;
    AddToTrie(content, id);
  }
}

void Tokenizer::AddToTrie(const std::string& content, int id) {
  int node = 0;
  for (unsigned char ch : content) {
    auto nx = trie_[static_cast<size_t>(node)].next.find(ch);
    if (nx == trie_[static_cast<size_t>(node)].next.end()) {
      trie_.emplace_back();
      const int created = static_cast<int>(trie_.size()) - 1;
      trie_[static_cast<size_t>(node)].next[ch] = created;
      node = created;
    } else {
      node = nx->second;
    }
  }
  trie_[static_cast<size_t>(node)].token = id;
}

void Tokenizer::IndexByteTokens() {
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = vocab_.find(name);
    byte_token_[b] = it == vocab_.end() ? -1 : it->second;
    if (it != vocab_.end()) byte_of_[static_cast<size_t>(it->second)] = static_cast<int16_t>(b);
  }
}

// Merges: ["a", "b"] pairs (or legacy "a b" strings), rank = list index.
Status Tokenizer::ReadMerges(const Json& model, const std::string& file) {
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return Error(file + ": model.merges: expected a list");
  }
  const Json& merges = model["merges"];
  merges_.reserve(merges.size());
  int rank = 0;
  for (const Json& mg : merges) {
    Result<std::pair<std::string, std::string>> pair = MergePair(mg, rank, file);
    if (!pair.ok()) return pair.status();
    const auto& [a, b] = *pair;
    auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || iab == vocab_.end()) {
      return Error(MergeError(file, rank, "token not in the vocabulary"));
    }
    const uint64_t key =
        (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
    merges_.try_emplace(key, rank, iab->second);  // first (lowest) rank wins
    ++rank;
  }
  return OkStatus();
}

// Normalizer: Replace(String) or a Sequence of them (what Gemma uses); anything else is refused
// rather than silently ignored, because it would change ids.
Status Tokenizer::ReadNormalizer(const Json& j, const std::string& file) {
  if (!j.contains("normalizer") || j["normalizer"].is_null()) return OkStatus();
  const Json& n = j["normalizer"];
  if (n.is_object() && StringField(n, "type", "") == "Sequence" && n.contains("normalizers") &&
      n["normalizers"].is_array()) {
    for (size_t i = 0; i < n["normalizers"].size(); ++i) {
      if (Status s = AddReplace(n["normalizers"][i],
                                "normalizer.normalizers[" + std::to_string(i) + "]", file);
          !s.ok())
        return s;
    }
  } else if (Status s = AddReplace(n, "normalizer", file); !s.ok()) {
    return s;
  }
  return CheckNormalizerGrowth(normalize_replace_, file);
}

Status Tokenizer::AddReplace(const Json& n, const std::string& path, const std::string& file) {
  if (!n.is_object() || StringField(n, "type", "") != "Replace" || !n.contains("pattern") ||
      !n["pattern"].is_object() || !n["pattern"].contains("String") ||
      !n["pattern"]["String"].is_string() || !n.contains("content") || !n["content"].is_string()) {
    return Error(file + ": " + path +
                 ": unsupported normalizer (supported: Replace with a String pattern, Sequence)");
  }
  normalize_replace_.emplace_back(n["pattern"]["String"].get<std::string>(),
                                  n["content"].get<std::string>());
  return OkStatus();
}

Status Tokenizer::ReadPreTokenizer(const Json& j, const std::string& file) {
  if (!j.contains("pre_tokenizer") || j["pre_tokenizer"].is_null()) return OkStatus();
  const Json& p = j["pre_tokenizer"];
  if (!p.is_object() || StringField(p, "type", "") != "Split" || !p.contains("pattern") ||
      !p["pattern"].is_object() || !p["pattern"].contains("String") ||
      !p["pattern"]["String"].is_string() || BoolField(p, "invert", false) != false) {
    return Error(file + ": pre_tokenizer: unsupported (supported: Split with a String pattern)");
  }
  split_on_ = p["pattern"]["String"].get<std::string>();
  split_behavior_ = StringField(p, "behavior", "Isolated");
  static const char* kBehaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext"};
  bool known = false;
  for (const char* b : kBehaviors) known |= split_behavior_ == b;
  if (!known)
    return Error(file + ": pre_tokenizer.behavior: unsupported '" + split_behavior_ + "'");
  return OkStatus();
}

// Every token Encode emits stands for a string of the vocabulary (an added token's content, a
// vocabulary piece, or a merge a+b, itself a vocabulary string), a single byte (byte fallback) or a
// single character of at most 4 bytes (<unk>, unfused), so it covers at most L normalized bytes,
// L = max(longest vocabulary string, 4). Added tokens match the raw text; everything else is
// normalized first, and a Replace(from -> to) with a shorter `to` can shrink text by at most
// ceil(|from| / |to|), so one token covers at most L times the product of those factors of input.
// No bound exists when text can vanish or fuse: an empty replacement, a Split that removes its
// pattern, characters dropped for want of a byte token or <unk>, or a fused <unk> run.
std::optional<size_t> Tokenizer::ComputeMaxInputBytesPerToken() const {
  bool all_bytes = byte_fallback_;
  for (int b = 0; b < 256 && all_bytes; ++b) all_bytes = byte_token_[b] >= 0;
  if (!all_bytes && (unk_id_ < 0 || fuse_unk_)) return std::nullopt;
  if (!split_on_.empty() && split_behavior_ == "Removed") return std::nullopt;
  size_t longest = 4;
  for (const auto& [piece, id] : vocab_) longest = std::max(longest, piece.size());
  size_t bound = longest;
  for (const auto& [from, to] : normalize_replace_) {
    if (to.size() >= from.size()) continue;
    if (to.empty()) return std::nullopt;
    const size_t shrink = (from.size() + to.size() - 1) / to.size();
    if (bound > std::numeric_limits<size_t>::max() / shrink) return std::nullopt;
    bound *= shrink;
  }
  return bound;
}

std::optional<int> Tokenizer::TokenId(std::string_view piece) const {
  auto it = vocab_.find(std::string(piece));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

size_t Tokenizer::MatchAdded(std::string_view text, size_t pos, int* token) const {
  int node = 0;
  size_t best = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& next = trie_[static_cast<size_t>(node)].next;
    auto it = next.find(static_cast<unsigned char>(text[i]));
    if (it == next.end()) break;
    node = it->second;
    if (trie_[static_cast<size_t>(node)].token >= 0) {
      best = i + 1 - pos;
      *token = trie_[static_cast<size_t>(node)].token;
    }
  }
  return best;
}

std::vector<int> Tokenizer::Encode(std::string_view text) const {
  std::vector<int> out;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    int id = -1;
    const size_t len = trie_.size() > 1 ? MatchAdded(text, i, &id) : 0;
    if (len == 0) {
      i += Utf8CharLen(text, i);  // added tokens start on character boundaries
      continue;
    }
    if (i > start) EncodeSegment(text.substr(start, i - start), &out);
    out.push_back(id);
    i += len;
    start = i;
  }
  if (start < text.size()) EncodeSegment(text.substr(start), &out);
  return out;
}

void Tokenizer::EncodeSegment(std::string_view text, std::vector<int>* out) const {
  std::string s(text);
  for (const auto& [from, to] : normalize_replace_) ReplaceAll(&s, from, to);
  if (split_on_.empty()) {
    Bpe(s, out);
    return;
  }
  // Split on every occurrence of the pattern, attaching it per `behavior`.
  std::vector<std::string> pieces;
  size_t pos = 0;
  std::string carry;
  for (size_t hit; (hit = s.find(split_on_, pos)) != std::string::npos;
       pos = hit + split_on_.size()) {
    std::string before = carry + s.substr(pos, hit - pos);
    carry.clear();
    if (split_behavior_ == "MergedWithPrevious") {
      pieces.push_back(before + split_on_);
    } else if (split_behavior_ == "MergedWithNext") {
      if (!before.empty()) pieces.push_back(before);
      carry = split_on_;
    } else {
      if (!before.empty()) pieces.push_back(before);
      if (split_behavior_ == "Isolated") pieces.push_back(split_on_);
    }
  }
  std::string rest = carry + s.substr(pos);
  if (!rest.empty()) pieces.push_back(rest);
  for (const std::string& p : pieces) {
    if (!p.empty()) Bpe(p, out);
  }
}

void Tokenizer::Bpe(std::string_view word, std::vector<int>* out) const {
  // Symbols form a doubly linked list; a min-heap of candidate merges ordered by (rank, position)
  // applies the lowest-rank merge first and, among equal ranks, the leftmost.
  struct Sym {
    int id;
    int prev, next;
    bool alive;
  };
  std::vector<Sym> syms;
  syms.reserve(word.size());
  auto push_sym = [&](int id) {
    const int idx = static_cast<int>(syms.size());
    syms.push_back({id, idx - 1, idx + 1, true});
  };
  for (size_t i = 0; i < word.size();) {
    const size_t len = Utf8CharLen(word, i);
    auto it = vocab_.find(std::string(word.substr(i, len)));
    if (it != vocab_.end()) {
      push_sym(it->second);
    } else {
      bool all_bytes = byte_fallback_;
      for (size_t k = 0; k < len && all_bytes; ++k)
        all_bytes = byte_token_[static_cast<unsigned char>(word[i + k])] >= 0;
      if (all_bytes) {
        for (size_t k = 0; k < len; ++k)
          push_sym(byte_token_[static_cast<unsigned char>(word[i + k])]);
      } else if (unk_id_ >= 0 && !(fuse_unk_ && !syms.empty() && syms.back().id == unk_id_)) {
        push_sym(unk_id_);
      }
    }
    i += len;
  }
  if (syms.empty()) return;
  syms.back().next = -1;

  struct Cand {
    int rank, left, left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto consider = [&](int left) {
    if (left < 0) return;
    const int right = syms[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const uint64_t key = (static_cast<uint64_t>(syms[static_cast<size_t>(left)].id) << 32) |
                         static_cast<uint32_t>(syms[static_cast<size_t>(right)].id);
    auto it = merges_.find(key);
    if (it != merges_.end()) {
      heap.push({it->second.first, left, syms[static_cast<size_t>(left)].id,
                 syms[static_cast<size_t>(right)].id});
    }
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) consider(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& l = syms[static_cast<size_t>(c.left)];
    if (!l.alive || l.id != c.left_id || l.next < 0) continue;  // stale candidate
    Sym& r = syms[static_cast<size_t>(l.next)];
    if (r.id != c.right_id) continue;
    l.id = merges_.at((static_cast<uint64_t>(c.left_id) << 32) | static_cast<uint32_t>(c.right_id))
               .second;
    r.alive = false;
    l.next = r.next;
    if (r.next >= 0) syms[static_cast<size_t>(r.next)].prev = c.left;
    consider(l.prev);
    consider(c.left);
  }
  for (int i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next)
    out->push_back(syms[static_cast<size_t>(i)].id);
}

std::string Tokenizer::Decode(std::span<const int> ids) const {
  StreamDecoder d(*this);
  std::string s;
  for (int id : ids) s += d.Push(id);
  return s + d.Flush();
}

std::string StreamDecoder::Push(int id) {
  std::string out;
  if (id < 0 || id >= tok_.vocab_size()) return out;
  const int b = tok_.ByteOf(id);
  if (b >= 0) {
    pending_.push_back(static_cast<char>(b));
    const size_t keep = AppendUtf8(pending_, /*final=*/false, &out);
    pending_.erase(0, pending_.size() - keep);
    return out;
  }
  AppendUtf8(pending_, /*final=*/true, &out);
  pending_.clear();
  std::string piece = tok_.Piece(id);
  ReplaceAll(&piece, kSpaceMark, " ");  // the decoder applies to every token, added ones too
  return out + piece;
}

std::string StreamDecoder::Flush() {
  std::string out;
  AppendUtf8(pending_, /*final=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace specula
