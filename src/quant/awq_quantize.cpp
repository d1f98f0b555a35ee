#include "quant/awq_quantize.h"

#include "quant/awq_gpt.h"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "core/progress.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "ops/ops.h"
#include "quant/convert_util.h"
#include "tokenizer/tokenizer.h"

namespace lmscope {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

}  // namespace

double awq_output_mse(const float* x, int64_t n, const Linear& ref, const Linear& q, const float* xq,
                      const std::vector<float>* row_scale) {
    std::vector<float> a(static_cast<size_t>(n * ref.out())), b(a.size());
    linear(x, n, ref, a.data());
    linear(xq, n, q, b.data());
    const int64_t out = ref.out();
    if (row_scale) LMS_CHECK(static_cast<int64_t>(row_scale->size()) == out);
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double bv = row_scale ? double(b[i]) * (*row_scale)[i % static_cast<size_t>(out)] : double(b[i]);
        s += (double(a[i]) - bv) * (double(a[i]) - bv);
    }
    return a.empty() ? 0.0 : s / double(a.size());
}

namespace {

// Everything one layer contributes to the output file, ready to copy.
struct PackedLayer {
    int64_t index = -1;
    std::map<std::string, Tensor> tensors;  // full name -> tensor in its output dtype
};

Tensor to_f16(const Tensor& t) { return t.defined() ? t.to(DType::F16) : Tensor(); }

struct Pipeline {
    const ModelConfig& cfg;
    const Checkpoint& ckpt;
    const AwqOptions& opt;
    Pipeline(const ModelConfig& c, const Checkpoint& k, const AwqOptions& o) : cfg(c), ckpt(k), opt(o) {}
    bool awq = true;
    int64_t n = 0, seq = 0;
    std::unique_ptr<AwqStatsObserver> stats;
    std::vector<float> x;  // current layer input (n, H)
    PackedLayer cur;
    AwqResults results;
    std::vector<AwqLayerReport> reports;
    json linear_report = json::array();
    std::unique_ptr<ProgressBar> bar;

    void process(int64_t l) {
        if (cur.index == l) return;
        LMS_CHECK(l == cur.index + 1);  // the writer asks for layers in order
        cur = PackedLayer{};
        cur.index = l;
        AwqFloatLayer L = load_float_layer(ckpt, cfg, l);
        AwqSearchOptions so;
        so.group_size = opt.group_size;
        so.duo_scaling = opt.duo_scaling;
        so.clip = opt.clip;
        AwqLayerRunner::Features feat, orig;
        AwqFloatLayer org;
        if (awq) {
            AwqLayerRunner runner(cfg);
            std::vector<float> next(x.size());
            runner.layer(L, x.data(), n, seq, next.data(), &feat);
            x.swap(next);
            if (opt.report) {
                orig = feat;
                org = load_float_layer(ckpt, cfg, l);
            }
            reports.push_back(awq_search_layer(L, cfg, feat, seq, stats.get(), so, results));
        }
        const std::string p = L.prefix();
        cur.tensors[p + "input_layernorm.weight"] = to_f16(L.input_norm);
        cur.tensors[p + "post_attention_layernorm.weight"] = to_f16(L.post_norm);
        if (L.q_norm.defined()) cur.tensors[p + "self_attn.q_norm.weight"] = to_f16(L.q_norm);
        if (L.k_norm.defined()) cur.tensors[p + "self_attn.k_norm.weight"] = to_f16(L.k_norm);
        for (auto& [rel, fc] : L.linears()) {
            AwqQuantized qr;
            awq_pseudo_quantize(fc->weight.data_mut<float>(), fc->out(), fc->in(), opt.group_size, AwqMath::F16, &qr,
                                fc->name + ".weight");
            AwqPacked pk = awq_pack(qr);
            cur.tensors[fc->name + ".qweight"] = pk.qweight;
            cur.tensors[fc->name + ".qzeros"] = pk.qzeros;
            cur.tensors[fc->name + ".scales"] = pk.scales;
            if (fc->bias.defined()) cur.tensors[fc->name + ".bias"] = to_f16(fc->bias);
            if (awq && opt.report) {
                // fc now holds the dequantised AWQ weight, which sees the scaled input; RTN: the original
                // weight quantised the same way, on the original input
                Linear* o = org.linear(rel);
                Linear rtn = Linear::dense(o->name, awq_f32_copy(o->weight), o->bias);
                awq_pseudo_quantize(rtn.weight.data_mut<float>(), rtn.out(), rtn.in(), opt.group_size, AwqMath::F16);
                const std::vector<float>* xo = nullptr;
                const std::vector<float>* xs = nullptr;
                if (rel == "self_attn.o_proj") xo = &orig.o, xs = &feat.o;
                else if (rel == "mlp.down_proj") xo = &orig.down, xs = &feat.down;
                else if (rel.rfind("self_attn.", 0) == 0) xo = &orig.qkv, xs = &feat.qkv;
                else xo = &orig.gu, xs = &feat.gu;
                const std::vector<float>* row_scale = nullptr;  // this linear as a folded previous op
                for (const AwqScaleEntry& e : results.scale)
                    if (e.name == fc->name) row_scale = &e.value;
                const double m_awq = awq_output_mse(xo->data(), n, *o, *fc, xs->data(), row_scale);
                const double m_rtn = awq_output_mse(xo->data(), n, *o, rtn, xo->data());
                linear_report.push_back({{"name", fc->name},
                                         {"mse_rtn", m_rtn},
                                         {"mse_awq", m_awq},
                                         {"rtn_over_awq", m_awq > 0 ? m_rtn / m_awq : 0.0}});
            }
        }
        if (bar) bar->set(static_cast<double>(l + 1), fmt::format("layer {}", l));
    }

    Tensor take(const std::string& name) {
        auto it = cur.tensors.find(name);
        LMS_CHECK(it != cur.tensors.end());
        Tensor t = it->second;
        cur.tensors.erase(it);
        return t;
    }
};

void check_shapes(const ModelConfig& cfg, int64_t g) {
    const std::pair<const char*, int64_t> ins[] = {{"hidden_size (q/k/v/gate/up in_features)", cfg.hidden_size},
                                                   {"num_attention_heads * head_dim (o_proj in_features)", cfg.q_dim()},
                                                   {"intermediate_size (down_proj in_features)", cfg.intermediate_size}};
    for (const auto& [what, v] : ins)
        if (g <= 0 || v % g != 0)
            throw UsageError(fmt::format("--group-size {} does not divide {} = {} ({} % {} = {}); use a group size "
                                         "that divides it (AutoAWQ default 128)",
                                         g, what, v, v, g, g > 0 ? v % g : 0));
    const std::pair<const char*, int64_t> outs[] = {{"q_proj out", cfg.q_dim()}, {"k/v_proj out", cfg.kv_dim()},
                                                    {"hidden_size", cfg.hidden_size},
                                                    {"intermediate_size", cfg.intermediate_size}};
    for (const auto& [what, v] : outs)
        if (v % 8 != 0) fail("AWQ gemm packing needs out_features divisible by 8; {} = {}", what, v);
}

}  // namespace

AwqQuantizeSummary awq_quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const AwqOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    if (opt.method != "awq" && opt.method != "rtn")
        throw UsageError(fmt::format("--method '{}': expected awq or rtn", opt.method));
    if (is_gpt_checkpoint(in_dir)) return awq_quantize_gpt(in_dir, out_dir, opt);
    const ModelConfig cfg = ModelConfig::load(in_dir);
    if (cfg.raw.contains("quantization_config"))
        fail("{}: the model is already quantised (quantization_config present); AWQ needs the float model",
             cfg.source);
    check_shapes(cfg, opt.group_size);
    const Checkpoint ckpt = Checkpoint::open(in_dir);
    Pipeline P(cfg, ckpt, opt);
    P.awq = opt.method == "awq";
    AwqQuantizeSummary sum;
    if (P.awq) {
        const std::vector<int32_t> ids = awq_calibration_ids(opt, model_folder(in_dir), cfg.vocab_size);
        P.seq = opt.seq_len;
        P.n = static_cast<int64_t>(ids.size());
        P.stats = std::make_unique<AwqStatsObserver>(cfg, true);
        {
            DecoderModel model(cfg, ckpt);
            ProgressBar cb("awq calibration", static_cast<double>(P.n / P.seq), "blocks");
            for (int64_t b = 0; b < P.n / P.seq; ++b) {
                KVCache cache = model.new_cache(P.seq, DType::F32);  // calibration statistics in f32, as before
                model.forward(ids.data() + b * P.seq, P.seq, cache, nullptr, false, P.stats.get());
                if (opt.progress) cb.set(static_cast<double>(b + 1));
            }
            if (opt.progress) cb.finish();
        }
        P.x = std::move(P.stats->embedding());
        LMS_CHECK(static_cast<int64_t>(P.x.size()) == P.n * cfg.hidden_size);
        sum.calib_tokens = P.n;
    }
    if (opt.progress) P.bar = std::make_unique<ProgressBar>(fmt::format("awq {}", opt.method), double(cfg.num_layers), "layers");

    // output tensors, layer by layer (each layer processed when the writer reaches it)
    std::vector<OutTensor> outs;
    auto add_layer_tensor = [&](int64_t l, const std::string& name, DType dt, Shape shape) {
        OutTensor t;
        t.name = name;
        t.dtype = dt;
        t.shape = std::move(shape);
        t.produce = [&P, l, name](uint8_t* dst) {
            P.process(l);
            const Tensor v = P.take(name);
            std::memcpy(dst, v.raw(), v.nbytes());
        };
        outs.push_back(std::move(t));
    };
    const int64_t g = opt.group_size, H = cfg.hidden_size, I = cfg.intermediate_size;
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
        const std::string p = fmt::format("model.layers.{}.", l);
        add_layer_tensor(l, p + "input_layernorm.weight", DType::F16, {H});
        add_layer_tensor(l, p + "post_attention_layernorm.weight", DType::F16, {H});
        if (cfg.qk_norm) {
            add_layer_tensor(l, p + "self_attn.q_norm.weight", DType::F16, {cfg.head_dim});
            add_layer_tensor(l, p + "self_attn.k_norm.weight", DType::F16, {cfg.head_dim});
        }
        const struct {
            const char* rel;
            int64_t out, in;
            bool bias;
        } lin[] = {{"self_attn.q_proj", cfg.q_dim(), H, cfg.qkv_bias},  {"self_attn.k_proj", cfg.kv_dim(), H, cfg.qkv_bias},
                   {"self_attn.v_proj", cfg.kv_dim(), H, cfg.qkv_bias}, {"self_attn.o_proj", H, cfg.q_dim(), cfg.o_bias},
                   {"mlp.gate_proj", I, H, cfg.mlp_bias},               {"mlp.up_proj", I, H, cfg.mlp_bias},
                   {"mlp.down_proj", H, I, cfg.mlp_bias}};
        for (const auto& s : lin) {
            const std::string n = p + s.rel;
            add_layer_tensor(l, n + ".qweight", DType::I32, {s.in, s.out / 8});
            add_layer_tensor(l, n + ".qzeros", DType::I32, {s.in / g, s.out / 8});
            add_layer_tensor(l, n + ".scales", DType::F16, {s.in / g, s.out});
            if (s.bias && ckpt.has(n + ".bias")) add_layer_tensor(l, n + ".bias", DType::F16, {s.out});
            ++sum.linears;
        }
    }
    // --quantize-lm-head: like llama.cpp's formats, the head (the embedding table when tied) as int4 too;
    // AutoAWQ leaves it F16. No calibration: it is the last op, nothing downstream to protect.
    const bool head_q = opt.quantize_lm_head;
    const std::string head_src = ckpt.has("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
    if (head_q) {
        const Shape hs = ckpt.info(head_src).shape;
        if (hs.size() != 2 || hs[0] % 8 != 0 || hs[1] % g != 0)
            fail("--quantize-lm-head: '{}' has shape {}: int4 packing needs vocab % 8 == 0 and hidden_size % "
                 "group_size ({}) == 0",
                 head_src, shape_str(hs), g);
        const int64_t V = hs[0], Hh = hs[1];
        auto head = std::make_shared<AwqPacked>();
        auto produce = [&ckpt, head, head_src, V, Hh, g](const std::string& part) {
            return [&ckpt, head, head_src, V, Hh, g, part](uint8_t* dst) {
                if (!head->qweight.defined()) {
                    Tensor w = ckpt.get(head_src).to(DType::F32);
                    AwqQuantized qr;
                    awq_pseudo_quantize(w.data_mut<float>(), V, Hh, g, AwqMath::F16, &qr, "lm_head.weight");
                    *head = awq_pack(qr);
                }
                const Tensor& t = part == "qweight" ? head->qweight : part == "qzeros" ? head->qzeros : head->scales;
                std::memcpy(dst, t.raw(), t.nbytes());
            };
        };
        outs.push_back({"lm_head.qweight", DType::I32, {Hh, V / 8}, produce("qweight")});
        outs.push_back({"lm_head.qzeros", DType::I32, {Hh / g, V / 8}, produce("qzeros")});
        outs.push_back({"lm_head.scales", DType::F16, {Hh / g, V}, produce("scales")});
        ++sum.linears;
    }
    for (const std::string& name : {std::string("model.embed_tokens.weight"), std::string("model.norm.weight"),
                                     std::string("lm_head.weight")}) {
        if (!ckpt.has(name)) {
            if (name == "lm_head.weight") continue;  // tied
            fail("checkpoint {}: missing tensor '{}'", ckpt.dir(), name);
        }
        if (head_q && name == "lm_head.weight") continue;  // written as int4 above
        OutTensor t;
        t.name = name;
        t.dtype = DType::F16;
        t.shape = ckpt.info(name).shape;
        t.produce = [&ckpt, name](uint8_t* dst) {
            const Tensor v = ckpt.get(name).to(DType::F16);
            std::memcpy(dst, v.raw(), v.nbytes());
        };
        outs.push_back(std::move(t));
    }

    json qc = {{"quant_method", "awq"}, {"bits", 4},         {"group_size", g},
               {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
    json config = cfg.raw;
    config["quantization_config"] = qc;
    if (head_q) config["tie_word_embeddings"] = false;
    config["torch_dtype"] = "float16";
    write_dir_atomic(out_dir, [&](const std::string& tmp) {
        write_sharded_safetensors(tmp, outs, 5000000000ull,
                                  {{"format", "pt"}, {"lmscope", fmt::format("awq int4 g{} method {}", g, opt.method)}});
        write_text_atomic((fs::path(tmp) / "config.json").string(), config.dump(2) + "\n");
        copy_model_side_files(model_folder(in_dir), tmp);
        if (P.awq) {
            fs::create_directories(fs::path(tmp) / "awq");
            if (opt.save_entries) awq_save_entries(P.results, (fs::path(tmp) / "awq" / "scales").string());
            json rep;
            rep["method"] = opt.method;
            rep["duo_scaling"] = opt.duo_scaling;
            rep["clip"] = opt.clip;
            rep["group_size"] = g;
            rep["calib_tokens"] = P.n;
            rep["calib_blocks"] = P.n / std::max<int64_t>(1, P.seq);
            rep["linears"] = P.linear_report;
            double sa = 0, sr = 0;
            int better = 0;
            for (const json& e : P.linear_report) {
                sa += e["mse_awq"].get<double>();
                sr += e["mse_rtn"].get<double>();
                better += e["mse_awq"].get<double>() < e["mse_rtn"].get<double>();
            }
            rep["summary"] = {{"mse_awq_sum", sa}, {"mse_rtn_sum", sr}, {"rtn_over_awq", sa > 0 ? sr / sa : 0.0},
                              {"linears_awq_better", better}, {"linears", P.linear_report.size()}};
            json layers = json::array();
            for (const AwqLayerReport& r : P.reports) {
                json ratios = json::object();
                for (const auto& [k, v] : r.ratios) ratios[k] = v;
                layers.push_back({{"layer", r.layer}, {"seconds", r.seconds}, {"ratios", ratios}});
            }
            rep["layers"] = layers;
            if (opt.report) write_text_atomic((fs::path(tmp) / "awq" / "report.json").string(), rep.dump(1) + "\n");
            sum.report = rep;
        }
    });
    if (P.bar) P.bar->finish();
    sum.layers = cfg.num_layers;
    sum.layer_reports = P.reports;
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sum;
}

std::vector<int32_t> awq_calibration_ids(const AwqOptions& opt, const std::string& default_tokenizer, int64_t vocab) {
    std::vector<int32_t> ids;
    if (!opt.calib_ids.empty()) {
        ids = awq_calibration_blocks({opt.calib_ids}, opt.n_samples, opt.seq_len);
    } else {
        const Tokenizer tok = Tokenizer::load(opt.tokenizer.empty() ? default_tokenizer : opt.tokenizer);
        const std::vector<std::string> docs =
            opt.calib_file.empty() ? awq_brown_documents(opt.brown_dir.empty() ? awq_default_brown_dir() : opt.brown_dir)
                                   : awq_text_documents(opt.calib_file);
        std::vector<std::vector<int32_t>> tokd;
        int64_t have = 0;
        for (const std::string& d : docs) {
            tokd.push_back(tok.encode(d, false));
            have += static_cast<int64_t>(tokd.back().size());
            if (have >= opt.n_samples * opt.seq_len) break;
        }
        ids = awq_calibration_blocks(tokd, opt.n_samples, opt.seq_len);
    }
    for (int32_t id : ids)
        if (id < 0 || id >= vocab) fail("AWQ calibration: token id {} outside the vocabulary ({})", id, vocab);
    return ids;
}

int awq_quantize_command(const std::string& in_dir, const std::string& out_dir, const AwqOptions& opt) {
    const AwqQuantizeSummary s = awq_quantize_checkpoint(in_dir, out_dir, opt);
    fmt::print("quantized {} -> {}: {} linears in {} layers to int4 (AutoAWQ gemm, group {}, method {}){} in {:.1f}s\n",
               in_dir, out_dir, s.linears, s.layers, opt.group_size, opt.method,
               opt.quantize_lm_head ? ", lm_head too (RTN; tie_word_embeddings false)" : "", s.seconds);
    if (opt.method == "awq" && s.report.contains("summary")) {
        const json& m = s.report["summary"];
        fmt::print("calibration: {} tokens; per-linear output MSE summed: AWQ {:.4g} vs RTN {:.4g} (RTN/AWQ {:.2f}x, "
                   "AWQ better on {}/{} linears); report: {}/awq/report.json\n",
                   s.calib_tokens, m["mse_awq_sum"].get<double>(), m["mse_rtn_sum"].get<double>(),
                   m["rtn_over_awq"].get<double>(), m["linears_awq_better"].get<int>(), m["linears"].get<size_t>(), out_dir);
    }
    if (s.report.contains("skipped_folds"))  // the GPT: folds its architecture does not allow
        for (const auto& why : s.report["skipped_folds"]) fmt::print("skipped fold: {}\n", why.get<std::string>());
    return 0;
}

}  // namespace lmscope
