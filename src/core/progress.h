// A terminal progress bar on stderr ("label [#####.....] 42/100 12.3 MB/s ETA 5s"), redrawn at most
// 10 times a second; silent when stderr is not a terminal (logs stay clean) unless forced.
#pragma once

#include <chrono>
#include <string>

namespace lmscope {

class ProgressBar {
public:
    ProgressBar(std::string label, double total, std::string unit = "");
    ~ProgressBar();
    void set(double done, const std::string& note = "");
    void finish(const std::string& note = "");

private:
    void draw(const std::string& note);
    std::string label_, unit_;
    double total_, done_ = 0;
    bool enabled_;
    bool finished_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace lmscope
