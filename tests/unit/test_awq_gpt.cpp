// AWQ / RTN int4 for the nanochat GPT (src/quant/awq_gpt.*): the folds leave the float model's output
// unchanged, the int4 checkpoint reads back to exactly (q - z) * s, AWQ protects planted salient
// channels that RTN does not, GQA skips the v -> c_proj fold and says so, bad group sizes fail clearly.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "gpt/gpt.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "quant/awq_gpt.h"
#include "quant/awq_pack.h"
#include "test_util.h"

namespace lmscope {
namespace {

namespace fs = std::filesystem;

gpt::GptConfig tiny_config(int64_t n_kv_head = 2) {
    gpt::GptConfig c;
    c.n_layer = 2;
    c.n_embd = 64;
    c.n_head = 2;
    c.n_kv_head = n_kv_head;
    c.head_dim = 32;
    c.vocab_size = 96;
    c.sequence_len = 32;
    return c;
}

// nanochat init leaves c_proj and lm_head at zero; give every weight a value so every path matters
gpt::GptModel random_model(const gpt::GptConfig& cfg, uint32_t seed) {
    gpt::GptModel m(cfg);
    m.init_nanochat(seed);
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.08f);
    for (const gpt::ParamInfo& p : m.params())
        if (p.zero_init)
            for (int64_t i = 0; i < p.numel; ++i) m.param(p.name)[i] = nd(rng);
    return m;
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(vocab - 1));
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}

std::vector<float> logits_of(gpt::GptModel& m, const std::vector<int32_t>& ids, int64_t T) {
    m.forward(ids.data(), nullptr, 1, T);
    return std::vector<float>(m.logits(), m.logits() + T * m.config().vocab_size);
}

std::string save_checkpoint(const gpt::GptModel& m, const std::string& tag) {
    const std::string dir = testing::make_temp_dir(tag);
    m.save(dir + "/model.safetensors");
    write_text_atomic(dir + "/gpt_config.json", m.config().to_json());
    return dir;
}

TEST(AwqGpt, FoldsLeaveTheFloatModelUnchanged) {
    const gpt::GptConfig cfg = tiny_config();
    gpt::GptModel m = random_model(cfg, 3);
    const std::vector<int32_t> ids = random_ids(cfg.sequence_len, cfg.vocab_size, 5);
    const std::vector<float> before = logits_of(m, ids, cfg.sequence_len);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(0.2f, 5.0f);
    std::vector<float> s_v(static_cast<size_t>(cfg.q_dim())), s_fc(static_cast<size_t>(cfg.ffn_dim()));
    for (auto& x : s_v) x = u(rng);
    for (auto& x : s_fc) x = u(rng);
    for (int64_t l = 0; l < cfg.n_layer; ++l) awq_gpt_fold(m, l, &s_v, &s_fc);
    const std::vector<float> after = logits_of(m, ids, cfg.sequence_len);
    // f32 arithmetic reordered by the scales: 1e-5 relative (the tolerance for applied scales)
    EXPECT_LT(testing::rel_error(after, std::vector<double>(before.begin(), before.end())), 1e-5);
    // and the fold did change the weights (a test that cannot fail is a defect)
    EXPECT_NE(m.param("transformer.h.0.mlp.c_fc.weight")[0],
              random_model(cfg, 3).param("transformer.h.0.mlp.c_fc.weight")[0]);
}

TEST(AwqGpt, RtnCheckpointReadsBackAsDequantisedWeights) {
    const gpt::GptConfig cfg = tiny_config();
    gpt::GptModel m = random_model(cfg, 11);
    const std::string in = save_checkpoint(m, "awq_gpt_src"), out = in + "_rtn";
    AwqOptions opt;
    opt.method = "rtn";
    opt.group_size = 32;
    opt.progress = false;
    const AwqQuantizeSummary s = awq_quantize_checkpoint(in, out, opt);
    EXPECT_EQ(s.linears, 6 * cfg.n_layer);
    gpt::GptModel q(cfg);
    q.load(out);
    for (const gpt::ParamInfo& p : m.params()) {
        std::vector<float> want(m.param(p.name), m.param(p.name) + p.numel);
        if (p.matrix) {  // (q - z) * s of the stored codes, in f32 (what the packed tensors mean)
            AwqQuantized qr;
            awq_pseudo_quantize(want.data(), p.shape[0], p.shape[1], 32, AwqMath::F16, &qr);
            const int64_t cols = p.shape[1], ng = cols / 32;
            for (int64_t i = 0; i < p.numel; ++i) {
                const size_t gi = static_cast<size_t>((i / cols) * ng + (i % cols) / 32);
                want[static_cast<size_t>(i)] = (float(qr.q[static_cast<size_t>(i)]) - float(qr.zeros[gi])) * qr.scales[gi];
            }
        }
        for (int64_t i = 0; i < p.numel; ++i) ASSERT_EQ(q.param(p.name)[i], want[static_cast<size_t>(i)]) << p.name << " " << i;
    }
    fs::remove_all(in);
    fs::remove_all(out);
}

TEST(AwqGpt, AwqProtectsPlantedSalientChannels) {
    const gpt::GptConfig cfg = tiny_config();
    gpt::GptModel m = random_model(cfg, 21);
    // three hidden units of each MLP with 8x larger pre-activations: ReLU² makes their inputs to
    // mlp.c_proj ~64x larger, the salient channels AWQ is meant to protect
    for (int64_t l = 0; l < cfg.n_layer; ++l) {
        float* w = m.param(fmt::format("transformer.h.{}.mlp.c_fc.weight", l));
        for (int64_t r : {3, 40, 77})
            for (int64_t c = 0; c < cfg.n_embd; ++c) w[r * cfg.n_embd + c] *= 8.0f;
    }
    const std::string in = save_checkpoint(m, "awq_gpt_salient"), out = in + "_awq";
    AwqOptions opt;
    opt.group_size = 32;
    opt.progress = false;
    opt.n_samples = 8;
    opt.seq_len = 32;
    opt.calib_ids = random_ids(8 * 32, cfg.vocab_size, 9);
    const AwqQuantizeSummary s = awq_quantize_checkpoint(in, out, opt);
    const auto& sum = s.report.at("summary");
    EXPECT_GT(sum.at("rtn_over_awq").get<double>(), 1.5) << s.report.dump(1);
    for (const auto& e : s.report.at("linears")) {
        if (e.at("name").get<std::string>().find("mlp.c_proj") != std::string::npos) {
            EXPECT_GT(e.at("rtn_over_awq").get<double>(), 1.5) << e.dump();
        }
    }
    EXPECT_TRUE(fs::exists(out + "/awq/report.json"));
    gpt::GptModel q(cfg);
    q.load(out);  // the packed checkpoint reads back
    fs::remove_all(in);
    fs::remove_all(out);
}

TEST(AwqGpt, GqaSkipsTheValueFoldAndSaysSo) {
    const gpt::GptConfig cfg = tiny_config(1);
    gpt::GptModel m = random_model(cfg, 31);
    const std::string in = save_checkpoint(m, "awq_gpt_gqa"), out = in + "_awq";
    AwqOptions opt;
    opt.group_size = 32;
    opt.progress = false;
    opt.n_samples = 4;
    opt.seq_len = 32;
    opt.calib_ids = random_ids(4 * 32, cfg.vocab_size, 2);
    const AwqQuantizeSummary s = awq_quantize_checkpoint(in, out, opt);
    const std::string skipped = s.report.at("skipped_folds").dump();
    EXPECT_NE(skipped.find("attn.c_v -> attn.c_proj: GQA (1 kv heads for 2 query heads)"), std::string::npos) << skipped;
    EXPECT_FALSE(s.report.at("layers")[0].at("ratios").contains("attn.c_v -> attn.c_proj"));
    fs::remove_all(in);
    fs::remove_all(out);
}

// `lmscope run` / `trace` read a GPT folder (gpt_config.json) and an int4 one from `quantize --awq`
TEST(AwqGpt, RunAndTraceReadGptCheckpoints) {
    const gpt::GptConfig cfg = tiny_config();
    gpt::GptModel m = random_model(cfg, 51);
    const std::string in = save_checkpoint(m, "gpt_cli"), q = in + "_rtn";
    ASSERT_EQ(testing::run_cli("quantize --awq --method rtn --group-size 32 --no-progress " + in + " " + q).exit_code, 0);
    for (const std::string& dir : {in, q}) {
        const auto r = testing::run_cli("run --model " + dir + " --ids 1,2,3 --max-new-tokens 4 --save-logits " + dir +
                                        "/logits.safetensors");
        ASSERT_EQ(r.exit_code, 0) << r.output;
        gpt::GptModel ref(cfg);
        ref.load(dir);
        const std::vector<int32_t> ids = {1, 2, 3};
        const std::vector<float> want = logits_of(ref, ids, 3);
        const Tensor got = SafetensorsFile::open(dir + "/logits.safetensors").get("logits");
        ASSERT_EQ(got.shape(), (Shape{3, cfg.vocab_size}));
        for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got.data<float>()[i], want[i]) << i;
        const auto t = testing::run_cli("trace --model " + dir + " --ids 1,2,3 --format json --out " + dir + "/t.json");
        ASSERT_EQ(t.exit_code, 0) << t.output;
        EXPECT_NE(read_file(dir + "/t.json").find("transformer.h.1.mlp.relu2"), std::string::npos);
    }
    const auto bad = testing::run_cli("run --model " + in + " --ids 1,2,500 --max-new-tokens 1");
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.output.find("token id 500 is outside the model's vocabulary [0, 96)"), std::string::npos) << bad.output;
    fs::remove_all(in);
    fs::remove_all(q);
}

TEST(AwqGpt, BadInputsGetOneLineErrors) {
    const gpt::GptConfig cfg = tiny_config();
    gpt::GptModel m = random_model(cfg, 61);
    const std::string in = save_checkpoint(m, "gpt_bad"), q = in + "_rtn";
    // the GPT's head stays f32
    auto head = testing::run_cli("quantize --awq --method rtn --group-size 32 --quantize-lm-head --no-progress " + in + " " + q);
    EXPECT_NE(head.exit_code, 0);
    EXPECT_NE(head.output.find("--quantize-lm-head: a GPT checkpoint keeps its lm_head in f32"), std::string::npos) << head.output;
    EXPECT_FALSE(fs::exists(q));
    // the decoder's precision flags do not apply to a GPT checkpoint
    for (const char* flag : {"--fp8-activations", "--bf16-activations"}) {
        auto f = testing::run_cli("run --model " + in + " --ids 1,2 --max-new-tokens 1 " + flag);
        EXPECT_EQ(f.exit_code, 2) << flag;
        EXPECT_NE(f.output.find("a GPT checkpoint runs on the CPU only, without --chat, --fp8-activations or --bf16-activations"),
                  std::string::npos)
            << f.output;
    }
    // a prompt longer than sequence_len (32)
    std::string ids = "1";
    for (int i = 0; i < 40; ++i) ids += ",2";
    auto longp = testing::run_cli("run --model " + in + " --ids " + ids + " --max-new-tokens 1");
    EXPECT_NE(longp.exit_code, 0);
    EXPECT_NE(longp.output.find("the prompt has 41 tokens; this GPT's sequence_len is 32"), std::string::npos) << longp.output;
    // an int4 checkpoint missing one of its three tensors
    ASSERT_EQ(testing::run_cli("quantize --awq --method rtn --group-size 32 --no-progress " + in + " " + q).exit_code, 0);
    {
        SafetensorsFile f = SafetensorsFile::open(q + "/model.safetensors");
        SafetensorsWriter w;
        for (const TensorInfo& t : f.tensors())
            if (t.name != "transformer.h.1.mlp.c_fc.qzeros") w.add(t.name, f.get(t.name));
        w.write(q + "/model2.safetensors");
    }
    fs::rename(q + "/model2.safetensors", q + "/model.safetensors");
    gpt::GptModel r(cfg);
    try {
        r.load(q);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("\"transformer.h.1.mlp.c_fc.qzeros\" missing (int4 weight "
                                             "transformer.h.1.mlp.c_fc.qweight present)"),
                  std::string::npos)
            << e.what();
    }
    fs::remove_all(in);
    fs::remove_all(q);
}

TEST(AwqGpt, GroupSizeMustDivideEveryInFeatures) {
    const gpt::GptConfig cfg = tiny_config();
    gpt::GptModel m = random_model(cfg, 41);
    const std::string in = save_checkpoint(m, "awq_gpt_group");
    AwqOptions opt;
    opt.method = "rtn";
    opt.group_size = 48;
    opt.progress = false;
    try {
        awq_quantize_checkpoint(in, in + "_x", opt);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("48"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(in + "_x"));
    fs::remove_all(in);
}

}  // namespace
}  // namespace lmscope
