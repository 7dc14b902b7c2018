#pragma once
// Writing a file so that no reader and no crash ever sees half of it: a
// temporary file beside the target, fsync, rename over the target, fsync of the
// folder (POSIX). Used for weights, checkpoints, images and manifests.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "cumtl/core/error.hpp"

namespace cumtl::io::detail {

inline std::string quoted(const std::filesystem::path& file) {
  return "'" + file.string() + "'";
}

// Closes a POSIX file descriptor on every path out, errors included.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) noexcept : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  // Closes now, so that a failing close (a delayed write error) is seen; returns errno or 0.
  int close() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

inline int write_all(int fd, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ::ssize_t written = ::write(fd, bytes.data(), bytes.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    bytes = bytes.subspan(std::size_t(written));
  }
  return 0;
}

// Writes the pieces, in order, to `file` atomically (temp file, fsync, rename,
// fsync of the folder). Streaming the pieces avoids holding a second copy of
// every weight in memory, and the fsyncs are what make it crash-safe: a rename
// alone may reach the disk before the data it names. A failure removes the
// temporary file and leaves any old `file` as it was.
inline void write_pieces_atomically(const std::filesystem::path& file,
                                    const std::vector<std::span<const std::byte>>& pieces) {
  static std::atomic<std::uint64_t> counter{0};
  const std::uint64_t unique = (std::uint64_t(std::random_device{}()) << 20) ^ counter.fetch_add(1);
  std::filesystem::path temporary = file;
  temporary += ".tmp-" + std::to_string(unique);
  FileDescriptor fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    const int error = errno;
    const bool no_folder = !file.parent_path().empty() && !std::filesystem::is_directory(file.parent_path());
    CUMTL_FAIL("cannot write ", quoted(file), ": ",
               no_folder ? "the folder " + quoted(file.parent_path()) + " does not exist"
                         : std::generic_category().message(error));
  }
  int error = 0;
  for (std::span<const std::byte> piece : pieces)
    if (error == 0) error = write_all(fd.get(), piece);
  if (error == 0 && ::fsync(fd.get()) != 0) error = errno;
  const int close_error = fd.close();
  if (error == 0) error = close_error;
  std::error_code ignored;
  if (error != 0) {
    std::filesystem::remove(temporary, ignored);
    CUMTL_FAIL("cannot write ", quoted(file), ": ", std::generic_category().message(error));
  }
  std::error_code renamed;
  std::filesystem::rename(temporary, file, renamed);
  if (renamed) {
    std::filesystem::remove(temporary, ignored);
    CUMTL_FAIL("cannot write ", quoted(file), ": ", renamed.message());
  }
  // Makes the rename itself durable; some file systems refuse to fsync a folder, which is no error of ours.
  const std::filesystem::path folder = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  FileDescriptor directory(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory.get() >= 0) (void)::fsync(directory.get());
}

}  // namespace cumtl::io::detail
