#include "specula/tokenizer/tokenizer_gguf.h"

#include <iterator>
#include <map>

namespace specula {
namespace {

bool IsByteToken(const std::string& piece) {
  return piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>';
}

}  // namespace

Json GemmaSpaceRules() {
  const std::string mark = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  return {
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", mark}}},
      {"pre_tokenizer",
       {{"type", "Split"},
        {"pattern", {{"String", " "}}},
        {"behavior", "MergedWithPrevious"},
        {"invert", false}}},
  };
}

Result<Json> TokenizerJsonFromGguf(Json md, const std::string& path) {
  FieldReader r(md, path);
  const std::string model = r.String("tokenizer.ggml.model");
  if (!r.ok()) return r.status();
  if (model != "gemma4") {
    r.Fail("tokenizer.ggml.model", "expected \"gemma4\" (Gemma's BPE with byte fallback)");
    return r.status();
  }
  auto array_of = [&](const char* key, bool (Json::*is)() const) -> Json* {
    auto it = md.find(key);
    if (it == md.end() || !it->is_array()) {
      r.Fail(key, "required: an array");
      return nullptr;
    }
    for (const Json& e : *it) {
      if (!(e.*is)()) {
        r.Fail(key, "has an entry of the wrong type");
        return nullptr;
      }
    }
    return &*it;
  };
  Json* tokens = array_of("tokenizer.ggml.tokens", &Json::is_string);
  Json* merges = array_of("tokenizer.ggml.merges", &Json::is_string);
  const Json* types = md.contains("tokenizer.ggml.token_type")
                          ? array_of("tokenizer.ggml.token_type", &Json::is_number_integer)
                          : nullptr;
  if (!r.ok()) return r.status();
  if (types != nullptr && types->size() != tokens->size()) {
    r.Fail("tokenizer.ggml.token_type",
           "must have one entry per token (" + std::to_string(tokens->size()) + ")");
    return r.status();
  }
  const int64_t unk_id = r.Int("tokenizer.ggml.unknown_token_id", -1);
  if (!r.ok()) return r.status();

  Json vocab = Json::object(), added = Json::array();
  std::string unk;
  for (size_t id = 0; id < tokens->size(); ++id) {
    // Moved out of the metadata: a 262k-token vocabulary is tens of MB, held once.
    std::string piece = std::move((*tokens)[id].get_ref<std::string&>());
    const auto type = static_cast<GgufTokenType>(types ? (*types)[id].get<int>() : 1);
    if (piece.empty()) {
      return Error(path + ": tokenizer.ggml.tokens[" + std::to_string(id) + "] is empty");
    }
    if (static_cast<int64_t>(id) == unk_id) unk = piece;
    if (type == GgufTokenType::kControl || type == GgufTokenType::kUnknown ||
        type == GgufTokenType::kUserDefined) {
      added.push_back(
          {{"id", id}, {"content", piece}, {"special", type != GgufTokenType::kUserDefined}});
    }
    auto [it, fresh] = vocab.get_ref<Json::object_t&>().emplace(std::move(piece), id);
    if (!fresh) {
      return Error(path + ": tokenizer.ggml.tokens[" + std::to_string(id) + "] '" + it->first +
                   "' repeats token " + std::to_string(it->second.get<int64_t>()));
    }
  }
  // Merges stay "left right" strings, which tokenizer.json allows too (split, as llama.cpp does, at
  // the first space after the first byte).
  for (size_t i = 0; i < merges->size(); ++i) {
    const std::string& m = (*merges)[i].get_ref<const std::string&>();
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos || sp + 1 >= m.size()) {
      return Error(path + ": tokenizer.ggml.merges[" + std::to_string(i) + "] '" + m +
                   "' is not two tokens separated by a space");
    }
  }
  const std::string mark = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  Json model_json = {{"type", "BPE"}, {"byte_fallback", true}, {"fuse_unk", true}};
  model_json["vocab"] = std::move(vocab);
  model_json["merges"] = std::move(*merges);
  if (!unk.empty()) model_json["unk_token"] = unk;
  Json root = GemmaSpaceRules();
  root["added_tokens"] = std::move(added);
  root["model"] = std::move(model_json);
  return root;
}

Result<std::vector<GgufKv>> TokenizerGgufMetadata(const Json& j, const std::string& file,
                                                  int64_t vocab_size) {
  FieldReader root(j, file);
  const Json* model = root.Object("model", /*required=*/true);
  if (!root.ok()) return root.status();
  FieldReader m(*model, file, "model");
  const Json* vocab = m.Object("vocab", /*required=*/true);
  const std::string unk = m.String("unk_token", "");
  if (!m.ok()) return m.status();
  std::map<int64_t, std::string> pieces;
  std::map<int64_t, GgufTokenType> type;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer())
      return Error(file + ": model.vocab." + it.key() + ": expected an id");
    pieces[it.value().get<int64_t>()] = it.key();
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    for (const Json& a : j["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string()) {
        return Error(file + ": added_tokens: expected {id, content} objects");
      }
      FieldReader fields(a, file, "added_tokens");
      const bool special = fields.Bool("special", false);  // not a.value(): that throws on "x"
      if (!fields.ok()) return fields.status();
      const int64_t id = a["id"].get<int64_t>();
      pieces[id] = a["content"].get<std::string>();
      type[id] = special ? GgufTokenType::kControl : GgufTokenType::kUserDefined;
    }
  }
  if (pieces.empty() || pieces.begin()->first != 0 ||
      pieces.rbegin()->first != static_cast<int64_t>(pieces.size()) - 1) {
    return Error(file + ": token ids must run from 0 without gaps to be written to GGUF");
  }
  if (vocab_size > 0) {
    while (!pieces.empty() && pieces.rbegin()->first >= vocab_size)
      pieces.erase(std::prev(pieces.end()));
    for (auto id = static_cast<int64_t>(pieces.size()); id < vocab_size; ++id) {
      pieces[id] = "[PAD" + std::to_string(id) + "]";
      type[id] = GgufTokenType::kUnused;
    }
  }
  Json tokens = Json::array(), types = Json::array(), scores = Json::array();
  std::map<std::string, int64_t> ids;
  for (const auto& [id, piece] : pieces) {
    tokens.push_back(piece);
    ids[piece] = id;
    GgufTokenType t = GgufTokenType::kNormal;
    if (auto a = type.find(id); a != type.end()) t = a->second;
    if (piece == unk) t = GgufTokenType::kUnknown;
    if (t == GgufTokenType::kNormal && IsByteToken(piece)) t = GgufTokenType::kByte;
    types.push_back(static_cast<int>(t));
    scores.push_back(0.0);
  }
  Json merges = Json::array();
  if (!model->contains("merges") || !(*model)["merges"].is_array()) {
    return Error(file + ": model.merges: expected a list");
  }
  for (const Json& mg : (*model)["merges"]) {
    std::string a, b;
    if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      a = mg[0].get<std::string>();
      b = mg[1].get<std::string>();
    } else if (mg.is_string() && mg.get<std::string>().find(' ', 1) != std::string::npos) {
      const std::string s = mg.get<std::string>();
      a = s.substr(0, s.find(' ', 1));
      b = s.substr(s.find(' ', 1) + 1);
    } else {
      return Error(file + ": model.merges: entry " + mg.dump() + " is not a pair");
    }
    if (!ids.count(a) || !ids.count(b) || !ids.count(a + b)) continue;  // needs a dropped token
    if (a.empty() || a.find(' ', 1) != std::string::npos) {
      return Error(file + ": model.merges: '" + a +
                   "' has a space GGUF's \"left right\" form cannot hold");
    }
    merges.push_back(a + " " + b);
  }
  std::vector<GgufKv> kvs = {
      {"tokenizer.ggml.model", GgufType::kString, "gemma4"},
      {"tokenizer.ggml.pre", GgufType::kString, "gemma4"},
      {"tokenizer.ggml.tokens", GgufType::kArray, tokens, GgufType::kString},
      {"tokenizer.ggml.scores", GgufType::kArray, scores, GgufType::kF32},
      {"tokenizer.ggml.token_type", GgufType::kArray, types, GgufType::kI32},
      {"tokenizer.ggml.merges", GgufType::kArray, merges, GgufType::kString},
      {"tokenizer.ggml.add_bos_token", GgufType::kBool, true},
      {"tokenizer.ggml.add_space_prefix", GgufType::kBool, false},
  };
  for (const auto& [key, piece] : {std::pair<const char*, const char*>{"bos", "<bos>"},
                                   {"eos", "<eos>"},
                                   {"unknown", "<unk>"},
                                   {"padding", "<pad>"}}) {
    if (auto it = ids.find(piece); it != ids.end()) {
      kvs.push_back(
          {std::string("tokenizer.ggml.") + key + "_token_id", GgufType::kU32, it->second});
    }
  }
  return kvs;
}

Result<std::unique_ptr<Tokenizer>> LoadCheckpointTokenizer(const std::string& checkpoint) {
  if (!IsGgufPath(checkpoint)) return Tokenizer::LoadFile(checkpoint + "/tokenizer.json");
  Result<std::unique_ptr<GgufFile>> f = GgufFile::Open(checkpoint);
  if (!f.ok()) return f.status();
  Json metadata = (*f)->TakeMetadata();
  f->reset();  // unmap before the tokenizer builds its tables
  return TokenizerFromGguf(std::move(metadata), checkpoint);
}

Result<std::unique_ptr<Tokenizer>> TokenizerFromGguf(Json metadata, const std::string& path) {
  Result<Json> j = TokenizerJsonFromGguf(std::move(metadata), path);
  if (!j.ok()) return j.status();
  return Tokenizer::FromJson(*j, path + " (its tokenizer.ggml.* keys)");
}

}  // namespace specula
