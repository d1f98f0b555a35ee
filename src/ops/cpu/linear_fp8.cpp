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
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

float bias_at(const Linear& w, int64_t o) {
    return w.bias.defined() ? static_cast<float>(w.bias.at_f64(o)) : 0.0f;
}

}  // namespace

void linear_fp8_cpu(const float* x_in, int64_t T, const Linear& w, float* y) {
    LMS_CHECK(w.format == LinearFormat::Fp8Block && w.weight.dtype() == DType::F8_E4M3);
    LMS_CHECK(w.scale.defined() && w.scale.dtype() == DType::F32);
    const int64_t in = w.in(), out = w.out(), bi = w.block_in, bo = w.block_out;
    const int64_t nbi = (in + bi - 1) / bi;
    const fp8cpu::Fp8Weight fw{w.weight.data<uint8_t>(), w.scale.data<float>(), out, in, bi, bo, nbi};

    // FP8 activations: fake-quantise x per token and 1 x block_in group (code value * scale in f32);
    // the per-block products then equal the w8a8 block GEMM up to f32 rounding.
    const float* x = x_in;
    thread_local std::vector<float> xbuf, cbuf, sbuf;
    if (fp8_activation_mode()) {
        xbuf.resize(static_cast<size_t>(T * in));
        cbuf.resize(static_cast<size_t>(in));
        sbuf.resize(static_cast<size_t>(nbi));
        for (int64_t t = 0; t < T; ++t) {
            fp8_quantize_activation_row(x_in + t * in, in, bi, cbuf.data(), sbuf.data());
            for (int64_t i = 0; i < in; ++i) xbuf[static_cast<size_t>(t * in + i)] = cbuf[i] * sbuf[i / bi];
        }
        x = xbuf.data();
    }

    ThreadPool& pool = ThreadPool::global();
    if (T < 4) {
        thread_local std::vector<float> xs[3];
        fp8cpu::Fp8X xt[3];
        for (int64_t t = 0; t < T; ++t) xt[t] = fp8cpu::prepare_x(x + t * in, in, xs[t]);
        // T > 1: 64 rows of 4096 codes = 256 KB, a chunk stays in L2 while the other tokens re-read it
        const int64_t chunk = T == 1 ? out : 64;
        pool.parallel_for(out, 16, [&](int64_t r0, int64_t r1, int) {
            for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
                const int64_t c1 = std::min(r1, c0 + chunk);
                for (int64_t t = 0; t < T; ++t) {
                    float* yt = y + t * out;
                    fp8cpu::gemv(fw, xt[t], c0, c1, yt);
                    if (w.bias.defined())
                        for (int64_t o = c0; o < c1; ++o) yt[o] += bias_at(w, o);
                }
            }
        });
        return;
    }

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
