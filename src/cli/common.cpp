#include "cli/common.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "core/error.h"
#include "model/weights.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

void apply_fp8_activations_flag(bool on, int num_fp8_linears, const std::string& device, const char* command) {
    if (!on) return;
    if (device == "cuda")
        throw UsageError(fmt::format("{}: --fp8-activations runs on the CPU only (the CUDA FP8 GEMV keeps activations f32)",
                                     command));
    if (num_fp8_linears == 0)
        fmt::print(stderr, "note: --fp8-activations: the model has no FP8-block linears, so nothing changes\n");
    set_fp8_activation_mode(true);
}

void apply_bf16_activations_flag(bool on, const ModelWeights* weights, const std::string& device, const char* command) {
    if (!on) return;
    if (device == "cuda")
        throw UsageError(fmt::format("{}: --bf16-activations runs on the CPU only (the CUDA backend has its own precision modes)",
                                     command));
    bool any = false;
    if (weights) {
        const auto applies = [](const Linear& l) { return bf16_activation_weights(l.format, l.weight.dtype()); };
        any = applies(weights->lm_head);
        for (const LayerWeights& L : weights->layers)
            for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) any = any || applies(*l);
    }
    if (!any)
        fmt::print(stderr, "note: --bf16-activations: the model has no BF16 or AWQ int4 linears, so nothing changes\n");
    else if (!simd::has_avx512_bf16())
        fmt::print(stderr, "note: --bf16-activations: no AVX512-BF16 here: the f32 kernels compute with the same rounding "
                           "(no speed-up)\n");
    set_bf16_activation_mode(true);
}

std::vector<int32_t> parse_id_list(const std::string& s, const std::string& flag) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < s.size()) {
        if (s[i] == ',' || std::isspace(static_cast<unsigned char>(s[i]))) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < s.size() && s[j] != ',' && !std::isspace(static_cast<unsigned char>(s[j]))) ++j;
        const std::string tok = s.substr(i, j - i);
        char* end = nullptr;
        errno = 0;
        long long v = std::strtoll(tok.c_str(), &end, 10);
        if (end == tok.c_str() || *end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
            throw UsageError(fmt::format("{}: '{}' is not a token id (expected non-negative integers)", flag, tok));
        ids.push_back(static_cast<int32_t>(v));
        i = j;
    }
    if (ids.empty()) throw UsageError(fmt::format("{}: no token ids given", flag));
    return ids;
}

std::string human_bytes(double b) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) {
        b /= 1000;
        ++u;
    }
    return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.2f} {}", b, units[u]);
}

std::string human_count(double n) {
    if (n >= 1e9) return fmt::format("{:.2f}B", n / 1e9);
    if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
    if (n >= 1e3) return fmt::format("{:.1f}K", n / 1e3);
    return fmt::format("{:.0f}", n);
}

}  // namespace lmscope
