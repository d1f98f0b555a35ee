#include "core/thread_pool.h"

#include <immintrin.h>

#include <cstdlib>
#include <memory>

namespace lmscope {

namespace {
constexpr int kSpinIters = 4000;  // _mm_pause is ~10-40 ns here: a few tens of microseconds of spinning
constexpr uint64_t kPartsBits = 16;

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
    if (n_threads_ >= (1 << kPartsBits)) n_threads_ = (1 << kPartsBits) - 1;
    for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
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
    fn_ = &fn;
    n_ = n;
    grain_ = grain;
    n_parts_ = parts;
    pending_.store(parts - 1, std::memory_order_relaxed);
    // publish (seq_cst: ordered before the sleepers_ load, against a worker's sleepers_ increment + ticket load)
    const uint64_t gen = (ticket_.load(std::memory_order_relaxed) >> kPartsBits) + 1;
    ticket_.store(gen << kPartsBits | static_cast<uint64_t>(parts));
    if (sleepers_.load() > 0) {
        std::lock_guard<std::mutex> lock(mu_);  // a worker between its check and its wait holds mu_
        cv_start_.notify_all();
    }
    run_range(0);
    wait_for_workers();
    fn_ = nullptr;
}

void ThreadPool::wait_for_workers() {
    for (int i = 0; i < kSpinIters && pending_.load(std::memory_order_acquire) != 0; ++i) _mm_pause();
    if (pending_.load(std::memory_order_acquire) == 0) return;
    std::unique_lock<std::mutex> lock(mu_);
    caller_sleeping_.store(true);  // seq_cst, before the pending_ load: against the last worker's decrement + load
    cv_done_.wait(lock, [this] { return pending_.load() == 0; });
    caller_sleeping_.store(false, std::memory_order_relaxed);
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;  // generation of the last job this thread looked at
    for (;;) {
        uint64_t t = ticket_.load(std::memory_order_acquire);
        for (int i = 0; i < kSpinIters && t >> kPartsBits == seen && !stop_.load(std::memory_order_relaxed); ++i) {
            _mm_pause();
            t = ticket_.load(std::memory_order_acquire);
        }
        if (t >> kPartsBits == seen) {
            std::unique_lock<std::mutex> lock(mu_);
            sleepers_.fetch_add(1);  // seq_cst, before the ticket load in the predicate
            cv_start_.wait(lock, [&] { return stop_.load() || (t = ticket_.load()) >> kPartsBits != seen; });
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
        }
        if (stop_.load()) return;
        seen = t >> kPartsBits;
        const int parts = static_cast<int>(t & ((uint64_t(1) << kPartsBits) - 1));
        if (index < parts) {
            run_range(index);
            // seq_cst, before the caller_sleeping_ load: against the caller's store + pending_ load
            if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
                std::lock_guard<std::mutex> lock(mu_);
                cv_done_.notify_one();
            }
        }
    }
}

}  // namespace lmscope
