// Decode (T < 4 tokens) of a linear as a job over units of its output columns, so that the linears that
// read the same input (q/k/v, gate/up) run in one parallel_for: linear_shared_input in ops.h. A decode
// step of Qwen3-0.6B made 8 thread-pool round trips per layer, each a barrier where the faster thread
// waits; sharing one for q/k/v and one for gate/up leaves 5.
// Each format prepares x once per job (FP8 pre-scaling, AWQ int16 quantisation) in the caller's thread,
// into scratch picked by `slot`, and the job's run() writes the outputs of a range of units for every token.
#pragma once

#include <cstdint>

#include "model/weights.h"

namespace lmscope::decode {

constexpr int kMaxJobs = 4;  // jobs prepared together (distinct slots)

struct Job {
    int64_t units = 0;  // dense / FP8: rows; AWQ: 16-column tiles or packed columns
    int64_t grain = 1;  // a thread's share is a multiple of this (except the last)
    const void* state = nullptr;
    /** Writes the outputs of units [u0, u1) of every token. */
    void (*run)(const void* state, int64_t u0, int64_t u1) = nullptr;
};

/** Per format: the job computing y (T, out) = x W^T + b for T < 4; its prepared state lives in slot. */
Job dense_job(const float* x, int64_t T, const Linear& w, float* y, int slot);
Job fp8_job(const float* x, int64_t T, const Linear& w, float* y, int slot);
Job awq_job(const float* x, int64_t T, const Linear& w, float* y, int slot);
/** The job of w's format. */
Job make_job(const float* x, int64_t T, const Linear& w, float* y, int slot);

/** Runs the jobs in one parallel_for: each thread takes its share of every job. */
void run_jobs(const Job* jobs, int n);

}  // namespace lmscope::decode
