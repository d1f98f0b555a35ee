// The CUDA decoder against transformers (float64 golden logits of tests/golden/*, made by
// tools/gen_golden.py) and against itself: prefill logits within 1e-3 relative error (exact mode: f32
// activations; fast mode, 16-bit checkpoints: bf16 activations into cuBLAS, reported and held to
// 1e-2); token-by-token decode through the GPU KV cache, batched decode of several sequences and the
// graph-chained greedy loop give the logits / tokens of a full prefill. FP8-block and AWQ int4
// checkpoints (golden FP8 files; AWQ made here with lmscope's RTN quantiser) against the CPU decoder
// on the same weights: exact mode (f32 activations) within 1e-3, fast mode (16-bit GEMMs when the
// dense weights are 16-bit) within 1e-2, decode steps too. A traced CUDA prefill records the CPU
// trace's tensor names with matching statistics. Skips without CUDA or a GPU.
#include <gtest/gtest.h>

#include "cuda/cuda_api.h"

#ifndef LMSCOPE_HAVE_CUDA
TEST(CudaModel, GoldenLogits) { GTEST_SKIP() << "built without CUDA"; }
#else

#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/random_init.h"
#include "model/sampler.h"
#include "quant/awq_quantize.h"
#include "test_util.h"
#include "trace/diff.h"
#include "trace/recorder.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::rel_error;

namespace {

std::vector<int32_t> golden_ids(const SafetensorsFile& g) {
    std::vector<int32_t> ids;
    for (double d : g.get("input_ids").to_f64_vector()) ids.push_back(static_cast<int32_t>(d));
    return ids;
}

class CudaGolden : public ::testing::TestWithParam<std::string> {
protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
};

}  // namespace

TEST_P(CudaGolden, LogitsMatchTransformers) {
    const std::string dir = golden_dir(GetParam());
    DecoderModel host = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    const std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = host.config().vocab_size;
    const std::vector<double> ref = g.get("logits").to_f64_vector();
    for (bool exact : {true, false}) {
        cuda::CudaDecoder dev(host, {exact, true});
        dev.reset(1, T);
        std::vector<float> logits(static_cast<size_t>(T * V));
        dev.prefill(0, ids.data(), T, logits.data(), true);
        const double e = rel_error(logits, ref);
        fmt::print("  cuda {} {}: T={} logits rel err {:.3g}\n", GetParam(), exact ? "exact" : "fast", T, e);
        EXPECT_LE(e, exact ? 1e-3 : 1e-2) << GetParam() << (exact ? " exact" : " fast");
    }
}

// Prefill 5, then decode one token at a time (graph replays after the first step) for B = 3 copies
// of the sequence: every copy's logits match a full prefill.
TEST_P(CudaGolden, BatchedDecodeMatchesPrefill) {
    const std::string dir = golden_dir(GetParam());
    DecoderModel host = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    const std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = host.config().vocab_size;
    cuda::CudaDecoder dev(host, {true, true});
    dev.reset(1, T);
    std::vector<float> full(static_cast<size_t>(T * V));
    dev.prefill(0, ids.data(), T, full.data(), true);

    const int B = 3;
    const int64_t P = 5;
    dev.reset(B, T);
    std::vector<float> step(static_cast<size_t>(B * V));
    for (int b = 0; b < B; ++b) dev.prefill(b, ids.data(), P, nullptr, false);
    double worst = 0;
    for (int64_t t = P; t < T; ++t) {
        std::vector<int32_t> in(B, ids[static_cast<size_t>(t)]);
        dev.decode(in.data(), step.data());
        for (int b = 0; b < B; ++b) {
            std::vector<float> got(step.begin() + b * V, step.begin() + (b + 1) * V);
            std::vector<double> want(full.begin() + t * V, full.begin() + (t + 1) * V);
            worst = std::max(worst, rel_error(got, want));
        }
    }
    EXPECT_LE(worst, 1e-5);
    EXPECT_EQ(dev.length(2), T);

    // greedy chain on the GPU == host argmax loop
    dev.reset(1, T + 8);
    std::vector<float> last(static_cast<size_t>(V));
    dev.prefill(0, ids.data(), T, last.data(), false);
    int32_t first = argmax(last.data(), V);
    std::vector<int32_t> chain(8);
    dev.decode_greedy(&first, 8, chain.data());
    dev.reset(1, T + 8);
    dev.prefill(0, ids.data(), T, last.data(), false);
    int32_t next = first;
    for (int i = 0; i < 8; ++i) {
        dev.decode(&next, last.data());
        next = argmax(last.data(), V);
        EXPECT_EQ(next, chain[static_cast<size_t>(i)]) << "step " << i;
    }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaGolden,
                         ::testing::Values("qwen3_gqa", "qwen3_gqa_bf16", "qwen3_tied", "qwen2_bias", "llama3_scaled"));

// Programmatic dependent launch only moves when kernels start, never what they compute: two sequences
// prefilled and decoded through the graph give the same logits bit for bit with it on (the default) and
// off. A read before `griddepcontrol.wait` of something the previous kernel writes shows up here as a
// difference. LMSCOPE_CUDA_PDL accepts 0 / 1 and names itself otherwise.
TEST(CudaPdl, SameLogitsOnAndOffAndBadValue) {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    const std::string dir = golden_dir("qwen3_gqa_bf16");
    DecoderModel host = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    const std::vector<int32_t> ids = golden_ids(g);
    const int64_t T = static_cast<int64_t>(ids.size()), V = host.config().vocab_size, P = 4;
    const auto logits_with = [&](const char* pdl) {
        setenv("LMSCOPE_CUDA_PDL", pdl, 1);
        cuda::CudaDecoder dev(host, {false, true});
        dev.reset(2, T);
        std::vector<float> all(static_cast<size_t>(2 * P * V)), step(static_cast<size_t>(2 * V));
        for (int b = 0; b < 2; ++b) dev.prefill(b, ids.data() + b, P, all.data() + b * P * V, true);
        for (int64_t t = P; t + 1 < T; ++t) {
            const std::vector<int32_t> in = {ids[static_cast<size_t>(t)], ids[static_cast<size_t>(t + 1)]};
            dev.decode(in.data(), step.data());
            all.insert(all.end(), step.begin(), step.end());
        }
        return all;
    };
    const std::vector<float> on = logits_with("1"), off = logits_with("0");
    unsetenv("LMSCOPE_CUDA_PDL");
    ASSERT_EQ(on.size(), off.size());
    EXPECT_EQ(std::memcmp(on.data(), off.data(), on.size() * sizeof(float)), 0) << "logits differ with PDL on and off";
    setenv("LMSCOPE_CUDA_PDL", "2", 1);
    try {
        cuda::CudaDecoder dev(host, {false, true});
        ADD_FAILURE() << "LMSCOPE_CUDA_PDL=2 accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("LMSCOPE_CUDA_PDL=2: expected 0 or 1"), std::string::npos) << e.what();
    }
    unsetenv("LMSCOPE_CUDA_PDL");
}

// LMSCOPE_CUDA_KNOCKOUT (a timing aid) leaves kernels out of decode steps only: the prefill logits stay
// bit for bit, the decode logits change (so the switch is live), and an unknown name is a one-line error.
TEST(CudaKnockout, DecodeOnlyAndBadValue) {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    const std::string dir = golden_dir("qwen3_gqa_bf16");
    DecoderModel host = DecoderModel::load(dir);
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    const std::vector<int32_t> ids = golden_ids(g);
    const int64_t V = host.config().vocab_size, P = 4;
    // (prefill logits of P tokens, then the logits of one decode step)
    const auto run = [&](const char* ko) {
        if (ko) setenv("LMSCOPE_CUDA_KNOCKOUT", ko, 1);
        else unsetenv("LMSCOPE_CUDA_KNOCKOUT");
        cuda::CudaDecoder dev(host, {false, true});
        dev.reset(1, P + 1);
        std::vector<float> pre(static_cast<size_t>(P * V)), step(static_cast<size_t>(V));
        dev.prefill(0, ids.data(), P, pre.data(), true);
        dev.decode(ids.data() + P, step.data());
        return std::make_pair(pre, step);
    };
    const auto full = run(nullptr), ko = run("attn,o");
    unsetenv("LMSCOPE_CUDA_KNOCKOUT");
    EXPECT_EQ(std::memcmp(full.first.data(), ko.first.data(), full.first.size() * sizeof(float)), 0)
        << "the knockout reached the prefill";
    EXPECT_NE(std::memcmp(full.second.data(), ko.second.data(), full.second.size() * sizeof(float)), 0)
        << "the knockout left the decode step as it was";
    setenv("LMSCOPE_CUDA_KNOCKOUT", "attn,mlp", 1);
    try {
        cuda::CudaDecoder dev(host, {false, true});
        ADD_FAILURE() << "LMSCOPE_CUDA_KNOCKOUT=attn,mlp accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("'mlp' is not one of attn, qkv, o, gate_up, down"), std::string::npos)
            << e.what();
    }
    unsetenv("LMSCOPE_CUDA_KNOCKOUT");
}

namespace {

// A model folder for a CudaQuant parameter: "awq:<golden>" is made here (RTN int4, AutoAWQ layout)
std::string quant_model_dir(const std::string& p, int64_t group) {
    if (p.rfind("awq:", 0) != 0) return golden_dir(p);
    const std::string src = p.substr(4);
    const std::string out = lmscope::testing::make_temp_dir("cuda_awq_" + src) + "/model";
    AwqOptions o;
    o.method = "rtn";
    o.group_size = group;
    o.report = false;
    o.save_entries = false;
    o.progress = false;
    awq_quantize_checkpoint(golden_dir(src), out, o);
    return out;
}

std::vector<float> cpu_logits(DecoderModel& host, const std::vector<int32_t>& ids) {
    const int64_t T = static_cast<int64_t>(ids.size());
    KVCache c = host.new_cache(T, DType::F32);  // the host oracle: f32 K/V
    std::vector<float> y(static_cast<size_t>(T * host.config().vocab_size));
    host.forward(ids.data(), T, c, y.data(), true);
    return y;
}

std::vector<int32_t> some_ids(int64_t T, int64_t V) {
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < T; ++i) ids.push_back(static_cast<int32_t>((i * 37 + 11) % V));
    return ids;
}

// Random BF16 checkpoints (hidden 256, 3 layers) of the shapes the one-kernel decode paths take:
// Qwen3 with head_dim 128 and 2 or 4 query heads per kv head (the attention's two register layouts);
// Qwen2 with q/k/v biases (head_dim = hidden / heads = 64, one kv head); Llama with no q/k norm, an o
// bias, head_dim 64 and 4 query heads per kv head. For each, a short context (most attention splits
// empty) and a 300-token one (several keys per warp): the decode logits of 6 steps (graph replays after
// the first) with the switch `env` at 1 and at 0 (the decoder reports kind_on / kind_off as its batch-1
// step) agree within 1e-4 relative error (f32 sums in another order; a BF16 cache row may round
// apart), and are not bit-identical at both contexts of a shape (else the path under test did not run;
// one context may be: the attention block's q|k|v and o sums can fall in the shared-memory GEMV's order,
// as they did for the Qwen2 shape at P = 300). Returns the test folder.
std::string expect_decode_paths_agree(const char* env, const std::string& kind_on,
                                      const std::string& kind_off) {
    struct Shape {
        const char* base;  // golden checkpoint whose config.json is the starting point
        int heads, kv_heads, head_dim;
    };
    const Shape shapes[] = {{"qwen3_gqa", 4, 2, 128},
                            {"qwen3_gqa", 8, 2, 128},
                            {"qwen2_bias", 4, 1, 64},
                            {"llama3_scaled", 16, 4, 64}};
    const std::string root = lmscope::testing::make_temp_dir(std::string("cuda_paths_") + env);
    for (const Shape& sh : shapes) {
        nlohmann::json cfg = nlohmann::json::parse(read_file(golden_dir(sh.base) + "/config.json"));
        cfg["hidden_size"] = 256;
        cfg["intermediate_size"] = 768;
        cfg["num_hidden_layers"] = 3;
        cfg["num_attention_heads"] = sh.heads;
        cfg["num_key_value_heads"] = sh.kv_heads;
        cfg["head_dim"] = sh.head_dim;
        const std::string dir = fmt::format("{}/{}_{}_{}", root, sh.base, sh.heads, sh.head_dim);
        RandomInitOptions ro;
        ro.progress = false;
        write_random_checkpoint(cfg, dir, ro);
        DecoderModel host = DecoderModel::load(dir);
        const int64_t V = host.config().vocab_size, steps = 6;
        bool any_differs = false;
        for (int64_t P : {3, 300}) {
            const std::vector<int32_t> ids = some_ids(P + steps, V);
            const auto run = [&](const char* on, std::string* kind) {
                setenv(env, on, 1);
                cuda::CudaDecoder dev(host, {false, true});
                *kind = dev.batch1_step();
                dev.reset(1, P + steps);
                std::vector<float> all, step(static_cast<size_t>(V));
                dev.prefill(0, ids.data(), P, nullptr, false);
                for (int64_t t = P; t < P + steps; ++t) {
                    dev.decode(&ids[static_cast<size_t>(t)], step.data());
                    all.insert(all.end(), step.begin(), step.end());
                }
                return all;
            };
            std::string got_on, got_off;
            const std::vector<float> on = run("1", &got_on), off = run("0", &got_off);
            unsetenv(env);
            const std::string what =
                fmt::format("{} heads {}/{} D {} P={}", sh.base, sh.heads, sh.kv_heads, sh.head_dim, P);
            EXPECT_EQ(got_on.substr(0, kind_on.size()), kind_on) << what;  // kind_on: a prefix
            EXPECT_EQ(got_off, kind_off) << what;
            const std::vector<double> want(off.begin(), off.end());
            const double e = rel_error(on, want);
            fmt::print("  {}=1 vs 0, {}: logits rel err {:.3g}\n", env, what, e);
            EXPECT_LE(e, 1e-4) << what;
            any_differs = any_differs || std::memcmp(on.data(), off.data(), on.size() * sizeof(float)) != 0;
        }
        EXPECT_TRUE(any_differs) << sh.base << " heads " << sh.heads << ": bit-identical at both contexts";
    }
    return root;
}

// A bad value of the switch `env` is a one-line error naming it.
void expect_switch_rejected(const std::string& dir, const char* env, const char* value) {
    setenv(env, value, 1);
    DecoderModel host = DecoderModel::load(dir);
    try {
        cuda::CudaDecoder dev(host, {false, true});
        ADD_FAILURE() << env << "=" << value << " accepted";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find(fmt::format("{}={}: expected 0 or 1", env, value)),
                  std::string::npos)
            << e.what();
    }
    unsetenv(env);
}

}  // namespace

// The persistent batch-1 decode step (decode_persistent.cu, opt-in) against the kernel-per-op step
// (the attention block off, so that the reference is one kernel per op).
TEST(CudaPersistent, MatchesKernelPerOpStep) {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    setenv("LMSCOPE_CUDA_ATTN_BLOCK", "0", 1);
    const std::string root =
        expect_decode_paths_agree("LMSCOPE_CUDA_PERSISTENT", "persistent",
                                  "per-op: LMSCOPE_CUDA_PERSISTENT is not 1; LMSCOPE_CUDA_ATTN_BLOCK is not "
                                  "1; dense GEMVs: shared memory "
                                  "where the weights fit, each asking L2 for the next 2 MB");
    unsetenv("LMSCOPE_CUDA_ATTN_BLOCK");
    const std::string dir = root + "/qwen3_gqa_4_128";
    expect_switch_rejected(dir, "LMSCOPE_CUDA_PERSISTENT", "yes");
    setenv("LMSCOPE_CUDA_PERSISTENT", "1", 1);
    expect_switch_rejected(dir, "LMSCOPE_CUDA_PERSISTENT_TIMING", "on");
    unsetenv("LMSCOPE_CUDA_PERSISTENT");
    std::filesystem::remove_all(root);
}

// The attention block (decode_attn_block.cu: q|k|v GEMV, attention and o GEMV of a batch-1 decode
// layer in one kernel, opt-in) against the kernel-per-op step; bad values of its switches.
TEST(CudaAttnBlock, MatchesKernelPerOpStep) {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    const std::string root =
        expect_decode_paths_agree("LMSCOPE_CUDA_ATTN_BLOCK", "attention-block (clusters of ",
                                  "per-op: LMSCOPE_CUDA_PERSISTENT is not 1; LMSCOPE_CUDA_ATTN_BLOCK is not "
                                  "1; dense GEMVs: shared memory "
                                  "where the weights fit, each asking L2 for the next 2 MB");
    expect_switch_rejected(root + "/qwen3_gqa_4_128", "LMSCOPE_CUDA_ATTN_BLOCK", "yes");
    setenv("LMSCOPE_CUDA_ATTN_BLOCK", "1", 1);
    expect_switch_rejected(root + "/qwen3_gqa_4_128", "LMSCOPE_CUDA_ATTN_BLOCK_TIMING", "on");
    unsetenv("LMSCOPE_CUDA_ATTN_BLOCK");
    std::filesystem::remove_all(root);
}

// The dense batch-1 GEMVs through shared memory (gemv_smem.cuh, the default) against the row GEMVs
// (LMSCOPE_CUDA_GEMV_SMEM=0); a bad value of the switch. (The op test compares the kernel itself with the
// reference.)
TEST(CudaGemvSmem, MatchesRowGemvStep) {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    const std::string per_op = "per-op: LMSCOPE_CUDA_PERSISTENT is not 1; LMSCOPE_CUDA_ATTN_BLOCK is not 1";
    const std::string smem = per_op + "; dense GEMVs: shared memory where the weights fit";
    const std::string root =
        expect_decode_paths_agree("LMSCOPE_CUDA_GEMV_SMEM", smem + ", each asking L2 for the next 2 MB",
                                  per_op + "; dense GEMVs: rows (LMSCOPE_CUDA_GEMV_SMEM=0)");
    const std::string dir = root + "/qwen3_gqa_4_128";
    expect_switch_rejected(dir, "LMSCOPE_CUDA_GEMV_SMEM", "yes");
    // LMSCOPE_CUDA_L2_PREFETCH_MB replaces the default (2 MB ahead of each shared-memory GEMV) for every GEMV
    DecoderModel host = DecoderModel::load(dir);
    for (auto [value, want] : std::vector<std::pair<const char*, std::string> >{
             {"0", smem + "; L2 prefetch: off (LMSCOPE_CUDA_L2_PREFETCH_MB=0)"},
             {"3", smem + "; L2 prefetch: 3 MB ahead of every GEMV (LMSCOPE_CUDA_L2_PREFETCH_MB)"},
             {"-1", ""},
             {"2x", ""}}) {
        setenv("LMSCOPE_CUDA_L2_PREFETCH_MB", value, 1);
        try {
            cuda::CudaDecoder dev(host, {false, true});
            EXPECT_EQ(dev.batch1_step(), want) << value;
        } catch (const std::exception& e) {
            EXPECT_TRUE(want.empty()) << value << ": " << e.what();
            EXPECT_NE(std::string(e.what()).find(fmt::format(
                          "LMSCOPE_CUDA_L2_PREFETCH_MB={}: expected a number of MB >= 0 or auto", value)),
                      std::string::npos)
                << e.what();
        }
    }
    unsetenv("LMSCOPE_CUDA_L2_PREFETCH_MB");
    std::filesystem::remove_all(root);
}

class CudaQuant : public ::testing::TestWithParam<std::pair<std::string, int64_t>> {
protected:
    void SetUp() override {
        if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    }
};

// Prefill of 13 tokens (> 8: the GEMM path where the dense weights are 16-bit) and 8 decode steps
// after a prefill of 5, each against the CPU decoder's logits on the same checkpoint.
TEST_P(CudaQuant, LogitsMatchCpuDecoder) {
    const auto [name, group] = GetParam();
    const std::string dir = quant_model_dir(name, group);
    DecoderModel host = DecoderModel::load(dir);
    const int64_t V = host.config().vocab_size, T = 13, P = 5;
    const std::vector<int32_t> ids = some_ids(T, V);
    const std::vector<float> ref32 = cpu_logits(host, ids);
    const std::vector<double> ref(ref32.begin(), ref32.end());
    const int64_t T_long = 80;
    const std::vector<int32_t> ids_long = some_ids(T_long, V);
    const std::vector<float> ref_long32 = cpu_logits(host, ids_long);
    const std::vector<double> ref_long(ref_long32.begin(), ref_long32.end());
    for (bool exact : {true, false}) {
        const double tol = exact ? 1e-3 : 1e-2;
        cuda::CudaDecoder dev(host, {exact, true});
        dev.reset(1, T);
        std::vector<float> logits(static_cast<size_t>(T * V));
        dev.prefill(0, ids.data(), T, logits.data(), true);
        const double e = rel_error(logits, ref);
        dev.reset(1, T);
        dev.prefill(0, ids.data(), P, nullptr, false);
        double worst = 0;
        std::vector<float> step(static_cast<size_t>(V));
        for (int64_t t = P; t < T; ++t) {
            dev.decode(&ids[static_cast<size_t>(t)], step.data());
            worst = std::max(worst, rel_error(step, std::vector<double>(ref.begin() + t * V, ref.begin() + (t + 1) * V)));
        }
        fmt::print("  cuda {} {}: weights {} B, prefill T={} rel err {:.3g}, decode worst {:.3g}\n", name,
                   exact ? "exact" : "fast", dev.weight_bytes(), T, e, worst);
        EXPECT_LE(e, tol) << name << (exact ? " exact" : " fast");
        EXPECT_LE(worst, tol) << name << (exact ? " exact" : " fast") << " decode";
        // a prefill longer than the small-batch tensor-core GEMM takes (> 64 rows): dequantisation
        // into a 16-bit scratch buffer, then cuBLAS. Fast mode rounds the weights to bf16 as well as
        // the activations (T = 80 on fp8_qwen3: 0.0115), hence 2e-2 there
        dev.reset(1, T_long);
        std::vector<float> long_logits(static_cast<size_t>(T_long * V));
        dev.prefill(0, ids_long.data(), T_long, long_logits.data(), true);
        const double e_long = rel_error(long_logits, ref_long);
        fmt::print("  cuda {} {}: prefill T={} rel err {:.3g}\n", name, exact ? "exact" : "fast", T_long, e_long);
        EXPECT_LE(e_long, exact ? tol : 2e-2) << name << (exact ? " exact" : " fast") << " T=" << T_long;
    }
    if (name.rfind("awq:", 0) == 0) std::filesystem::remove_all(std::filesystem::path(dir).parent_path());
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaQuant,
                         ::testing::Values(std::pair<std::string, int64_t>{"fp8_ours_qwen3_gqa", 0},
                                           std::pair<std::string, int64_t>{"fp8_qwen3", 0},
                                           std::pair<std::string, int64_t>{"fp8_qwen3_tied", 0},
                                           std::pair<std::string, int64_t>{"awq:qwen3_gqa", 32},
                                           std::pair<std::string, int64_t>{"awq:qwen2_bias", 16}),
                         [](const auto& p) {
                             std::string n = p.param.first;
                             for (char& c : n)
                                 if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                             return n;
                         });

// lmscope trace --device cuda: every tensor of the CPU trace, same shape, statistics within 1e-4 in
// exact mode (f32 activations); in fast mode the names still match.
TEST(CudaTrace, SameTensorsAsCpuTrace) {
    if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
    for (const char* name : {"qwen3_gqa", "qwen2_bias", "qwen3_gqa_bf16"}) {
        DecoderModel host = DecoderModel::load(golden_dir(name));
        const int64_t V = host.config().vocab_size, T = 11;
        const std::vector<int32_t> ids = some_ids(T, V);
        TraceRecorder cpu_rec;
        std::vector<float> logits(static_cast<size_t>(T * V));
        {
            KVCache c = host.new_cache(T, DType::F32);
            host.forward(ids.data(), T, c, logits.data(), true, &cpu_rec);
        }
        for (bool exact : {true, false}) {
            TraceRecorder gpu_rec;
            cuda::CudaDecoder dev(host, {exact, false});
            dev.reset(1, T);
            dev.prefill(0, ids.data(), T, logits.data(), true, &gpu_rec);
            double worst = 0;
            std::string worst_name;
            for (const TraceRecord& r : cpu_rec.records()) {
                const TraceRecord* g = gpu_rec.find(r.name, r.phase, r.iteration);
                ASSERT_NE(g, nullptr) << name << ": the CUDA trace lacks " << r.name;
                const TensorDiff d = diff_records(r, *g);
                if (d.divergence > worst) worst = d.divergence, worst_name = r.name;
            }
            EXPECT_EQ(gpu_rec.records().size(), cpu_rec.records().size()) << name;
            fmt::print("  cuda trace {} {}: {} tensors, worst divergence {:.3g} ({})\n", name, exact ? "exact" : "fast",
                       cpu_rec.records().size(), worst, worst_name);
            if (exact) {
                EXPECT_LE(worst, 1e-4) << name << " " << worst_name;
            }
        }
    }
}

#endif  // LMSCOPE_HAVE_CUDA
