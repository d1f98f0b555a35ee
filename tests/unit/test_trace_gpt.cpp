// The GPT's trace records against PyTorch: with tests/golden/gpt_tiny's second init (lm_head and
// c_proj random, so nothing is trivially zero), the recorder's statistics of the `logits` record
// (forward) and of every `grad.<parameter>` record (backward) equal the statistics of the tensors
// PyTorch saved (tools/golden_gpt.py), computed here independently in double:
// mean / std / min / max within 1e-4 relative (the mean relative to max(|mean|, std)).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "gpt/gpt.h"
#include "io/safetensors.h"
#include "test_util.h"
#include "trace/recorder.h"

using namespace lmscope;
using namespace lmscope::gpt;
using lmscope::testing::golden_dir;

namespace {

struct RefStats {
    double mean, std, min, max;
};

RefStats ref_stats(const std::vector<double>& v) {
    double s = 0, mn = INFINITY, mx = -INFINITY;
    for (double x : v) {
        s += x;
        mn = std::min(mn, x);
        mx = std::max(mx, x);
    }
    const double mean = s / double(v.size());
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    return {mean, std::sqrt(ss / double(v.size() - 1)), mn, mx};
}

void expect_stats(const TraceRecord* r, const std::vector<double>& ref, const std::string& what) {
    ASSERT_NE(r, nullptr) << what;
    const RefStats e = ref_stats(ref);
    const double scale = std::max(std::abs(e.mean), e.std);
    EXPECT_LE(std::abs(r->stats.mean - e.mean), 1e-4 * scale) << what << " mean";
    EXPECT_LE(std::abs(r->stats.std - e.std), 1e-4 * e.std) << what << " std";
    EXPECT_LE(std::abs(r->stats.min - e.min), 1e-4 * std::abs(e.min) + 1e-12) << what << " min";
    EXPECT_LE(std::abs(r->stats.max - e.max), 1e-4 * std::abs(e.max) + 1e-12) << what << " max";
}

}  // namespace

TEST(TraceGpt, RecordsMatchPyTorchStatistics) {
    const std::string dir = golden_dir("gpt_tiny");
    SafetensorsFile g = SafetensorsFile::open(dir + "/golden.safetensors");
    GptModel m(GptConfig::load(dir));
    m.load(dir + "/model.safetensors");
    for (const ParamInfo& p : m.params())
        if (p.zero_init) {
            std::vector<float> w = g.get("alt." + p.name).to_f32_vector();
            std::memcpy(m.param(p.name), w.data(), sizeof(float) * p.numel);
        }
    std::vector<int32_t> idx, tgt;
    for (double d : g.get("idx").to_f64_vector()) idx.push_back(static_cast<int32_t>(d));
    for (double d : g.get("targets").to_f64_vector()) tgt.push_back(static_cast<int32_t>(d));
    const int64_t B = g.get("idx").dim(0), T = g.get("idx").dim(1);

    TraceRecorder rec;
    rec.set_iteration(0);
    rec.set_phase(Phase::Forward);
    m.zero_grad();
    m.forward(idx.data(), tgt.data(), B, T, &rec);
    rec.set_phase(Phase::Backward);
    m.backward(&rec);

    expect_stats(rec.find("logits", Phase::Forward, 0), g.get("alt_logits").to_f64_vector(), "logits");
    int checked = 0;
    for (const ParamInfo& p : m.params()) {
        expect_stats(rec.find("grad." + p.name, Phase::Backward, 0), g.get("alt_grad." + p.name).to_f64_vector(),
                     "grad." + p.name);
        ++checked;
    }
    EXPECT_EQ(checked, int(m.params().size()));
}
