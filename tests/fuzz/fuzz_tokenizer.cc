// Feeds the bytes as tokenizer.json to Tokenizer::FromJsonText, then encodes a short string (the
// first few pieces of the vocabulary, spaces, an added-token lookalike, multi-byte and invalid
// UTF-8) and decodes the ids, whole and streamed: ids must be in the vocabulary and the streamed
// text must equal the whole decode.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "specula/tokenizer/tokenizer.h"

namespace specula {
namespace {

void Run(const std::string& json) {
  Result<std::unique_ptr<Tokenizer>> t = Tokenizer::FromJsonText(json, "tokenizer.json");
  if (!t.ok()) return;
  const Tokenizer& tok = **t;
  std::string text = "ab a b  <|turn>x\xE6\x97\xA5\xFF\xE6";
  for (int id = 0; id < tok.vocab_size() && id < 8; ++id) text += tok.Piece(id) + " ";
  const std::vector<int> ids = tok.Encode(text);
  for (int id : ids) {
    if (id < 0 || id >= tok.vocab_size()) abort();
  }
  const std::string whole = tok.Decode(ids);
  StreamDecoder stream(tok);
  std::string streamed;
  for (int id : ids) streamed += stream.Push(id);
  if (streamed + stream.Flush() != whole) abort();
}

}  // namespace
}  // namespace specula

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  specula::Run(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
