// Data and the `lmscope train` / `lmscope eval` commands: Brown tag stripping, the (B, T) loader's
// shift by one, bits-per-byte arithmetic, exact --resume (6 steps in one go == 3 steps, stop, resume
// for 3: identical losses, bit for bit), refusal of bad input with nothing overwritten (missing
// file, empty file, non-UTF-8, a checkpoint of another depth), the "loss not moving" health
// message, and eval --json. Runs use a tiny model (depth 1, seq 32) on a small generated text.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "io/atomic_file.h"
#include "test_util.h"
#include "train/data.h"

using namespace lmscope;
using namespace lmscope::train;
using lmscope::testing::make_temp_dir;
using lmscope::testing::run_cli;
namespace fs = std::filesystem;

namespace {


std::vector<std::string> losses_in(const std::string& log) {
    std::vector<std::string> out;
    std::regex re(R"re("loss":([-0-9.e+]+))re");
    for (std::sregex_iterator it(log.begin(), log.end(), re), end; it != end; ++it) out.push_back((*it)[1]);
    return out;
}

struct Env {
    std::string dir = make_temp_dir("train");
    Env() { setenv("LMSCOPE_CACHE_DIR", (dir + "/cache").c_str(), 1); }
    ~Env() { fs::remove_all(dir); }
};

const std::string kTiny = "--depth 1 --seq-len 32 --batch 2 --vocab-size 320 --eval-tokens 256 --log-every 1";

}  // namespace

TEST(TrainData, BrownDetokenize) {
    const std::string in =
        "\n\n\tThe/at jury/nn said/vbd ``/`` it/pps did/dod n't/* ''/'' ,/, (/( Mr./np 1/2/cd )/) ./.\n";
    EXPECT_EQ(brown_detokenize(in), "The jury said \"it didn't\", (Mr. 1/2).\n");
}

TEST(TrainData, LoaderShiftsByOneAndWraps) {
    std::vector<int32_t> toks;
    for (int i = 0; i < 20; ++i) toks.push_back(i);
    BatchLoader l(toks, 2, 4);
    std::vector<int32_t> x, y;
    l.next(x, y);
    EXPECT_EQ(x, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
    EXPECT_EQ(y, (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
    l.next(x, y);
    l.next(x, y);  // position 16: 16 + 5 > 20, wraps to 0
    EXPECT_EQ(x[0], 0);
    EXPECT_EQ(x[4], 4);
}

TEST(TrainData, BitsPerByteArithmetic) {
    // tokens 0..9; token 0 is special (0 bytes); every other id stands for 2 bytes; loss 1 nat each
    std::vector<int32_t> toks = {0, 1, 2, 3, 0, 4, 5, 6, 7, 8};
    std::vector<int32_t> nb = {0, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    EvalResult r = evaluate_stream(toks, 2, 4, 0, nb, [](const int32_t*, const int32_t*, int64_t B, int64_t T, float* n) {
        for (int64_t i = 0; i < B * T; ++i) n[i] = 1.0f;
    });
    EXPECT_EQ(r.tokens, 9);
    EXPECT_NEAR(r.loss, 1.0, 1e-12);
    EXPECT_EQ(r.bytes, 16);  // 8 targets with bytes (the target 0 at index 4 has none)
    EXPECT_NEAR(r.bpb, 8.0 / (std::log(2.0) * 16), 1e-12);
}

TEST(TrainData, BadFilesAreOneLineErrors) {
    Env env;
    lmscope::testing::write_file(env.dir + "/empty.txt", "");
    lmscope::testing::write_file(env.dir + "/bad.txt", "fine text \xC3\x28 broken");
    auto msg = [](const std::string& p) {
        try {
            load_text_corpus(p);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(msg(env.dir + "/missing.txt").find("missing.txt: no such file"), std::string::npos);
    EXPECT_NE(msg(env.dir + "/empty.txt").find("empty.txt: empty file"), std::string::npos);
    EXPECT_NE(msg(env.dir + "/bad.txt").find("bad.txt: not valid UTF-8 (byte 0xc3 at offset 10)"), std::string::npos);
}

TEST(TrainCli, ResumeContinuesExactly) {
    Env env;
    lmscope::testing::write_file(env.dir + "/text.txt", lmscope::testing::small_text());
    const std::string data = " --data " + env.dir + "/text.txt ";
    auto a = run_cli("train " + kTiny + data + "--steps 6 --out " + env.dir + "/a");
    ASSERT_EQ(a.exit_code, 0) << a.output;
    EXPECT_NE(a.output.find("lm_head is zero-initialised"), std::string::npos) << a.output;
    auto b = run_cli("train " + kTiny + data + "--steps 6 --stop-at 3 --out " + env.dir + "/b");
    ASSERT_EQ(b.exit_code, 0) << b.output;
    auto c = run_cli("train --resume " + env.dir + "/b --eval-tokens 256 --log-every 1");
    ASSERT_EQ(c.exit_code, 0) << c.output;
    const std::vector<std::string> la = losses_in(read_file(env.dir + "/a/log.jsonl"));
    const std::vector<std::string> lb = losses_in(read_file(env.dir + "/b/log.jsonl"));
    ASSERT_EQ(la.size(), 6u);
    EXPECT_EQ(la, lb);
    EXPECT_EQ(read_file(env.dir + "/a/model.safetensors"), read_file(env.dir + "/b/model.safetensors"));
    EXPECT_NE(la.front(), la.back());

    // eval --json on the result
    auto e = run_cli("eval --model " + env.dir + "/a" + data + "--json");
    ASSERT_EQ(e.exit_code, 0) << e.output;
    EXPECT_NE(e.output.find("\"bpb\":"), std::string::npos);
    EXPECT_NE(e.output.find("\"tokens\":"), std::string::npos);

    // a checkpoint of another depth: refused, nothing overwritten
    const std::string before = read_file(env.dir + "/b/model.safetensors");
    auto d = run_cli("train --resume " + env.dir + "/b --depth 2");
    EXPECT_EQ(d.exit_code, 1);
    EXPECT_NE(d.output.find("the checkpoint has depth 1, --depth says 2"), std::string::npos) << d.output;
    EXPECT_EQ(read_file(env.dir + "/b/model.safetensors"), before);
}

TEST(TrainCli, BadInputWritesNothing) {
    Env env;
    lmscope::testing::write_file(env.dir + "/bad.txt", std::string("valid start ") + "\xFF\xFE" + " tail");
    auto r = run_cli("train " + kTiny + " --steps 2 --data " + env.dir + "/bad.txt --out " + env.dir + "/o");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("bad.txt: not valid UTF-8"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(env.dir + "/o"));
    auto m = run_cli("train " + kTiny + " --steps 2 --data " + env.dir + "/nope.txt --out " + env.dir + "/o");
    EXPECT_EQ(m.exit_code, 1);
    EXPECT_NE(m.output.find("nope.txt: no such file"), std::string::npos) << m.output;
    // an existing folder that is not a checkpoint is never replaced
    fs::create_directories(env.dir + "/keep");
    lmscope::testing::write_file(env.dir + "/keep/notes.txt", "mine");
    lmscope::testing::write_file(env.dir + "/t.txt", lmscope::testing::small_text());
    auto k = run_cli("train " + kTiny + " --steps 1 --data " + env.dir + "/t.txt --out " + env.dir + "/keep");
    EXPECT_EQ(k.exit_code, 1);
    EXPECT_EQ(read_file(env.dir + "/keep/notes.txt"), "mine");
}

TEST(TrainCli, FlatLossIsReported) {
    Env env;
    lmscope::testing::write_file(env.dir + "/text.txt", lmscope::testing::small_text());
    auto r = run_cli("train " + kTiny + " --steps 4 --lr-embedding 0 --lr-unembedding 0 --lr-matrix 0 --data " +
                     env.dir + "/text.txt --out " + env.dir + "/flat");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("the loss has not moved"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("= ln(V = "), std::string::npos) << r.output;
}
