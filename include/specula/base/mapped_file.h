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

// Reads a whole (small) text file, e.g. config.json.
Result<std::string> ReadTextFile(const std::string& path);
bool FileExists(const std::string& path);

}  // namespace specula
