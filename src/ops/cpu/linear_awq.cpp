// Fast CPU AWQ int4 linear (AutoAWQ gemm layout, read in place), y (T, out) = x (T, in) Wt + b.
// Decode (T < 4): with AVX-512 VNNI and the tiled copy, the integer GEMV of awq_rows.h (x to int16 per
// group, vpdpwssd on the codes); otherwise the f32 GEMV (nibbles converted in registers, zero point
// factored out per group). Threads split the output columns, so the packed weights are streamed once.
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
#include "quant/awq_pack.h"

namespace lmscope {

namespace {

// Decode: units [0, n) of `cols` output columns each (the last one may end past out) split across the
// threads; for T > 1 in chunks of `chunk` units, so that the other tokens re-read a chunk from L2.
// gemv(t, c0, c1, yt) writes token t's outputs of units [c0, c1) into yt = y + t * out.
template <typename Gemv>
void decode_split(int64_t n, int64_t grain, int64_t chunk, int64_t cols, int64_t T, int64_t out, const float* bias,
                  float* y, const Gemv& gemv) {
    ThreadPool::global().parallel_for(n, grain, [&](int64_t a0, int64_t a1, int) {
        for (int64_t c0 = a0; c0 < a1; c0 += chunk) {
            const int64_t c1 = std::min(a1, c0 + chunk);
            for (int64_t t = 0; t < T; ++t) {
                float* yt = y + t * out;
                gemv(t, c0, c1, yt);
                if (bias)
                    for (int64_t o = c0 * cols; o < std::min(out, c1 * cols); ++o) yt[o] += bias[o];
            }
        }
    });
}

}  // namespace

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

    if (T < 4 && awqcpu::gemv_i16_fits(aw)) {
        // x of each token to int16 per group (awq_rows.h), then the integer GEMV over 16-column tiles
        thread_local std::vector<int32_t> xpb, xsb;
        thread_local std::vector<float> dxb;
        xpb.resize(static_cast<size_t>(T * in / 2));
        xsb.resize(static_cast<size_t>(T * ng));
        dxb.resize(static_cast<size_t>(T * ng));
        bool finite = true;
        awqcpu::AwqX16 xt[3];
        for (int64_t t = 0; t < T && finite; ++t) {
            finite = awqcpu::quantize_x16(aw, x + t * in, xpb.data() + t * in / 2, dxb.data() + t * ng,
                                          xsb.data() + t * ng);
            xt[t] = {xpb.data() + t * in / 2, dxb.data() + t * ng, xsb.data() + t * ng};
        }
        if (finite) {
            const int64_t nt = (out + kAwqTileCols - 1) / kAwqTileCols;
            // T > 1: 16 tiles (256 outputs) of 4096 rows = 512 KB, re-read from L2 by the other tokens
            decode_split(nt, 4, T == 1 ? nt : 16, kAwqTileCols, T, out, w.bias.defined() ? bias.data() : nullptr, y,
                         [&](int64_t t, int64_t c0, int64_t c1, float* yt) { awqcpu::gemv_i16(aw, xt[t], c0, c1, yt); });
            return;
        }
    }

    if (T < 4) {
        thread_local std::vector<float> xg;
        xg.resize(static_cast<size_t>(T * ng));
        for (int64_t t = 0; t < T; ++t) awqcpu::group_sums(aw, x + t * in, xg.data() + t * ng);
        // T > 1: 32 packed columns (256 outputs) of 4096 rows = 512 KB, re-read from L2 by the other tokens
        // (thread_local names resolve in the worker threads: hand them pointers)
        const float* xgp = xg.data();
        decode_split(pc, 32, T == 1 ? pc : 32, 8, T, out, w.bias.defined() ? bias.data() : nullptr, y,
                     [&](int64_t t, int64_t c0, int64_t c1, float* yt) {
                         awqcpu::gemv(aw, x + t * in, xgp + t * ng, c0, c1, yt);
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
