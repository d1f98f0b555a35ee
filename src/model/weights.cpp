#include "model/weights.h"

#include <fmt/format.h>

#include <cstdio>
#include <map>

#include "core/error.h"
#include "quant/awq.h"
#include "quant/fp8.h"

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

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg, bool print_warnings) {
    // Which linears are block FP8 is read from the tensors (F8_E4M3 weight + scale), not the config.
    const Fp8Layout layout = analyze_fp8_layout(ckpt, cfg);
    std::map<std::string, const Fp8ModuleLayout*> fp8_modules;
    for (const Fp8ModuleLayout& m : layout.modules)
        if (m.fp8) fp8_modules[m.module + ".weight"] = &m;
    // AutoAWQ checkpoints (quant_method "awq"): a linear stored as qweight/qzeros/scales has no .weight
    const AwqQuantConfig awq = parse_awq_quant_config(cfg.raw, cfg.source);
    auto is_awq_weight = [&](const std::string& name) {
        const std::string suffix = ".weight";
        if (!awq.present || name.size() <= suffix.size() ||
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
            return false;
        return has_awq_linear(ckpt, name.substr(0, name.size() - suffix.size()));
    };
    std::map<std::string, Tensor> got;
    std::map<std::string, Shape> expected_shape;
    size_t bytes = 0;
    for (const ExpectedTensor& e : expected_tensors(cfg)) {
        expected_shape[e.name] = e.shape;
        if (is_awq_weight(e.name)) continue;
        if (!ckpt.has(e.name)) {
            if (e.optional) continue;
            fail("checkpoint {}: missing tensor '{}' (config {} expects {} from {})", ckpt.dir(), e.name,
                 cfg.source, shape_str(e.shape), e.why);
        }
        const TensorInfo& info = ckpt.info(e.name);
        if (info.shape != e.shape)
            fail("{}: tensor '{}' has shape {} but {} expects {} ({})", info.file, e.name, shape_str(info.shape),
                 cfg.source, shape_str(e.shape), e.why);
        const bool fp8 = fp8_modules.count(e.name) != 0;
        if (!is_weight_dtype(info.dtype) && !fp8)
            fail("{}: tensor '{}' has dtype {}, expected a float weight (F32, F16 or BF16{})", info.file, e.name,
                 dtype_name(info.dtype),
                 info.dtype == DType::F8_E4M3 ? "; F8_E4M3 is only read for linear weights with a block scale" : "");
        got[e.name] = ckpt.get(e.name);
        bytes += info.nbytes();
    }
    if (!layout.errors.empty()) throw Error(layout.errors.front().message);
    auto take = [&](const std::string& name) -> Tensor {
        auto it = got.find(name);
        return it == got.end() ? Tensor() : it->second;
    };
    int num_fp8 = 0;
    auto linear = [&](const std::string& path) {
        if (awq.present && has_awq_linear(ckpt, path)) {
            const Shape& es = expected_shape.at(path + ".weight");  // (out, in) per the config
            Linear l = bind_awq_linear(ckpt, path, awq.group_size, es[1], es[0]);
            bytes += l.weight.nbytes() + l.qzeros.nbytes() + l.scale.nbytes() + (l.bias.defined() ? l.bias.nbytes() : 0);
            return l;
        }
        Linear l = Linear::dense(path, take(path + ".weight"), take(path + ".bias"));
        auto it = fp8_modules.find(path + ".weight");
        if (it != fp8_modules.end() && l.weight.defined()) {
            const Fp8ModuleLayout& m = *it->second;
            Tensor scale = ckpt.get(m.scale_name);
            bytes += scale.nbytes();
            if (scale.dtype() != DType::F32) scale = scale.to(DType::F32);  // BF16/F16 scales: exact in f32
            l.format = LinearFormat::Fp8Block;
            l.scale = std::move(scale);
            l.block_out = layout.qc.block.out;
            l.block_in = layout.qc.block.in;
            ++num_fp8;
        }
        return l;
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
    w.num_fp8_linears = num_fp8;
    w.warnings = layout.warnings;
    if (print_warnings)
        for (const std::string& msg : w.warnings) fmt::print(stderr, "lmscope: warning: {}\n", msg);
    return w;
}

}  // namespace lmscope
