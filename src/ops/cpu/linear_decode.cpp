// See linear_decode.h.
#include "ops/cpu/linear_decode.h"

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/ops.h"

namespace lmscope {

namespace decode {

Job make_job(const float* x, int64_t T, const Linear& w, float* y, int slot) {
    LMS_CHECK(T < 4 && slot >= 0 && slot < kMaxJobs);
    switch (w.format) {
        case LinearFormat::Fp8Block: return fp8_job(x, T, w, y, slot);
        case LinearFormat::AwqInt4: return awq_job(x, T, w, y, slot);
        default: return dense_job(x, T, w, y, slot);
    }
}

void run_jobs(const Job* jobs, int n) {
    ThreadPool& pool = ThreadPool::global();
    const int64_t P = pool.size();
    pool.parallel_for(P, 1, [&](int64_t p0, int64_t p1, int) {
        for (int64_t p = p0; p < p1; ++p)
            for (int i = 0; i < n; ++i) {
                const Job& j = jobs[i];
                const int64_t g = (j.units + j.grain - 1) / j.grain;  // the split of ThreadPool::parallel_for
                const int64_t u0 = g * p / P * j.grain, u1 = std::min(j.units, g * (p + 1) / P * j.grain);
                if (u0 < u1) j.run(j.state, u0, u1);
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
    for (int i = 0; i < n; ++i) jobs[i] = decode::make_job(x, T, *ws[i], ys[i], i);
    decode::run_jobs(jobs, n);
}

}  // namespace lmscope
