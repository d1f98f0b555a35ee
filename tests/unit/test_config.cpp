// config.json parsing: the three architectures' fields and flags, both RoPE spellings, and one
// test per bad-input class checking the one-line message (field named, expected and found).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "model/presets.h"
#include "model/rope_table.h"

using namespace lmscope;
using nlohmann::json;

namespace {

json qwen3_06b() { return preset_config("qwen3-0.6b"); }

std::string error_of(const json& j) {
    try {
        ModelConfig::from_json(j, "config.json");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(Config, Qwen3HeadDimFromConfigNotHiddenOverHeads) {
    ModelConfig c = ModelConfig::from_json(qwen3_06b(), "config.json");
    EXPECT_EQ(c.arch, Arch::Qwen3);
    EXPECT_EQ(c.head_dim, 128);  // not 1024 / 16 = 64 (seed 001's mistake)
    EXPECT_EQ(c.q_dim(), 2048);
    EXPECT_EQ(c.kv_dim(), 1024);
    EXPECT_TRUE(c.qk_norm);
    EXPECT_FALSE(c.qkv_bias);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
    // the expected q_proj shape follows head_dim
    for (const auto& e : expected_tensors(c))
        if (e.name == "model.layers.0.self_attn.q_proj.weight") {
            EXPECT_EQ(e.shape, (Shape{2048, 1024}));
        }
}

TEST(Config, Qwen2BiasAndDerivedHeadDim) {
    json j = preset_config("tiny-qwen2");
    ModelConfig c = ModelConfig::from_json(j, "config.json");
    EXPECT_EQ(c.arch, Arch::Qwen2);
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_FALSE(c.o_bias);
    EXPECT_FALSE(c.qk_norm);
    EXPECT_EQ(c.head_dim, 16);  // 64 / 4, no head_dim key
    EXPECT_FALSE(c.head_dim_from_config);
}

TEST(Config, LlamaRopeScalingBothSpellings) {
    json j = preset_config("llama3-8b");
    ModelConfig a = ModelConfig::from_json(j, "config.json");
    EXPECT_EQ(a.rope.type, "llama3");
    EXPECT_DOUBLE_EQ(a.rope.factor, 8.0);
    EXPECT_EQ(a.rope.original_max_position_embeddings, 8192);
    // transformers 5 writes rope_parameters with rope_theta inside
    json k = j;
    json rp = j["rope_scaling"];
    rp["rope_theta"] = 500000.0;
    k.erase("rope_scaling");
    k.erase("rope_theta");
    k["rope_parameters"] = rp;
    ModelConfig b = ModelConfig::from_json(k, "config.json");
    EXPECT_EQ(b.rope.type, "llama3");
    EXPECT_DOUBLE_EQ(b.rope.theta, 500000.0);
    EXPECT_EQ(rope_inv_freq(a.rope, 128), rope_inv_freq(b.rope, 128));
    EXPECT_DOUBLE_EQ(a.rms_norm_eps, 1e-5);
}

TEST(Config, Llama3InvFreqBands) {
    RopeConfig r;
    r.theta = 500000;
    r.type = "llama3";
    r.factor = 8;
    r.low_freq_factor = 1;
    r.high_freq_factor = 4;
    r.original_max_position_embeddings = 8192;
    RopeConfig plain = r;
    plain.type = "default";
    auto s = rope_inv_freq(r, 128), p = rope_inv_freq(plain, 128);
    EXPECT_EQ(s[0], p[0]);                   // high frequency (short wavelength): kept
    EXPECT_FLOAT_EQ(s[63], p[63] / 8.0f);    // low frequency: divided by factor
    int smoothed = 0;
    for (int i = 0; i < 64; ++i)
        if (s[i] != p[i] && std::abs(s[i] - p[i] / 8.0f) > 1e-12f) ++smoothed;
    EXPECT_GT(smoothed, 0);                  // the band in between is blended
}

TEST(ConfigErrors, UnknownArchitecture) {
    json j = qwen3_06b();
    j["architectures"] = {"MistralForCausalLM"};
    std::string e = error_of(j);
    EXPECT_NE(e.find("config.json: field 'architectures': 'MistralForCausalLM' is not supported"), std::string::npos) << e;
}

TEST(ConfigErrors, MissingField) {
    json j = qwen3_06b();
    j.erase("hidden_size");
    EXPECT_EQ(error_of(j), "config.json: missing field 'hidden_size'");
}

TEST(ConfigErrors, WrongType) {
    json j = qwen3_06b();
    j["num_hidden_layers"] = "28";
    EXPECT_EQ(error_of(j), "config.json: field 'num_hidden_layers': expected an integer >= 1, found \"28\"");
}

TEST(ConfigErrors, KvHeadsNotDivisor) {
    json j = qwen3_06b();
    j["num_key_value_heads"] = 5;
    EXPECT_NE(error_of(j).find("field 'num_key_value_heads': expected a divisor of num_attention_heads (16), found 5"),
              std::string::npos);
}

TEST(ConfigErrors, UnsupportedRopeAndActivation) {
    json j = qwen3_06b();
    j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
    EXPECT_NE(error_of(j).find("'yarn' is not supported"), std::string::npos);
    json k = qwen3_06b();
    k["hidden_act"] = "gelu";
    EXPECT_EQ(error_of(k), "config.json: field 'hidden_act': expected \"silu\", found \"gelu\"");
    json l = preset_config("llama3-8b");
    l["rope_scaling"].erase("original_max_position_embeddings");
    EXPECT_NE(error_of(l).find("missing field 'rope_scaling.original_max_position_embeddings'"), std::string::npos);
}

TEST(ConfigErrors, NotJson) {
    try {
        ModelConfig::from_json_text("{\"a\": ", "x/config.json");
        FAIL();
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "x/config.json: not valid JSON");
    }
}
