// Block-FP8 checkpoints end to end: golden FP8 checkpoints made in PyTorch on the GPU machine
// (tools/golden_fp8.py; no dimension a multiple of 128; F32 and BF16 scales) against transformers'
// float64 logits on the dequantised weights; `lmscope quantize --fp8` bit-exact against PyTorch's
// quantisation of the same source and its output read back by transformers; quantize -> dequantize
// round trips; --include-lm-head, --skip, sharding; the error and warning messages (missing scale,
// bad scale shapes, the seed-002 config that lists self_attn in modules_to_not_convert).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/inspect.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"
#include "quant/fp8.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;
using lmscope::testing::rel_error;
using lmscope::testing::run_cli;

namespace fs = std::filesystem;

namespace {

constexpr double kTol = 1e-4;

std::vector<int32_t> ids_of(const SafetensorsFile& g) {
    std::vector<int32_t> ids;
    for (double d : g.get("input_ids").to_f64_vector()) ids.push_back(static_cast<int32_t>(d));
    return ids;
}

std::vector<float> logits_of(DecoderModel& m, const std::vector<int32_t>& ids) {
    const int64_t T = static_cast<int64_t>(ids.size()), V = m.config().vocab_size;
    KVCache c = m.new_cache(T, DType::F32);  // f32 K/V: the comparisons are with f32 math
    std::vector<float> out(static_cast<size_t>(T * V));
    m.forward(ids.data(), T, c, out.data(), true);
    return out;
}

std::vector<double> to_f64(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// copies a model folder, letting `edit` rewrite the tensors and `edit_cfg` the config
void copy_model(const std::string& from, const std::string& to,
                const std::function<void(const Checkpoint&, SafetensorsWriter&)>& edit,
                const std::function<void(nlohmann::json&)>& edit_cfg = nullptr) {
    fs::create_directories(to);
    nlohmann::json cfg = nlohmann::json::parse(read_file(from + "/config.json"));
    if (edit_cfg) edit_cfg(cfg);
    write_text_atomic(to + "/config.json", cfg.dump(2));
    Checkpoint ck = Checkpoint::open(from);
    SafetensorsWriter w;
    edit(ck, w);
    w.write(to + "/model.safetensors");
}

void add_all_except(const Checkpoint& ck, SafetensorsWriter& w, const std::set<std::string>& except) {
    for (const auto& n : ck.names())
        if (!except.count(n)) w.add(n, ck.get(n));
}

std::string load_error(const std::string& dir) {
    try {
        DecoderModel::load(dir);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

class Fp8Golden : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(Fp8Golden, LogitsMatchTransformersOnDequantizedWeights) {
    const std::string dir = golden_dir(GetParam());
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    ASSERT_EQ(g.metadata().at("generator"), "tools/golden_fp8.py v1");
    const std::vector<int32_t> ids = ids_of(g);
    for (bool ref : {false, true}) {
        set_reference_mode(ref);
        DecoderModel m = DecoderModel::load(dir);
        EXPECT_EQ(m.weights().num_fp8_linears, 14);
        EXPECT_TRUE(m.weights().warnings.empty());
        const Linear& q = m.weights().layers[0].q;
        EXPECT_EQ(q.format, LinearFormat::Fp8Block);
        EXPECT_EQ(q.weight.dtype(), DType::F8_E4M3);
        EXPECT_TRUE(q.weight.borrowed());  // 1 byte per weight, straight from the mmap'ed file
        EXPECT_EQ(m.weights().lm_head.format, LinearFormat::Dense);
        const double e = rel_error(logits_of(m, ids), g.get("logits").to_f64_vector());
        EXPECT_LE(e, kTol) << GetParam() << (ref ? " reference" : " fast");
        fmt::print("  {} ({}): logits rel err vs transformers f64 on dequantised weights {:.3g}; FP8 vs source "
                   "(transformers) {}\n",
                   GetParam(), ref ? "ref" : "fast", e, g.metadata().at("rel_fp8_vs_source"));
    }
    set_reference_mode(false);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, Fp8Golden, ::testing::Values("fp8_qwen3", "fp8_qwen3_tied"));

// `lmscope quantize --fp8` on the BF16 source gives the bits PyTorch produced (F32-scale case).
TEST(Fp8Quantize, BitExactVsPyTorchQuantization) {
    const std::string tmp = make_temp_dir("fp8q");
    auto r = run_cli(fmt::format("quantize --fp8 {} {}/q --no-progress", golden_dir("fp8_src_qwen3"), tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    Checkpoint ours = Checkpoint::open(tmp + "/q"), torch = Checkpoint::open(golden_dir("fp8_qwen3"));
    EXPECT_EQ(ours.names(), torch.names());
    int fp8 = 0;
    for (const auto& n : torch.names()) {
        Tensor a = ours.get(n), b = torch.get(n);
        ASSERT_EQ(a.dtype(), b.dtype()) << n;
        ASSERT_EQ(a.shape(), b.shape()) << n;
        EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << n;
        fp8 += a.dtype() == DType::F8_E4M3;
    }
    EXPECT_EQ(fp8, 14);
    nlohmann::json c = nlohmann::json::parse(read_file(tmp + "/q/config.json"));
    EXPECT_EQ(c["quantization_config"],
              nlohmann::json::parse(R"({"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                        "weight_block_size": [128, 128], "modules_to_not_convert": ["lm_head"]})"));
    fs::remove_all(tmp);
}

// Our quantize output (of tests/golden/qwen3_gqa and qwen3_tied, written before the GPU run) read by
// transformers 5.17 itself (FineGrainedFP8Config(dequantize=True)) and by a float64 dequantised model.
TEST(Fp8Quantize, OurOutputLoadedByTransformersMatchesLmscope) {
    for (const std::string c : {"qwen3_gqa", "qwen3_tied"}) {
        const std::string dir = golden_dir("fp8_ours_" + c);
        SafetensorsFile g = SafetensorsFile::open(dir + "/golden_check.safetensors");
        EXPECT_EQ(g.metadata().at("torch_requantize_code_differences").substr(0, 5), "0 of ");
        EXPECT_EQ(g.metadata().at("torch_requantize_scale_differences"), "0");
        // the folder in the repo is what the GPU machine read: re-quantising gives the same bytes
        const std::string tmp = make_temp_dir("fp8o");
        auto r = run_cli(fmt::format("quantize --fp8 {} {}/q --no-progress", golden_dir(c), tmp));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        EXPECT_EQ(read_file(tmp + "/q/model.safetensors"), read_file(dir + "/model.safetensors"));
        fs::remove_all(tmp);

        DecoderModel m = DecoderModel::load(dir);
        const std::vector<float> ours = logits_of(m, ids_of(g));
        const double e64 = rel_error(ours, g.get("logits_f64_dequant").to_f64_vector());
        const double ehf = rel_error(ours, g.get("logits_hf_dequant").to_f64_vector());
        EXPECT_LE(e64, kTol) << c;
        EXPECT_LE(ehf, kTol) << c;
        // and versus the unquantised source model's golden logits (quality, not a tolerance)
        SafetensorsFile src = SafetensorsFile::open(golden_dir(c) + "/golden.safetensors");
        fmt::print("  fp8_ours_{}: vs f64 dequant {:.3g}, vs transformers loading it {:.3g}, FP8 vs source {:.4g}\n",
                   c, e64, ehf, rel_error(ours, src.get("logits").to_f64_vector()));
    }
}

TEST(Fp8Quantize, RoundTripThroughDequantize) {
    const std::string tmp = make_temp_dir("fp8rt");
    const std::string src = golden_dir("fp8_src_qwen3");
    ASSERT_EQ(run_cli(fmt::format("quantize --fp8 {} {}/q --no-progress", src, tmp)).exit_code, 0);
    auto r = run_cli(fmt::format("dequantize {}/q {}/d --dtype f32 --no-progress", tmp, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    nlohmann::json c = nlohmann::json::parse(read_file(tmp + "/d/config.json"));
    EXPECT_FALSE(c.contains("quantization_config"));
    Checkpoint d = Checkpoint::open(tmp + "/d"), s = Checkpoint::open(src), q = Checkpoint::open(tmp + "/q");
    EXPECT_EQ(d.names(), s.names());  // scales gone, nothing else lost
    // dequantised weights are exactly code * scale; the round trip error is E4M3's
    const std::string w = "model.layers.1.mlp.down_proj.weight";
    std::vector<float> dq = d.get(w).to_f32_vector(), orig = s.get(w).to_f32_vector();
    std::vector<float> ref(dq.size());
    Tensor codes = q.get(w), sc = q.get(w + "_scale_inv");
    fp8_block_dequantize_ref(codes.data<uint8_t>(), sc.data<float>(), codes.dim(0), codes.dim(1), {}, ref.data());
    EXPECT_EQ(dq, ref);
    const double rt = rel_error(dq, to_f64(orig));
    EXPECT_LT(rt, 0.04);
    EXPECT_GT(rt, 0.005);
    // the FP8 model and its f32 dequantisation give the same logits
    DecoderModel mq = DecoderModel::load(tmp + "/q"), md = DecoderModel::load(tmp + "/d");
    std::vector<int32_t> ids = {1, 5, 77, 150, 299, 3, 42, 8, 8, 100};
    EXPECT_LE(rel_error(logits_of(mq, ids), to_f64(logits_of(md, ids))), 1e-5);
    // bf16 (default) dequantisation: weights are the RNE bf16 of code * scale
    ASSERT_EQ(run_cli(fmt::format("dequantize {}/q {}/d16 --no-progress", tmp, tmp)).exit_code, 0);
    Checkpoint d16 = Checkpoint::open(tmp + "/d16");
    EXPECT_EQ(d16.info(w).dtype, DType::BF16);
    EXPECT_EQ(d16.get(w).to_f32_vector(), Tensor::from_f32(codes.shape(), ref).to(DType::BF16).to_f32_vector());
    fs::remove_all(tmp);
}

TEST(Fp8Quantize, IncludeLmHeadSkipAndShards) {
    const std::string tmp = make_temp_dir("fp8opt");
    for (const std::string c : {"fp8_src_qwen3", "fp8_src_qwen3_tied"}) {
        const std::string src = golden_dir(c);
        auto r = run_cli(fmt::format("quantize --fp8 {} {}/h --include-lm-head --no-progress", src, tmp));
        ASSERT_EQ(r.exit_code, 0) << r.output;
        ASSERT_EQ(run_cli(fmt::format("dequantize {}/h {}/hd --dtype f32 --no-progress", tmp, tmp)).exit_code, 0);
        DecoderModel mh = DecoderModel::load(tmp + "/h"), mhd = DecoderModel::load(tmp + "/hd");
        EXPECT_EQ(mh.weights().lm_head.format, LinearFormat::Fp8Block) << c;
        EXPECT_EQ(mh.weights().num_fp8_linears, 15);
        EXPECT_FALSE(mh.config().tie_word_embeddings);  // a tied head is untied into its own FP8 copy
        std::vector<int32_t> ids = {1, 2, 3, 50, 60, 70, 200, 250};
        EXPECT_LE(rel_error(logits_of(mh, ids), to_f64(logits_of(mhd, ids))), 1e-5) << c;
        fs::remove_all(tmp + "/h");
        fs::remove_all(tmp + "/hd");
    }
    // --skip keeps matching modules dense and lists them in modules_to_not_convert
    const std::string src = golden_dir("fp8_src_qwen3");
    auto r = run_cli(fmt::format("quantize --fp8 {} {}/s --skip self_attn --skip mlp.gate --no-progress", src, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("--skip 'mlp.gate' matches no linear module"), std::string::npos) << r.output;
    DecoderModel ms = DecoderModel::load(tmp + "/s");
    EXPECT_EQ(ms.weights().num_fp8_linears, 6);
    EXPECT_EQ(ms.weights().layers[1].o.format, LinearFormat::Dense);
    EXPECT_EQ(ms.weights().layers[1].gate.format, LinearFormat::Fp8Block);
    EXPECT_TRUE(ms.weights().warnings.empty());
    // sharded output with an index; same model
    r = run_cli(fmt::format("quantize --fp8 {} {}/sh --max-shard-bytes 200000 --no-progress", src, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(tmp + "/sh/model.safetensors.index.json"));
    EXPECT_TRUE(fs::exists(tmp + "/sh/model-00001-of-00004.safetensors") ||
                fs::exists(tmp + "/sh/model-00001-of-00003.safetensors") ||
                fs::exists(tmp + "/sh/model-00001-of-00005.safetensors"));
    DecoderModel msh = DecoderModel::load(tmp + "/sh");
    DecoderModel mg = DecoderModel::load(golden_dir("fp8_qwen3"));
    std::vector<int32_t> ids = {4, 8, 15, 16, 23, 42};
    EXPECT_EQ(logits_of(msh, ids), logits_of(mg, ids));
    // already quantised input
    r = run_cli(fmt::format("quantize --fp8 {} {}/again --no-progress", golden_dir("fp8_qwen3"), tmp));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("config.json already has quantization_config (quant_method \"fp8\"): dequantize it first"),
              std::string::npos)
        << r.output;
    r = run_cli(fmt::format("quantize {} {}/x", src, tmp));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("choose exactly one method: --fp8 or --awq"), std::string::npos) << r.output;
    r = run_cli(fmt::format("dequantize {} {}/x", src, tmp));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("no F8_E4M3 weights: not an FP8 checkpoint"), std::string::npos) << r.output;
    fs::remove_all(tmp);
}

// ---------------------------------------------------------------- messages

TEST(Fp8Errors, MissingScaleNamesTheTensor) {
    const std::string tmp = make_temp_dir("fp8e");
    const std::string w = "model.layers.0.self_attn.q_proj.weight";
    copy_model(golden_dir("fp8_qwen3"), tmp + "/m",
               [&](const Checkpoint& ck, SafetensorsWriter& wr) { add_all_except(ck, wr, {w + "_scale_inv"}); });
    const std::string e = load_error(tmp + "/m");
    EXPECT_NE(e.find("FP8 weight 'model.layers.0.self_attn.q_proj.weight' (F8_E4M3 [120, 200]) has no scale: expected "
                     "'model.layers.0.self_attn.q_proj.weight_scale_inv' (or "
                     "'model.layers.0.self_attn.q_proj.weight_scale') of shape [1, 2] with 128x128 blocks"),
              std::string::npos)
        << e;
    auto r = run_cli("inspect --summary " + tmp + "/m");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("error [fp8-missing-scale]"), std::string::npos) << r.output;
    r = run_cli(fmt::format("dequantize {}/m {}/d", tmp, tmp));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("has no scale: expected 'model.layers.0.self_attn.q_proj.weight_scale_inv'"),
              std::string::npos);
    fs::remove_all(tmp);
}

TEST(Fp8Errors, BadScaleShapesSayWhatIsExpected) {
    const std::string tmp = make_temp_dir("fp8s");
    const std::string w = "model.layers.0.mlp.gate_proj.weight";  // [328, 200] -> scale [3, 2]
    struct Case {
        Shape shape;
        std::string fragment;
    };
    for (const Case& c : {Case{{328}, "scale [328] for weight [328, 200] with 128x128 blocks: expected [3, 2] (one "
                                      "scale per block: ceil(328/128), ceil(200/128)); [328] is a per-row "
                                      "(per-output-channel) scale, one per output row, not a block scale"},
                          Case{{328, 1}, "[328, 1] is a per-row (per-output-channel) scale"},
                          Case{{2, 3}, "scale [2, 3] for weight [328, 200] with 128x128 blocks: expected [3, 2]"},
                          Case{{3, 2, 1}, "scale [3, 2, 1] for weight [328, 200]"}}) {
        copy_model(golden_dir("fp8_qwen3"), tmp + "/m", [&](const Checkpoint& ck, SafetensorsWriter& wr) {
            add_all_except(ck, wr, {w + "_scale_inv"});
            wr.add(w + "_scale_inv", Tensor::zeros(DType::F32, c.shape));
        });
        const std::string e = load_error(tmp + "/m");
        EXPECT_NE(e.find("tensor 'model.layers.0.mlp.gate_proj.weight_scale_inv': scale "),
                  std::string::npos)
            << e;
        EXPECT_NE(e.find(c.fragment), std::string::npos) << e;
        EXPECT_NE(e.find("(block size from quantization_config.weight_block_size)"), std::string::npos) << e;
        InspectReport rep = inspect_checkpoint(tmp + "/m");
        EXPECT_TRUE(rep.has_errors());
        fs::remove_all(tmp + "/m");
    }
    // an I32 scale
    copy_model(golden_dir("fp8_qwen3"), tmp + "/m", [&](const Checkpoint& ck, SafetensorsWriter& wr) {
        add_all_except(ck, wr, {w + "_scale_inv"});
        wr.add(w + "_scale_inv", Tensor::zeros(DType::I32, {3, 2}));
    });
    EXPECT_NE(load_error(tmp + "/m").find("scale 'model.layers.0.mlp.gate_proj.weight_scale_inv' of FP8 weight "
                                          "'model.layers.0.mlp.gate_proj.weight' has dtype I32, expected F32, BF16 or F16"),
              std::string::npos);
    fs::remove_all(tmp);
}

// F16 scales and the `weight_scale` spelling are read too.
TEST(Fp8Errors, F16ScalesAndWeightScaleName) {
    const std::string tmp = make_temp_dir("fp8f");
    copy_model(golden_dir("fp8_qwen3_tied"), tmp + "/m", [&](const Checkpoint& ck, SafetensorsWriter& wr) {
        for (const auto& n : ck.names()) {
            Tensor t = ck.get(n);
            if (n.size() > 10 && n.compare(n.size() - 10, 10, "_scale_inv") == 0)
                wr.add(n.substr(0, n.size() - 4), t.to(DType::F16));  // bf16 -> f16 is exact for these
            else
                wr.add(n, t);
        }
    });
    DecoderModel m = DecoderModel::load(tmp + "/m");
    EXPECT_EQ(m.weights().num_fp8_linears, 14);
    SafetensorsFile g = SafetensorsFile::open(golden_dir("fp8_qwen3_tied") + "/golden.safetensors");
    EXPECT_LE(rel_error(logits_of(m, ids_of(g)), g.get("logits").to_f64_vector()), 1e-3);
    fs::remove_all(tmp);
}

// Seed 002: modules_to_not_convert lists self_attn although q/k/v/o are FP8 with block scales.
// lmscope follows the tensors, runs correctly and warns once, naming the setting, the module and
// what the checkpoint holds; inspect shows the same warning and the layout.
TEST(Fp8Errors, Seed002ContradictingModulesToNotConvert) {
    const std::string tmp = make_temp_dir("fp8seed");
    copy_model(
        golden_dir("fp8_qwen3"), tmp + "/m", [&](const Checkpoint& ck, SafetensorsWriter& wr) { add_all_except(ck, wr, {}); },
        [](nlohmann::json& c) { c["quantization_config"]["modules_to_not_convert"] = {"lm_head", "self_attn"}; });
    DecoderModel m = DecoderModel::load(tmp + "/m");
    ASSERT_EQ(m.weights().warnings.size(), 1u);
    const std::string& w = m.weights().warnings[0];
    EXPECT_NE(w.find("quantization_config.modules_to_not_convert lists 'self_attn', but the checkpoint holds "
                     "block-FP8 weights for the 8 module(s) it matches (model.layers.0.self_attn.q_proj.weight "
                     "F8_E4M3 [120, 200] with weight_scale_inv F32 [1, 2] and 7 more): lmscope follows the tensors "
                     "and runs them as FP8"),
              std::string::npos)
        << w;
    EXPECT_EQ(m.weights().num_fp8_linears, 14);
    SafetensorsFile g = SafetensorsFile::open(golden_dir("fp8_qwen3") + "/golden.safetensors");
    EXPECT_LE(rel_error(logits_of(m, ids_of(g)), g.get("logits").to_f64_vector()), kTol);

    auto r = run_cli("inspect --summary " + tmp + "/m");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("warning [fp8-config-contradiction] quantization_config.modules_to_not_convert lists "
                            "'self_attn'"),
              std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("self_attn.q_proj  FP8 e4m3, 128x128 block scales (weight_scale_inv F32)  (2/2)"),
              std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find("unexpected-tensor"), std::string::npos) << r.output;

    // the other direction: listed nowhere but stored dense, and FP8 without any quantization_config
    copy_model(golden_dir("fp8_qwen3"), tmp + "/n", [&](const Checkpoint& ck, SafetensorsWriter& wr) {
        const std::string d = "model.layers.1.mlp.down_proj.weight";
        add_all_except(ck, wr, {d, d + "_scale_inv"});
        std::vector<float> v(328 * 200);
        Tensor c = ck.get(d), s = ck.get(d + "_scale_inv");
        fp8_block_dequantize_ref(c.data<uint8_t>(), s.data<float>(), 200, 328, {}, v.data());
        wr.add(d, Tensor::from_f32({200, 328}, v).to(DType::BF16));
    }, [](nlohmann::json& c) { c.erase("quantization_config"); });
    DecoderModel n = DecoderModel::load(tmp + "/n");
    ASSERT_EQ(n.weights().warnings.size(), 1u);
    EXPECT_NE(n.weights().warnings[0].find("config.json has no quantization_config, but 13 linear(s) are stored as "
                                           "F8_E4M3"),
              std::string::npos)
        << n.weights().warnings[0];
    fs::remove_all(tmp);
}

// DecoderModel::load(dir, false), for a model that only feeds a GPU upload (--device cuda), makes none of
// the CPU decode's copies (the FP8 4-row layout, made at the AVX-512 level), and the model still runs on
// the CPU, reading the checkpoint's row-major codes: decode logits within 1e-5 of the model with them.
// fp8_ours_qwen3_gqa: hidden 64, so the layers whose input is the hidden state take the layout.
TEST(Fp8Golden, LoadWithoutCpuCopies) {
    const std::string dir = golden_dir("fp8_ours_qwen3_gqa");
    DecoderModel with = DecoderModel::load(dir), without = DecoderModel::load(dir, false);
    const auto copies = [](const DecoderModel& m) {
        int n = 0;
        for (const LayerWeights& L : m.weights().layers)
            for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
                n += l->fp8_rows4.defined();
        return n;
    };
    EXPECT_EQ(copies(without), 0);
    if (simd::active_isa() == simd::Isa::Avx512) {
        EXPECT_GT(copies(with), 0);
    }
    const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};
    const int64_t T = static_cast<int64_t>(ids.size()), V = with.config().vocab_size;
    std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
    KVCache ca = with.new_cache(T, DType::F32), cb = without.new_cache(T, DType::F32);
    for (int64_t t = 0; t < T; ++t) {  // token by token: the decode GEMVs
        with.forward(&ids[static_cast<size_t>(t)], 1, ca, a.data(), false);
        without.forward(&ids[static_cast<size_t>(t)], 1, cb, b.data(), false);
        EXPECT_LE(rel_error(a, to_f64(b)), 1e-5) << "token " << t;
    }
}
