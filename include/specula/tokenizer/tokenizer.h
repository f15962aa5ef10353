// A Hugging Face `tokenizer.json` BPE tokenizer, as Gemma uses it: added/special tokens matched
// first (leftmost-longest), the " " -> "▁" normalizer, an optional Split pre-tokenizer, BPE merges
// applied by rank (ties: leftmost), byte fallback to <0xXX> tokens for characters outside the
// vocabulary. Decoding maps "▁" back to " " and joins byte tokens into UTF-8.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "specula/base/json.h"
#include "specula/base/status.h"

namespace specula {

class Tokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> LoadFile(const std::string& path);
  static Result<std::unique_ptr<Tokenizer>> FromJsonText(const std::string& text,
                                                         const std::string& file);
  static Result<std::unique_ptr<Tokenizer>> FromJson(const Json& root, const std::string& file);

  std::vector<int> Encode(std::string_view text) const;  // never adds BOS
  std::string Decode(std::span<const int> ids) const;

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  std::optional<int> TokenId(std::string_view piece) const;
  const std::string& Piece(int id) const { return pieces_[static_cast<size_t>(id)]; }
  bool IsSpecial(int id) const { return special_[static_cast<size_t>(id)] != 0; }
  // The raw byte of a <0xXX> token, or -1.
  int ByteOf(int id) const { return byte_of_[static_cast<size_t>(id)]; }
  // An upper bound on the input bytes one token of Encode's output stands for, so a text longer
  // than n times it encodes to more than n tokens; empty when this tokenizer admits no bound (text
  // that encodes to nothing, or an unbounded run fused into one <unk>).
  std::optional<size_t> MaxInputBytesPerToken() const { return max_input_bytes_per_token_; }

 private:
  struct TrieNode {
    std::unordered_map<unsigned char, int> next;
    int token = -1;
  };
  void EncodeSegment(std::string_view text, std::vector<int>* out) const;
  void Bpe(std::string_view word, std::vector<int>* out) const;
  size_t MatchAdded(std::string_view text, size_t pos, int* token) const;
  std::optional<size_t> ComputeMaxInputBytesPerToken() const;
  // FromJson's steps, each given the checked part of tokenizer.json; `file` names it in errors.
  void FillIdTables(const Json& vocab, const Json* added, size_t n);
  void AddToTrie(const std::string& content, int id);
  void IndexByteTokens();
  Status ReadMerges(const Json& model, const std::string& file);
  Status ReadNormalizer(const Json& root, const std::string& file);
  Status AddReplace(const Json& replace, const std::string& path, const std::string& file);
  Status ReadPreTokenizer(const Json& root, const std::string& file);

  std::vector<std::string> pieces_;  // id -> token string
  std::vector<uint8_t> special_;
  std::vector<int16_t> byte_of_;
  std::unordered_map<std::string, int> vocab_;
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;  // (left, right) -> (rank, merged)
  std::vector<TrieNode> trie_;                                // added tokens; node 0 is the root
  int byte_token_[256];
  int unk_id_ = -1;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::vector<std::pair<std::string, std::string>> normalize_replace_;  // applied in order
  std::string split_on_;  // Split pre-tokenizer pattern ("" = none)
  std::string split_behavior_;
  std::optional<size_t> max_input_bytes_per_token_;
};

// Incremental decoding for streaming output: Push returns only complete UTF-8, holding back the
// bytes of a character split across byte-fallback tokens. The concatenation of all Push results
// plus Flush equals Decode of the whole sequence.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string Push(int id);
  std::string Flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;  // bytes of an incomplete UTF-8 character
};

}  // namespace specula
