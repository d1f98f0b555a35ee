// See linear_decode.h.
#include "ops/cpu/linear_decode.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

namespace lmscope {

namespace decode {

Job make_job(const float* x, int64_t T, const Linear& w, float* y, int slot, const Job* same_x) {
    LMS_CHECK(T < 4 && slot >= 0 && slot < kMaxJobs);
    switch (w.format) {
        case LinearFormat::Fp8Block: return fp8_job(x, T, w, y, slot, same_x);
        case LinearFormat::AwqInt4: return awq_job(x, T, w, y, slot, same_x);
        default: return dense_job(x, T, w, y, slot);
    }
}

void make_jobs(const float* x, int64_t T, const Linear* const* ws, float* const* ys, int n, Job* jobs) {
    LMS_CHECK(n <= kMaxJobs);
    for (int i = 0; i < n; ++i) jobs[i] = make_job(x, T, *ws[i], ys[i], i, i > 0 ? &jobs[i - 1] : nullptr);
}

void align_shares(Job& j, int64_t outputs) {
    const int64_t step = std::lcm(j.grain * j.cols, outputs);  // a multiple of grain * cols
    j.grain = step / j.cols;
}

void share(const Job& j, int64_t p, int64_t P, int64_t& u0, int64_t& u1) {
    const int64_t g = (j.units + j.grain - 1) / j.grain;
    u0 = std::min(j.units, g * p / P * j.grain);
    u1 = std::min(j.units, g * (p + 1) / P * j.grain);
}

void run_jobs(const Job* jobs, int n, const After* after) {
    ThreadPool& pool = ThreadPool::global();
    const int64_t P = pool.size();
    pool.parallel_for(P, 1, [&](int64_t p0, int64_t p1, int) {
        for (int64_t p = p0; p < p1; ++p) {
            for (int i = 0; i < n; ++i) {
                int64_t u0, u1;
                share(jobs[i], p, P, u0, u1);
                if (u0 < u1) jobs[i].run(jobs[i].state, u0, u1);
            }
            if (after) after->run(after->state, jobs, n, p, P);
        }
    });
}

}  // namespace decode

void linear_shared_input_cpu(const float* x, int64_t T, const Linear* const* ws, float* const* ys, int n) {
    if (T >= 4 || n > decode::kMaxJobs) {
        for (int i = 0; i < n; ++i) linear(x, T, *ws[i], ys[i]);
        return;
    }
    decode::Job jobs[decode::kMaxJobs];
    decode::make_jobs(x, T, ws, ys, n, jobs);
    decode::run_jobs(jobs, n);
}

}  // namespace lmscope
