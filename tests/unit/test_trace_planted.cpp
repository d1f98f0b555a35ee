// Planted anomalies, the CLI and the output formats. A golden checkpoint is copied to a temp folder
// and modified with SafetensorsWriter (a q_proj scaled by 1e3, every tensor of a layer zeroed, one
// NaN in a weight); each must be caught by the right rule at the right tensor, first in forward order.
// `trace diff` of a run against itself finds nothing, against the planted model names the planted
// layer first. --check exit codes, the JSON fields, and HTML/Markdown escaping of crafted names.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "io/safetensors.h"
#include "model/decoder.h"
#include "trace/diff.h"
#include "trace/output.h"
#include "trace/report.h"
#include "trace/rules.h"
#include "trace/trace_io.h"
#include "test_util.h"

using namespace lmscope;
using lmscope::testing::golden_dir;
using lmscope::testing::make_temp_dir;
using lmscope::testing::run_cli;

namespace fs = std::filesystem;

namespace {

const char* kIds = "1,7,3,9,11,2,5,8,13,4,6,10";

// Copies golden case `name` to a temp folder, passing every tensor through `edit` (name, values).
std::string planted(const std::string& name, const std::string& tag,
                    const std::function<void(const std::string&, std::vector<float>&)>& edit) {
    const std::string src = golden_dir(name), dst = make_temp_dir("trace-" + tag);
    fs::copy_file(src + "/config.json", dst + "/config.json");
    SafetensorsFile in = SafetensorsFile::open(src + "/model.safetensors");
    SafetensorsWriter w;
    for (const TensorInfo& ti : in.tensors()) {
        Tensor t = in.get(ti.name);
        std::vector<float> v = t.to_f32_vector();
        std::vector<float> orig = v;
        edit(ti.name, v);
        if (v == orig)
            w.add(ti.name, t);
        else
            w.add(ti.name, Tensor::from_f32(t.shape(), v).to(t.dtype()));
    }
    w.write(dst + "/model.safetensors");
    return dst;
}

std::vector<Finding> trace_findings(const std::string& dir) {
    DecoderModel model = DecoderModel::load(dir);
    std::vector<int32_t> ids = {1, 7, 3, 9, 11, 2, 5, 8, 13, 4, 6, 10};
    const int64_t T = static_cast<int64_t>(ids.size());
    TraceRecorder rec(recorder_options(default_rules(), {}, {}));
    KVCache cache = model.new_cache(T);
    std::vector<float> logits(static_cast<size_t>(T * model.config().vocab_size));
    model.forward(ids.data(), T, cache, logits.data(), true, &rec);
    return evaluate_rules(rec, default_rules());
}

const Finding* first_error(const std::vector<Finding>& f) {
    for (const Finding& x : f)
        if (x.severity == Severity::Error) return &x;
    return nullptr;
}

std::string read(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST(TracePlanted, HealthyGoldenModelsHaveNoErrors) {
    for (const std::string name : {"qwen3_gqa", "qwen3_gqa_bf16", "qwen3_tied", "qwen2_bias", "llama3_scaled"}) {
        const auto f = trace_findings(golden_dir(name));
        EXPECT_EQ(first_error(f), nullptr) << name << ": " << (first_error(f) ? first_error(f)->message : "");
    }
}

TEST(TracePlanted, ScaledQProjCaughtAtThatTensor) {
    const std::string dir = planted("qwen3_gqa", "qscale", [](const std::string& n, std::vector<float>& v) {
        if (n == "model.layers.1.self_attn.q_proj.weight")
            for (float& x : v) x *= 1000.0f;
    });
    const auto f = trace_findings(dir);
    const Finding* e = first_error(f);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->rule, "qkv_std");
    EXPECT_EQ(e->tensor, "model.layers.1.self_attn.q_proj");
    EXPECT_NE(e->message.find("exploding"), std::string::npos);
    fs::remove_all(dir);
}

TEST(TracePlanted, ZeroedLayerCaughtAtItsFirstTensor) {
    const std::string dir = planted("qwen3_gqa", "zero", [](const std::string& n, std::vector<float>& v) {
        if (n.rfind("model.layers.1.", 0) == 0) std::fill(v.begin(), v.end(), 0.0f);
    });
    const auto f = trace_findings(dir);
    const Finding* e = first_error(f);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->rule, "all_zero");
    EXPECT_EQ(e->tensor, "model.layers.1.input_layernorm");
    bool q_zero = false;
    for (const Finding& x : f) q_zero |= x.rule == "all_zero" && x.tensor == "model.layers.1.self_attn.q_proj";
    EXPECT_TRUE(q_zero);
    fs::remove_all(dir);
}

TEST(TracePlanted, NanWeightCaughtWhereItEnters) {
    const std::string dir = planted("qwen3_gqa", "nan", [](const std::string& n, std::vector<float>& v) {
        if (n == "model.layers.1.mlp.up_proj.weight") v[17] = NAN;
    });
    const auto f = trace_findings(dir);
    const Finding* e = first_error(f);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->rule, "nonfinite");
    EXPECT_EQ(e->tensor, "model.layers.1.mlp.up_proj");
    EXPECT_NE(e->message.find("first non-finite"), std::string::npos);
    // downstream tensors say where it came from
    bool propagated = false;
    for (const Finding& x : f)
        propagated |= x.tensor == "logits" && x.message.find("propagated from model.layers.1.mlp.up_proj") != std::string::npos;
    EXPECT_TRUE(propagated);

    // --check: exit 1 here, 0 on the healthy model, 2 for --ids without --model
    const std::string tmp = make_temp_dir("trace-check");
    auto r = run_cli(fmt::format("trace --model {} --ids {} --check --format json --out {}/a.json", dir, kIds, tmp));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("error-level finding"), std::string::npos) << r.output;
    r = run_cli(fmt::format("trace --model {} --ids {} --check --format json --out {}/b.json", golden_dir("qwen3_gqa"), kIds, tmp));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = run_cli("trace --ids 1,2");
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("--prompt/--ids need --model"), std::string::npos) << r.output;
    fs::remove_all(dir);
    fs::remove_all(tmp);
}

TEST(TracePlanted, DiffNamesThePlantedLayerFirst) {
    const std::string dir = planted("qwen3_gqa", "qdiff", [](const std::string& n, std::vector<float>& v) {
        if (n == "model.layers.1.self_attn.q_proj.weight")
            for (float& x : v) x *= 1000.0f;
    });
    const std::string tmp = make_temp_dir("trace-diff");
    const std::string a = tmp + "/a.json", a2 = tmp + "/a2.json", b = tmp + "/b.json";
    ASSERT_EQ(run_cli(fmt::format("trace --model {} --ids {} --format json --out {}", golden_dir("qwen3_gqa"), kIds, a)).exit_code, 0);
    ASSERT_EQ(run_cli(fmt::format("trace --model {} --ids {} --format json --out {}", golden_dir("qwen3_gqa"), kIds, a2)).exit_code, 0);
    ASSERT_EQ(run_cli(fmt::format("trace --model {} --ids {} --format json --out {}", dir, kIds, b)).exit_code, 0);

    auto r = run_cli(fmt::format("trace diff {} {}", a, a2));
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.output.find("no divergence"), std::string::npos) << r.output;

    r = run_cli(fmt::format("trace diff {} {} --json --check", a, b));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    const size_t brace = r.output.find('{');
    ASSERT_NE(brace, std::string::npos);
    const std::string js = r.output.substr(brace, r.output.rfind('}') - brace + 1);
    const auto j = nlohmann::json::parse(js);
    EXPECT_TRUE(j["diverged"].get<bool>());
    EXPECT_EQ(j["first_divergence"]["name"], "model.layers.1.self_attn.q_proj");
    EXPECT_EQ(j["missing_in_b"].size(), 0u);

    // in-process: records before the planted tensor are identical
    const LoadedTrace ta = load_trace_json(a), tb = load_trace_json(b);
    const DiffResult d = diff_traces(ta, tb, {1e-3, 5});
    ASSERT_TRUE(d.first);
    for (size_t i = 0; i < *d.first; ++i) EXPECT_EQ(d.aligned[i].divergence, 0.0) << d.aligned[i].name;
    // a record only in B is listed as extra
    LoadedTrace tc = tb;
    tc.records.push_back(tb.records.front());
    tc.records.back().name = "extra.tensor";
    EXPECT_EQ(diff_traces(ta, tc, {}).extra_in_b.size(), 1u);
    fs::remove_all(dir);
    fs::remove_all(tmp);
}

TEST(TracePlanted, JsonSchemaAndDefaultOutputs) {
    const std::string tmp = make_temp_dir("trace-json");
    auto r = run_cli(fmt::format("trace --model {} --ids {} --format json --out {}/t.json", golden_dir("qwen3_gqa"), kIds, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto j = nlohmann::json::parse(read(tmp + "/t.json"));
    ASSERT_TRUE(j.contains("records"));
    ASSERT_TRUE(j.contains("findings"));
    EXPECT_FALSE(j.contains("losses"));  // forward-only trace: no training losses
    bool logits = false;
    for (const auto& rec : j["records"]) {
        for (const char* k : {"name", "phase", "iteration", "shape", "dtype", "mean", "std", "min", "max", "absmax",
                              "zeros", "nan", "inf"})
            EXPECT_TRUE(rec.contains(k)) << k;
        if (rec["name"] == "logits") {
            logits = true;
            EXPECT_EQ(rec["shape"], nlohmann::json::array({12, 256}));
            EXPECT_EQ(rec["phase"], "forward");
        }
    }
    EXPECT_TRUE(logits);
    // findings fields (a NaN model has some)
    TraceRecorder rec;
    std::vector<float> v = {1.0f, NAN};
    rec.observe("x", v.data(), {2});
    rec.record_loss(0, 1.5);
    const auto jf = nlohmann::json::parse(render_json(rec, evaluate_rules(rec, default_rules())));
    ASSERT_FALSE(jf["findings"].empty());
    for (const char* k : {"rule", "severity", "tensor", "value", "message"}) EXPECT_TRUE(jf["findings"][0].contains(k)) << k;
    ASSERT_TRUE(jf.contains("losses"));
    EXPECT_EQ(jf["losses"][0]["loss"], 1.5);
    EXPECT_TRUE(jf["records"][0]["std"].is_null());  // std of one finite value: NaN -> null

    // default: trace.md + trace.html in the current folder, summary on stdout
    r = run_cli(fmt::format("trace --model {} --ids {} --out {}/report.md", golden_dir("qwen3_gqa"), kIds, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(fs::exists(tmp + "/report.md"));
    EXPECT_TRUE(fs::exists(tmp + "/report.html"));
    EXPECT_NE(r.output.find("findings:"), std::string::npos);
    const std::string md = read(tmp + "/report.md");
    for (const char* s : {"Attention path: shapes of this run", "head_dim d=32", "[1,12,4,32]", "Layer 1",
                          "1e. Attention scores and softmax", "model.layers.1.self_attn.scores", "Final RMSNorm"}) {
        std::string esc = s;  // Markdown escapes brackets
        size_t p = 0;
        while ((p = esc.find_first_of("[]", p)) != std::string::npos) {
            esc.insert(p, "\\");
            p += 2;
        }
        EXPECT_NE(md.find(esc), std::string::npos) << s;
    }
    // filter: only the scores
    r = run_cli(fmt::format("trace --model {} --ids {} --filter '*.scores' --format json --out {}/f.json",
                            golden_dir("qwen3_gqa"), kIds, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto jf2 = nlohmann::json::parse(read(tmp + "/f.json"));
    EXPECT_EQ(jf2["records"].size(), 2u);
    fs::remove_all(tmp);
}

TEST(TracePlanted, CraftedNamesAreEscaped) {
    TraceRecorder rec;
    rec.meta().title = "<img src=x onerror=alert(2)>";
    rec.meta().facts = {{"Config", "\"><script>alert(3)</script>"}};
    std::vector<float> v = {0.0f, 0.0f};
    rec.observe("<script>alert(1)</script>", v.data(), {2});  // all zero: also lands in the findings table
    rec.observe("model.layers.0", v.data(), {2});
    const auto f = evaluate_rules(rec, default_rules());
    const std::string html = render_html(build_report(rec, f), rec, f);
    EXPECT_EQ(html.find("<script"), std::string::npos);
    EXPECT_EQ(html.find("<img"), std::string::npos);
    EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
    const std::string md = render_markdown(build_report(rec, f));
    EXPECT_EQ(md.find("<script"), std::string::npos);
    EXPECT_EQ(md.find("<img"), std::string::npos);
    EXPECT_NE(md.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);

    // through the CLI: a model folder whose path carries markup
    const std::string tmp = make_temp_dir("trace-esc");
    const std::string mdir = tmp + "/m<script>alert(1)<";
    fs::create_directory(mdir);
    for (const char* file : {"config.json", "model.safetensors"}) fs::copy_file(golden_dir("qwen3_gqa") + "/" + file, mdir + "/" + file);
    auto r = run_cli(fmt::format("trace --model '{}' --ids {} --format html --out {}/t.html", mdir, kIds, tmp));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string page = read(tmp + "/t.html");
    EXPECT_EQ(page.find("<script"), std::string::npos);
    EXPECT_NE(page.find("m&lt;script&gt;alert(1)&lt;"), std::string::npos);
    EXPECT_NE(page.find("<svg class=\"plot\""), std::string::npos);
    EXPECT_NE(page.find("<polyline"), std::string::npos);
    fs::remove_all(tmp);
}
