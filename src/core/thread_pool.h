// A persistent pool of worker threads for data-parallel loops. parallel_for splits [0, n) into one
// contiguous range per thread (the caller runs range 0), so the decode loop allocates nothing and
// wakes the workers with one atomic generation bump. Size: LMSCOPE_THREADS or hardware_concurrency.
// Workers spin briefly (kSpinIters pauses, ~tens of microseconds) on the generation before sleeping on
// the condition variable, and the caller spins on the pending count before waiting: a decode step makes
// ~225 back-to-back parallel_for calls, and a futex sleep/wake round trip costs 5-14 us on this VM.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lmscope {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    /** The process-wide pool. */
    static ThreadPool& global();
    /** Rebuilds the global pool with n threads (n <= 0: all cores). */
    static void set_global_threads(int n);

    int size() const { return n_threads_; }
    /**
     * Calls fn(begin, end, thread_index) over a partition of [0, n) into at most size() ranges whose
     * boundaries are multiples of `grain` (except the last). Blocks until all ranges are done.
     */
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

private:
    void worker(int index);
    void run_range(int index);

    int n_threads_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_start_;
    std::condition_variable cv_done_;
    uint64_t generation_ = 0;
    int pending_ = 0;
    std::atomic<uint64_t> generation_seen_{0};  // generation_, readable without the lock (spinning)
    std::atomic<int> pending_spin_{0};          // pending_, readable without the lock (spinning)
    bool stop_ = false;
    // current job
    const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t grain_ = 1;
    int n_parts_ = 0;
};

}  // namespace lmscope
