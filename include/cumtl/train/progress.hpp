#pragma once
// Progress of a long loop for a person watching: on a terminal, one line
// redrawn in place (a bar, step/total, images/s, the loss, the ETA); into a
// pipe or a log file, a plain line every 10% of the epoch or every 30 seconds,
// so logs stay readable and grep-able.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace cumtl::train {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  const auto total = std::int64_t(seconds + 0.5);
  char text[32];
  if (total >= 3600)
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(total / 3600),
                  static_cast<long long>(total / 60 % 60), static_cast<long long>(total % 60));
  else
    std::snprintf(text, sizeof text, "%02lld:%02lld", static_cast<long long>(total / 60),
                  static_cast<long long>(total % 60));
  return text;
}

class Progress {
 public:
  using Clock = std::chrono::steady_clock;

  // `interactive`: redraw one line (a terminal); otherwise plain log lines.
  explicit Progress(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}
  static bool is_terminal(std::FILE* stream) { return ::isatty(::fileno(stream)) == 1; }

  void start(std::string label, std::int64_t total) {
    label_ = std::move(label);
    total_ = total;
    start_ = last_print_ = Clock::now();
    next_fraction_ = 0.1;
  }

  // After each step: `done` steps of `total`, the images and the latest loss.
  void update(std::int64_t done, std::int64_t images, double loss) {
    const Clock::time_point now = Clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double fraction = total_ > 0 ? double(done) / double(total_) : 1;
    const double rate = elapsed > 0 ? double(images) / elapsed : 0;
    const double eta = done > 0 ? elapsed * double(total_ - done) / double(done) : -1;
    if (interactive_) {
      if (now - last_print_ < std::chrono::milliseconds(100) && done < total_) return;
      constexpr int width = 24;
      const int filled = std::clamp(int(fraction * width + 0.5), 0, width);
      std::fprintf(out_, "\r%s [%s%s] %lld/%lld  %.0f img/s  loss %.4f  ETA %s \x1b[K", label_.c_str(),
                   std::string(std::size_t(filled), '#').c_str(), std::string(std::size_t(width - filled), '.').c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_), rate, loss,
                   format_duration(eta).c_str());
    } else {
      if (fraction + 1e-9 < next_fraction_ && now - last_print_ < std::chrono::seconds(30)) return;
      while (next_fraction_ <= fraction + 1e-9) next_fraction_ += 0.1;
      std::fprintf(out_, "%s step %lld/%lld  %.0f img/s  loss %.4f  ETA %s\n", label_.c_str(),
                   static_cast<long long>(done), static_cast<long long>(total_), rate, loss,
                   format_duration(eta).c_str());
    }
    std::fflush(out_);
    last_print_ = now;
  }

  // Ends the redrawn line so the next output starts on a fresh one.
  void finish() {
    if (interactive_) std::fprintf(out_, "\n");
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  bool interactive_;
  std::string label_;
  std::int64_t total_ = 0;
  Clock::time_point start_, last_print_;
  double next_fraction_ = 0.1;
};

}  // namespace cumtl::train
