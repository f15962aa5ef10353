// A read-only memory map of a whole file. Weights are read through it and never copied whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "specula/base/status.h"

namespace specula {

class MappedFile {
 public:
  static Result<std::unique_ptr<MappedFile>> Open(const std::string& path);

  struct Key {  // only Open() can construct one
   private:
    Key() = default;
    friend class MappedFile;
  };
  explicit MappedFile(Key) {}
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole file of at most `max_bytes` bytes. A regular file is judged by its size before
// anything is read; anything else (a pipe, /dev/stdin, a device such as /dev/zero that never ends)
// is read in chunks until it ends or has yielded more than `max_bytes`. Errors name the path; the
// one for a file past the limit ends with `why_limit` in parentheses when it is given.
Result<std::string> ReadFileAtMost(const std::string& path, uint64_t max_bytes,
                                   const std::string& why_limit = "");

// The limit ReadTextFile applies: far above any config.json or tokenizer.json (the 262k-token
// Gemma tokenizer.json is ~30 MB), far below what would exhaust memory.
inline constexpr uint64_t kMaxTextFileBytes = uint64_t{1} << 30;

// Reads a whole text file, e.g. config.json (at most kMaxTextFileBytes).
Result<std::string> ReadTextFile(const std::string& path);
bool FileExists(const std::string& path);

}  // namespace specula
