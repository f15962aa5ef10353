// JSON parsing and typed field access that reports errors as "file: path.to.field: problem".
// FieldReader records the first error and returns defaults afterwards, so parsers read linearly
// and check reader.status() once at the end.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "specula/base/status.h"

namespace specula {

using Json = nlohmann::json;

// Arrays and objects nested deeper than this are refused before parsing: nlohmann's dump() and
// copies recurse, so a value nested tens of thousands deep would overflow the stack. Real files
// nest a handful of levels.
inline constexpr size_t kMaxJsonDepth = 128;
// The deepest nesting of arrays and objects in JSON text (brackets inside strings skipped).
size_t JsonNestingDepth(std::string_view text);

Result<Json> ParseJson(const std::string& text, const std::string& file);
// ParseJson that also reports in `*duplicate` a key the top-level object holds more than once
// (nlohmann keeps only the last of them, silently); `*duplicate` is left empty when there is none.
Result<Json> ParseJson(const std::string& text, const std::string& file,
                       std::optional<std::string>* duplicate);
Result<Json> ReadJsonFile(const std::string& path);

// A value as it may appear in a message: dumped (invalid UTF-8 replaced, never throwing) and cut to
// about `max_chars` on a character boundary.
std::string ShowJson(const Json& v, size_t max_chars = 60);

class FieldReader {
 public:
  // `obj` must outlive the reader. `prefix` is the dotted path of obj inside the file ("" = root).
  FieldReader(const Json& obj, std::string file, std::string prefix = "");

  bool Has(const std::string& key) const;
  bool IsNull(const std::string& key) const;  // absent or JSON null

  int64_t Int(const std::string& key);                    // required
  int64_t Int(const std::string& key, int64_t fallback);  // optional (absent or null -> fallback)
  // Int that must fit an int (sizes, counts, ids): a larger value is an error, not a silent wrap.
  int Int32(const std::string& key);
  int Int32(const std::string& key, int fallback);
  double Float(const std::string& key);
  double Float(const std::string& key, double fallback);
  bool Bool(const std::string& key, bool fallback);
  std::string String(const std::string& key);
  std::string String(const std::string& key, const std::string& fallback);
  std::vector<std::string> StringList(const std::string& key);
  // An int or a list of ints (e.g. eos_token_id) -> list; absent -> empty.
  std::vector<int64_t> IntOrIntList(const std::string& key);
  // A nested object; absent -> nullptr and an error if `required`.
  const Json* Object(const std::string& key, bool required);

  // Records a validation error about `key` (with the value shown), unless one is already recorded.
  void Fail(const std::string& key, const std::string& problem);
  std::string PathOf(const std::string& key) const;
  const std::string& file() const { return file_; }

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }

 private:
  const Json* Get(const std::string& key) const;
  const Json& obj_;
  std::string file_;
  std::string prefix_;
  Status status_;
};

}  // namespace specula
