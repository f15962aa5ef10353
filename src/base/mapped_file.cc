#include "specula/base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace specula {

Result<std::unique_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error(path + ": not a regular file");
  }
  auto f = std::make_unique<MappedFile>(Key());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return Error(path + ": mmap failed: " + std::strerror(errno));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

Result<std::string> ReadFileAtMost(const std::string& path, uint64_t max_bytes,
                                   const std::string& why_limit) {
  const std::string why = why_limit.empty() ? "" : " (" + why_limit + ")";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Error(path + ": cannot stat: " + std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Error(path + ": is a directory, not a file");
  }
  const bool regular = S_ISREG(st.st_mode);
  if (regular && static_cast<uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return Error(path + ": " + std::to_string(st.st_size) + " bytes, past the limit of " +
                 std::to_string(max_bytes) + " bytes" + why);
  }
  std::string out;
  if (regular) out.reserve(static_cast<size_t>(st.st_size));
  // One byte past the limit tells "exactly at the limit" from "more"; a regular file that grew
  // since fstat is caught the same way.
  char buf[1 << 16];
  while (out.size() <= max_bytes) {
    const size_t want = static_cast<size_t>(
        std::min<uint64_t>(sizeof(buf), max_bytes + 1 - static_cast<uint64_t>(out.size())));
    const ssize_t n = ::read(fd, buf, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Error(path + ": read error: " + std::strerror(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (out.size() > max_bytes) {
    return Error(path + (regular ? ": grew" : ": not a regular file, and still yielding data") +
                 " past the limit of " + std::to_string(max_bytes) + " bytes" + why);
  }
  return out;
}

Result<std::string> ReadTextFile(const std::string& path) {
  return ReadFileAtMost(path, kMaxTextFileBytes);
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace specula
