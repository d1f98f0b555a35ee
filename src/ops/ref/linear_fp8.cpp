// Scalar reference for block-FP8 linears: double accumulators, per K block, scales applied per block
// (the block GEMM formula of DeepSeek-V3 / transformers / vLLM, evaluated exactly).
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "ops/ops.h"
#include "quant/fp8.h"

namespace lmscope {

namespace {
struct DecodeTable {
    float v[256];
    DecodeTable() {
        for (int c = 0; c < 256; ++c) v[c] = f8e4m3_to_f32(static_cast<uint8_t>(c));
    }
};
}  // namespace

void fp8_quantize_activation_row(const float* x, int64_t n, int64_t group, float* codes, float* scales) {
    static const DecodeTable table;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, ++g) {
        const int64_t g1 = std::min(n, g0 + group);
        float amax = 0.0f;
        for (int64_t i = g0; i < g1; ++i) amax = std::max(amax, std::fabs(x[i]));
        // vLLM clamps amax to 1e-10 and DeepSeek to 1e-4; lmscope keeps amax (1 for an all-zero group,
        // whose codes are 0 whatever the scale), so small activations keep their relative precision.
        const float s = amax > 0.0f ? amax / kFp8Max : 1.0f;
        scales[g] = s;
        for (int64_t i = g0; i < g1; ++i)
            codes[i] = table.v[f32_to_f8e4m3(std::clamp(x[i] / s, -kFp8Max, kFp8Max))];
    }
}

void linear_fp8_ref(const float* x, int64_t T, const Linear& w, float* y) {
    LMS_CHECK(w.format == LinearFormat::Fp8Block && w.weight.dtype() == DType::F8_E4M3);
    LMS_CHECK(w.scale.defined() && w.scale.dtype() == DType::F32);
    const int64_t in = w.in(), out = w.out(), bi = w.block_in, bo = w.block_out;
    const int64_t nbi = (in + bi - 1) / bi;
    const uint8_t* codes = w.weight.data<uint8_t>();
    const float* ws = w.scale.data<float>();
    const bool act = fp8_activation_mode();
    std::vector<float> xq(static_cast<size_t>(in)), xs(static_cast<size_t>(nbi), 1.0f);
    for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * in;
        if (act) {
            fp8_quantize_activation_row(xt, in, bi, xq.data(), xs.data());
            xt = xq.data();
        }
        for (int64_t o = 0; o < out; ++o) {
            double acc = w.bias.defined() ? w.bias.at_f64(o) : 0.0;
            const uint8_t* row = codes + o * in;
            for (int64_t kb = 0; kb < nbi; ++kb) {
                double blk = 0.0;
                for (int64_t i = kb * bi; i < std::min(in, (kb + 1) * bi); ++i)
                    blk += double(xt[i]) * double(f8e4m3_to_f32(row[i]));
                acc += blk * double(ws[(o / bo) * nbi + kb]) * double(xs[static_cast<size_t>(kb)]);
            }
            y[t * out + o] = static_cast<float>(acc);
        }
    }
}

}  // namespace lmscope
