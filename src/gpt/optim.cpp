#include "gpt/optim.h"

#include <cmath>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "gpt/kernels.h"
#include "io/safetensors.h"

namespace lmscope::gpt {

namespace {

// torch.lerp on f32: weight < 0.5 ? a + w (b - a) : b - (b - a)(1 - w)
inline float lerp_t(float a, float b, float w) { return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w); }

inline float bf16_round(float x) { return bf16_to_f32(f32_to_bf16(x)); }

}  // namespace

double lr_multiplier(int64_t it, int64_t num_iterations, const OptimConfig& c) {
    const int64_t warmup = std::llround(c.warmup_ratio * double(num_iterations));
    const int64_t warmdown = std::llround(c.warmdown_ratio * double(num_iterations));
    if (it < warmup) return double(it + 1) / double(warmup);
    if (it <= num_iterations - warmdown) return 1.0;
    const double progress = double(num_iterations - it) / double(warmdown);
    return progress * 1.0 + (1 - progress) * c.final_lr_frac;
}

double muon_momentum(int64_t it) {
    const double frac = std::min(double(it) / 300.0, 1.0);
    return (1 - frac) * 0.85 + frac * 0.95;
}

void newton_schulz5(float* out, const float* g, int64_t rows, int64_t cols, int steps, bool bf16) {
    const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
    const bool tr = rows > cols;
    const int64_t r = tr ? cols : rows, n = tr ? rows : cols;  // X is (r, n), r <= n
    std::vector<float> X(r * n), Xt(n * r), A(r * r), AA(r * r), Bm(r * r), BX(r * n);
    if (tr)
        transpose(X.data(), g, rows, cols);
    else
        std::memcpy(X.data(), g, sizeof(float) * r * n);
    auto rnd = [&](std::vector<float>& v) {
        if (bf16)
            for (float& x : v) x = bf16_round(x);
    };
    rnd(X);
    double ss = 0;
    for (float x : X) ss += double(x) * x;
    const float denom = static_cast<float>(std::sqrt(ss)) + 1e-7f;
    for (float& x : X) x = x / denom;
    rnd(X);
    for (int s = 0; s < steps; ++s) {
        transpose(Xt.data(), X.data(), r, n);
        gemm(A.data(), r, X.data(), n, 1, Xt.data(), r, r, r, n, false);  // A = X X^T
        rnd(A);
        gemm(AA.data(), r, A.data(), r, 1, A.data(), r, r, r, r, false);  // A A
        rnd(AA);
        for (int64_t i = 0; i < r * r; ++i) {
            const float ba = b * A[i], caa = c * AA[i];
            Bm[i] = ba + caa;
        }
        rnd(Bm);
        gemm(BX.data(), n, Bm.data(), r, 1, X.data(), n, r, n, r, false);  // B X
        rnd(BX);
        for (int64_t i = 0; i < r * n; ++i) {
            const float ax = a * X[i];
            X[i] = ax + BX[i];
        }
        rnd(X);
    }
    if (tr)
        transpose(out, X.data(), r, n);
    else
        std::memcpy(out, X.data(), sizeof(float) * r * n);
}

OptimTarget gpt_optim_target(GptModel& model, const OptimConfig& cfg) {
    OptimTarget t;
    t.data = &model.data();
    t.grads = &model.grads();
    t.params = model.params();
    const double dmodel_scale = std::pow(double(model.config().n_embd) / 768.0, -0.5);
    for (const ParamInfo& p : t.params)
        t.adam_lr.push_back((p.name == "lm_head.weight" ? cfg.lr_unembedding : cfg.lr_embedding) * dmodel_scale);
    return t;
}

Optimizer::Optimizer(GptModel& model, OptimConfig cfg) : Optimizer(gpt_optim_target(model, cfg), cfg) {}

Optimizer::Optimizer(OptimTarget target, OptimConfig cfg) : target_(std::move(target)), cfg_(cfg) {
    if (!target_.data || !target_.grads || target_.data->size() != target_.grads->size() ||
        target_.adam_lr.size() != target_.params.size())
        fail("Optimizer: inconsistent target (buffers or per-parameter learning rates missing)");
    for (const ParamInfo& p : target_.params)
        if (p.offset < 0 || p.offset + p.numel > int64_t(target_.data->size()) || (p.matrix && p.shape.size() != 2))
            fail("Optimizer: parameter \"{}\" does not fit the buffer (or a Muon parameter is not 2-D)", p.name);
    exp_avg_.assign(target_.data->size(), 0.0f);
    exp_avg_sq_.assign(target_.data->size(), 0.0f);
    momentum_.assign(target_.data->size(), 0.0f);
}

double Optimizer::step(int64_t it, int64_t num_iterations) {
    std::vector<float>& W = *target_.data;
    std::vector<float>& G = *target_.grads;
    // clip_grad_norm_(parameters, grad_clip)
    double ss = 0;
    for (float g : G) ss += double(g) * g;
    const double norm = std::sqrt(ss);
    if (cfg_.grad_clip > 0) {
        const float coef = static_cast<float>(std::min(1.0, cfg_.grad_clip / (norm + 1e-6)));
        if (coef < 1.0f)
            for (float& g : G) g *= coef;
    }
    const double lrm = lr_multiplier(it, num_iterations, cfg_);
    const double mom = muon_momentum(it);
    ++t_;
    const double bc1 = 1.0 - std::pow(cfg_.beta1, double(t_)), bc2 = 1.0 - std::pow(cfg_.beta2, double(t_));
    std::vector<float> update;
    for (size_t pi = 0; pi < target_.params.size(); ++pi) {
        const ParamInfo& p = target_.params[pi];
        float* w = W.data() + p.offset;
        float* g = G.data() + p.offset;
        if (!p.matrix) {
            const double lr = target_.adam_lr[pi] * lrm;
            float* m = exp_avg_.data() + p.offset;
            float* v = exp_avg_sq_.data() + p.offset;
            const float w1 = static_cast<float>(1 - cfg_.beta1), b2 = static_cast<float>(cfg_.beta2),
                        w2 = static_cast<float>(1 - cfg_.beta2);
            const float bc2_sqrt = static_cast<float>(std::sqrt(bc2)), eps = static_cast<float>(cfg_.eps);
            const float step_size = static_cast<float>(lr / bc1);
            for (int64_t i = 0; i < p.numel; ++i) {
                m[i] = lerp_t(m[i], g[i], w1);
                const float vv = v[i] * b2;
                v[i] = vv + w2 * g[i] * g[i];
                const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
                w[i] = w[i] + (-step_size) * (m[i] / denom);
            }
        } else {
            const double lr = cfg_.lr_matrix * lrm;
            float* buf = momentum_.data() + p.offset;
            const float wm = static_cast<float>(1 - mom), wn = static_cast<float>(mom);
            for (int64_t i = 0; i < p.numel; ++i) {
                buf[i] = lerp_t(buf[i], g[i], wm);
                g[i] = lerp_t(g[i], buf[i], wn);  // nesterov
            }
            update.resize(p.numel);
            newton_schulz5(update.data(), g, p.shape[0], p.shape[1], cfg_.ns_steps, cfg_.muon_bf16);
            const float alpha = static_cast<float>(
                -lr * std::sqrt(std::max(1.0, double(p.shape[0]) / double(p.shape[1]))));
            for (int64_t i = 0; i < p.numel; ++i) w[i] = w[i] + alpha * update[i];
        }
    }
    return norm;
}

void Optimizer::save_to(SafetensorsWriter& w) const {
    for (const ParamInfo& p : target_.params) {
        auto add = [&](const std::string& name, const std::vector<float>& src) {
            const float* s = src.data() + p.offset;
            const int64_t n = p.numel;
            w.add_lazy(name, DType::F32, p.shape, [s, n](uint8_t* dst) { std::memcpy(dst, s, sizeof(float) * n); });
        };
        if (p.matrix) {
            add("muon.momentum_buffer." + p.name, momentum_);
        } else {
            add("adam.exp_avg." + p.name, exp_avg_);
            add("adam.exp_avg_sq." + p.name, exp_avg_sq_);
        }
    }
}

void Optimizer::load_from(const SafetensorsFile& f, int64_t steps_taken, const std::string& label) {
    for (const ParamInfo& p : target_.params) {
        auto get = [&](const std::string& name, std::vector<float>& dst) {
            const TensorInfo* ti = f.find(name);
            if (!ti) fail("{}: optimiser tensor \"{}\" missing", label, name);
            if (ti->shape != p.shape || ti->dtype != DType::F32)
                fail("{}: optimiser tensor \"{}\" is {} {}, expected F32 {}", label, name, dtype_name(ti->dtype),
                     shape_str(ti->shape), shape_str(p.shape));
            Tensor t = f.get(name);
            std::memcpy(dst.data() + p.offset, t.data<float>(), sizeof(float) * p.numel);
        };
        if (p.matrix) {
            get("muon.momentum_buffer." + p.name, momentum_);
        } else {
            get("adam.exp_avg." + p.name, exp_avg_);
            get("adam.exp_avg_sq." + p.name, exp_avg_sq_);
        }
    }
    t_ = steps_taken;
}

}  // namespace lmscope::gpt
