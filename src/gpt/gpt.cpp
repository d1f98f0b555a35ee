// nanochat v0 GPT forward and backward over the kernels of kernels.h (see gpt.h).
#include "gpt/gpt.h"

#include <fmt/format.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "gpt/kernels.h"
#include "gpt/rng.h"
#include "io/safetensors.h"
#include "quant/awq_pack.h"

namespace lmscope::gpt {

namespace {

constexpr float kNormEps = FLT_EPSILON;  // F.rms_norm(eps=None) on f32: 2^-23

void emit(TensorObserver* obs, const std::string& name, const float* data, const Shape& shape) {
    if (obs && obs->wants(name)) obs->observe(name, data, shape);
}

}  // namespace

std::vector<ParamInfo> gpt_param_layout(const GptConfig& cfg) {
    std::vector<ParamInfo> ps;
    int64_t off = 0;
    auto add = [&](std::string name, int64_t rows, int64_t cols, bool matrix, bool zero) {
        ParamInfo p;
        p.name = std::move(name);
        p.shape = {rows, cols};
        p.offset = off;
        p.numel = rows * cols;
        p.matrix = matrix;
        p.zero_init = zero;
        off += p.numel;
        ps.push_back(std::move(p));
    };
    const int64_t C = cfg.n_embd;
    add("transformer.wte.weight", cfg.vocab_size, C, false, false);
    for (int64_t i = 0; i < cfg.n_layer; ++i) {
        const std::string p = fmt::format("transformer.h.{}.", i);
        add(p + "attn.c_q.weight", cfg.q_dim(), C, true, false);
        add(p + "attn.c_k.weight", cfg.kv_dim(), C, true, false);
        add(p + "attn.c_v.weight", cfg.kv_dim(), C, true, false);
        add(p + "attn.c_proj.weight", C, cfg.q_dim(), true, true);
        add(p + "mlp.c_fc.weight", cfg.ffn_dim(), C, true, false);
        add(p + "mlp.c_proj.weight", C, cfg.ffn_dim(), true, true);
    }
    add("lm_head.weight", cfg.vocab_size, C, false, true);
    return ps;
}

GptModel::GptModel(const GptConfig& cfg) : cfg_(cfg) {
    cfg_.validate("GPT config");
    params_ = gpt_param_layout(cfg_);
    for (size_t i = 0; i < params_.size(); ++i) index_[params_[i].name] = i;
    const int64_t total = params_.back().offset + params_.back().numel;
    data_.assign(total, 0.0f);
    grads_.assign(total, 0.0f);
    rope_tables(rope_cos_, rope_sin_, cfg_.sequence_len, cfg_.head_dim, cfg_.rope_theta);
}

const ParamInfo& GptModel::info(const std::string& name) const {
    auto it = index_.find(name);
    if (it == index_.end()) fail("GPT model has no parameter \"{}\"", name);
    return params_[it->second];
}

void GptModel::init_nanochat(uint64_t seed) {
    Rng rng(seed);
    for (const ParamInfo& p : params_) {
        float* w = data_.data() + p.offset;
        if (p.zero_init) {
            std::fill(w, w + p.numel, 0.0f);
            continue;
        }
        double std = 1.0;  // nn.Embedding: N(0, 1)
        if (p.name != "transformer.wte.weight") {
            const double fan_out = double(p.shape[0]), fan_in = double(p.shape[1]);
            std = 1.0 / std::sqrt(fan_in) * std::min(1.0, std::sqrt(fan_out / fan_in));
        }
        for (int64_t i = 0; i < p.numel; ++i) w[i] = static_cast<float>(rng.normal() * std);
    }
}

// A block matrix stored as AutoAWQ-layout int4 (`lmscope quantize --awq` on a GPT: <module>.qweight /
// .qzeros / .scales instead of <module>.weight): expanded to f32 here, since this engine computes in
// f32. The group size follows from the shapes (in / rows of qzeros).
bool GptModel::load_awq_int4(const SafetensorsFile& f, const std::string& file, const ParamInfo& p) {
    const std::string base = p.name.substr(0, p.name.size() - std::string(".weight").size());
    if (!f.find(base + ".qweight")) return false;
    for (const char* part : {".qzeros", ".scales"})
        if (!f.find(base + part)) fail("{}: tensor \"{}{}\" missing (int4 weight {}.qweight present)", file, base, part, base);
    const int64_t out = p.shape[0], in = p.shape[1];
    const Tensor qz = f.get(base + ".qzeros");
    if (qz.shape().size() != 2 || qz.shape()[0] <= 0 || in % qz.shape()[0] != 0)
        fail("{}: tensor \"{}.qzeros\" has shape {}, expected (in / group, out / 8) for in = {}", file, base,
             shape_str(qz.shape()), in);
    const int64_t group = in / qz.shape()[0];
    const Tensor qw = f.get(base + ".qweight"), sc = f.get(base + ".scales");
    const std::string problem = awq_shape_problem(base, qw, qz, sc, group, in, out);
    if (!problem.empty()) fail("{}: {}", file, problem);
    const std::vector<float> wt = awq_dequantize_t(qw, qz, sc, group, base);  // (in, out)
    float* dst = data_.data() + p.offset;
    for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) dst[o * in + i] = wt[static_cast<size_t>(i * out + o)];
    return true;
}

void GptModel::load(const std::string& path) {
    std::string file = path;
    if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "model.safetensors").string();
    if (!std::filesystem::exists(file)) fail("{}: no such file (expected GPT weights)", file);
    SafetensorsFile f = SafetensorsFile::open(file);
    for (const ParamInfo& p : params_) {
        const TensorInfo* ti = f.find(p.name);
        if (!ti && p.matrix && load_awq_int4(f, file, p)) continue;
        if (!ti) fail("{}: tensor \"{}\" missing", file, p.name);
        if (ti->shape != p.shape)
            fail("{}: tensor \"{}\" has shape {}, the config wants {}", file, p.name, shape_str(ti->shape),
                 shape_str(p.shape));
        Tensor t = f.get(p.name);
        if (t.dtype() != DType::F32) t = t.to(DType::F32);
        std::memcpy(data_.data() + p.offset, t.data<float>(), sizeof(float) * p.numel);
    }
}

void GptModel::save(const std::string& path, const std::map<std::string, std::string>& metadata) const {
    SafetensorsWriter w;
    for (const auto& [k, v] : metadata) w.set_metadata(k, v);
    w.set_metadata("format", "pt");
    for (const ParamInfo& p : params_) {
        const float* src = data_.data() + p.offset;
        const int64_t n = p.numel;
        w.add_lazy(p.name, DType::F32, p.shape,
                   [src, n](uint8_t* dst) { std::memcpy(dst, src, sizeof(float) * n); });
    }
    w.write(path);
}


void GptModel::ensure_acts(int64_t B, int64_t T) {
    if (B == B_ && T == T_) return;
    B_ = B;
    T_ = T;
    const int64_t N = B * T, C = cfg_.n_embd, H = cfg_.q_dim(), KV = cfg_.kv_dim(), F = cfg_.ffn_dim();
    const int64_t NH = cfg_.n_head, NKV = cfg_.n_kv_head;
    x0_.assign(N * C, 0);
    x0_rstd_.assign(N, 0);
    resid_.assign(N * C, 0);
    lnf_.assign(N * C, 0);
    lnf_rstd_.assign(N, 0);
    logits_.assign(N * cfg_.vocab_size, 0);
    losses_.assign(N, 0);
    layers_.resize(cfg_.n_layer);
    for (LayerActs& a : layers_) {
        a.ln1.assign(N * C, 0);
        a.ln1_rstd.assign(N, 0);
        a.qn.assign(N * H, 0);
        a.q_rstd.assign(N * NH, 0);
        a.kn.assign(N * KV, 0);
        a.k_rstd.assign(N * NKV, 0);
        a.v.assign(N * KV, 0);
        a.att.assign(B * NH * T * T, 0);
        a.atty.assign(N * H, 0);
        a.ln2.assign(N * C, 0);
        a.ln2_rstd.assign(N, 0);
        a.fc.assign(N * F, 0);
        a.h2.assign(N * F, 0);
    }
    q_raw_.assign(N * H, 0);
    k_raw_.assign(N * KV, 0);
    tmp_.assign(N * C, 0);
    dres_.assign(N * C, 0);
    dln_.assign(N * C, 0);
    datty_.assign(N * H, 0);
    dq_.assign(N * H, 0);
    dk_.assign(N * KV, 0);
    dv_.assign(N * KV, 0);
    dh_.assign(N * F, 0);
    datt_.assign(B * NH * T * T, 0);
    dtmp_.assign(N * C, 0);
}

float GptModel::forward(const int32_t* ids, const int32_t* targets, int64_t B, int64_t T, TensorObserver* obs) {
    if (T < 1 || T > cfg_.sequence_len) fail("GPT forward: T = {} outside [1, sequence_len = {}]", T, cfg_.sequence_len);
    if (B < 1) fail("GPT forward: batch {} < 1", B);
    const int64_t N = B * T, C = cfg_.n_embd, H = cfg_.q_dim(), KV = cfg_.kv_dim(), F = cfg_.ffn_dim();
    const int64_t NH = cfg_.n_head, NKV = cfg_.n_kv_head, HD = cfg_.head_dim, V = cfg_.vocab_size;
    for (int64_t n = 0; n < N; ++n)
        if (ids[n] < 0 || ids[n] >= V) fail("GPT forward: token id {} at position {} outside [0, {})", ids[n], n, V);
    ensure_acts(B, T);
    ids_.assign(ids, ids + N);
    have_targets_ = targets != nullptr;
    targets_.assign(N, -1);
    if (targets)
        for (int64_t n = 0; n < N; ++n) {
            if (targets[n] < -1 || targets[n] >= V)
                fail("GPT forward: target id {} at position {} outside [-1, {})", targets[n], n, V);
            targets_[n] = targets[n];
        }
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
    const Shape sBTC{B, T, C};

    encoder_forward(resid_.data(), ids, param("transformer.wte.weight"), N, C);
    emit(obs, "transformer.wte", resid_.data(), sBTC);
    rmsnorm_forward(x0_.data(), x0_rstd_.data(), resid_.data(), N, C, kNormEps);
    std::memcpy(resid_.data(), x0_.data(), sizeof(float) * N * C);
    emit(obs, "transformer.wte_norm", x0_.data(), sBTC);

    for (int64_t l = 0; l < cfg_.n_layer; ++l) {
        LayerActs& a = layers_[l];
        const std::string p = fmt::format("transformer.h.{}.", l);
        rmsnorm_forward(a.ln1.data(), a.ln1_rstd.data(), resid_.data(), N, C, kNormEps);
        emit(obs, p + "attn_norm", a.ln1.data(), sBTC);
        matmul_forward(q_raw_.data(), a.ln1.data(), param(p + "attn.c_q.weight"), N, C, H);
        matmul_forward(k_raw_.data(), a.ln1.data(), param(p + "attn.c_k.weight"), N, C, KV);
        matmul_forward(a.v.data(), a.ln1.data(), param(p + "attn.c_v.weight"), N, C, KV);
        emit(obs, p + "attn.c_q", q_raw_.data(), {B, T, NH, HD});
        emit(obs, p + "attn.c_k", k_raw_.data(), {B, T, NKV, HD});
        emit(obs, p + "attn.c_v", a.v.data(), {B, T, NKV, HD});
        rope_forward(q_raw_.data(), q_raw_.data(), rope_cos_.data(), rope_sin_.data(), N, T, NH, HD);
        rope_forward(k_raw_.data(), k_raw_.data(), rope_cos_.data(), rope_sin_.data(), N, T, NKV, HD);
        emit(obs, p + "attn.q_rope", q_raw_.data(), {B, T, NH, HD});
        emit(obs, p + "attn.k_rope", k_raw_.data(), {B, T, NKV, HD});
        rmsnorm_forward(a.qn.data(), a.q_rstd.data(), q_raw_.data(), N * NH, HD, kNormEps);
        rmsnorm_forward(a.kn.data(), a.k_rstd.data(), k_raw_.data(), N * NKV, HD, kNormEps);
        emit(obs, p + "attn.q_norm", a.qn.data(), {B, T, NH, HD});
        emit(obs, p + "attn.k_norm", a.kn.data(), {B, T, NKV, HD});
        if (obs && obs->wants(p + "attn.scores")) {
            // Q K^T / sqrt(HD) for every (t, t2), before the causal mask; only built when traced
            scores_.assign(B * NH * T * T, 0);
            const int64_t rep = NH / NKV;
            for (int64_t b = 0; b < B; ++b)
                for (int64_t h = 0; h < NH; ++h)
                    for (int64_t t = 0; t < T; ++t)
                        for (int64_t t2 = 0; t2 < T; ++t2) {
                            const float* qr = a.qn.data() + ((b * T + t) * NH + h) * HD;
                            const float* kr = a.kn.data() + ((b * T + t2) * NKV + h / rep) * HD;
                            double s = 0;
                            for (int64_t d = 0; d < HD; ++d) s += double(qr[d]) * kr[d];
                            scores_[((b * NH + h) * T + t) * T + t2] = static_cast<float>(s) * scale;
                        }
            obs->observe(p + "attn.scores", scores_.data(), {B, NH, T, T});
        }
        attention_forward(a.atty.data(), a.att.data(), a.qn.data(), a.kn.data(), a.v.data(), B, T, NH, NKV, HD,
                          scale);
        emit(obs, p + "attn.attn_out", a.atty.data(), {B, T, H});
        matmul_forward(tmp_.data(), a.atty.data(), param(p + "attn.c_proj.weight"), N, H, C);
        emit(obs, p + "attn.c_proj", tmp_.data(), sBTC);
        for (int64_t i = 0; i < N * C; ++i) resid_[i] += tmp_[i];
        emit(obs, p + "attn_residual", resid_.data(), sBTC);

        rmsnorm_forward(a.ln2.data(), a.ln2_rstd.data(), resid_.data(), N, C, kNormEps);
        emit(obs, p + "mlp_norm", a.ln2.data(), sBTC);
        matmul_forward(a.fc.data(), a.ln2.data(), param(p + "mlp.c_fc.weight"), N, C, F);
        emit(obs, p + "mlp.c_fc", a.fc.data(), {B, T, F});
        relu2_forward(a.h2.data(), a.fc.data(), N * F);
        emit(obs, p + "mlp.relu2", a.h2.data(), {B, T, F});
        matmul_forward(tmp_.data(), a.h2.data(), param(p + "mlp.c_proj.weight"), N, F, C);
        emit(obs, p + "mlp.c_proj", tmp_.data(), sBTC);
        for (int64_t i = 0; i < N * C; ++i) resid_[i] += tmp_[i];
        emit(obs, fmt::format("transformer.h.{}", l), resid_.data(), sBTC);
    }

    rmsnorm_forward(lnf_.data(), lnf_rstd_.data(), resid_.data(), N, C, kNormEps);
    emit(obs, "transformer.norm_f", lnf_.data(), sBTC);
    matmul_forward(logits_.data(), lnf_.data(), param("lm_head.weight"), N, C, V);
    emit(obs, "lm_head", logits_.data(), {B, T, V});
    count_ = softcap_crossentropy_forward(logits_.data(), losses_.data(), targets_.data(), N, V,
                                          static_cast<float>(cfg_.softcap));
    emit(obs, "logits", logits_.data(), {B, T, V});
    const float loss = count_ > 0 ? static_cast<float>(loss_sum() / double(count_)) : 0.0f;
    if (have_targets_) emit(obs, "loss", &loss, {1});
    return loss;
}

double GptModel::loss_sum() const {
    double s = 0;
    for (float l : losses_) s += l;
    return s;
}

void GptModel::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.0f); }

void GptModel::backward(TensorObserver* obs) {
    if (!have_targets_) fail("GPT backward: the last forward had no targets");
    const int64_t B = B_, T = T_, N = B * T, C = cfg_.n_embd, H = cfg_.q_dim(), KV = cfg_.kv_dim(), F = cfg_.ffn_dim();
    const int64_t NH = cfg_.n_head, NKV = cfg_.n_kv_head, HD = cfg_.head_dim, V = cfg_.vocab_size;
    const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
    const Shape sBTC{B, T, C};
    have_targets_ = false;  // the logits buffer becomes their gradient

    const float inv_count = count_ > 0 ? 1.0f / static_cast<float>(count_) : 0.0f;
    softcap_crossentropy_backward(logits_.data(), targets_.data(), N, V, static_cast<float>(cfg_.softcap), inv_count);
    emit(obs, "grad.lm_head", logits_.data(), {B, T, V});
    matmul_backward(dln_.data(), grad("lm_head.weight"), logits_.data(), lnf_.data(), param("lm_head.weight"), N, C,
                    V, false);
    emit(obs, "grad.transformer.norm_f", dln_.data(), sBTC);
    rmsnorm_backward(dres_.data(), dln_.data(), lnf_.data(), lnf_rstd_.data(), N, C, false);

    for (int64_t l = cfg_.n_layer - 1; l >= 0; --l) {
        LayerActs& a = layers_[l];
        const std::string p = fmt::format("transformer.h.{}.", l);
        emit(obs, fmt::format("grad.transformer.h.{}", l), dres_.data(), sBTC);
        // MLP
        matmul_backward(dh_.data(), grad(p + "mlp.c_proj.weight"), dres_.data(), a.h2.data(),
                        param(p + "mlp.c_proj.weight"), N, F, C, false);
        relu2_backward(dh_.data(), dh_.data(), a.fc.data(), N * F);
        emit(obs, "grad." + p + "mlp.c_fc", dh_.data(), {B, T, F});
        matmul_backward(dln_.data(), grad(p + "mlp.c_fc.weight"), dh_.data(), a.ln2.data(),
                        param(p + "mlp.c_fc.weight"), N, C, F, false);
        rmsnorm_backward(dres_.data(), dln_.data(), a.ln2.data(), a.ln2_rstd.data(), N, C, true);
        emit(obs, "grad." + p + "attn_residual", dres_.data(), sBTC);
        // attention
        matmul_backward(datty_.data(), grad(p + "attn.c_proj.weight"), dres_.data(), a.atty.data(),
                        param(p + "attn.c_proj.weight"), N, H, C, false);
        emit(obs, "grad." + p + "attn.attn_out", datty_.data(), {B, T, H});
        attention_backward(dq_.data(), dk_.data(), dv_.data(), datt_.data(), datty_.data(), a.att.data(),
                           a.qn.data(), a.kn.data(), a.v.data(), B, T, NH, NKV, HD, scale);
        rmsnorm_backward(dq_.data(), dq_.data(), a.qn.data(), a.q_rstd.data(), N * NH, HD, false);
        rmsnorm_backward(dk_.data(), dk_.data(), a.kn.data(), a.k_rstd.data(), N * NKV, HD, false);
        rope_backward(dq_.data(), dq_.data(), rope_cos_.data(), rope_sin_.data(), N, T, NH, HD);
        rope_backward(dk_.data(), dk_.data(), rope_cos_.data(), rope_sin_.data(), N, T, NKV, HD);
        emit(obs, "grad." + p + "attn.c_q", dq_.data(), {B, T, NH, HD});
        emit(obs, "grad." + p + "attn.c_k", dk_.data(), {B, T, NKV, HD});
        emit(obs, "grad." + p + "attn.c_v", dv_.data(), {B, T, NKV, HD});
        matmul_backward(dln_.data(), grad(p + "attn.c_q.weight"), dq_.data(), a.ln1.data(),
                        param(p + "attn.c_q.weight"), N, C, H, false);
        matmul_backward(dln_.data(), grad(p + "attn.c_k.weight"), dk_.data(), a.ln1.data(),
                        param(p + "attn.c_k.weight"), N, C, KV, true);
        matmul_backward(dln_.data(), grad(p + "attn.c_v.weight"), dv_.data(), a.ln1.data(),
                        param(p + "attn.c_v.weight"), N, C, KV, true);
        rmsnorm_backward(dres_.data(), dln_.data(), a.ln1.data(), a.ln1_rstd.data(), N, C, true);
    }
    emit(obs, "grad.transformer.wte_norm", dres_.data(), sBTC);
    rmsnorm_backward(dtmp_.data(), dres_.data(), x0_.data(), x0_rstd_.data(), N, C, false);
    emit(obs, "grad.transformer.wte", dtmp_.data(), sBTC);
    encoder_backward(grad("transformer.wte.weight"), dtmp_.data(), ids_.data(), N, C);
    if (obs)
        for (const ParamInfo& pi : params_) emit(obs, "grad." + pi.name, grads_.data() + pi.offset, pi.shape);
}

}  // namespace lmscope::gpt
