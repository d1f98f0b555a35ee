#include "core/progress.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace lmscope {

ProgressBar::ProgressBar(std::string label, double total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      enabled_(isatty(STDERR_FILENO) || std::getenv("LMSCOPE_PROGRESS")),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
    if (!finished_) finish();
}

void ProgressBar::set(double done, const std::string& note) {
    done_ = done;
    auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
    last_draw_ = now;
    draw(note);
}

void ProgressBar::draw(const std::string& note) {
    if (!enabled_) return;
    const double frac = total_ > 0 ? std::min(1.0, done_ / total_) : 1.0;
    const int width = 30, fill = static_cast<int>(frac * width);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = secs > 0 ? done_ / secs : 0;
    const double eta = rate > 0 ? (total_ - done_) / rate : 0;
    fmt::print(stderr, "\r{} [{}{}] {:5.1f}%  {:.1f} {}/s  ETA {:.0f}s {}\x1b[K", label_, std::string(fill, '#'),
               std::string(width - fill, '.'), 100 * frac, rate, unit_, eta, note);
    std::fflush(stderr);
}

void ProgressBar::finish(const std::string& note) {
    finished_ = true;
    if (!enabled_) return;
    done_ = total_;
    draw(note);
    fmt::print(stderr, "\n");
}

}  // namespace lmscope
