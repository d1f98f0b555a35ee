#include "model/decoder.h"

#include <fmt/format.h>

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "model/rope_table.h"
#include "ops/cpu/decode_step.h"
#include "ops/ops.h"
#include "trace/attention_probe.h"

namespace lmscope {

namespace {

// Shows a tensor to the observer under `name` if it wants it; formats the name only then.
template <typename NameFn>
void show(TensorObserver* obs, NameFn&& name_fn, const float* data, Shape shape) {
    if (!obs) return;
    const std::string name = name_fn();
    if (obs->wants(name)) obs->observe(name, data, shape);
}

}  // namespace

DecoderModel DecoderModel::load(const std::string& dir, bool cpu_copies) {
    ModelConfig cfg = ModelConfig::load(dir);
    Checkpoint ckpt = Checkpoint::open(dir);
    return DecoderModel(std::move(cfg), std::move(ckpt), cpu_copies);
}

DecoderModel::DecoderModel(ModelConfig cfg, Checkpoint ckpt, bool cpu_copies)
    : cfg_(std::move(cfg)), ckpt_(std::move(ckpt)) {
    w_ = load_weights(ckpt_, cfg_, true, cpu_copies);
    inv_freq_ = rope_inv_freq(cfg_.rope, cfg_.head_dim);
    all_f32_ = w_.lm_head.format == LinearFormat::Dense && w_.lm_head.weight.dtype() == DType::F32;
    for (const LayerWeights& L : w_.layers)
        for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
            all_f32_ = all_f32_ && l->format == LinearFormat::Dense && l->weight.dtype() == DType::F32;
}

DType DecoderModel::default_kv_dtype() const {
    if (const char* e = std::getenv("LMSCOPE_KV_CACHE")) {
        if (std::strcmp(e, "f16") == 0) return DType::F16;
        if (std::strcmp(e, "f32") == 0) return DType::F32;
        fail("LMSCOPE_KV_CACHE={}: expected f16 or f32", e);
    }
    return all_f32_ ? DType::F32 : DType::F16;
}

KVCache DecoderModel::new_cache(int64_t capacity, DType dtype) const {
    if (dtype != DType::F32 && dtype != DType::F16) fail("KV cache dtype {}: expected F32 or F16", dtype_name(dtype));
    KVCache c;
    c.capacity = capacity;
    c.dtype = dtype;
    const size_t layers = static_cast<size_t>(cfg_.num_layers), n = static_cast<size_t>(capacity * cfg_.kv_dim());
    if (dtype == DType::F32) {
        c.k.assign(layers, std::vector<float>(n));
        c.v.assign(layers, std::vector<float>(n));
    } else {
        c.k16.assign(layers, std::vector<uint16_t>(n));
        c.v16.assign(layers, std::vector<uint16_t>(n));
    }
    return c;
}

void DecoderModel::ensure_workspace(int64_t T) {
    if (T <= ws_tokens_) return;
    const auto n = [T](int64_t per_token) { return static_cast<size_t>(T * per_token); };
    x_.resize(n(cfg_.hidden_size));
    h_.resize(n(cfg_.hidden_size));
    q_.resize(n(cfg_.q_dim()));
    k_.resize(n(cfg_.kv_dim()));
    v_.resize(n(cfg_.kv_dim()));
    att_.resize(n(std::max(cfg_.q_dim(), cfg_.hidden_size)));
    gate_.resize(n(cfg_.intermediate_size));
    up_.resize(n(cfg_.intermediate_size));
    cos_.resize(n(cfg_.head_dim / 2));
    sin_.resize(n(cfg_.head_dim / 2));
    ws_tokens_ = T;
}

void DecoderModel::forward(const int32_t* ids, int64_t T, KVCache& cache, float* logits, bool all_logits,
                           TensorObserver* obs) {
    if (T <= 0) return;
    if (cache.len + T > cache.capacity)
        fail("KV cache holds {} positions; {} more do not fit after {}", cache.capacity, T, cache.len);
    ensure_workspace(T);
    const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size, D = cfg_.head_dim;
    const int64_t Hq = cfg_.num_heads, Hkv = cfg_.num_kv_heads, QD = cfg_.q_dim(), KVD = cfg_.kv_dim();
    const float eps = static_cast<float>(cfg_.rms_norm_eps);
    const int64_t pos0 = cache.len;
    float *x = x_.data(), *h = h_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data(), *att = att_.data();

    embedding(ids, T, w_.embed, x);  // (T, H)
    show(obs, [] { return std::string("model.embed_tokens"); }, x, {T, H});
    rope_cos_sin(inv_freq_, pos0, T, cos_.data(), sin_.data());

    // Decoding on the fast CPU ops without an observer: the work after q/k/v and after gate/up runs inside
    // their thread-pool round trips (ops/cpu/decode_step.h); the observer sees every tensor of the plain path.
    const bool fused = T < 4 && !obs && !reference_mode();
    for (int64_t l = 0; l < cfg_.num_layers; ++l) {
        const LayerWeights& L = w_.layers[static_cast<size_t>(l)];
        auto nm = [l](const char* what) { return [l, what] { return fmt::format("model.layers.{}.{}", l, what); }; };

        rms_norm(x, T, H, L.input_norm, eps, h);  // (T, H)
        show(obs, nm("input_layernorm"), h, {T, H});
        const bool f32_cache = cache.dtype == DType::F32;
        if (fused) {  // q/k/v, q/k-norm, RoPE and the cache store in one round trip (decode_step.h)
            QkvAfter a;
            a.T = T, a.Hq = Hq, a.Hkv = Hkv, a.D = D, a.eps = eps;
            a.q_norm = cfg_.qk_norm ? &L.q_norm : nullptr;
            a.k_norm = cfg_.qk_norm ? &L.k_norm : nullptr;
            a.cos = cos_.data(), a.sin = sin_.data(), a.q = q, a.k = k, a.v = v, a.cache_dtype = cache.dtype;
            const size_t li = static_cast<size_t>(l);
            a.k_cache = f32_cache ? static_cast<void*>(cache.k[li].data() + pos0 * KVD) : cache.k16[li].data() + pos0 * KVD;
            a.v_cache = f32_cache ? static_cast<void*>(cache.v[li].data() + pos0 * KVD) : cache.v16[li].data() + pos0 * KVD;
            qkv_rope_store_cpu(h, L.q, L.k, L.v, a);
        } else {
            {  // q (T, Hq*D), k and v (T, Hkv*D): one thread-pool round trip when decoding
                const Linear* ws[3] = {&L.q, &L.k, &L.v};
                float* ys[3] = {q, k, v};
                linear_shared_input(h, T, ws, ys, 3);
            }
            show(obs, nm("self_attn.q_proj"), q, {T, QD});
            show(obs, nm("self_attn.k_proj"), k, {T, KVD});
            show(obs, nm("self_attn.v_proj"), v, {T, KVD});
            if (cfg_.qk_norm) {  // Qwen3: per-head RMSNorm over head_dim, before RoPE
                rms_norm(q, T * Hq, D, L.q_norm, eps, q);
                rms_norm(k, T * Hkv, D, L.k_norm, eps, k);
                show(obs, nm("self_attn.q_norm"), q, {T, Hq, D});
                show(obs, nm("self_attn.k_norm"), k, {T, Hkv, D});
            }
            rope(q, T, Hq, D, cos_.data(), sin_.data());
            rope(k, T, Hkv, D, cos_.data(), sin_.data());
            show(obs, nm("self_attn.q_rope"), q, {T, Hq, D});
            show(obs, nm("self_attn.k_rope"), k, {T, Hkv, D});
        }

        const AttentionShape as{T, pos0, Hq, Hkv, D, 1.0f / std::sqrt(static_cast<float>(D))};
        const float* keys = nullptr;  // the cache's keys as f32, for the attention probe
        if (f32_cache) {
            float* kc = cache.k[static_cast<size_t>(l)].data();
            float* vc = cache.v[static_cast<size_t>(l)].data();
            if (!fused) {
                std::memcpy(kc + pos0 * KVD, k, sizeof(float) * static_cast<size_t>(T * KVD));
                std::memcpy(vc + pos0 * KVD, v, sizeof(float) * static_cast<size_t>(T * KVD));
            }
            attention(q, kc, vc, as, att);  // (T, Hq*D)
            keys = kc;
        } else {
            uint16_t* kc = cache.k16[static_cast<size_t>(l)].data();
            uint16_t* vc = cache.v16[static_cast<size_t>(l)].data();
            if (!fused) {
                to_f16_saturated(k, T * KVD, kc + pos0 * KVD);
                to_f16_saturated(v, T * KVD, vc + pos0 * KVD);
            }
            attention(q, kc, vc, as, att);  // (T, Hq*D)
            if (obs) {
                kf_.resize(static_cast<size_t>((pos0 + T) * KVD));
                convert(kc, DType::F16, kf_.data(), DType::F32, kf_.size());
                keys = kf_.data();
            }
        }
        // scores / softmax probabilities exist only when the observer asks (trace/attention_probe.h)
        if (obs) observe_attention(obs, fmt::format("model.layers.{}.self_attn.", l), q, keys, as);
        show(obs, nm("self_attn.attn_output"), att, {T, Hq, D});
        linear(att, T, L.o, h);  // (T, H)
        show(obs, nm("self_attn.o_proj"), h, {T, H});
        for (int64_t i = 0; i < T * H; ++i) x[i] += h[i];
        show(obs, nm("attn_residual"), x, {T, H});

        rms_norm(x, T, H, L.post_norm, eps, h);
        show(obs, nm("post_attention_layernorm"), h, {T, H});
        if (fused) {  // gate, up and SwiGLU in one round trip (decode_step.h)
            gate_up_silu_cpu(h, T, L.gate, L.up, gate_.data(), up_.data());
        } else {
            {  // gate, up (T, I)
                const Linear* ws[2] = {&L.gate, &L.up};
                float* ys[2] = {gate_.data(), up_.data()};
                linear_shared_input(h, T, ws, ys, 2);
            }
            show(obs, nm("mlp.gate_proj"), gate_.data(), {T, I});
            show(obs, nm("mlp.up_proj"), up_.data(), {T, I});
            silu_mul(gate_.data(), up_.data(), T * I, gate_.data());
            show(obs, nm("mlp.act"), gate_.data(), {T, I});
        }
        linear(gate_.data(), T, L.down, h);  // (T, H)
        show(obs, nm("mlp.down_proj"), h, {T, H});
        for (int64_t i = 0; i < T * H; ++i) x[i] += h[i];
        show(obs, [l] { return fmt::format("model.layers.{}", l); }, x, {T, H});
    }
    cache.len += T;

    // Only the rows whose logits are wanted go through the final norm and the head.
    const int64_t first = all_logits ? 0 : T - 1;
    const int64_t n_out = T - first;
    rms_norm(x + first * H, n_out, H, w_.final_norm, eps, h);
    show(obs, [] { return std::string("model.norm"); }, h, {n_out, H});
    if (logits) {
        linear(h, n_out, w_.lm_head, logits);  // (n_out, V)
        show(obs, [] { return std::string("logits"); }, logits, {n_out, cfg_.vocab_size});
    }
}

}  // namespace lmscope
