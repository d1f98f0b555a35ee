// AWQ / RTN int4 for the nanochat GPT; which folds exist and why: awq_gpt.h.
#include "quant/awq_gpt.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/progress.h"
#include "gpt/gpt.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "ops/ops.h"
#include "quant/awq_pack.h"
#include "quant/convert_util.h"

namespace lmscope {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The block linears in checkpoint order, relative to "transformer.h.{l}."
const char* const kLinears[] = {"attn.c_q", "attn.c_k", "attn.c_v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};

// Inputs of a block's linears over the calibration tokens, in the float model.
struct BlockInputs {
    std::vector<float> ln1;   // (n, C): c_q / c_k / c_v
    std::vector<float> atty;  // (n, H*D): attn.c_proj
    std::vector<float> ln2;   // (n, C): mlp.c_fc
    std::vector<float> h2;    // (n, 4C): mlp.c_proj (after ReLU²)
};

class GptInputObserver : public TensorObserver {
public:
    explicit GptInputObserver(int64_t n_layer) : blocks_(static_cast<size_t>(n_layer)) {}
    bool wants(const std::string& name) const override {
        int64_t l = 0;
        return parse(name, l) >= 0;
    }
    void observe(const std::string& name, const float* data, const Shape& shape) override {
        int64_t l = 0;
        const int kind = parse(name, l);
        BlockInputs& b = blocks_[static_cast<size_t>(l)];
        std::vector<float>* v[] = {&b.ln1, &b.atty, &b.ln2, &b.h2};
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        v[kind]->insert(v[kind]->end(), data, data + n);
    }
    std::vector<BlockInputs>& blocks() { return blocks_; }

private:
    // "transformer.h.{l}.<input>" -> 0 ln1, 1 atty, 2 ln2, 3 h2 (the BlockInputs order); -1 otherwise
    int parse(const std::string& name, int64_t& l) const {
        static const std::string pre = "transformer.h.";
        static const char* const kinds[] = {"attn_norm", "attn.attn_out", "mlp_norm", "mlp.relu2"};
        if (name.rfind(pre, 0) != 0) return -1;
        const size_t dot = name.find('.', pre.size());
        if (dot == std::string::npos) return -1;
        l = std::stoll(name.substr(pre.size(), dot - pre.size()));
        if (l < 0 || l >= static_cast<int64_t>(blocks_.size())) return -1;
        for (int k = 0; k < 4; ++k)
            if (name.compare(dot + 1, std::string::npos, kinds[k]) == 0) return k;
        return -1;
    }
    std::vector<BlockInputs> blocks_;
};

Linear f32_linear(const std::string& name, const float* w, const Shape& shape) {
    std::vector<float> v(w, w + shape[0] * shape[1]);
    return Linear::dense(name, Tensor::from_f32(shape, v));
}

void divide_columns(std::vector<float>& x, int64_t C, const std::vector<float>& s) {
    for (size_t i = 0; i < x.size(); ++i) x[i] /= s[i % static_cast<size_t>(C)];
}

// llm-awq apply_clip: w clamped to [-max_val, max_val] per (row, group)
void apply_clip(Linear& w, const std::vector<float>& max_val, int64_t group) {
    float* p = w.weight.data_mut<float>();
    const int64_t in = w.in(), ng = in / group;
    for (int64_t o = 0; o < w.out(); ++o)
        for (int64_t gi = 0; gi < ng; ++gi) {
            const float mv = max_val[static_cast<size_t>(o * ng + gi)];
            for (int64_t k = 0; k < group; ++k) {
                float& x = p[o * in + gi * group + k];
                x = std::clamp(x, -mv, mv);
            }
        }
}

}  // namespace

void awq_gpt_fold(gpt::GptModel& m, int64_t layer, const std::vector<float>* s_v, const std::vector<float>* s_fc) {
    const std::string p = fmt::format("transformer.h.{}.", layer);
    // (out, in) row-major: columns of `next` times s, rows of `prev` divided by d
    auto fold = [&](const std::string& prev, const std::string& next, const std::vector<float>& s,
                    const std::vector<float>& d) {
        const gpt::ParamInfo& pn = m.info(p + next + ".weight");
        const gpt::ParamInfo& pp = m.info(p + prev + ".weight");
        const int64_t k = pn.shape[1];
        if (static_cast<int64_t>(s.size()) != k || pp.shape[0] != k)
            fail("AWQ fold {} -> {}: scales for {} channels, {} has {} rows and {} has {} columns", prev, next, s.size(),
                 prev, pp.shape[0], next, k);
        float* wn = m.param(p + next + ".weight");
        for (int64_t o = 0; o < pn.shape[0]; ++o)
            for (int64_t c = 0; c < k; ++c) wn[o * k + c] *= s[static_cast<size_t>(c)];
        float* wp = m.param(p + prev + ".weight");
        for (int64_t r = 0; r < k; ++r)
            for (int64_t c = 0; c < pp.shape[1]; ++c) wp[r * pp.shape[1] + c] /= d[static_cast<size_t>(r)];
    };
    if (s_v) fold("attn.c_v", "attn.c_proj", *s_v, *s_v);
    if (s_fc) {
        std::vector<float> root(s_fc->size());
        for (size_t i = 0; i < root.size(); ++i) root[i] = std::sqrt((*s_fc)[i]);
        fold("mlp.c_fc", "mlp.c_proj", *s_fc, root);
    }
}

bool is_gpt_checkpoint(const std::string& dir) { return fs::exists(fs::path(dir) / "gpt_config.json"); }

AwqQuantizeSummary awq_quantize_gpt(const std::string& in_dir, const std::string& out_dir, const AwqOptions& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    const bool awq = opt.method == "awq";
    const std::string cfg_path = (fs::path(in_dir) / "gpt_config.json").string();
    const std::string cfg_text = read_file(cfg_path);
    json cfg_json = json::parse(cfg_text);
    if (cfg_json.contains("quantization_config"))
        fail("{}: the model is already quantised (quantization_config present); AWQ needs the float model", cfg_path);
    const gpt::GptConfig cfg = gpt::GptConfig::from_json_text(cfg_text, cfg_path);
    if (opt.quantize_lm_head)
        throw UsageError("--quantize-lm-head: a GPT checkpoint keeps its lm_head in f32 (its engine computes in f32)");
    const int64_t g = opt.group_size, C = cfg.n_embd, H = cfg.q_dim(), F = cfg.ffn_dim();
    for (int64_t in : {C, H, F}) awq_check_group(in, g, fmt::format("{} (a block linear's in_features)", cfg_path));
    gpt::GptModel model(cfg);
    model.load(in_dir);

    AwqQuantizeSummary sum;
    sum.layers = cfg.n_layer;
    GptInputObserver inputs(cfg.n_layer);
    int64_t n = 0;
    if (awq) {
        AwqOptions o = opt;
        o.seq_len = std::min(opt.seq_len, cfg.sequence_len);
        const std::vector<int32_t> ids = awq_calibration_ids(o, in_dir, cfg.vocab_size);
        const int64_t blocks = static_cast<int64_t>(ids.size()) / o.seq_len;
        ProgressBar bar("awq calibration", static_cast<double>(blocks), "blocks");
        for (int64_t b = 0; b < blocks; ++b) {
            model.forward(ids.data() + b * o.seq_len, nullptr, 1, o.seq_len, &inputs);
            if (opt.progress) bar.set(static_cast<double>(b + 1));
        }
        if (opt.progress) bar.finish();
        n = blocks * o.seq_len;
        sum.calib_tokens = n;
    }

    AwqSearchOptions so;
    so.group_size = g;
    so.duo_scaling = opt.duo_scaling;
    so.clip = opt.clip;
    SafetensorsWriter out;
    out.set_metadata("format", "pt");
    out.set_metadata("lmscope", fmt::format("gpt awq int4 g{} method {}", g, opt.method));
    out.add("transformer.wte.weight", Tensor::from_f32(model.info("transformer.wte.weight").shape,
                                                       std::vector<float>(model.param("transformer.wte.weight"),
                                                                          model.param("transformer.wte.weight") +
                                                                              model.info("transformer.wte.weight").numel)));
    json linear_report = json::array(), layers = json::array();
    std::vector<std::string> skipped = {"norm -> attn.c_q/c_k/c_v and norm -> mlp.c_fc: weightless RMSNorm, nothing to fold into"};
    if (cfg.n_kv_head != cfg.n_head)
        skipped.push_back(fmt::format("attn.c_v -> attn.c_proj: GQA ({} kv heads for {} query heads), no per-channel fold",
                                      cfg.n_kv_head, cfg.n_head));
    ProgressBar bar(awq ? "awq search + pack" : "rtn pack", static_cast<double>(cfg.n_layer), "layers");
    for (int64_t l = 0; l < cfg.n_layer; ++l) {
        const auto tl = std::chrono::steady_clock::now();
        const std::string p = fmt::format("transformer.h.{}.", l);
        std::map<std::string, Linear> lin, org;
        auto take = [&](std::map<std::string, Linear>& dst) {
            dst.clear();
            for (const char* rel : kLinears) {
                const std::string name = p + rel;
                dst.emplace(rel, f32_linear(name, model.param(name + ".weight"), model.info(name + ".weight").shape));
            }
        };
        take(org);
        take(lin);
        json ratios = json::object();
        std::map<std::string, std::vector<float>> row_scale;  // linear whose output rows were divided
        BlockInputs scaled;
        if (awq) {
            BlockInputs& x = inputs.blocks()[static_cast<size_t>(l)];
            scaled = x;
            // both searches on the unscaled block, then folded into the model (its inputs divided by s)
            auto search = [&](const char* prev, const char* next, std::vector<float>& xin, int64_t in) {
                Linear& fc = lin.at(next);
                const AwqScaleResult r = awq_search_scale(
                    awq_act_mean(xin.data(), n, in), {&fc},
                    [&](std::vector<float>& y) {
                        y.resize(static_cast<size_t>(n * fc.out()));
                        linear(xin.data(), n, fc, y.data());
                    },
                    so);
                ratios[fmt::format("{} -> {}", prev, next)] = r.ratio;
                divide_columns(xin, in, r.scales);
                return r.scales;
            };
            std::vector<float> s_v, s_fc = search("mlp.c_fc", "mlp.c_proj", scaled.h2, F);
            if (cfg.n_kv_head == cfg.n_head) s_v = search("attn.c_v", "attn.c_proj", scaled.atty, H);
            awq_gpt_fold(model, l, s_v.empty() ? nullptr : &s_v, &s_fc);
            take(lin);
            if (!s_v.empty()) row_scale["attn.c_v"] = s_v;
            for (float& v : s_fc) v = std::sqrt(v);  // c_fc's rows were divided by sqrt(s)
            row_scale["mlp.c_fc"] = s_fc;
            if (opt.clip) {
                const std::pair<const char*, const std::vector<float>*> clips[] = {
                    {"attn.c_v", &scaled.ln1}, {"attn.c_proj", &scaled.atty}, {"mlp.c_fc", &scaled.ln2},
                    {"mlp.c_proj", &scaled.h2}};
                for (const auto& [rel, xin] : clips)
                    apply_clip(lin.at(rel), awq_search_clip(lin.at(rel), xin->data(), n, so), g);
            }
        }
        for (const char* rel : kLinears) {
            Linear& fc = lin.at(rel);
            AwqQuantized qr;
            awq_pseudo_quantize(fc.weight.data_mut<float>(), fc.out(), fc.in(), g, AwqMath::F16, &qr, fc.name + ".weight");
            AwqPacked pk = awq_pack(qr);
            out.add(fc.name + ".qweight", pk.qweight);
            out.add(fc.name + ".qzeros", pk.qzeros);
            out.add(fc.name + ".scales", pk.scales);
            ++sum.linears;
            if (!awq || !opt.report) continue;
            const BlockInputs& x = inputs.blocks()[static_cast<size_t>(l)];
            const std::string r = rel;
            const std::vector<float>& xo = r == "attn.c_proj" ? x.atty : r == "mlp.c_proj" ? x.h2 : r == "mlp.c_fc" ? x.ln2 : x.ln1;
            const std::vector<float>& xs = r == "attn.c_proj" ? scaled.atty : r == "mlp.c_proj" ? scaled.h2 : r == "mlp.c_fc" ? scaled.ln2 : scaled.ln1;
            Linear rtn = f32_linear(fc.name, org.at(rel).weight.data<float>(), org.at(rel).weight.shape());
            awq_pseudo_quantize(rtn.weight.data_mut<float>(), rtn.out(), rtn.in(), g, AwqMath::F16);
            auto rs = row_scale.find(rel);
            const double m_awq = awq_output_mse(xo.data(), n, org.at(rel), fc, xs.data(),
                                                rs == row_scale.end() ? nullptr : &rs->second);
            const double m_rtn = awq_output_mse(xo.data(), n, org.at(rel), rtn, xo.data());
            linear_report.push_back({{"name", fc.name}, {"mse_rtn", m_rtn}, {"mse_awq", m_awq},
                                     {"rtn_over_awq", m_awq > 0 ? m_rtn / m_awq : 0.0}});
        }
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - tl).count();
        layers.push_back({{"layer", l}, {"seconds", secs}, {"ratios", ratios}});
        if (opt.progress) bar.set(static_cast<double>(l + 1), fmt::format("layer {}", l));
    }
    if (opt.progress) bar.finish();
    out.add("lm_head.weight", Tensor::from_f32(model.info("lm_head.weight").shape,
                                               std::vector<float>(model.param("lm_head.weight"),
                                                                  model.param("lm_head.weight") +
                                                                      model.info("lm_head.weight").numel)));

    cfg_json["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}, {"group_size", g}, {"zero_point", true},
                                       {"version", "gemm"}, {"method", opt.method}, {"lmscope_format", "gpt"},
                                       {"skipped_folds", skipped}};
    json rep;
    if (awq) {
        double sa = 0, sr = 0;
        int better = 0;
        for (const json& e : linear_report) {
            sa += e["mse_awq"].get<double>();
            sr += e["mse_rtn"].get<double>();
            better += e["mse_awq"].get<double>() < e["mse_rtn"].get<double>();
        }
        rep = {{"method", opt.method}, {"model", "nanochat-gpt-v0"}, {"group_size", g}, {"clip", opt.clip},
               {"calib_tokens", n}, {"skipped_folds", skipped}, {"linears", linear_report}, {"layers", layers},
               {"summary", {{"mse_awq_sum", sa}, {"mse_rtn_sum", sr}, {"rtn_over_awq", sa > 0 ? sr / sa : 0.0},
                            {"linears_awq_better", better}, {"linears", linear_report.size()}}}};
    }
    write_dir_atomic(out_dir, [&](const std::string& tmp) {
        out.write((fs::path(tmp) / "model.safetensors").string());
        write_text_atomic((fs::path(tmp) / "gpt_config.json").string(), cfg_json.dump(2) + "\n");
        copy_model_side_files(in_dir, tmp);
        if (awq && opt.report) {
            fs::create_directories(fs::path(tmp) / "awq");
            write_text_atomic((fs::path(tmp) / "awq" / "report.json").string(), rep.dump(1) + "\n");
        }
    });
    sum.report = rep;
    sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return sum;
}

}  // namespace lmscope
