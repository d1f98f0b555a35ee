// The CLI's contract with scripts: exit 0 on success, 2 with a usage line on bad arguments, 1 with one
// line naming the file / tensor / field on bad input files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;
using lmscope::testing::run_cli;
namespace fs = std::filesystem;

namespace {

int count_lines(const std::string& s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

// A copy of a golden checkpoint folder that a test may break.
std::string copy_case(const std::string& name) {
    std::string dir = make_temp_dir("cli");
    for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(golden_dir(name) + "/" + f, dir + "/" + f);
    return dir;
}

}  // namespace

TEST(Cli, HelpForEveryCommand) {
    for (const char* cmd : {"", "inspect", "tokenize", "run", "init", "bench"}) {
        auto r = run_cli(std::string(cmd) + " --help");
        EXPECT_EQ(r.exit_code, 0) << cmd;
        EXPECT_NE(r.output.find("Usage"), std::string::npos) << cmd;
    }
}

TEST(Cli, BadArgumentsExit2WithUsage) {
    auto r = run_cli("run --model x --prompt a --max-new-tokens nope");
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.output.find("usage: lmscope run --help"), std::string::npos) << r.output;
    EXPECT_EQ(run_cli("frobnicate").exit_code, 2);
    EXPECT_EQ(run_cli("run --model " + golden_dir("qwen3_gqa")).exit_code, 2);  // neither --prompt nor --ids
    EXPECT_EQ(run_cli("run --model " + golden_dir("qwen3_gqa") + " --ids 1,x").exit_code, 2);
    EXPECT_EQ(run_cli("init --preset nope /tmp/x").exit_code, 2);
}

TEST(Cli, RunWithIdsNeedsNoTokenizerAndSavesLogits) {
    std::string dir = make_temp_dir("logits");
    auto r = run_cli("run --model " + golden_dir("qwen3_gqa") + " --ids 3,1,4,1,5 --max-new-tokens 4 --save-logits " + dir +
                     "/l.safetensors");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("tok/s"), std::string::npos);
    SafetensorsFile f = SafetensorsFile::open(dir + "/l.safetensors");
    ASSERT_EQ(f.tensors().size(), 1u);
    EXPECT_EQ(f.tensors()[0].name, "logits");
    EXPECT_EQ(f.tensors()[0].dtype, DType::F32);
    EXPECT_EQ(f.tensors()[0].shape, (Shape{5, 256}));
    // --max-new-tokens 0 runs the prompt only
    auto r0 = run_cli("run --model " + golden_dir("qwen3_gqa") + " --ids 3,1 --max-new-tokens 0");
    EXPECT_EQ(r0.exit_code, 0) << r0.output;
    fs::remove_all(dir);
}

TEST(Cli, InspectListsTensorsAndJson) {
    auto r = run_cli("inspect " + golden_dir("qwen3_gqa"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("model.layers.0.self_attn.q_proj.weight"), std::string::npos);
    EXPECT_NE(r.output.find("[128, 64]"), std::string::npos);
    auto j = run_cli("inspect --json " + golden_dir("qwen3_gqa"));
    ASSERT_EQ(j.exit_code, 0);
    auto doc = nlohmann::json::parse(j.output);
    EXPECT_EQ(doc["config"]["head_dim"], 32);
    EXPECT_EQ(doc["tensors"].size(), 25u);
}

TEST(CliBadInput, ShapeDisagreesWithConfig) {
    std::string dir = copy_case("qwen3_gqa");
    auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
    cfg["head_dim"] = 16;  // tensors were made with head_dim 32
    write_text_atomic(dir + "/config.json", cfg.dump());
    auto r = run_cli("run --model " + dir + " --ids 1,2");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find("tensor 'model.layers.0.self_attn.q_proj.weight' has shape [128, 64] but"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("expects [64, 64] (num_attention_heads 4 x head_dim 16, hidden_size 64)"), std::string::npos)
        << r.output;
    auto i = run_cli("inspect " + dir);
    EXPECT_EQ(i.exit_code, 1);
    EXPECT_NE(i.output.find("shape-mismatch"), std::string::npos);
    fs::remove_all(dir);
}

TEST(CliBadInput, MissingTensor) {
    std::string dir = copy_case("qwen3_gqa");
    auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
    cfg["tie_word_embeddings"] = false;
    cfg["num_hidden_layers"] = 3;
    write_text_atomic(dir + "/config.json", cfg.dump());
    auto r = run_cli("run --model " + dir + " --ids 1,2");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("missing tensor 'model.layers.2.input_layernorm.weight'"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

TEST(CliBadInput, BadConfigField) {
    std::string dir = copy_case("qwen2_bias");
    auto cfg = nlohmann::json::parse(read_file(dir + "/config.json"));
    cfg.erase("vocab_size");
    write_text_atomic(dir + "/config.json", cfg.dump());
    auto r = run_cli("run --model " + dir + " --ids 1,2");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.output, "lmscope: error: " + dir + "/config.json: missing field 'vocab_size'\n");
    fs::remove_all(dir);
}

TEST(CliBadInput, TruncatedSafetensors) {
    std::string dir = copy_case("qwen3_gqa");
    fs::resize_file(dir + "/model.safetensors", fs::file_size(dir + "/model.safetensors") - 1000);
    auto r = run_cli("inspect " + dir);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(count_lines(r.output), 1) << r.output;
    EXPECT_NE(r.output.find("model.safetensors"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

TEST(CliBadInput, MissingShard) {
    std::string dir = copy_case("qwen3_gqa");
    nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
    SafetensorsFile f = SafetensorsFile::open(dir + "/model.safetensors");
    for (const auto& t : f.tensors()) index["weight_map"][t.name] = "model.safetensors";
    index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors";
    write_text_atomic(dir + "/model.safetensors.index.json", index.dump());
    auto r = run_cli("run --model " + dir + " --ids 1,2");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("model-00002-of-00002.safetensors"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

TEST(CliBadInput, MissingModelFolder) {
    auto r = run_cli("run --model /nonexistent/model --ids 1");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("/nonexistent/model: no such file or folder"), std::string::npos) << r.output;
}

TEST(CliBadInput, FolderWithoutConfig) {
    std::string dir = make_temp_dir("noconfig");
    auto r = run_cli("run --model " + dir + " --ids 1");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find(dir + "/config.json: missing"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

TEST(Cli, InitWritesALoadableCheckpoint) {
    std::string dir = make_temp_dir("init");
    auto r = run_cli("init --preset tiny-llama3 --dtype f16 --seed 3 " + dir + "/m");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto i = run_cli("inspect --json " + dir + "/m");
    ASSERT_EQ(i.exit_code, 0) << i.output;
    auto doc = nlohmann::json::parse(i.output);
    EXPECT_EQ(doc["tensors"][0]["dtype"], "F16");
    auto b = run_cli("bench --model " + dir + "/m --prompt-len 8 --gen-len 4 --repeat 1 --json");
    ASSERT_EQ(b.exit_code, 0) << b.output;
    auto bj = nlohmann::json::parse(b.output);
    EXPECT_GT(bj["prefill_tok_s"].get<double>(), 0);
    EXPECT_GT(bj["decode_tok_s"].get<double>(), 0);
    // same seed, same bytes
    auto r2 = run_cli("init --preset tiny-llama3 --dtype f16 --seed 3 " + dir + "/m2");
    ASSERT_EQ(r2.exit_code, 0);
    EXPECT_EQ(read_file(dir + "/m/model.safetensors"), read_file(dir + "/m2/model.safetensors"));
    fs::remove_all(dir);
}

namespace {
// max |a - b| over the prompt logits of `run --model M --ids IDS` without and with `flag` (files in dir)
double logits_change(const std::string& model, const std::string& ids, const std::string& flag, const std::string& dir) {
    for (const char* f : {"w", "a"}) {
        auto r = run_cli("run --model " + model + " --ids " + ids + (*f == 'a' ? " " + flag : std::string()) +
                         " --save-logits " + dir + "/" + f + ".safetensors");
        EXPECT_EQ(r.exit_code, 0) << r.output;
    }
    const lmscope::Tensor x = lmscope::SafetensorsFile::open(dir + "/w.safetensors").get("logits");
    const lmscope::Tensor y = lmscope::SafetensorsFile::open(dir + "/a.safetensors").get("logits");
    double diff = 0;
    for (int64_t i = 0; i < x.numel(); ++i) diff = std::max(diff, double(std::fabs(x.data<float>()[i] - y.data<float>()[i])));
    return diff;
}
}  // namespace

// --fp8-activations: real on the CPU (the FP8 checkpoints' logits change), a note on a model without
// FP8 linears, a usage error with --device cuda
TEST(Cli, Fp8ActivationsFlag) {
    const std::string fp8 = golden_dir("fp8_qwen3");
    const std::string dir = lmscope::testing::make_temp_dir("fp8act");
    EXPECT_GT(logits_change(fp8, "1,2,3", "--fp8-activations", dir), 0.0);  // activation quantisation happened
    auto dense = run_cli("run --model " + golden_dir("qwen3_gqa") + " --ids 1,2 --fp8-activations");
    EXPECT_EQ(dense.exit_code, 0);
    EXPECT_NE(dense.output.find("the model has no FP8-block linears, so nothing changes"), std::string::npos) << dense.output;
    auto cuda = run_cli("run --model " + fp8 + " --ids 1,2 --fp8-activations --device cuda");
    EXPECT_NE(cuda.exit_code, 0);
    EXPECT_NE(cuda.output.find("--fp8-activations runs on the CPU only"), std::string::npos) << cuda.output;
    fs::remove_all(dir);
}

// --bf16-activations: the BF16 checkpoint's prompt logits change (5 tokens: the prefill GEMM), bench --json
// records the mode, a note on a model without BF16 / AWQ linears, a usage error with --device cuda on each
// command that has the flag
TEST(Cli, Bf16ActivationsFlag) {
    const std::string bf16 = golden_dir("qwen3_gqa_bf16");
    const std::string dir = lmscope::testing::make_temp_dir("bf16act");
    EXPECT_GT(logits_change(bf16, "1,2,3,4,5", "--bf16-activations", dir), 0.0);  // the activations were rounded
    for (const char* flag : {"", " --bf16-activations"}) {
        auto b = run_cli("bench --model " + bf16 + " --prompt-len 8 --gen-len 2 --repeat 1 --json" + flag);
        ASSERT_EQ(b.exit_code, 0) << b.output;
        const auto j = nlohmann::json::parse(b.output.substr(b.output.find('{')));
        EXPECT_EQ(j.at("bf16_activations").get<bool>(), *flag != 0) << b.output;
    }
    auto f32 = run_cli("run --model " + golden_dir("qwen3_gqa") + " --ids 1,2 --bf16-activations");
    EXPECT_EQ(f32.exit_code, 0);
    EXPECT_NE(f32.output.find("the model has no BF16 or AWQ int4 linears, so nothing changes"), std::string::npos) << f32.output;
    for (const std::string cmd : {"run --ids 1,2", "bench", "trace --ids 1,2"}) {
        auto cuda = run_cli(cmd + " --model " + bf16 + " --bf16-activations --device cuda");
        EXPECT_EQ(cuda.exit_code, 2) << cmd;
        EXPECT_NE(cuda.output.find("--bf16-activations runs on the CPU only"), std::string::npos) << cmd << ": " << cuda.output;
    }
    auto ev = run_cli("eval --help");
    EXPECT_NE(ev.output.find("--bf16-activations"), std::string::npos) << ev.output;
    fs::remove_all(dir);
}
