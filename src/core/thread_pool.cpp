#include "core/thread_pool.h"

#include <immintrin.h>

#include <cstdlib>
#include <memory>

namespace lmscope {

namespace {
constexpr int kSpinIters = 4000;  // _mm_pause is ~10-40 ns here: a few tens of microseconds of spinning

std::unique_ptr<ThreadPool>& global_slot() {
    static std::unique_ptr<ThreadPool> pool;
    return pool;
}
int default_threads() {
    if (const char* env = std::getenv("LMSCOPE_THREADS")) {
        int n = std::atoi(env);
        if (n > 0) return n;
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw ? static_cast<int>(hw) : 1;
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : default_threads()) {
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : threads_) t.join();
}

ThreadPool& ThreadPool::global() {
    auto& slot = global_slot();
    if (!slot) slot = std::make_unique<ThreadPool>(default_threads());
    return *slot;
}

void ThreadPool::set_global_threads(int n) { global_slot() = std::make_unique<ThreadPool>(n); }

void ThreadPool::run_range(int index) {
    // ranges are balanced in units of `grain`
    const int64_t units = (n_ + grain_ - 1) / grain_;
    const int64_t begin_u = units * index / n_parts_;
    const int64_t end_u = units * (index + 1) / n_parts_;
    const int64_t begin = begin_u * grain_;
    const int64_t end = std::min(n_, end_u * grain_);
    if (begin < end) (*fn_)(begin, end, index);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t units = (n + grain - 1) / grain;
    const int parts = static_cast<int>(std::min<int64_t>(n_threads_, units));
    if (parts <= 1) {
        fn(0, n, 0);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        fn_ = &fn;
        n_ = n;
        grain_ = grain;
        n_parts_ = parts;
        pending_ = parts - 1;
        pending_spin_.store(parts - 1, std::memory_order_relaxed);
        ++generation_;
        generation_seen_.store(generation_, std::memory_order_release);
    }
    cv_start_.notify_all();
    run_range(0);
    for (int i = 0; i < kSpinIters && pending_spin_.load(std::memory_order_acquire) != 0; ++i) _mm_pause();
    std::unique_lock<std::mutex> lock(mu_);
    cv_done_.wait(lock, [this] { return pending_ == 0; });
    fn_ = nullptr;
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    for (;;) {
        int parts;
        for (int i = 0; i < kSpinIters && generation_seen_.load(std::memory_order_acquire) == seen; ++i) _mm_pause();
        {
            std::unique_lock<std::mutex> lock(mu_);
            cv_start_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            parts = n_parts_;
        }
        if (index < parts) {
            run_range(index);
            std::lock_guard<std::mutex> lock(mu_);
            pending_spin_.store(pending_ - 1, std::memory_order_release);
            if (--pending_ == 0) cv_done_.notify_one();
        }
    }
}

}  // namespace lmscope
