#include "quant/awq_layer.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/rope_table.h"
#include "ops/ops.h"

namespace lmscope {

std::string AwqFloatLayer::prefix() const { return fmt::format("model.layers.{}.", index); }

std::vector<std::pair<std::string, Linear*>> AwqFloatLayer::linears() {
    return {{"self_attn.q_proj", &q},  {"self_attn.k_proj", &k}, {"self_attn.v_proj", &v},
            {"self_attn.o_proj", &o},  {"mlp.gate_proj", &gate}, {"mlp.up_proj", &up},
            {"mlp.down_proj", &down}};
}

const std::vector<std::string>& awq_layer_linear_names() {
    static const std::vector<std::string> n{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                            "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};
    return n;
}

Linear* AwqFloatLayer::linear(const std::string& name) {
    std::string rel = name;
    const std::string p = prefix();
    if (rel.rfind(p, 0) == 0) rel = rel.substr(p.size());
    for (auto& [n, l] : linears())
        if (n == rel) return l;
    return nullptr;
}

Tensor* AwqFloatLayer::norm(const std::string& name) {
    std::string rel = name;
    const std::string p = prefix();
    if (rel.rfind(p, 0) == 0) rel = rel.substr(p.size());
    if (rel == "input_layernorm") return &input_norm;
    if (rel == "post_attention_layernorm") return &post_norm;
    return nullptr;
}

Tensor awq_f32_copy(const Tensor& t) {
    if (!t.defined()) return Tensor();
    return t.to(DType::F32);  // always a fresh owned tensor
}

AwqFloatLayer load_float_layer(const Checkpoint& ckpt, const ModelConfig& cfg, int64_t l) {
    AwqFloatLayer L;
    L.index = l;
    const std::string p = L.prefix();
    auto get = [&](const std::string& n, bool required) -> Tensor {
        if (!ckpt.has(n)) {
            if (required) fail("checkpoint {}: missing tensor '{}'", ckpt.dir(), n);
            return Tensor();
        }
        Tensor t = ckpt.get(n);
        if (!dtype_is_float(t.dtype()))
            fail("{}: tensor '{}' has dtype {}; AWQ quantisation needs a float (dense) checkpoint",
                 ckpt.info(n).file, n, dtype_name(t.dtype()));
        return awq_f32_copy(t);
    };
    L.input_norm = get(p + "input_layernorm.weight", true);
    L.post_norm = get(p + "post_attention_layernorm.weight", true);
    if (cfg.qk_norm) {
        L.q_norm = get(p + "self_attn.q_norm.weight", true);
        L.k_norm = get(p + "self_attn.k_norm.weight", true);
    }
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
    struct Spec {
        const char* name;
        Linear* dst;
        int64_t out, in;
    };
    const Spec specs[] = {{"self_attn.q_proj", &L.q, cfg.q_dim(), H},    {"self_attn.k_proj", &L.k, cfg.kv_dim(), H},
                          {"self_attn.v_proj", &L.v, cfg.kv_dim(), H},   {"self_attn.o_proj", &L.o, H, cfg.q_dim()},
                          {"mlp.gate_proj", &L.gate, I, H},              {"mlp.up_proj", &L.up, I, H},
                          {"mlp.down_proj", &L.down, H, I}};
    for (const Spec& s : specs) {
        const std::string n = p + s.name;
        if (ckpt.has(n + ".qweight"))
            fail("checkpoint {}: '{}' is already AWQ-quantised (found '{}.qweight'); quantise the float model",
                 ckpt.dir(), n, n);
        Tensor w = get(n + ".weight", true);
        if (w.shape() != Shape{s.out, s.in})
            fail("{}: tensor '{}.weight' has shape {}, config {} expects [{}, {}]", ckpt.info(n + ".weight").file, n,
                 shape_str(w.shape()), cfg.source, s.out, s.in);
        *s.dst = Linear::dense(n, std::move(w), get(n + ".bias", false));
    }
    return L;
}

void awq_scale_columns(Linear& w, const float* s) {
    float* d = w.weight.data_mut<float>();
    const int64_t in = w.in(), out = w.out();
    for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) d[o * in + i] *= s[i];
}

void awq_divide_last_rows(Linear& w, const float* s, int64_t n) {
    float* d = w.weight.data_mut<float>();
    const int64_t in = w.in(), out = w.out();
    LMS_CHECK(n <= out);
    for (int64_t r = 0; r < n; ++r) {
        const int64_t o = out - n + r;
        for (int64_t i = 0; i < in; ++i) d[o * in + i] /= s[r];
        if (w.bias.defined()) w.bias.data_mut<float>()[o] /= s[r];
    }
}

void awq_divide_norm(Tensor& norm, const float* s) {
    float* d = norm.data_mut<float>();
    for (int64_t i = 0; i < norm.numel(); ++i) d[i] /= s[i];
}

AwqLayerRunner::AwqLayerRunner(const ModelConfig& cfg) : cfg_(cfg), inv_freq_(rope_inv_freq(cfg.rope, cfg.head_dim)) {}

void AwqLayerRunner::attn(const AwqFloatLayer& L, const float* h, int64_t n, int64_t seq, float* out,
                          float* attn_in) {
    LMS_CHECK(seq > 0 && n % seq == 0);
    const int64_t Hq = cfg_.num_heads, Hkv = cfg_.num_kv_heads, D = cfg_.head_dim, QD = cfg_.q_dim(),
                  KVD = cfg_.kv_dim();
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    std::vector<float> q(static_cast<size_t>(n * QD)), k(static_cast<size_t>(n * KVD)), v(static_cast<size_t>(n * KVD));
    std::vector<float> local;
    float* att = attn_in;
    if (!att) {
        local.resize(static_cast<size_t>(n * QD));
        att = local.data();
    }
    linear(h, n, L.q, q.data());
    linear(h, n, L.k, k.data());
    linear(h, n, L.v, v.data());
    if (cfg_.qk_norm) {
        rms_norm(q.data(), n * Hq, D, L.q_norm, eps, q.data());
        rms_norm(k.data(), n * Hkv, D, L.k_norm, eps, k.data());
    }
    std::vector<float> cs(static_cast<size_t>(seq * D / 2)), sn(static_cast<size_t>(seq * D / 2));
    rope_cos_sin(inv_freq_, 0, seq, cs.data(), sn.data());
    const AttentionShape as{seq, 0, Hq, Hkv, D, 1.0f / std::sqrt(static_cast<float>(D))};
    for (int64_t s0 = 0; s0 < n; s0 += seq) {
        rope(q.data() + s0 * QD, seq, Hq, D, cs.data(), sn.data());
        rope(k.data() + s0 * KVD, seq, Hkv, D, cs.data(), sn.data());
        attention(q.data() + s0 * QD, k.data() + s0 * KVD, v.data() + s0 * KVD, as, att + s0 * QD);
    }
    linear(att, n, L.o, out);
}

void AwqLayerRunner::mlp(const AwqFloatLayer& L, const float* h, int64_t n, float* out, float* act) {
    const int64_t I = cfg_.intermediate_size;
    std::vector<float> g(static_cast<size_t>(n * I)), u(static_cast<size_t>(n * I));
    linear(h, n, L.gate, g.data());
    linear(h, n, L.up, u.data());
    silu_mul(g.data(), u.data(), n * I, g.data());
    if (act) std::memcpy(act, g.data(), sizeof(float) * static_cast<size_t>(n * I));
    linear(g.data(), n, L.down, out);
}

void AwqLayerRunner::layer(const AwqFloatLayer& L, const float* x, int64_t n, int64_t seq, float* x_out,
                           Features* feat) {
    const int64_t H = cfg_.hidden_size;
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    const size_t nh = static_cast<size_t>(n * H);
    std::vector<float> h(nh), tmp(nh), r(x, x + nh);
    if (feat) {
        feat->qkv.resize(nh);
        feat->o.resize(static_cast<size_t>(n * cfg_.q_dim()));
        feat->gu.resize(nh);
        feat->down.resize(static_cast<size_t>(n * cfg_.intermediate_size));
    }
    rms_norm(x, n, H, L.input_norm, eps, h.data());
    if (feat) std::memcpy(feat->qkv.data(), h.data(), nh * sizeof(float));
    attn(L, h.data(), n, seq, tmp.data(), feat ? feat->o.data() : nullptr);
    for (size_t i = 0; i < nh; ++i) r[i] += tmp[i];
    rms_norm(r.data(), n, H, L.post_norm, eps, h.data());
    if (feat) std::memcpy(feat->gu.data(), h.data(), nh * sizeof(float));
    mlp(L, h.data(), n, tmp.data(), feat ? feat->down.data() : nullptr);
    for (size_t i = 0; i < nh; ++i) x_out[i] = r[i] + tmp[i];
}

}  // namespace lmscope
