// Parameter, FLOP and memory arithmetic for the report's scaling section (see scaling.h).
#include "trace/scaling.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "cli/common.h"

namespace lmscope {

ParamCount count_params(const ModelShape& s) {
    ParamCount p;
    const int64_t H = s.hidden, qd = s.heads * s.head_dim, kvd = s.kv_heads * s.head_dim;
    p.embedding = s.vocab * H;
    p.attention = s.layers * (H * qd + 2 * H * kvd + qd * H + (s.qkv_bias ? qd + 2 * kvd : 0) +
                              (s.qk_norm ? 2 * s.head_dim : 0));
    p.mlp = s.layers * (s.gpt ? 2 * H * s.intermediate : 3 * H * s.intermediate);
    p.norms = s.gpt ? 0 : s.layers * 2 * H + H;
    p.lm_head = s.tied ? 0 : s.vocab * H;
    return p;
}

double train_flops_per_token(const ModelShape& s, int64_t seq_len) {
    const ParamCount p = count_params(s);
    return 6.0 * static_cast<double>(p.total() - p.embedding) +
           12.0 * static_cast<double>(s.layers * s.heads * s.head_dim * seq_len);
}

ModelShape shape_from_meta(const TraceMeta& m) {
    ModelShape s;
    s.gpt = m.kind == "gpt";
    s.layers = m.layers;
    s.hidden = m.hidden;
    s.heads = m.heads;
    s.kv_heads = m.kv_heads ? m.kv_heads : m.heads;
    s.head_dim = m.head_dim ? m.head_dim : (m.heads ? m.hidden / m.heads : 0);
    s.intermediate = m.intermediate ? m.intermediate : 4 * m.hidden;
    s.vocab = m.vocab_size;
    s.tied = m.tied_embeddings;
    s.qkv_bias = m.qkv_bias;
    s.qk_norm = m.qk_norm;
    return s;
}

namespace {

// Activation bytes. Inference (lmscope, f32): one layer's workspace plus the logits. Training: the
// per-layer estimate of Korthikanti et al. for 16-bit activations without recomputation,
// 34 B T H + 5 heads T^2 B bytes per layer, plus f32 logits and their gradient.
double activation_bytes(const ModelShape& s, int64_t T, int64_t B, bool train) {
    const double t = static_cast<double>(T), b = static_cast<double>(B);
    if (train)
        return static_cast<double>(s.layers) * (34.0 * b * t * static_cast<double>(s.hidden) +
                                                5.0 * static_cast<double>(s.heads) * t * t * b) +
               2.0 * 4.0 * b * t * static_cast<double>(s.vocab);
    const double per_tok = static_cast<double>(2 * s.hidden + s.heads * s.head_dim + 2 * s.kv_heads * s.head_dim +
                                               std::max(s.heads * s.head_dim, s.hidden) + 2 * s.intermediate + s.vocab);
    return 4.0 * t * b * per_tok;
}

double kv_bytes(const ModelShape& s, int64_t T, int64_t B) {
    return 2.0 * 4.0 * static_cast<double>(s.layers * s.kv_heads * s.head_dim * T * B);
}

}  // namespace

ScalingReport scaling_report(const TraceMeta& m) {
    ScalingReport r;
    const ModelShape s = shape_from_meta(m);
    const ParamCount p = count_params(s);
    const int64_t T = std::max<int64_t>(m.seq_len, 1), B = std::max<int64_t>(m.batch, 1);
    const bool train = s.gpt;
    r.total_params = p.total();
    r.components = {{"token embeddings", p.embedding}, {"attention (all layers)", p.attention},
                    {"MLP (all layers)", p.mlp}};
    if (p.norms) r.components.emplace_back("norms", p.norms);
    r.components.emplace_back(s.tied ? "lm_head (tied to the embeddings)" : "lm_head", p.lm_head);
    const double flops = train_flops_per_token(s, T);
    r.summary = fmt::format(
        "{} parameters ({} without the embeddings); ~{:.3g} FLOPs per token to train at sequence {} (~{:.3g} for a "
        "forward pass); weights {} at {} bytes/parameter; activations ~{} ({}); KV cache {} for {} positions (f32).",
        human_count(static_cast<double>(p.total())), human_count(static_cast<double>(p.total() - p.embedding)), flops, T,
        flops / 3, human_bytes(static_cast<double>(p.total()) * m.weight_bytes), m.weight_bytes,
        human_bytes(activation_bytes(s, T, B, train)), train ? "training, 16-bit, no recomputation" : "lmscope forward, f32",
        human_bytes(kv_bytes(s, T, B)), T * B);
    r.formulas = {
        fmt::format("attention per layer = H*(Hq*d) + 2*H*(Hkv*d) + (Hq*d)*H = {}; MLP per layer = {}*H*I = {}",
                    s.layers ? p.attention / s.layers : 0, s.gpt ? 2 : 3, s.layers ? p.mlp / s.layers : 0),
        "FLOPs/token (training) = 6*(N - N_embedding) + 12*L*heads*head_dim*T (nanochat's estimate; forward ~ 1/3)",
    };
    r.depth_header = {"depth", "d_model", "heads", "parameters", "non-embedding", "train FLOPs/token", "weights",
                      "KV cache @T"};
    std::set<int64_t> depths;
    if (s.gpt) {
        for (int64_t d : {s.layers, int64_t{8}, int64_t{12}, int64_t{20}, int64_t{26}, int64_t{32}}) depths.insert(d);
    } else {
        for (int64_t d : {std::max<int64_t>(1, s.layers / 2), s.layers, 2 * s.layers}) depths.insert(d);
    }
    for (int64_t d : depths) {
        ModelShape x = s;
        x.layers = d;
        if (s.gpt && d != s.layers) {  // nanochat: model_dim = 64 * depth, heads of 128
            x.hidden = 64 * d;
            x.head_dim = 128;
            x.heads = x.kv_heads = std::max<int64_t>(1, (x.hidden + 127) / 128);
            x.intermediate = 4 * x.hidden;
        }
        const ParamCount q = count_params(x);
        r.depth_rows.push_back({std::to_string(d) + (d == s.layers ? " (this run)" : ""), std::to_string(x.hidden),
                                std::to_string(x.heads), human_count(static_cast<double>(q.total())),
                                human_count(static_cast<double>(q.total() - q.embedding)),
                                fmt::format("{:.3g}", train_flops_per_token(x, T)),
                                human_bytes(static_cast<double>(q.total()) * m.weight_bytes), human_bytes(kv_bytes(x, T, B))});
    }
    return r;
}

}  // namespace lmscope
