// Reference / fast dispatch for the CPU ops.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "ops/ops.h"
#include "quant/awq.h"

namespace lmscope {

namespace {
std::atomic<int>& ref_flag() {
    static std::atomic<int> flag{[] {
        const char* e = std::getenv("LMSCOPE_REF");
        return (e && std::strcmp(e, "0") != 0) ? 1 : 0;
    }()};
    return flag;
}
}  // namespace

void set_reference_mode(bool on) { ref_flag() = on ? 1 : 0; }
bool reference_mode() { return ref_flag() != 0; }

namespace {
std::atomic<int>& fp8_act_flag() {
    static std::atomic<int> flag{[] {
        const char* e = std::getenv("LMSCOPE_FP8_ACT");
        return (e && std::strcmp(e, "0") != 0) ? 1 : 0;
    }()};
    return flag;
}
}  // namespace

void set_fp8_activation_mode(bool on) { fp8_act_flag() = on ? 1 : 0; }
bool fp8_activation_mode() { return fp8_act_flag() != 0; }

void embedding(const int32_t* ids, int64_t T, const Tensor& table, float* out) {
    reference_mode() ? embedding_ref(ids, T, table, out) : embedding_cpu(ids, T, table, out);
}
void rms_norm(const float* x, int64_t R, int64_t C, const Tensor& weight, float eps, float* y) {
    reference_mode() ? rms_norm_ref(x, R, C, weight, eps, y) : rms_norm_cpu(x, R, C, weight, eps, y);
}
void linear(const float* x, int64_t T, const Linear& w, float* y) {
    if (w.format == LinearFormat::Fp8Block) {
        reference_mode() ? linear_fp8_ref(x, T, w, y) : linear_fp8_cpu(x, T, w, y);
        return;
    }
    if (w.format == LinearFormat::AwqInt4) {
        reference_mode() ? linear_awq_ref(x, T, w, y) : linear_awq_cpu(x, T, w, y);
        return;
    }
    reference_mode() ? linear_ref(x, T, w, y) : linear_cpu(x, T, w, y);
}
void linear_shared_input(const float* x, int64_t T, const Linear* const* ws, float* const* ys, int n) {
    if (!reference_mode()) return linear_shared_input_cpu(x, T, ws, ys, n);
    for (int i = 0; i < n; ++i) linear(x, T, *ws[i], ys[i]);
}
void rope(float* x, int64_t T, int64_t H, int64_t D, const float* cos, const float* sin) {
    reference_mode() ? rope_ref(x, T, H, D, cos, sin) : rope_cpu(x, T, H, D, cos, sin);
}
void attention(const float* q, const float* k, const float* v, const AttentionShape& s, float* out) {
    reference_mode() ? attention_ref(q, k, v, s, out) : attention_cpu(q, k, v, s, out);
}
void attention(const float* q, const uint16_t* k, const uint16_t* v, const AttentionShape& s, float* out) {
    reference_mode() ? attention_ref(q, k, v, s, out) : attention_cpu(q, k, v, s, out);
}
void softcap(const float* x, int64_t n, float cap, float* out) {
    reference_mode() ? softcap_ref(x, n, cap, out) : softcap_cpu(x, n, cap, out);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
    reference_mode() ? silu_mul_ref(gate, up, n, out) : silu_mul_cpu(gate, up, n, out);
}

}  // namespace lmscope
