// Qwen3 forward and backward over gpt/kernels.h (embedding, causal GQA attention) and
// qwen3train/kernels.h (weighted RMSNorm, HF RoPE, SwiGLU, gemm_cpu linears, cross-entropy).
#include "qwen3train/model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "gpt/kernels.h"
#include "gpt/rng.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/rope_table.h"
#include "qwen3train/kernels.h"

namespace fs = std::filesystem;

namespace lmscope::qwen3train {

std::vector<ParamInfo> qwen3_param_layout(const Qwen3Config& cfg) {
    std::vector<ParamInfo> ps;
    int64_t off = 0;
    auto add = [&](std::string name, Shape shape, bool matrix, bool zero) {
        ParamInfo p;
        p.name = std::move(name);
        p.numel = 1;
        for (int64_t d : shape) p.numel *= d;
        p.shape = std::move(shape);
        p.offset = off;
        p.matrix = matrix;
        p.zero_init = zero;
        off += p.numel;
        ps.push_back(std::move(p));
    };
    const int64_t C = cfg.hidden, I = cfg.intermediate;
    add("model.embed_tokens.weight", {cfg.vocab_size, C}, false, false);
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
        const std::string p = fmt::format("model.layers.{}.", i);
        add(p + "input_layernorm.weight", {C}, false, false);
        add(p + "self_attn.q_proj.weight", {cfg.q_dim(), C}, true, false);
        add(p + "self_attn.k_proj.weight", {cfg.kv_dim(), C}, true, false);
        add(p + "self_attn.v_proj.weight", {cfg.kv_dim(), C}, true, false);
        add(p + "self_attn.o_proj.weight", {C, cfg.q_dim()}, true, true);
        add(p + "self_attn.q_norm.weight", {cfg.head_dim}, false, false);
        add(p + "self_attn.k_norm.weight", {cfg.head_dim}, false, false);
        add(p + "post_attention_layernorm.weight", {C}, false, false);
        add(p + "mlp.gate_proj.weight", {I, C}, true, false);
        add(p + "mlp.up_proj.weight", {I, C}, true, false);
        add(p + "mlp.down_proj.weight", {C, I}, true, true);
    }
    add("model.norm.weight", {C}, false, false);
    if (!cfg.tie) add("lm_head.weight", {cfg.vocab_size, C}, false, true);
    return ps;
}

Qwen3TrainModel::Qwen3TrainModel(const Qwen3Config& cfg) : cfg_(cfg) {
    cfg_.validate("Qwen3 config");
    params_ = qwen3_param_layout(cfg_);
    for (size_t i = 0; i < params_.size(); ++i) index_[params_[i].name] = i;
    head_name_ = cfg_.tie ? "model.embed_tokens.weight" : "lm_head.weight";
    const int64_t total = params_.back().offset + params_.back().numel;
    data_.assign(total, 0.0f);
    grads_.assign(total, 0.0f);
    RopeConfig rc;
    rc.theta = cfg_.rope_theta;
    inv_freq_ = rope_inv_freq(rc, cfg_.head_dim);
    rope_cos_.assign(cfg_.sequence_len * cfg_.head_dim / 2, 0.0f);
    rope_sin_.assign(cfg_.sequence_len * cfg_.head_dim / 2, 0.0f);
    rope_cos_sin(inv_freq_, 0, cfg_.sequence_len, rope_cos_.data(), rope_sin_.data());
}

const ParamInfo& Qwen3TrainModel::info(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) fail("Qwen3 model has no parameter \"{}\"", name);
    return params_[it->second];
}

void Qwen3TrainModel::init(uint64_t seed) {
    gpt::Rng rng(seed);
    for (const ParamInfo& p : params_) {
        float* w = data_.data() + p.offset;
        if (p.shape.size() == 1) {
            std::fill(w, w + p.numel, 1.0f);
            continue;
        }
        if (p.zero_init) {
            std::fill(w, w + p.numel, 0.0f);
            continue;
        }
        double std = 1.0;
        if (p.name == "model.embed_tokens.weight") {
            std = cfg_.tie ? 0.02 : 1.0;
        } else {
            const double fan_out = double(p.shape[0]), fan_in = double(p.shape[1]);
            std = 1.0 / std::sqrt(fan_in) * std::min(1.0, std::sqrt(fan_out / fan_in));
        }
        for (int64_t i = 0; i < p.numel; ++i) w[i] = static_cast<float>(rng.normal() * std);
    }
}

void Qwen3TrainModel::load(const std::string& path) {
    std::string file = path;
    if (fs::is_directory(path)) file = (fs::path(path) / "model.safetensors").string();
    if (!fs::exists(file)) fail("{}: no such file (expected Qwen3 weights)", file);
    SafetensorsFile f = SafetensorsFile::open(file);
    for (const ParamInfo& p : params_) {
        const TensorInfo* ti = f.find(p.name);
        if (!ti) fail("{}: tensor \"{}\" missing", file, p.name);
        if (ti->shape != p.shape)
            fail("{}: tensor \"{}\" has shape {}, the config wants {}", file, p.name, shape_str(ti->shape),
                 shape_str(p.shape));
        Tensor t = f.get(p.name);
        if (t.dtype() != DType::F32) t = t.to(DType::F32);
        std::memcpy(data_.data() + p.offset, t.data<float>(), sizeof(float) * p.numel);
    }
}

void Qwen3TrainModel::save_weights(const std::string& file) const {
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    w.set_metadata("generator", "lmscope train --arch qwen3");
    for (const ParamInfo& p : params_) {
        const float* src = data_.data() + p.offset;
        const int64_t n = p.numel;
        w.add_lazy(p.name, DType::F32, p.shape, [src, n](uint8_t* dst) { std::memcpy(dst, src, sizeof(float) * n); });
    }
    w.write(file);
}

void Qwen3TrainModel::save(const std::string& dir) const {
    save_weights((fs::path(dir) / "model.safetensors").string());
    write_text_atomic((fs::path(dir) / "config.json").string(), cfg_.to_hf_json());
}

void Qwen3TrainModel::ensure_acts(int64_t B, int64_t T) {
    if (B == B_ && T == T_) return;
    B_ = B;
    T_ = T;
    const int64_t N = B * T, C = cfg_.hidden, Q = cfg_.q_dim(), KV = cfg_.kv_dim(), I = cfg_.intermediate;
    const int64_t NH = cfg_.n_head, NKV = cfg_.n_kv_head;
    resid_.assign(N * C, 0);
    lnf_.assign(N * C, 0);
    lnf_hat_.assign(N * C, 0);
    lnf_rstd_.assign(N, 0);
    logits_.assign(N * cfg_.vocab_size, 0);
    losses_.assign(N, 0);
    tmp_.assign(N * C, 0);
    layers_.resize(cfg_.n_layer);
    for (LayerActs& a : layers_) {
        a.ln1.assign(N * C, 0);
        a.ln1_hat.assign(N * C, 0);
        a.ln1_rstd.assign(N, 0);
        a.q_hat.assign(N * Q, 0);
        a.q_rstd.assign(N * NH, 0);
        a.k_hat.assign(N * KV, 0);
        a.k_rstd.assign(N * NKV, 0);
        a.q.assign(N * Q, 0);
        a.k.assign(N * KV, 0);
        a.v.assign(N * KV, 0);
        a.att.assign(B * NH * T * T, 0);
        a.atty.assign(N * Q, 0);
        a.ln2.assign(N * C, 0);
        a.ln2_hat.assign(N * C, 0);
        a.ln2_rstd.assign(N, 0);
        a.gate.assign(N * I, 0);
        a.up.assign(N * I, 0);
        a.h.assign(N * I, 0);
    }
    dres_.assign(N * C, 0);
    dln_.assign(N * C, 0);
    datty_.assign(N * Q, 0);
    dq_.assign(N * Q, 0);
    dk_.assign(N * KV, 0);
    dv_.assign(N * KV, 0);
    dgate_.assign(N * I, 0);
    dup_.assign(N * I, 0);
    dh_.assign(N * I, 0);
    datt_.assign(B * NH * T * T, 0);
}

float Qwen3TrainModel::forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T) {
    if (T < 1 || T > cfg_.sequence_len)
        fail("Qwen3 forward: T = {} outside [1, sequence length = {}]", T, cfg_.sequence_len);
    if (B < 1) fail("Qwen3 forward: batch {} < 1", B);
    const int64_t N = B * T, C = cfg_.hidden, Q = cfg_.q_dim(), KV = cfg_.kv_dim(), I = cfg_.intermediate;
    const int64_t NH = cfg_.n_head, NKV = cfg_.n_kv_head, HD = cfg_.head_dim, V = cfg_.vocab_size;
    for (int64_t n = 0; n < N; ++n)
        if (ids[n] < 0 || ids[n] >= V) fail("Qwen3 forward: token id {} at position {} outside [0, {})", ids[n], n, V);
    ensure_acts(B, T);
    ids_.assign(ids, ids + N);
    have_targets_ = targets != nullptr;
    targets_.assign(N, -1);
    if (targets)
        for (int64_t n = 0; n < N; ++n) {
            if (targets[n] < -1 || targets[n] >= V)
                fail("Qwen3 forward: target id {} at position {} outside [-1, {})", targets[n], n, V);
            targets_[n] = targets[n];
        }
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));

    gpt::encoder_forward(resid_.data(), ids, param("model.embed_tokens.weight"), N, C);
    for (int64_t l = 0; l < cfg_.n_layer; ++l) {
        LayerActs& a = layers_[l];
        const std::string p = fmt::format("model.layers.{}.", l);
        rmsnorm_forward(a.ln1.data(), a.ln1_hat.data(), a.ln1_rstd.data(), resid_.data(),
                        param(p + "input_layernorm.weight"), N, C, eps);
        gpt::matmul_forward(a.q_hat.data(), a.ln1.data(), param(p + "self_attn.q_proj.weight"), N, C, Q);  // raw q
        gpt::matmul_forward(a.k_hat.data(), a.ln1.data(), param(p + "self_attn.k_proj.weight"), N, C, KV);
        gpt::matmul_forward(a.v.data(), a.ln1.data(), param(p + "self_attn.v_proj.weight"), N, C, KV);
        // q_norm / k_norm over head_dim (in place: raw -> normalised x hat), then RoPE
        rmsnorm_forward(a.q.data(), a.q_hat.data(), a.q_rstd.data(), a.q_hat.data(), param(p + "self_attn.q_norm.weight"),
                        N * NH, HD, eps);
        rmsnorm_forward(a.k.data(), a.k_hat.data(), a.k_rstd.data(), a.k_hat.data(), param(p + "self_attn.k_norm.weight"),
                        N * NKV, HD, eps);
        rope_forward(a.q.data(), a.q.data(), rope_cos_.data(), rope_sin_.data(), N, T, NH, HD);
        rope_forward(a.k.data(), a.k.data(), rope_cos_.data(), rope_sin_.data(), N, T, NKV, HD);
        gpt::attention_forward(a.atty.data(), a.att.data(), a.q.data(), a.k.data(), a.v.data(), B, T, NH, NKV, HD,
                               scale);
        gpt::matmul_forward(tmp_.data(), a.atty.data(), param(p + "self_attn.o_proj.weight"), N, Q, C);
        for (int64_t i = 0; i < N * C; ++i) resid_[i] += tmp_[i];

        rmsnorm_forward(a.ln2.data(), a.ln2_hat.data(), a.ln2_rstd.data(), resid_.data(),
                        param(p + "post_attention_layernorm.weight"), N, C, eps);
        gpt::matmul_forward(a.gate.data(), a.ln2.data(), param(p + "mlp.gate_proj.weight"), N, C, I);
        gpt::matmul_forward(a.up.data(), a.ln2.data(), param(p + "mlp.up_proj.weight"), N, C, I);
        swiglu_forward(a.h.data(), a.gate.data(), a.up.data(), N * I);
        gpt::matmul_forward(tmp_.data(), a.h.data(), param(p + "mlp.down_proj.weight"), N, I, C);
        for (int64_t i = 0; i < N * C; ++i) resid_[i] += tmp_[i];
    }
    rmsnorm_forward(lnf_.data(), lnf_hat_.data(), lnf_rstd_.data(), resid_.data(), param("model.norm.weight"), N, C,
                    eps);
    gpt::matmul_forward(logits_.data(), lnf_.data(), param(head_name_), N, C, V);
    count_ = crossentropy_forward(logits_.data(), losses_.data(), targets_.data(), N, V);
    double s = 0;
    for (float x : losses_) s += x;
    return count_ > 0 ? static_cast<float>(s / double(count_)) : 0.0f;
}

void Qwen3TrainModel::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void Qwen3TrainModel::backward() {
    if (!have_targets_) fail("Qwen3 backward: the last forward had no targets");
    have_targets_ = false;  // the logits buffer becomes their gradient
    const int64_t B = B_, T = T_, N = B * T, C = cfg_.hidden, Q = cfg_.q_dim(), KV = cfg_.kv_dim();
    const int64_t I = cfg_.intermediate, NH = cfg_.n_head, NKV = cfg_.n_kv_head, HD = cfg_.head_dim, V = cfg_.vocab_size;
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));

    crossentropy_backward(logits_.data(), targets_.data(), N, V, count_ > 0 ? 1.0f / static_cast<float>(count_) : 0.0f);
    gpt::matmul_backward(dln_.data(), grad(head_name_), logits_.data(), lnf_.data(), param(head_name_), N, C, V, false);
    rmsnorm_backward(dres_.data(), grad("model.norm.weight"), dln_.data(), lnf_hat_.data(), lnf_rstd_.data(),
                     param("model.norm.weight"), N, C, false);
    for (int64_t l = cfg_.n_layer - 1; l >= 0; --l) {
        LayerActs& a = layers_[l];
        const std::string p = fmt::format("model.layers.{}.", l);
        // MLP
        gpt::matmul_backward(dh_.data(), grad(p + "mlp.down_proj.weight"), dres_.data(), a.h.data(),
                        param(p + "mlp.down_proj.weight"), N, I, C, false);
        swiglu_backward(dgate_.data(), dup_.data(), dh_.data(), a.gate.data(), a.up.data(), N * I);
        gpt::matmul_backward(dln_.data(), grad(p + "mlp.gate_proj.weight"), dgate_.data(), a.ln2.data(),
                        param(p + "mlp.gate_proj.weight"), N, C, I, false);
        gpt::matmul_backward(dln_.data(), grad(p + "mlp.up_proj.weight"), dup_.data(), a.ln2.data(),
                        param(p + "mlp.up_proj.weight"), N, C, I, true);
        rmsnorm_backward(dres_.data(), grad(p + "post_attention_layernorm.weight"), dln_.data(), a.ln2_hat.data(),
                         a.ln2_rstd.data(), param(p + "post_attention_layernorm.weight"), N, C, true);
        // attention
        gpt::matmul_backward(datty_.data(), grad(p + "self_attn.o_proj.weight"), dres_.data(), a.atty.data(),
                        param(p + "self_attn.o_proj.weight"), N, Q, C, false);
        gpt::attention_backward(dq_.data(), dk_.data(), dv_.data(), datt_.data(), datty_.data(), a.att.data(),
                                a.q.data(), a.k.data(), a.v.data(), B, T, NH, NKV, HD, scale);
        rope_backward(dq_.data(), dq_.data(), rope_cos_.data(), rope_sin_.data(), N, T, NH, HD);
        rope_backward(dk_.data(), dk_.data(), rope_cos_.data(), rope_sin_.data(), N, T, NKV, HD);
        rmsnorm_backward(dq_.data(), grad(p + "self_attn.q_norm.weight"), dq_.data(), a.q_hat.data(), a.q_rstd.data(),
                         param(p + "self_attn.q_norm.weight"), N * NH, HD, false);
        rmsnorm_backward(dk_.data(), grad(p + "self_attn.k_norm.weight"), dk_.data(), a.k_hat.data(), a.k_rstd.data(),
                         param(p + "self_attn.k_norm.weight"), N * NKV, HD, false);
        gpt::matmul_backward(dln_.data(), grad(p + "self_attn.q_proj.weight"), dq_.data(), a.ln1.data(),
                        param(p + "self_attn.q_proj.weight"), N, C, Q, false);
        gpt::matmul_backward(dln_.data(), grad(p + "self_attn.k_proj.weight"), dk_.data(), a.ln1.data(),
                        param(p + "self_attn.k_proj.weight"), N, C, KV, true);
        gpt::matmul_backward(dln_.data(), grad(p + "self_attn.v_proj.weight"), dv_.data(), a.ln1.data(),
                        param(p + "self_attn.v_proj.weight"), N, C, KV, true);
        rmsnorm_backward(dres_.data(), grad(p + "input_layernorm.weight"), dln_.data(), a.ln1_hat.data(),
                         a.ln1_rstd.data(), param(p + "input_layernorm.weight"), N, C, true);
    }
    gpt::encoder_backward(grad("model.embed_tokens.weight"), dres_.data(), ids_.data(), N, C);
}

}  // namespace lmscope::qwen3train
