// Fast CPU AWQ int4 linear (AutoAWQ gemm layout, read in place), y (T, out) = x (T, in) Wt + b.
// Decode (T < 4): with AVX-512 VNNI and the tiled copy, the integer GEMV of awq_rows.h (x to int16 per
// group, vpdpwssd on the codes); otherwise the f32 GEMV (nibbles converted in registers, zero point
// factored out per group). Threads split the output columns, so the packed weights are streamed once.
// Prefill: the blocked GEMM of gemm.cpp with a loader that dequantises rows of Wt ((q - z) * s, exact
// in f32) while the weight panels are packed: the int4 decode is amortised over the T tokens and the
// register-tiled kernel does the FLOPs, as for BF16. In bf16 activation mode the bf16 GEMM (gemm_bf16.cpp)
// on the codes minus zero points, exact in bf16, with the group scale applied to each group's f32 sums.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/awq_rows.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/linear_decode.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/awq_pack.h"

namespace lmscope {

namespace {

awqcpu::AwqWeight awq_weight(const Linear& w) {
    LMS_CHECK(w.format == LinearFormat::AwqInt4 && w.weight.dtype() == DType::I32);
    LMS_CHECK(w.scale.dtype() == DType::F16 || w.scale.dtype() == DType::F32);
    const int64_t in = w.in(), out = w.out(), g = w.group_size;
    awqcpu::AwqWeight aw{w.weight.data<int32_t>(),
                         w.qweight_tiles.defined() ? w.qweight_tiles.data<int32_t>() : nullptr,
                         w.qzeros.data<int32_t>(),
                         nullptr,
                         nullptr,
                         in,
                         out,
                         out / 8,
                         g,
                         in / g};
    if (w.scale.dtype() == DType::F16)
        aw.sh = w.scale.data<uint16_t>();
    else
        aw.sf = w.scale.data<float>();
    if (w.group_tiles.defined()) {
        aw.groups = w.group_tiles.data<int32_t>();
        aw.grec = w.group_tiles.dim(2);
    }
    return aw;
}

// Bias of w as f32 into buf; null without one.
const float* bias_f32(const Linear& w, std::vector<float>& buf) {
    if (!w.bias.defined()) return nullptr;
    buf.resize(static_cast<size_t>(w.out()));
    simd::row_to_f32(w.bias.raw(), w.bias.dtype(), w.out(), buf.data());
    return buf.data();
}

struct AwqDecode {
    awqcpu::AwqWeight aw;
    bool i16;                 // the integer GEMV (units: 16-column tiles) or the f32 one (units: packed columns)
    awqcpu::AwqX16 xt[3];     // i16: each token's quantised x
    std::vector<int32_t> xp, xs;
    std::vector<float> dx, xg, bias;
    const float* x;           // f32: x and its group sums xg
    const float* b;           // bias or null
    float* y;
    int64_t T, cols, chunk;   // output columns per unit; units per chunk
};

// Units [a0, a1) of every token; for T > 1 in chunks of 256 outputs, re-read from L2 by the other tokens.
void awq_units(const void* state, int64_t a0, int64_t a1) {
    const auto& d = *static_cast<const AwqDecode*>(state);
    const int64_t in = d.aw.in, out = d.aw.out, ng = d.aw.ng;
    for (int64_t c0 = a0; c0 < a1; c0 += d.chunk) {
        const int64_t c1 = std::min(a1, c0 + d.chunk);
        for (int64_t t = 0; t < d.T; ++t) {
            float* yt = d.y + t * out;
            if (d.i16)
                awqcpu::gemv_i16(d.aw, d.xt[t], c0, c1, yt);
            else
                awqcpu::gemv(d.aw, d.x + t * in, d.xg.data() + t * ng, c0, c1, yt);
            if (d.b)
                for (int64_t o = c0 * d.cols; o < std::min(out, c1 * d.cols); ++o) yt[o] += d.b[o];
        }
    }
}

}  // namespace

decode::Job decode::awq_job(const float* x, int64_t T, const Linear& w, float* y, int slot, const Job* same_x) {
    thread_local AwqDecode states[kMaxJobs];
    AwqDecode& d = states[slot];
    d.aw = awq_weight(w);
    const int64_t in = d.aw.in, ng = d.aw.ng;
    d.x = x;
    d.y = y;
    d.T = T;
    d.b = bias_f32(w, d.bias);
    // x of each token to int16 per group (awq_rows.h) for the integer GEMV; a non-finite x takes the f32 one.
    // The previous job's quantised x (same x, width and groups) serves this one too.
    d.i16 = awqcpu::gemv_i16_fits(d.aw);
    const auto* prev = same_x && same_x->run == awq_units ? static_cast<const AwqDecode*>(same_x->state) : nullptr;
    if (d.i16 && prev && prev->i16 && prev->T == T && prev->aw.in == in && prev->aw.g == d.aw.g) {
        for (int64_t t = 0; t < T; ++t) d.xt[t] = prev->xt[t];
    } else if (d.i16) {
        d.xp.resize(static_cast<size_t>(T * in / 2));
        d.xs.resize(static_cast<size_t>(T * ng));
        d.dx.resize(static_cast<size_t>(T * ng));
        for (int64_t t = 0; t < T && d.i16; ++t) {
            d.i16 = awqcpu::quantize_x16(d.aw, x + t * in, d.xp.data() + t * in / 2, d.dx.data() + t * ng,
                                         d.xs.data() + t * ng);
            d.xt[t] = {d.xp.data() + t * in / 2, d.dx.data() + t * ng, d.xs.data() + t * ng};
        }
    }
    if (d.i16) {
        const int64_t nt = (d.aw.out + kAwqTileCols - 1) / kAwqTileCols;
        d.cols = kAwqTileCols;
        d.chunk = T == 1 ? nt : 16;
        return {nt, 4, kAwqTileCols, &d, awq_units};
    }
    d.xg.resize(static_cast<size_t>(T * ng));
    for (int64_t t = 0; t < T; ++t) awqcpu::group_sums(d.aw, x + t * in, d.xg.data() + t * ng);
    d.cols = 8;
    d.chunk = T == 1 ? d.aw.pc : 32;
    return {d.aw.pc, 32, 8, &d, awq_units};
}

void linear_awq_cpu(const float* x, int64_t T, const Linear& w, float* y) {
    if (T < 4) {
        const decode::Job j = decode::awq_job(x, T, w, y, 0);
        decode::run_jobs(&j, 1);
        return;
    }
    awqcpu::AwqWeight aw = awq_weight(w);
    const int64_t in = w.in(), out = w.out();
    thread_local std::vector<float> bias;
    const float* bp = bias_f32(w, bias);

    GemmArgs ga;
    ga.M = T;
    ga.N = out;
    ga.K = in;
    ga.a = x;
    ga.lda = in;
    ga.b_trans = false;  // B = Wt (in, out): stored row k, columns n
    ga.b_loader_ctx = &aw;
    ga.c = y;
    ga.ldc = out;
    ga.bias = bp;
    if (!bf16_activations_apply(T, w.format, w.weight.dtype())) {
        ga.b_loader = [](const void* p, int64_t k, int64_t n0, int64_t count, float* dst) {
            awqcpu::row_to_f32(*static_cast<const awqcpu::AwqWeight*>(p), k, n0, count, dst, true);
        };
        gemm_cpu(ga);
        return;
    }
    // bf16 activations: the loader gives q - z (exact in bf16), the GEMM scales each group's sums
    ga.b_loader = [](const void* p, int64_t k, int64_t n0, int64_t count, float* dst) {
        awqcpu::row_to_f32(*static_cast<const awqcpu::AwqWeight*>(p), k, n0, count, dst, false);
    };
    ga.b_pack_pairs = [](const void* p, int64_t k0, int64_t kc, int64_t n0, uint32_t* dst) {
        return awqcpu::pack_pairs(*static_cast<const awqcpu::AwqWeight*>(p), k0, kc, n0, dst);
    };
    ga.b_group = aw.g;
    ga.b_scale = [](const void* p, int64_t gi, int64_t n0, int64_t count, float* dst) {
        awqcpu::group_scales(*static_cast<const awqcpu::AwqWeight*>(p), gi, n0, count, dst);
    };
    gemm_bf16_cpu(ga);
}

}  // namespace lmscope
