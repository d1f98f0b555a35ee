// Fast CPU block-FP8 linear: the weight stays 1 byte per element; codes are decoded in registers
// (fp8_rows.h has the per-ISA kernels and how E4M3 is decoded).
// Decode (T < 4): a fused decode + dot per output row, per K block scaled at the block's end; rows
// split across threads in chunks small enough that the T tokens re-read a chunk from L1/L2, so W is
// streamed from memory once (half the bytes of BF16).
// Prefill: the blocked GEMM of gemm.cpp with a loader that dequantises rows (code * scale) while the
// weight panels are packed, so the decode cost is amortised over T.
#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "ops/cpu/fp8_rows.h"
#include "ops/cpu/gemm.h"
#include "ops/cpu/linear_decode.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

float bias_at(const Linear& w, int64_t o) {
    return w.bias.defined() ? static_cast<float>(w.bias.at_f64(o)) : 0.0f;
}

// FP8 activations: x fake-quantised per token and 1 x block_in group (code value * scale in f32) into buf;
// the per-block products then equal the w8a8 block GEMM up to f32 rounding. Else x itself.
const float* activations(const float* x_in, int64_t T, const Linear& w, std::vector<float>& buf) {
    if (!fp8_activation_mode()) return x_in;
    const int64_t in = w.in(), bi = w.block_in, nbi = (in + bi - 1) / bi;
    thread_local std::vector<float> cbuf, sbuf;
    buf.resize(static_cast<size_t>(T * in));
    cbuf.resize(static_cast<size_t>(in));
    sbuf.resize(static_cast<size_t>(nbi));
    for (int64_t t = 0; t < T; ++t) {
        fp8_quantize_activation_row(x_in + t * in, in, bi, cbuf.data(), sbuf.data());
        for (int64_t i = 0; i < in; ++i) buf[static_cast<size_t>(t * in + i)] = cbuf[i] * sbuf[i / bi];
    }
    return buf.data();
}

fp8cpu::Fp8Weight fp8_weight(const Linear& w) {
    LMS_CHECK(w.format == LinearFormat::Fp8Block && w.weight.dtype() == DType::F8_E4M3);
    LMS_CHECK(w.scale.defined() && w.scale.dtype() == DType::F32);
    const int64_t in = w.in(), bi = w.block_in;
    fp8cpu::Fp8Weight fw{w.weight.data<uint8_t>(), w.scale.data<float>(), w.out(), in, bi, w.block_out,
                         (in + bi - 1) / bi};
    if (w.fp8_rows4.defined()) {
        LMS_CHECK(fp8cpu::rows4_fits(in, bi) && w.fp8_rows4.nbytes() == w.weight.nbytes());
        fw.rows4 = w.fp8_rows4.data<uint8_t>();
    }
    return fw;
}

struct Fp8Decode {
    fp8cpu::Fp8Weight fw;
    fp8cpu::Fp8X xt[3];
    std::vector<float> xs[3], xq;  // pre-scaled x per token; the FP8-activation x
    const Linear* w;
    float* y;
    int64_t T, chunk;
};

// rows [r0, r1) of every token, in chunks small enough that the T tokens re-read a chunk from L1/L2
void fp8_rows(const void* state, int64_t r0, int64_t r1) {
    const auto& d = *static_cast<const Fp8Decode*>(state);
    const int64_t out = d.fw.out;
    for (int64_t c0 = r0; c0 < r1; c0 += d.chunk) {
        const int64_t c1 = std::min(r1, c0 + d.chunk);
        for (int64_t t = 0; t < d.T; ++t) {
            float* yt = d.y + t * out;
            fp8cpu::gemv(d.fw, d.xt[t], c0, c1, yt);
            if (d.w->bias.defined())
                for (int64_t o = c0; o < c1; ++o) yt[o] += bias_at(*d.w, o);
        }
    }
}

}  // namespace

decode::Job decode::fp8_job(const float* x_in, int64_t T, const Linear& w, float* y, int slot, const Job* same_x) {
    thread_local Fp8Decode states[kMaxJobs];
    Fp8Decode& d = states[slot];
    d.fw = fp8_weight(w);
    // x prepared for the previous job (same x, input width and activation blocks) serves this one too
    const auto* prev = same_x && same_x->run == fp8_rows ? static_cast<const Fp8Decode*>(same_x->state) : nullptr;
    if (prev && prev->T == T && prev->fw.in == d.fw.in && prev->fw.bi == d.fw.bi) {
        for (int64_t t = 0; t < T; ++t) d.xt[t] = prev->xt[t];
    } else {
        const float* x = activations(x_in, T, w, d.xq);
        for (int64_t t = 0; t < T; ++t) d.xt[t] = fp8cpu::prepare_x(x + t * w.in(), w.in(), d.xs[t]);
    }
    d.w = &w;
    d.y = y;
    d.T = T;
    // T > 1: 64 rows of 4096 codes = 256 KB, a chunk stays in L2 while the other tokens re-read it
    d.chunk = T == 1 ? w.out() : 64;
    return {w.out(), 16, 1, &d, fp8_rows};
}

void linear_fp8_cpu(const float* x_in, int64_t T, const Linear& w, float* y) {
    if (T < 4) {
        const decode::Job j = decode::fp8_job(x_in, T, w, y, 0);
        decode::run_jobs(&j, 1);
        return;
    }
    const fp8cpu::Fp8Weight fw = fp8_weight(w);
    const int64_t in = w.in(), out = w.out();
    thread_local std::vector<float> xbuf;
    const float* x = activations(x_in, T, w, xbuf);

    // prefill: the blocked GEMM, dequantising each packed panel's rows (codes x block scale) on the fly
    // (stored row = output o, columns = input features k0 ..)
    thread_local std::vector<float> bias;
    if (w.bias.defined()) {
        bias.resize(static_cast<size_t>(out));
        simd::row_to_f32(w.bias.raw(), w.bias.dtype(), out, bias.data());
    }
    GemmArgs g;
    g.M = T;
    g.N = out;
    g.K = in;
    g.a = x;
    g.lda = in;
    g.b_trans = true;
    g.b_loader = [](const void* p, int64_t o, int64_t k0, int64_t count, float* dst) {
        fp8cpu::row_to_f32(*static_cast<const fp8cpu::Fp8Weight*>(p), o, k0, count, dst);
    };
    g.b_loader_ctx = &fw;
    g.c = y;
    g.ldc = out;
    g.bias = w.bias.defined() ? bias.data() : nullptr;
    gemm_cpu(g);
}

}  // namespace lmscope
