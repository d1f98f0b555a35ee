// A persistent pool of worker threads for data-parallel loops. parallel_for splits [0, n) into one
// contiguous range per thread (the caller runs range 0), so the decode loop allocates nothing.
// Size: LMSCOPE_THREADS or hardware_concurrency.
// A call is published with one atomic store (the job's generation and its number of ranges in one word)
// and joined on an atomic count: no lock on the way when the threads are awake. Workers spin briefly
// (kSpinIters pauses, ~tens of microseconds) before sleeping on a condition variable, and the caller spins
// on the count before sleeping: a decode step makes ~140 back-to-back parallel_for calls, and a futex
// sleep/wake round trip costs 5-14 us on this VM. The mutex is taken only by a thread that goes to sleep
// and by whoever wakes it (sleepers_ / caller_sleeping_ say when).
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
    void wait_for_workers();

    int n_threads_;
    std::vector<std::thread> threads_;
    // (generation << 16) | ranges of the current job: one load gives a worker both, consistently
    std::atomic<uint64_t> ticket_{0};
    std::atomic<int> pending_{0};              // worker ranges of the current job not done yet
    std::atomic<int> sleepers_{0};             // workers asleep or going to sleep on cv_start_
    std::atomic<bool> caller_sleeping_{false};  // the caller asleep or going to sleep on cv_done_
    std::atomic<bool> stop_{false};
    std::mutex mu_;  // only for the condition variables
    std::condition_variable cv_start_;
    std::condition_variable cv_done_;
    // the current job: written before the ticket is published, read by the workers that take part
    const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t grain_ = 1;
    int n_parts_ = 0;
};

}  // namespace lmscope
