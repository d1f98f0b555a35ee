// lmscope bench --model DIR [--prompt-len 512] [--gen-len 128] [--threads N] [--repeat R] [--json]
//               [--fp8-activations] [--bf16-activations]
// Measures prefill and decode speed like llama-bench: a warm-up run, then R timed runs; each run
// prefills prompt-len random tokens into a fresh KV cache, then decodes gen-len tokens one by one.
// Reports the median (and min/max) tokens/s of the R runs.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cuda/cli_cuda.h"  // --device cuda (issue 7)
#include "model/decoder.h"
#include "model/sampler.h"
#include "ops/cpu/simd.h"
#include "ops/ops.h"

namespace lmscope {

namespace {

struct BenchOptions {
    std::string model;
    int prompt_len = 512;
    int gen_len = 128;
    int threads = 0;
    int repeat = 5;
    bool json = false;
    uint64_t seed = 0;
    std::string device = "cpu";  // --device, --batch, --exact (issue 7)
    bool fp8_activations = false;
    bool bf16_activations = false;
    int batch = 1;
    bool exact = false;
};

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench_command(const BenchOptions& o) {
    if (o.prompt_len < 1 || o.gen_len < 0 || o.repeat < 1)
        throw UsageError("bench: --prompt-len >= 1, --gen-len >= 0 and --repeat >= 1 are required");
    if (o.threads > 0) ThreadPool::set_global_threads(o.threads);
    // ---- --device cuda (issue 7): src/cuda/cli_cuda.cpp ----
    if (o.device != "cuda" && (o.batch != 1 || o.exact)) throw UsageError("bench: --batch and --exact need --device cuda");
    if (o.fp8_activations && o.device == "cuda") apply_fp8_activations_flag(true, 1, o.device, "bench");
    if (o.bf16_activations && o.device == "cuda") apply_bf16_activations_flag(true, nullptr, o.device, "bench");
    if (o.device == "cuda") {
        DecoderModel host = DecoderModel::load(o.model, false);  // only feeds the GPU: no CPU copies
        cuda::cli_bench(host, {o.model, o.prompt_len, o.gen_len, o.repeat, o.batch, o.json, o.exact, o.seed});
        return;
    }
    // ---- end --device cuda ----
    DecoderModel model = DecoderModel::load(o.model);
    apply_fp8_activations_flag(o.fp8_activations, model.weights().num_fp8_linears, o.device, "bench");
    apply_bf16_activations_flag(o.bf16_activations, &model.weights(), o.device, "bench");
    const int64_t V = model.config().vocab_size;
    std::mt19937 rng(static_cast<uint32_t>(o.seed));
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(std::min<int64_t>(V, 32000) - 1));
    std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_len));
    for (auto& id : prompt) id = pick(rng);

    using clock = std::chrono::steady_clock;
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<double> prefill, decode;
    KVCache cache = model.new_cache(o.prompt_len + o.gen_len);
    for (int r = -1; r < o.repeat; ++r) {  // r = -1 is the warm-up
        cache.len = 0;
        auto t0 = clock::now();
        model.forward(prompt.data(), o.prompt_len, cache, logits.data(), false);
        const double tp = std::chrono::duration<double>(clock::now() - t0).count();
        int32_t next = argmax(logits.data(), V);
        auto t1 = clock::now();
        for (int i = 0; i < o.gen_len; ++i) {
            model.forward(&next, 1, cache, logits.data(), false);
            next = argmax(logits.data(), V);
        }
        const double td = std::chrono::duration<double>(clock::now() - t1).count();
        if (r < 0) continue;
        prefill.push_back(o.prompt_len / tp);
        if (o.gen_len > 0) decode.push_back(o.gen_len / td);
        if (!o.json)
            fmt::print(stderr, "run {}/{}: prefill {:.1f} tok/s, decode {:.1f} tok/s\n", r + 1, o.repeat,
                       prefill.back(), o.gen_len > 0 ? decode.back() : 0.0);
    }
    const double p = median(prefill), d = decode.empty() ? 0.0 : median(decode);
    const size_t wbytes = model.weights().bytes;
    if (o.json) {
        nlohmann::json j = {{"model", o.model},
                            {"prefill_tok_s", p},
                            {"decode_tok_s", d},
                            {"prefill_tok_s_min", *std::min_element(prefill.begin(), prefill.end())},
                            {"prefill_tok_s_max", *std::max_element(prefill.begin(), prefill.end())},
                            {"prompt_len", o.prompt_len},
                            {"gen_len", o.gen_len},
                            {"threads", ThreadPool::global().size()},
                            {"repeat", o.repeat},
                            {"weights_bytes", wbytes},
                            {"isa", simd::isa_name(simd::active_isa())},
                            {"fp8_activations", fp8_activation_mode()},
                            {"bf16_activations", bf16_activation_mode()},
                            {"avx512_bf16", simd::has_avx512_bf16()}};
        if (!decode.empty()) {
            j["decode_tok_s_min"] = *std::min_element(decode.begin(), decode.end());
            j["decode_tok_s_max"] = *std::max_element(decode.begin(), decode.end());
        }
        fmt::print("{}\n", j.dump());
    } else {
        fmt::print("model {}  weights {}  threads {}  isa {}{}\n", o.model, human_bytes(static_cast<double>(wbytes)),
                   ThreadPool::global().size(), simd::isa_name(simd::active_isa()),
                   bf16_activation_mode() ? "  bf16 activations" : fp8_activation_mode() ? "  fp8 activations" : "");
        fmt::print("prefill {:>5} tokens: {:8.1f} tok/s (median of {})\n", o.prompt_len, p, o.repeat);
        if (o.gen_len > 0)
            fmt::print("decode  {:>5} tokens: {:8.1f} tok/s (median of {})  = {} of weights/s\n", o.gen_len, d,
                       o.repeat, human_bytes(d * static_cast<double>(wbytes)));
    }
}

}  // namespace

void register_bench(CLI::App& app) {
    auto o = std::make_shared<BenchOptions>();
    CLI::App* c = app.add_subcommand("bench", "Measure prefill and decode tokens/s (like llama-bench)");
    c->add_option("--model", o->model, "Model folder")->required();
    c->add_option("--prompt-len", o->prompt_len, "Prompt tokens to prefill")->capture_default_str();
    c->add_option("--gen-len", o->gen_len, "Tokens to decode")->capture_default_str();
    c->add_option("--threads", o->threads, "Worker threads (default: all cores)");
    c->add_option("--repeat", o->repeat, "Timed runs after one warm-up; the median is reported")->capture_default_str();
    c->add_option("--seed", o->seed, "Seed of the random prompt")->capture_default_str();
    c->add_flag("--json", o->json, "Print one JSON object");
    c->add_flag("--fp8-activations", o->fp8_activations, kFp8ActivationsHelp);
    c->add_flag("--bf16-activations", o->bf16_activations, kBf16ActivationsHelp);
    c->add_option("--device", o->device, "cpu or cuda (issue 7)")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
    c->add_option("--batch", o->batch, "Sequences decoded together (--device cuda)")->capture_default_str();
    c->add_flag("--exact", o->exact, "f32 activations on the GPU (--device cuda)");
    c->callback([o] { bench_command(*o); });
}

}  // namespace lmscope
