#include "model/weights.h"

#include <fmt/format.h>

#include <map>

#include "core/error.h"

namespace lmscope {

namespace {

bool is_weight_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

Linear Linear::dense(std::string name, Tensor weight, Tensor bias) {
    Linear l;
    l.name = std::move(name);
    l.out_features = weight.dim(0);
    l.in_features = weight.dim(1);
    l.weight = std::move(weight);
    l.bias = std::move(bias);
    return l;
}

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg) {
    std::map<std::string, Tensor> got;
    size_t bytes = 0;
    for (const ExpectedTensor& e : expected_tensors(cfg)) {
        if (!ckpt.has(e.name)) {
            if (e.optional) continue;
            fail("checkpoint {}: missing tensor '{}' (config {} expects {} from {})", ckpt.dir(), e.name,
                 cfg.source, shape_str(e.shape), e.why);
        }
        const TensorInfo& info = ckpt.info(e.name);
        if (info.shape != e.shape)
            fail("{}: tensor '{}' has shape {} but {} expects {} ({})", info.file, e.name, shape_str(info.shape),
                 cfg.source, shape_str(e.shape), e.why);
        if (!is_weight_dtype(info.dtype))
            fail("{}: tensor '{}' has dtype {}, expected a float weight (F32, F16 or BF16)", info.file, e.name,
                 dtype_name(info.dtype));
        got[e.name] = ckpt.get(e.name);
        bytes += info.nbytes();
    }
    auto take = [&](const std::string& name) -> Tensor {
        auto it = got.find(name);
        return it == got.end() ? Tensor() : it->second;
    };
    auto linear = [&](const std::string& path) {
        return Linear::dense(path, take(path + ".weight"), take(path + ".bias"));
    };
    ModelWeights w;
    w.embed = take("model.embed_tokens.weight");
    w.final_norm = take("model.norm.weight");
    if (cfg.tie_word_embeddings)
        w.lm_head = Linear::dense("lm_head", w.embed);
    else
        w.lm_head = linear("lm_head");
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
        const std::string p = fmt::format("model.layers.{}.", l);
        LayerWeights lw;
        lw.input_norm = take(p + "input_layernorm.weight");
        lw.post_norm = take(p + "post_attention_layernorm.weight");
        lw.q_norm = take(p + "self_attn.q_norm.weight");
        lw.k_norm = take(p + "self_attn.k_norm.weight");
        lw.q = linear(p + "self_attn.q_proj");
        lw.k = linear(p + "self_attn.k_proj");
        lw.v = linear(p + "self_attn.v_proj");
        lw.o = linear(p + "self_attn.o_proj");
        lw.gate = linear(p + "mlp.gate_proj");
        lw.up = linear(p + "mlp.up_proj");
        lw.down = linear(p + "mlp.down_proj");
        w.layers.push_back(std::move(lw));
    }
    w.bytes = bytes;
    return w;
}

}  // namespace lmscope
