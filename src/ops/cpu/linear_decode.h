// Decode (T < 4 tokens) of a linear as a job over units of its output columns, so that the linears that
// read the same input (q/k/v, gate/up) run in one parallel_for: linear_shared_input in ops.h. A decode
// step of Qwen3-0.6B made 8 thread-pool round trips per layer, each a barrier where the faster thread
// waits; sharing one for q/k/v and one for gate/up leaves 5.
// Each format prepares x once per job (FP8 pre-scaling, AWQ int16 quantisation) in the caller's thread,
// into scratch picked by `slot` (a job on the same x as the one before it, of the same format and input
// shape, reuses that one's: q/k/v quantised x once, not three times), and the job's run() writes the
// outputs of a range of units for every token. An After hook runs in each thread right after its share of
// the jobs, on the outputs that thread wrote (decode_step.h folds q/k-norm, RoPE and SwiGLU in there).
#pragma once

#include <cstdint>

#include "model/weights.h"

namespace lmscope::decode {

constexpr int kMaxJobs = 4;  // jobs prepared together (distinct slots)

struct Job {
    int64_t units = 0;  // dense / FP8: rows; AWQ: 16-column tiles or packed columns
    int64_t grain = 1;  // a thread's share is a multiple of this (except the last)
    int64_t cols = 1;   // output columns per unit (those past the linear's out are not written)
    const void* state = nullptr;
    /** Writes the outputs of units [u0, u1) of every token. */
    void (*run)(const void* state, int64_t u0, int64_t u1) = nullptr;
};

/**
 * Per format: the job computing y (T, out) = x W^T + b for T < 4; its prepared state lives in slot. `same_x`:
 * the job of slot - 1 when it reads the same x (and is still being run with this one), else null; a job of
 * the same format and input shape then reads its prepared x instead of preparing it again.
 */
Job dense_job(const float* x, int64_t T, const Linear& w, float* y, int slot);
Job fp8_job(const float* x, int64_t T, const Linear& w, float* y, int slot, const Job* same_x = nullptr);
Job awq_job(const float* x, int64_t T, const Linear& w, float* y, int slot, const Job* same_x = nullptr);
/** The job of w's format. */
Job make_job(const float* x, int64_t T, const Linear& w, float* y, int slot, const Job* same_x = nullptr);
/** Jobs for the linears ws (n <= kMaxJobs) on one x, into jobs[0 .. n). */
void make_jobs(const float* x, int64_t T, const Linear* const* ws, float* const* ys, int n, Job* jobs);

/** Makes thread shares of j whole multiples of `outputs` output columns (the last one may end at out). */
void align_shares(Job& j, int64_t outputs);
/** Units [u0, u1) of j that thread p of P runs: the split of ThreadPool::parallel_for. */
void share(const Job& j, int64_t p, int64_t P, int64_t& u0, int64_t& u1);

/** Work a thread does right after its share of the jobs, on the outputs it wrote itself. */
struct After {
    const void* state = nullptr;
    void (*run)(const void* state, const Job* jobs, int n, int64_t p, int64_t P) = nullptr;
};

/** Runs the jobs in one parallel_for: each thread takes its share of every job, then after (if given). */
void run_jobs(const Job* jobs, int n, const After* after = nullptr);

}  // namespace lmscope::decode
