// Fast CPU AWQ int4 linear (AutoAWQ gemm layout, read in place), y (T, out) = x (T, in) Wt + b.
// Decode (T < 4): the int4 GEMV of awq_rows.h (nibbles converted in registers, zero point factored out
// per group), threads split the output columns, so the packed weights are streamed once.
// Prefill: the blocked GEMM of gemm.cpp with a loader that dequantises rows of Wt ((q - z) * s, exact
// in f32) while the weight panels are packed: the int4 decode is amortised over the T tokens and the
// register-tiled kernel does the FLOPs, as for BF16.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/awq_rows.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/simd.h"
#include "quant/awq.h"

namespace lmscope {

void linear_awq_cpu(const float* x, int64_t T, const Linear& w, float* y) {
    LMS_CHECK(w.format == LinearFormat::AwqInt4 && w.weight.dtype() == DType::I32);
    LMS_CHECK(w.scale.dtype() == DType::F16 || w.scale.dtype() == DType::F32);
    const int64_t in = w.in(), out = w.out(), g = w.group_size, pc = out / 8, ng = in / g;
    awqcpu::AwqWeight aw{w.weight.data<int32_t>(),
                         w.qweight_tiles.defined() ? w.qweight_tiles.data<int32_t>() : nullptr,
                         w.qzeros.data<int32_t>(),
                         nullptr,
                         nullptr,
                         in,
                         out,
                         pc,
                         g,
                         ng};
    if (w.scale.dtype() == DType::F16)
        aw.sh = w.scale.data<uint16_t>();
    else
        aw.sf = w.scale.data<float>();
    thread_local std::vector<float> bias;
    if (w.bias.defined()) {
        bias.resize(static_cast<size_t>(out));
        simd::row_to_f32(w.bias.raw(), w.bias.dtype(), out, bias.data());
    }

    if (T < 4) {
        thread_local std::vector<float> xg;
        xg.resize(static_cast<size_t>(T * ng));
        for (int64_t t = 0; t < T; ++t) awqcpu::group_sums(aw, x + t * in, xg.data() + t * ng);
        // T > 1: 32 packed columns (256 outputs) of 4096 rows = 512 KB, re-read from L2 by the other tokens
        const int64_t chunk = T == 1 ? pc : 32;
        // (thread_local names resolve in the worker threads: hand them pointers)
        const float* xgp = xg.data();
        const float* bp = w.bias.defined() ? bias.data() : nullptr;
        ThreadPool::global().parallel_for(pc, 32, [&](int64_t p0, int64_t p1, int) {
            for (int64_t c0 = p0; c0 < p1; c0 += chunk) {
                const int64_t c1 = std::min(p1, c0 + chunk);
                for (int64_t t = 0; t < T; ++t) {
                    float* yt = y + t * out;
                    awqcpu::gemv(aw, x + t * in, xgp + t * ng, c0, c1, yt);
                    if (bp)
                        for (int64_t n = c0 * 8; n < c1 * 8; ++n) yt[n] += bp[n];
                }
            }
        });
        return;
    }

    GemmArgs ga;
    ga.M = T;
    ga.N = out;
    ga.K = in;
    ga.a = x;
    ga.lda = in;
    ga.b_trans = false;  // B = Wt (in, out): stored row k, columns n
    ga.b_loader = [](const void* p, int64_t k, int64_t n0, int64_t count, float* dst) {
        awqcpu::row_to_f32(*static_cast<const awqcpu::AwqWeight*>(p), k, n0, count, dst);
    };
    ga.b_loader_ctx = &aw;
    ga.c = y;
    ga.ldc = out;
    ga.bias = w.bias.defined() ? bias.data() : nullptr;
    gemm_cpu(ga);
}

}  // namespace lmscope
