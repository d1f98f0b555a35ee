#include "model/rope_table.h"

#include <cmath>
#include <numbers>

namespace lmscope {

std::vector<float> rope_inv_freq(const RopeConfig& rope, int64_t head_dim) {
    const int64_t half = head_dim / 2;
    std::vector<float> inv(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
        // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32
        const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
        inv[i] = 1.0f / static_cast<float>(std::pow(static_cast<double>(rope.theta), static_cast<double>(expo)));
    }
    if (rope.type == "linear") {
        for (auto& f : inv) f = f / static_cast<float>(rope.factor);
    } else if (rope.type == "llama3") {
        // transformers _compute_llama3_parameters: long wavelengths divided by factor, short kept,
        // the band between blended with a smooth factor.
        const double old_ctx = static_cast<double>(rope.original_max_position_embeddings);
        const double low_wavelen = old_ctx / rope.low_freq_factor;
        const double high_wavelen = old_ctx / rope.high_freq_factor;
        for (auto& f : inv) {
            const double wavelen = 2.0 * std::numbers::pi / f;
            float scaled = wavelen > low_wavelen ? static_cast<float>(f / rope.factor) : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                const double smooth =
                    (old_ctx / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor);
                scaled = static_cast<float>((1.0 - smooth) * scaled / rope.factor + smooth * scaled);
            }
            f = scaled;
        }
    }
    return inv;
}

void rope_cos_sin(const std::vector<float>& inv_freq, int64_t pos0, int64_t T, float* cos, float* sin) {
    const size_t half = inv_freq.size();
    for (int64_t t = 0; t < T; ++t)
        for (size_t i = 0; i < half; ++i) {
            const float angle = static_cast<float>(pos0 + t) * inv_freq[i];  // f32 product, as torch
            cos[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
            sin[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
        }
}

}  // namespace lmscope
