// AWQ: packing bit-exact vs tools/golden_awq.py (a PyTorch re-implementation of AutoAWQ), dequant
// = (q - z) * s, the int4 linears (ref and fast, both ISAs) vs a dense matmul, the scale / clip
// search vs the PyTorch reference, scale entries (formats, function preserved), the quantiser end
// to end on golden checkpoints (AWQ vs RTN, salient channels), and bad inputs.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/random_init.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"
#include "quant/awq.h"
#include "quant/awq_entries.h"
#include "quant/awq_pack.h"
#include "quant/awq_quantize.h"
#include "quant/awq_search.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;
namespace fs = std::filesystem;

namespace {

std::vector<float> randn(size_t n, uint64_t seed, float sd = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

std::string golden_awq() { return golden_dir("awq_pack") + "/golden.safetensors"; }

template <typename T>
std::vector<T> as_vec(const Tensor& t) {
    return std::vector<T>(t.data<T>(), t.data<T>() + t.numel());
}

double rel(const std::vector<float>& a, const std::vector<float>& b) {
    double n = 0, d = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        n += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        d += double(b[i]) * b[i];
    }
    return std::sqrt(n / std::max(d, 1e-300));
}

std::vector<float> logits_of(const std::string& dir, const std::vector<int32_t>& ids) {
    DecoderModel m = DecoderModel::load(dir);
    const int64_t T = static_cast<int64_t>(ids.size());
    KVCache c = m.new_cache(T, DType::F32);  // f32 K/V: the comparisons are with f32 math
    std::vector<float> lg(static_cast<size_t>(T * m.config().vocab_size));
    m.forward(ids.data(), T, c, lg.data(), true);
    return lg;
}

// A dense F32 copy of an AWQ checkpoint (Wt dequantised and transposed back), to run it through
// DecoderModel until the lead wires AwqInt4 into load_weights.
void dequantize_awq_dir(const std::string& awq, const std::string& out) {
    nlohmann::json cfg = nlohmann::json::parse(read_file(awq + "/config.json"));
    const int64_t g = cfg["quantization_config"]["group_size"].get<int64_t>();
    cfg.erase("quantization_config");
    Checkpoint ck = Checkpoint::open(awq);
    SafetensorsWriter w;
    for (const std::string& n : ck.names()) {
        const std::string qs = ".qweight";
        if (n.size() > qs.size() && n.substr(n.size() - qs.size()) == qs) {
            const std::string base = n.substr(0, n.size() - qs.size());
            Linear l = bind_awq_linear(ck, base, g);
            std::vector<float> wt = awq_dequantize_t(l.weight, l.qzeros, l.scale, g, base);
            std::vector<float> wd(wt.size());
            for (int64_t k = 0; k < l.in(); ++k)
                for (int64_t o = 0; o < l.out(); ++o) wd[static_cast<size_t>(o * l.in() + k)] = wt[static_cast<size_t>(k * l.out() + o)];
            w.add(base + ".weight", Tensor::from_f32({l.out(), l.in()}, wd));
        } else if (n.find(".qzeros") == std::string::npos && n.find(".scales") == std::string::npos) {
            w.add(n, ck.get(n).to(DType::F32));
        }
    }
    fs::create_directories(out);
    w.write(out + "/model.safetensors");
    write_text_atomic(out + "/config.json", cfg.dump(2));
}

// qwen3_gqa with input channels planted at 50x: input/post-attention norm weights of a few channels
// multiplied by 50 (their activations feed q/k/v and gate/up 50x larger).
std::string make_salient_model(const std::string& out) {
    const std::string src = golden_dir("qwen3_gqa");
    Checkpoint ck = Checkpoint::open(src);
    SafetensorsWriter w;
    for (const std::string& n : ck.names()) {
        Tensor t = ck.get(n).to(DType::F32);
        if (n.find("layernorm.weight") != std::string::npos)
            for (int c : {5, 20, 41}) t.data_mut<float>()[c] *= 50.0f;
        w.add(n, t);
    }
    fs::create_directories(out);
    w.write(out + "/model.safetensors");
    fs::copy_file(src + "/config.json", out + "/config.json", fs::copy_options::overwrite_existing);
    return out;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    for (auto& i : ids) i = static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab));
    return ids;
}

std::vector<std::string> linear_names_for_test(const ModelConfig& cfg) {
    std::vector<std::string> v;
    for (int64_t l = 0; l < cfg.num_layers; ++l)
        for (const std::string& n : awq_layer_linear_names()) v.push_back(fmt::format("model.layers.{}.{}", l, n));
    return v;
}

}  // namespace

// ------------------------------------------------------------------ packing

TEST(AwqPack, OrderConstants) {
    std::vector<uint8_t> q(16 * 1);
    for (int i = 0; i < 16; ++i) q[static_cast<size_t>(i)] = static_cast<uint8_t>(i);  // out = 16 rows, in = 1
    auto p = awq_pack_qweight(q.data(), 16, 1);
    ASSERT_EQ(p.size(), 2u);
    EXPECT_EQ(static_cast<uint32_t>(p[0]), 0x75316420u);
    EXPECT_EQ(static_cast<uint32_t>(p[1]), 0xFDB9ECA8u);
    auto u = awq_unpack(p.data(), 1, 16);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(u[static_cast<size_t>(i)], i);
}

TEST(AwqPack, GoldenBitExact) {
    if (!fs::exists(golden_awq())) GTEST_SKIP() << "no " << golden_awq() << " (python3 tools/golden_awq.py)";
    SafetensorsFile g = SafetensorsFile::open(golden_awq());
    ASSERT_EQ(g.metadata().at("generator"), "tools/golden_awq.py v1");
    const std::vector<float> w = g.get("pack.w").to_f32_vector();
    const int64_t out = 64, in = 256, G = 128;
    for (const char* m : {"f32", "f16"}) {
        std::vector<float> wq = w;
        AwqQuantized qr;
        awq_pseudo_quantize(wq.data(), out, in, G, std::string(m) == "f16" ? AwqMath::F16 : AwqMath::F32, &qr);
        EXPECT_EQ(wq, g.get(fmt::format("pack.{}.wq", m)).to_f32_vector()) << m;
        EXPECT_EQ(qr.scales, g.get(fmt::format("pack.{}.scales", m)).to_f32_vector()) << m;
        const auto zg = g.get(fmt::format("pack.{}.zeros", m)).to_f32_vector();
        for (size_t i = 0; i < zg.size(); ++i) EXPECT_EQ(float(qr.zeros[i]), zg[i]) << m << " zero " << i;
        if (std::string(m) != "f16") continue;
        AwqPacked pk = awq_pack(qr);
        EXPECT_EQ(pk.qweight.shape(), g.get("pack.qweight").shape());
        EXPECT_EQ(as_vec<int32_t>(pk.qweight), as_vec<int32_t>(g.get("pack.qweight")));
        EXPECT_EQ(as_vec<int32_t>(pk.qzeros), as_vec<int32_t>(g.get("pack.qzeros")));
        EXPECT_EQ(as_vec<uint16_t>(pk.scales), as_vec<uint16_t>(g.get("pack.scales")));
        const auto deq = awq_dequantize_t(pk.qweight, pk.qzeros, pk.scales, G, "pack");
        EXPECT_EQ(deq, g.get("pack.deq").to_f32_vector());
        // the golden packed tensors unpack to the same codes
        EXPECT_EQ(awq_unpack(g.get("pack.qweight").data<int32_t>(), in, out), awq_unpack(pk.qweight.data<int32_t>(), in, out));
    }
    EXPECT_EQ(as_vec<int32_t>(g.get("order.qweight")), (std::vector<int32_t>{0x75316420, static_cast<int32_t>(0xFDB9ECA8u)}));
}

TEST(AwqPack, DequantIsQMinusZTimesS) {
    const int64_t out = 48, in = 192, G = 64, ng = in / G;
    for (AwqMath m : {AwqMath::F32, AwqMath::F16}) {
        std::vector<float> w = randn(static_cast<size_t>(out * in), 7, 0.1f), wq = w;
        AwqQuantized qr;
        awq_pseudo_quantize(wq.data(), out, in, G, m, &qr);
        AwqPacked pk = awq_pack(qr);
        const auto wt = awq_dequantize_t(pk.qweight, pk.qzeros, pk.scales, G, "w");
        for (int64_t o = 0; o < out; ++o)
            for (int64_t k = 0; k < in; ++k) {
                const size_t gi = static_cast<size_t>(o * ng + k / G);
                const float s16 = f16_to_f32(f32_to_f16(qr.scales[gi]));
                const float expect = static_cast<float>(int(qr.q[static_cast<size_t>(o * in + k)]) - int(qr.zeros[gi])) * s16;
                ASSERT_EQ(wt[static_cast<size_t>(k * out + o)], expect) << o << "," << k;
                if (m == AwqMath::F32) {
                    ASSERT_EQ(wq[static_cast<size_t>(o * in + k)],
                              static_cast<float>(int(qr.q[static_cast<size_t>(o * in + k)]) - int(qr.zeros[gi])) * qr.scales[gi]);
                }
                ASSERT_LE(qr.q[static_cast<size_t>(o * in + k)], 15);
            }
    }
}

// ------------------------------------------------------------------ int4 linear

namespace {
Linear packed_linear(int64_t out, int64_t in, int64_t G, bool bias, std::vector<float>& dense_wd) {
    std::vector<float> w = randn(static_cast<size_t>(out * in), 11, 0.05f);
    AwqQuantized qr;
    awq_pseudo_quantize(w.data(), out, in, G, AwqMath::F16, &qr);
    AwqPacked pk = awq_pack(qr);
    Linear l = make_awq_linear("t", pk.qweight, pk.qzeros, pk.scales, G,
                               bias ? Tensor::from_f32({out}, randn(static_cast<size_t>(out), 3)) : Tensor(), false);
    const auto wt = awq_dequantize_t(pk.qweight, pk.qzeros, pk.scales, G, "t");
    dense_wd.assign(static_cast<size_t>(out * in), 0);
    for (int64_t k = 0; k < in; ++k)
        for (int64_t o = 0; o < out; ++o) dense_wd[static_cast<size_t>(o * in + k)] = wt[static_cast<size_t>(k * out + o)];
    return l;
}
}  // namespace

TEST(AwqLinear, RefAndCpuMatchDense) {
    for (auto [out, in, G] : {std::tuple<int64_t, int64_t, int64_t>{136, 256, 64}, {64, 128, 128}, {200, 96, 32}}) {
        std::vector<float> wd;
        Linear l = packed_linear(out, in, G, out == 136, wd);
        Linear dense = Linear::dense("d", Tensor::from_f32({out, in}, wd), l.bias);
        for (int64_t T : {1, 3, 17}) {
            const auto x = randn(static_cast<size_t>(T * in), 5 + T);
            std::vector<float> yd(static_cast<size_t>(T * out)), yr(yd.size()), yc(yd.size());
            linear_ref(x.data(), T, dense, yd.data());
            linear_awq_ref(x.data(), T, l, yr.data());
            EXPECT_LT(rel(yr, yd), 1e-6) << out << "x" << in << " T=" << T;
            for (simd::Isa isa : {simd::Isa::Portable, simd::Isa::Avx2}) {
                if (isa == simd::Isa::Avx2 && !__builtin_cpu_supports("avx2")) continue;
                const simd::Isa before = simd::active_isa();
                simd::force_isa(isa);
                linear_awq_cpu(x.data(), T, l, yc.data());
                simd::force_isa(before);
                EXPECT_LT(rel(yc, yr), 1e-5) << simd::isa_name(isa) << " " << out << "x" << in << " T=" << T;
            }
        }
    }
}

TEST(AwqLinear, BindValidatesAndExplains) {
    const std::string dir = make_temp_dir("awq-bind");
    std::vector<float> wd;
    Linear l = packed_linear(64, 256, 128, false, wd);
    auto write = [&](const std::string& file, bool qzeros, Shape qw_shape) {
        SafetensorsWriter w;
        Tensor qw = l.weight.reshape(qw_shape);
        w.add("m.qweight", qw);
        if (qzeros) w.add("m.qzeros", l.qzeros);
        w.add("m.scales", l.scale);
        w.write(dir + "/" + file);
        return Checkpoint::open(dir + "/" + file);
    };
    {
        Checkpoint ck = write("ok.safetensors", true, {256, 8});
        Linear b = bind_awq_linear(ck, "m", 128, 256, 64);
        EXPECT_EQ(b.format, LinearFormat::AwqInt4);
        EXPECT_EQ(b.in(), 256);
        EXPECT_EQ(b.out(), 64);
        auto expect_err = [&](int64_t g, int64_t ei, int64_t eo, const std::string& sub) {
            try {
                bind_awq_linear(ck, "m", g, ei, eo);
                ADD_FAILURE() << "no error for " << sub;
            } catch (const Error& e) {
                EXPECT_NE(std::string(e.what()).find(sub), std::string::npos) << e.what();
            }
        };
        expect_err(100, -1, -1, "group size 100 does not divide in_features 256");
        expect_err(128, 512, -1, "'m.qweight': expected shape [512, 8]");
        expect_err(64, -1, -1, "'m.qzeros': expected I32 [4, 8]");
    }
    try {
        Checkpoint ck = write("noz.safetensors", false, {256, 8});
        bind_awq_linear(ck, "m", 128);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing tensor 'm.qzeros'"), std::string::npos) << e.what();
    }
    try {
        Checkpoint ck = write("shape.safetensors", true, {128, 16});
        bind_awq_linear(ck, "m", 128, 256, 64);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("found [128, 16]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(awq_check_group(96, 64, "w"), Error);
    fs::remove_all(dir);
}

TEST(AwqLinear, QuantConfig) {
    auto j = nlohmann::json::parse(
        R"({"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "GEMM"}})");
    AwqQuantConfig c = parse_awq_quant_config(j, "config.json");
    EXPECT_TRUE(c.is_awq());
    EXPECT_EQ(c.group_size, 64);
    EXPECT_EQ(c.version, "gemm");
    j["quantization_config"]["version"] = "gemv";
    EXPECT_THROW(parse_awq_quant_config(j, "config.json"), Error);
    j["quantization_config"]["version"] = "gemm";
    j["quantization_config"]["bits"] = 3;
    EXPECT_THROW(parse_awq_quant_config(j, "config.json"), Error);
    EXPECT_FALSE(parse_awq_quant_config(nlohmann::json::object(), "c").is_awq());
}

// ------------------------------------------------------------------ search

TEST(AwqSearch, ToyGroupMatchesPyTorch) {
    if (!fs::exists(golden_awq())) GTEST_SKIP() << "no golden";
    SafetensorsFile g = SafetensorsFile::open(golden_awq());
    const auto x = g.get("search.x").to_f32_vector();
    const int64_t N = 256, C = 256;
    for (const char* name : {"search", "search_duo"}) {
        Linear w1 = Linear::dense("w1", g.get("search.w1").to(DType::F32));
        Linear w2 = Linear::dense("w2", g.get("search.w2").to(DType::F32));
        AwqSearchOptions opt;
        opt.duo_scaling = std::string(name) == "search_duo";
        auto fwd = [&](std::vector<float>& out) {
            std::vector<float> a(static_cast<size_t>(N * 64)), b(static_cast<size_t>(N * 32));
            linear(x.data(), N, w1, a.data());
            linear(x.data(), N, w2, b.data());
            out.clear();
            for (int64_t t = 0; t < N; ++t) {
                out.insert(out.end(), a.begin() + t * 64, a.begin() + (t + 1) * 64);
                out.insert(out.end(), b.begin() + t * 32, b.begin() + (t + 1) * 32);
            }
        };
        const auto r = awq_search_scale(awq_act_mean(x.data(), N, C), {&w1, &w2}, fwd, opt);
        const auto losses = g.get(std::string(name) + ".losses").to_f64_vector();
        EXPECT_EQ(r.best, static_cast<int>(g.get(std::string(name) + ".best").at_f64(0))) << name;
        for (size_t i = 0; i < losses.size(); ++i) EXPECT_NEAR(r.losses[i], losses[i], 2e-3 * losses[i]) << name << " " << i;
        EXPECT_LT(rel(r.scales, g.get(std::string(name) + ".scales").to_f32_vector()), 1e-5) << name;
        EXPECT_LT(r.losses[static_cast<size_t>(r.best)], r.losses[0]) << "AWQ must beat RTN on salient channels";
    }
    // clip search on w1 with the golden scales applied
    const auto s = g.get("search.scales").to_f32_vector();
    Linear w1 = Linear::dense("w1", g.get("search.w1").to(DType::F32));
    awq_scale_columns(w1, s.data());
    std::vector<float> xs = x;
    for (int64_t t = 0; t < N; ++t)
        for (int64_t c = 0; c < C; ++c) xs[static_cast<size_t>(t * C + c)] /= s[static_cast<size_t>(c)];
    const auto mv = awq_search_clip(w1, xs.data(), N, AwqSearchOptions{});
    const auto gm = g.get("clip.max_val").to_f32_vector();
    ASSERT_EQ(mv.size(), gm.size());
    int same = 0;
    for (size_t i = 0; i < mv.size(); ++i) same += std::fabs(mv[i] - gm[i]) <= 1e-6f * std::fabs(gm[i]);
    EXPECT_GE(same, static_cast<int>(mv.size()) - 2) << "clip choices differ from the PyTorch reference";
}

TEST(AwqSearch, SalientChannelsAwqBeatsRtn) {
    // a linear group whose input has 4 channels 50x larger: AWQ's loss is far below RTN's (ratio 0)
    const int64_t N = 512, C = 256, O = 128;
    auto x = randn(static_cast<size_t>(N * C), 21);
    for (int64_t t = 0; t < N; ++t)
        for (int64_t c : {3, 64, 130, 250}) x[static_cast<size_t>(t * C + c)] *= 50.0f;
    Linear w = Linear::dense("w", Tensor::from_f32({O, C}, randn(static_cast<size_t>(O * C), 22, 0.05f)));
    auto fwd = [&](std::vector<float>& out) {
        out.resize(static_cast<size_t>(N * O));
        linear(x.data(), N, w, out.data());
    };
    const auto r = awq_search_scale(awq_act_mean(x.data(), N, C), {&w}, fwd, AwqSearchOptions{});
    EXPECT_GT(r.best, 0);
    EXPECT_GT(r.losses[0] / r.losses[static_cast<size_t>(r.best)], 1.5) << "RTN " << r.losses[0] << " AWQ " << r.losses[static_cast<size_t>(r.best)];
}

// ------------------------------------------------------------------ entries

TEST(AwqEntries, NamesAndFormats) {
    EXPECT_EQ(awq_real_linear_path("model.model.layers.0.input_layernorm.self_attn.q_proj"), "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(awq_real_linear_path("model.model.layers.3.mlp.up_proj.mlp.down_proj"), "model.layers.3.mlp.down_proj");
    EXPECT_EQ(awq_real_linear_path("model.layers.1.self_attn.v_proj"), "model.layers.1.self_attn.v_proj");
    EXPECT_EQ(awq_real_linear_path("layers.2.mlp.gate_proj"), "model.layers.2.mlp.gate_proj");
    EXPECT_THROW(awq_real_linear_path("model.layers.0.input_layernorm"), Error);
    // seed's grouped form (AutoAWQ prefix, relative subnames) and llm-awq's global names agree
    const std::string seed = R"([{"name": "model.model.layers.0.input_layernorm",
        "subnames": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], "value": [1, 2, 4]}])";
    const std::string llm = R"({"scale": [["model.layers.0.input_layernorm", ["model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj"], [1, 2, 4]]],
        "clip": [["model.layers.0.self_attn.v_proj", [[[0.5]], [[0.25]]]]]})";
    const std::string flat = R"({"model.model.layers.0.input_layernorm.self_attn.q_proj": [1, 2, 4],
        "model.model.layers.0.input_layernorm.self_attn.k_proj": [1, 2, 4],
        "model.model.layers.0.input_layernorm.self_attn.v_proj": [1, 2, 4]})";
    for (const std::string& text : {seed, llm, flat}) {
        AwqResults r = awq_entries_from_json(text, "t");
        ASSERT_EQ(r.scale.size(), 1u);
        EXPECT_EQ(r.scale[0].name, "model.layers.0.input_layernorm");
        EXPECT_EQ(r.scale[0].subnames, (std::vector<std::string>{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}));
        EXPECT_EQ(r.scale[0].value, (std::vector<float>{1, 2, 4}));
        const auto f = awq_flatten(r);
        ASSERT_EQ(f.size(), 3u);
        EXPECT_EQ(f[0].first, "model.layers.0.self_attn.q_proj");
    }
    AwqResults r = awq_entries_from_json(llm, "t");
    ASSERT_EQ(r.clip.size(), 1u);
    EXPECT_EQ(r.clip[0].out, 2);
    EXPECT_EQ(r.clip[0].n_groups, 1);
    // round trip through lmscope's JSON and safetensors
    const std::string dir = make_temp_dir("awq-entries");
    awq_save_entries(r, dir + "/e");
    for (const std::string& p : {dir + "/e.json", dir + "/e.safetensors"}) {
        AwqResults b = awq_load_entries(p);
        ASSERT_EQ(b.scale.size(), 1u) << p;
        EXPECT_EQ(b.scale[0].value, r.scale[0].value);
        EXPECT_EQ(b.scale[0].subnames, r.scale[0].subnames);
        ASSERT_EQ(b.clip.size(), 1u);
        EXPECT_EQ(b.clip[0].max_val, r.clip[0].max_val);
    }
    // different values for linears sharing a previous op cannot be folded
    EXPECT_THROW(awq_entries_from_json(R"({"model.layers.0.self_attn.q_proj": [1], "model.layers.0.self_attn.k_proj": [2]})", "t"), Error);
    fs::remove_all(dir);
}

TEST(AwqEntries, ApplyingScalesKeepsTheFloatModel) {
    const std::string src = golden_dir("qwen3_gqa");
    const ModelConfig cfg = ModelConfig::load(src);
    AwqResults r;
    for (int64_t l = 0; l < cfg.num_layers; ++l) {
        auto pos = [&](int64_t n, uint64_t seed) {
            auto v = randn(static_cast<size_t>(n), seed, 0.7f);
            for (float& s : v) s = std::exp(s);
            return v;
        };
        const std::string p = fmt::format("model.model.layers.{}.", l);  // AutoAWQ's prefix, read too
        r.scale.push_back({awq_canonical_path(p + "input_layernorm"), {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, pos(cfg.hidden_size, 100 + l)});
        r.scale.push_back({awq_canonical_path(p + "post_attention_layernorm"), {"mlp.gate_proj", "mlp.up_proj"}, pos(cfg.hidden_size, 200 + l)});
        r.scale.push_back({awq_canonical_path(p + "mlp.up_proj"), {"mlp.down_proj"}, pos(cfg.intermediate_size, 300 + l)});
    }
    const std::string dir = make_temp_dir("awq-apply");
    awq_apply_entries_checkpoint(src, r, dir + "/scaled", false);
    const auto ids = random_ids(20, cfg.vocab_size, 3);
    const auto a = logits_of(src, ids), b = logits_of(dir + "/scaled", ids);
    EXPECT_LT(rel(b, a), 1e-5);
    // and the weights did change
    Checkpoint c0 = Checkpoint::open(src), c1 = Checkpoint::open(dir + "/scaled");
    EXPECT_NE(c0.get("model.layers.0.mlp.down_proj.weight").to_f32_vector(), c1.get("model.layers.0.mlp.down_proj.weight").to_f32_vector());
    fs::remove_all(dir);
}

// ------------------------------------------------------------------ end to end

TEST(AwqQuantize, GoldenCheckpointsAwqAndRtn) {
    const char* carry = std::getenv("LMSCOPE_AWQ_CARRY");  // also prepares the GPU check's inputs
    const std::string dir = carry ? std::string(carry) : make_temp_dir("awq-e2e");
    fs::create_directories(dir);
    const std::string salient = make_salient_model(dir + "/qwen3_salient");
    nlohmann::json summary;
    for (const std::string& model : {golden_dir("qwen3_gqa"), golden_dir("qwen2_bias"), salient}) {
        const std::string tag = fs::path(model).filename().string();
        const ModelConfig cfg = ModelConfig::load(model);
        const auto ids = random_ids(16 * 64, cfg.vocab_size, 9);
        std::map<std::string, double> err;
        const auto ref = logits_of(model, random_ids(24, cfg.vocab_size, 4));
        for (const std::string method : {"awq", "rtn"}) {
            AwqOptions o;
            o.method = method;
            o.group_size = cfg.intermediate_size % 32 == 0 ? 32 : 16;
            o.calib_ids = ids;
            o.n_samples = 16;
            o.seq_len = 64;
            o.progress = false;
            const std::string out = dir + "/" + tag + "_" + method;
            const auto s = awq_quantize_checkpoint(model, out, o);
            const auto qc = nlohmann::json::parse(read_file(out + "/config.json"))["quantization_config"];
            EXPECT_EQ(qc["quant_method"], "awq");
            EXPECT_EQ(qc["version"], "gemm");
            EXPECT_EQ(qc["group_size"], o.group_size);
            EXPECT_EQ(parse_awq_quant_config(nlohmann::json::parse(read_file(out + "/config.json")), "c").group_size, o.group_size);
            Checkpoint ck = Checkpoint::open(out);
            for (const std::string& n : linear_names_for_test(cfg)) (void)bind_awq_linear(ck, n, o.group_size);
            if (method == "awq") {
                EXPECT_TRUE(fs::exists(out + "/awq/report.json"));
                AwqResults e = awq_load_entries(out + "/awq/scales.safetensors");
                EXPECT_EQ(static_cast<int64_t>(e.scale.size()), cfg.num_layers * 3);  // GQA: no v -> o
                summary[tag]["report"] = s.report["summary"];
                summary[tag]["seconds_per_layer"] = s.layer_reports.empty() ? 0.0 : s.layer_reports[0].seconds;
                if (tag == "qwen3_salient") {  // random weights and inputs give AWQ little to protect
                    EXPECT_GT(s.report["summary"]["rtn_over_awq"].get<double>(), 1.5) << tag;
                }
            }
            dequantize_awq_dir(out, out + "_dense");
            const auto q = logits_of(out + "_dense", random_ids(24, cfg.vocab_size, 4));
            err[method] = rel(q, ref);
            summary[tag]["logits_rel_err_" + method] = err[method];
        }
        EXPECT_LT(err["awq"], 0.5) << tag;
        if (tag == "qwen3_salient") {
            EXPECT_LT(err["awq"], err["rtn"]) << tag;
        }
    }
    std::printf("AWQ summary: %s\n", summary.dump(1).c_str());
    if (carry) write_text_atomic(dir + "/summary.json", summary.dump(1));
    else fs::remove_all(dir);
}

TEST(AwqQuantize, BadInputs) {
    AwqOptions o;
    o.progress = false;
    o.group_size = 128;  // does not divide hidden 64
    o.calib_ids = random_ids(128, 256, 1);
    const std::string dir = make_temp_dir("awq-bad");
    try {
        awq_quantize_checkpoint(golden_dir("qwen3_gqa"), dir + "/o", o);
        ADD_FAILURE();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--group-size 128 does not divide hidden_size"), std::string::npos) << e.what();
    }
    o.group_size = 32;
    o.method = "gptq";
    EXPECT_THROW(awq_quantize_checkpoint(golden_dir("qwen3_gqa"), dir + "/o", o), UsageError);
    o.method = "awq";
    o.seq_len = 512;  // 128 ids: not one block
    EXPECT_THROW(awq_quantize_checkpoint(golden_dir("qwen3_gqa"), dir + "/o", o), Error);
    EXPECT_FALSE(fs::exists(dir + "/o"));
    fs::remove_all(dir);
}

// Timing of the search on a random 256-hidden Qwen3 (run with --gtest_also_run_disabled_tests).
TEST(AwqQuantize, DISABLED_TimingRandomQwen3) {
    nlohmann::json cfg = nlohmann::json::parse(read_file(golden_dir("qwen3_gqa") + "/config.json"));
    cfg["hidden_size"] = 512;
    cfg["intermediate_size"] = 1536;
    cfg["num_hidden_layers"] = 2;
    cfg["num_attention_heads"] = 8;
    cfg["num_key_value_heads"] = 4;
    cfg["head_dim"] = 64;
    const std::string dir = make_temp_dir("awq-time");
    RandomInitOptions ro;
    ro.dtype = DType::F32;
    ro.progress = false;
    write_random_checkpoint(cfg, dir + "/m", ro);
    AwqOptions o;
    o.calib_ids = random_ids(32 * 512, 256, 2);
    o.n_samples = 32;
    o.progress = false;
    const auto s = awq_quantize_checkpoint(dir + "/m", dir + "/q", o);
    for (const auto& r : s.layer_reports) std::printf("layer %lld: %.2fs\n", static_cast<long long>(r.layer), r.seconds);
    std::printf("total %.2fs, summary %s\n", s.seconds, s.report["summary"].dump().c_str());
    fs::remove_all(dir);
}

// DecoderModel::load(dir, false), for a model that only feeds a GPU upload (--device cuda), makes none of
// the CPU decode's copies (the AWQ column tiles), and the model still runs on the CPU, reading the
// checkpoint's layout: decode logits within 2e-4 of the model with the copies (the tiled GEMV rounds its
// input to int16; 5-9e-5 measured).
TEST(AwqQuantize, LoadWithoutCpuCopies) {
    const std::string model = golden_dir("qwen3_gqa"), dir = make_temp_dir("awq-nocopies");
    const ModelConfig cfg = ModelConfig::load(model);
    AwqOptions o;
    o.method = "rtn";
    o.group_size = cfg.intermediate_size % 32 == 0 ? 32 : 16;
    o.progress = false;
    o.report = false;
    awq_quantize_checkpoint(model, dir + "/q", o);
    DecoderModel with = DecoderModel::load(dir + "/q"), without = DecoderModel::load(dir + "/q", false);
    const auto tiled = [](const DecoderModel& m) {
        int n = 0;
        for (const LayerWeights& L : m.weights().layers)
            for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
                n += l->qweight_tiles.defined();
        return n;
    };
    EXPECT_EQ(tiled(without), 0);
    EXPECT_GT(tiled(with), 0);
    const std::vector<int32_t> ids = random_ids(12, cfg.vocab_size, 5);
    const int64_t T = static_cast<int64_t>(ids.size()), V = cfg.vocab_size;
    std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
    KVCache ca = with.new_cache(T, DType::F32), cb = without.new_cache(T, DType::F32);
    for (int64_t t = 0; t < T; ++t) {  // token by token: the decode GEMVs
        with.forward(&ids[static_cast<size_t>(t)], 1, ca, a.data(), false);
        without.forward(&ids[static_cast<size_t>(t)], 1, cb, b.data(), false);
        EXPECT_LE(lmscope::testing::rel_error(a, std::vector<double>(b.begin(), b.end())), 2e-4)
            << "token " << t;
    }
    fs::remove_all(dir);
}
