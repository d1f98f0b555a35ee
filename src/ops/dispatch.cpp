// Reference / fast dispatch for the CPU ops.
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "ops/ops.h"
#include "quant/awq.h"

namespace lmscope {

namespace {
// A mode's starting value: on when the environment variable is set to anything but "0".
int env_on(const char* name) {
    const char* e = std::getenv(name);
    return (e && std::strcmp(e, "0") != 0) ? 1 : 0;
}

std::atomic<int>& ref_flag() {
    static std::atomic<int> flag{env_on("LMSCOPE_REF")};
    return flag;
}
std::atomic<int>& fp8_act_flag() {
    static std::atomic<int> flag{env_on("LMSCOPE_FP8_ACT")};
    return flag;
}
std::atomic<int>& bf16_act_flag() {
    static std::atomic<int> flag{env_on("LMSCOPE_BF16_ACT")};
    return flag;
}
}  // namespace

void set_reference_mode(bool on) { ref_flag() = on ? 1 : 0; }
bool reference_mode() { return ref_flag() != 0; }

void set_fp8_activation_mode(bool on) { fp8_act_flag() = on ? 1 : 0; }
bool fp8_activation_mode() { return fp8_act_flag() != 0; }

void set_bf16_activation_mode(bool on) { bf16_act_flag() = on ? 1 : 0; }
bool bf16_activation_mode() { return bf16_act_flag() != 0; }
bool bf16_activation_weights(LinearFormat format, DType weight_dtype) {
    return format == LinearFormat::AwqInt4 || (format == LinearFormat::Dense && weight_dtype == DType::BF16);
}
bool bf16_activations_apply(int64_t T, LinearFormat format, DType weight_dtype) {
    return T >= kBf16ActivationMinTokens && bf16_activation_mode() && bf16_activation_weights(format, weight_dtype);
}

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
