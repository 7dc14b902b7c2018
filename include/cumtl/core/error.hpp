#pragma once
// cumtl::Error and the checks that throw it.
//
// Every failure a caller can act on is an exception whose message names what
// failed (the call or the contract), why (the status text or the offending
// shapes, devices and types), where (file:line) and, where one is known, a hint.
// Nothing in cumtl calls exit() or abort(), and no destructor throws.

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "cumtl/core/config.hpp"

namespace cumtl {

namespace detail {

// `file` from the last of cumtl's top-level folders on its path:
// "/home/ci/cumtl/include/cumtl/core/tensor.hpp" -> "include/cumtl/core/tensor.hpp".
// A person reading an error wants the place in cumtl's tree, not the folders
// of the machine that built the program; any other path is kept whole.
constexpr std::string_view relative_source_path(std::string_view file) noexcept {
  constexpr std::string_view tree_folders[] = {"include/cumtl/", "kernels/", "examples/", "benchmarks/", "tests/"};
  constexpr auto npos = std::string_view::npos;
  std::size_t start = npos;
  for (const std::string_view folder : tree_folders) {
    // The rightmost occurrence that begins a path component.
    for (std::size_t end = file.size(); end != 0;) {
      const std::size_t at = file.rfind(folder, end - 1);
      if (at == npos) break;
      if (at == 0 || file[at - 1] == '/' || file[at - 1] == '\\') {
        if (start == npos || at > start) start = at;
        break;
      }
      end = at;
    }
  }
  return start == npos ? file : file.substr(start);
}

}  // namespace detail

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line, std::string hint = {})
      : std::runtime_error(format(message, file, line, hint)),
        message_(std::move(message)),
        file_(file),
        line_(line),
        hint_(std::move(hint)) {}

  // The message without location or hint.
  const std::string& message() const noexcept { return message_; }
  // The file as the compiler named it (an absolute path of the machine that
  // built the program); what() shows it relative to cumtl's tree instead.
  const char* file() const noexcept { return file_; }
  int line() const noexcept { return line_; }
  const std::string& hint() const noexcept { return hint_; }

 private:
  static std::string format(const std::string& message, const char* file, int line, const std::string& hint) {
    std::string text = "cumtl: " + message + " [";
    text += detail::relative_source_path(file);
    text += ":" + std::to_string(line) + "]";
    if (!hint.empty()) text += "\n  hint: " + hint;
    return text;
  }

  std::string message_;
  const char* file_;
  int line_;
  std::string hint_;
};

// A failed CUDA runtime call; status() is the cudaError_t value.
class CudaError : public Error {
 public:
  CudaError(int status, std::string message, const char* file, int line, std::string hint = {})
      : Error(std::move(message), file, line, std::move(hint)), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

// A failed cuDNN call; status() is the cudnnStatus_t value.
class CudnnError : public Error {
 public:
  CudnnError(int status, std::string message, const char* file, int line, std::string hint = {})
      : Error(std::move(message), file, line, std::move(hint)), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

// A failure that cudnn-frontend reported; code() is its error_code_t value, and
// the message carries its text, which for a backend failure ends with cuDNN's own.
class CudnnFrontendError : public Error {
 public:
  CudnnFrontendError(int code, std::string message, const char* file, int line, std::string hint = {})
      : Error(std::move(message), file, line, std::move(hint)), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

// A failed cuBLAS call; status() is the cublasStatus_t value.
class CublasError : public Error {
 public:
  CublasError(int status, std::string message, const char* file, int line, std::string hint = {})
      : Error(std::move(message), file, line, std::move(hint)), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

namespace detail {

// Joins anything printable with operator<< into one string.
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream stream;
  (stream << ... << parts);
  return stream.str();
}

}  // namespace detail
}  // namespace cumtl

// Throws cumtl::Error with the concatenated message unless `condition` holds.
#define CUMTL_REQUIRE(condition, ...)                                                 \
  do {                                                                                \
    if (!(condition)) [[unlikely]]                                                    \
      throw ::cumtl::Error(::cumtl::detail::concat(__VA_ARGS__), __FILE__, __LINE__); \
  } while (false)

// Throws cumtl::Error with the concatenated message.
#define CUMTL_FAIL(...) throw ::cumtl::Error(::cumtl::detail::concat(__VA_ARGS__), __FILE__, __LINE__)
