#include "model/weights.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>

#include "core/error.h"
#include "ops/cpu/fp8_rows.h"
#include "ops/cpu/simd.h"
#include "quant/awq.h"
#include "quant/fp8.h"

namespace lmscope {

namespace {

bool is_weight_dtype(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// One allocation of `total` bytes (rounded up to 2 MB) that asks for transparent huge pages; owner frees it.
uint8_t* huge_arena(size_t total, std::shared_ptr<const void>& owner) {
    constexpr size_t kHuge = size_t(2) << 20;
    total = (total + kHuge - 1) / kHuge * kHuge;
    void* p = std::aligned_alloc(kHuge, total);
    if (!p) throw std::bad_alloc();
    madvise(p, total, MADV_HUGEPAGE);  // a hint: without THP the layouts alone do most of it
    owner = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
    return static_cast<uint8_t*>(p);
}

// The linears of w that pass `want`, lm_head first.
template <class Want>
std::vector<Linear*> linears_where(ModelWeights& w, Want want) {
    std::vector<Linear*> ls;
    if (want(w.lm_head)) ls.push_back(&w.lm_head);
    for (LayerWeights& L : w.layers)
        for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
            if (want(*l)) ls.push_back(l);
    return ls;
}

// The AVX-512 FP8 GEMV reads the codes in the 4-row layout (ops/cpu/fp8_rows.h): a copy of every FP8
// linear's codes, all in one allocation that asks for transparent huge pages (one core read the layout at
// 44.8 GB/s from huge pages, 42.8 from 4 KB ones, the row-major codes of the file mapping at 34.6: cpu_notes
// v20); prefill reads it as well. Other ISA levels read the row-major codes; they get no copy.
void attach_fp8_rows4(ModelWeights& w) {
    if (simd::active_isa() != simd::Isa::Avx512) return;
    const std::vector<Linear*> ls = linears_where(w, [](const Linear& l) {
        return l.format == LinearFormat::Fp8Block && fp8cpu::rows4_fits(l.in(), l.block_in);
    });
    const auto padded = [](size_t n) { return (n + 63) / 64 * 64; };
    size_t total = 0;
    for (const Linear* l : ls) total += padded(l->weight.nbytes());
    if (total == 0) return;
    std::shared_ptr<const void> arena;
    uint8_t* p = huge_arena(total, arena);
    size_t off = 0;
    for (Linear* l : ls) {
        uint8_t* d = p + off;
        fp8cpu::to_rows4(l->weight.data<uint8_t>(), l->out(), l->in(), d);
        l->fp8_rows4 =
            Tensor(l->weight.dtype(), l->weight.shape(), Storage::borrow(d, l->weight.nbytes(), arena));
        off += padded(l->weight.nbytes());
    }
}

// The AWQ int4 GEMV's tiled codes and group records (awq_tile_qweight / awq_tile_groups, made per linear
// by bind_awq_linear) moved into one huge-page allocation, every linear's tiles and then every linear's
// records: int4h decode, the two alternated token by token, 2 threads -2 to -6% a token, 1 thread -4.5 to
// -7% (cpu_notes v25). The per-linear tensors are freed.
void move_awq_tiles_to_huge_pages(ModelWeights& w) {
    const std::vector<Linear*> ls = linears_where(w, [](const Linear& l) {
        return l.format == LinearFormat::AwqInt4 && l.qweight_tiles.defined() && l.group_tiles.defined();
    });
    const auto padded = [](size_t n) { return (n + 4095) / 4096 * 4096; };
    size_t total = 0;
    for (const Linear* l : ls) total += padded(l->qweight_tiles.nbytes()) + padded(l->group_tiles.nbytes());
    if (total == 0) return;
    std::shared_ptr<const void> arena;
    uint8_t* p = huge_arena(total, arena);
    size_t off = 0;
    const auto move = [&](Tensor& t) {
        uint8_t* d = p + off;
        std::memcpy(d, t.raw(), t.nbytes());
        off += padded(t.nbytes());
        t = Tensor(t.dtype(), t.shape(), Storage::borrow(d, t.nbytes(), arena));
    };
    for (Linear* l : ls) move(l->qweight_tiles);
    for (Linear* l : ls) move(l->group_tiles);
}

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

ModelWeights load_weights(const Checkpoint& ckpt, const ModelConfig& cfg, bool print_warnings,
                          bool cpu_copies) {
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
            Linear l = bind_awq_linear(ckpt, path, awq.group_size, es[1], es[0], cpu_copies);
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
    if (cpu_copies) {
        attach_fp8_rows4(w);
        move_awq_tiles_to_huge_pages(w);
    }
    w.bytes = bytes;
    w.num_fp8_linears = num_fp8;
    w.warnings = layout.warnings;
    if (print_warnings)
        for (const std::string& msg : w.warnings) fmt::print(stderr, "lmscope: warning: {}\n", msg);
    return w;
}

}  // namespace lmscope
