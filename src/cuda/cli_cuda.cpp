// The GPU paths of `lmscope run` and `lmscope bench` (see cli_cuda.h).
#include "cuda/cli_cuda.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>

#include "cli/common.h"
#include "core/error.h"
#include "cuda/cuda_api.h"
#include "io/safetensors.h"
#include "model/decoder.h"
#include "tokenizer/tokenizer.h"

namespace lmscope::cuda {

namespace {
double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
}  // namespace

void cli_run(const DecoderModel& model, const std::vector<int32_t>& ids, const Tokenizer* tok, const CliRunArgs& a) {
    const int64_t T = static_cast<int64_t>(ids.size()), V = model.config().vocab_size;
    CudaDecoder dev(model);
    dev.reset(1, T + a.max_new_tokens + 1);
    const bool want_all = !a.save_logits.empty();
    std::vector<float> logits(want_all ? static_cast<size_t>(T * V) : 0);
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    dev.prefill(0, ids.data(), T, want_all ? logits.data() : nullptr, want_all);
    const double prefill_s = std::chrono::duration<double>(clock::now() - t0).count();
    if (want_all) {
        SafetensorsWriter w;
        w.set_metadata("model", a.model_dir);
        w.set_metadata("generator", std::string("lmscope ") + LMSCOPE_VERSION + " (cuda)");
        Tensor t(DType::F32, {T, V}, Storage::allocate(logits.size() * sizeof(float)));
        std::copy(logits.begin(), logits.end(), t.data_mut<float>());
        w.add("logits", t);
        w.write(a.save_logits);
    }
    auto is_eos = [&](int32_t id) { return std::find(a.eos.begin(), a.eos.end(), id) != a.eos.end(); };
    // Sampling runs on the GPU (sample_cuda) on logits that never leave it; the uniform draw comes from
    // the CPU Sampler's generator (mt19937_64 seeded alike, one generate_canonical per sampled token),
    // so both devices pick the same token from the same logits.
    std::mt19937_64 rng(a.sampling.seed);
    auto next_token = [&] {
        double u = 0.0;
        if (a.sampling.temperature > 0.0f) u = std::generate_canonical<double, std::numeric_limits<double>::digits>(rng);
        int32_t id = 0;
        dev.sample_next(a.sampling, &u, &id);
        return id;
    };
    std::optional<StreamDecoder> stream;
    if (tok) stream.emplace(*tok);
    int generated = 0;
    double decode_s = 0;
    int32_t next = a.max_new_tokens > 0 ? next_token() : 0;
    for (int i = 0; i < a.max_new_tokens; ++i) {
        ++generated;
        if (stream) {
            if (!(tok->is_special(next) && is_eos(next))) fmt::print("{}", stream->push(next));
        } else {
            fmt::print("{}{}", i ? " " : "", next);
        }
        std::fflush(stdout);
        if (is_eos(next) || i + 1 == a.max_new_tokens) break;
        auto t1 = clock::now();
        dev.decode(&next, nullptr);
        next = next_token();
        decode_s += std::chrono::duration<double>(clock::now() - t1).count();
    }
    if (stream) fmt::print("{}", stream->flush());
    if (a.max_new_tokens > 0) fmt::print("\n");
    fmt::print(stderr, "prefill: {} tokens in {:.3f} s ({:.1f} tok/s); decode: {} tokens in {:.3f} s ({:.1f} tok/s); cuda\n",
               T, prefill_s, T / prefill_s, std::max(0, generated - 1), decode_s,
               generated > 1 ? (generated - 1) / decode_s : 0.0);
}

void cli_bench(const DecoderModel& model, const CliBenchArgs& a) {
    if (a.batch < 1) throw UsageError("bench: --batch must be >= 1");
    const int64_t V = model.config().vocab_size;
    CudaDecoder dev(model, {a.exact, true});
    const int B = a.batch;
    dev.reset(B, a.prompt_len + a.gen_len + 1);
    std::mt19937 rng(static_cast<uint32_t>(a.seed));
    std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(std::min<int64_t>(V, 32000) - 1));
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(B), std::vector<int32_t>(static_cast<size_t>(a.prompt_len)));
    for (auto& p : prompts)
        for (auto& id : p) id = pick(rng);
    std::vector<float> logits(static_cast<size_t>(V));
    std::vector<int32_t> first(static_cast<size_t>(B)), out(static_cast<size_t>(B) * std::max(a.gen_len, 1));
    std::vector<double> prefill, decode;
    GpuTimer timer;
    for (int r = -1; r < a.repeat; ++r) {  // r = -1 is the warm-up (graph capture included)
        dev.clear();
        timer.start();
        dev.prefill(0, prompts[0].data(), a.prompt_len, logits.data(), false);
        const double tp = timer.stop_ms() / 1e3;
        first[0] = argmax(logits.data(), V);
        for (int b = 1; b < B; ++b) {
            dev.prefill(b, prompts[static_cast<size_t>(b)].data(), a.prompt_len, logits.data(), false);
            first[static_cast<size_t>(b)] = argmax(logits.data(), V);
        }
        double td = 0;
        if (a.gen_len > 0) {
            timer.start();
            dev.decode_greedy(first.data(), a.gen_len, out.data());
            td = timer.stop_ms() / 1e3;
        }
        if (r < 0) continue;
        prefill.push_back(a.prompt_len / tp);
        if (a.gen_len > 0) decode.push_back(static_cast<double>(B) * a.gen_len / td);
        if (!a.json)
            fmt::print(stderr, "run {}/{}: prefill {:.1f} tok/s, decode {:.1f} tok/s (batch {})\n", r + 1, a.repeat,
                       prefill.back(), a.gen_len > 0 ? decode.back() : 0.0, B);
    }
    const double p = median(prefill), d = decode.empty() ? 0.0 : median(decode);
    const size_t wbytes = dev.weight_bytes();
    // the two numbers (bench/cuda_notes.md): bytes a decode step must read, FLOPs a prefill must do
    const ModelConfig& c = model.config();
    const double lin = static_cast<double>(c.hidden_size * (2 * c.q_dim() + 2 * c.kv_dim()) +
                                           3 * c.hidden_size * c.intermediate_size);
    const double P = a.prompt_len;
    const double prefill_flops = static_cast<double>(c.num_layers) * (2 * lin * P + 2.0 * c.q_dim() * P * (P + 1)) +
                                 2.0 * static_cast<double>(c.hidden_size * c.vocab_size);
    const bool tied = model.weights().lm_head.weight.raw() == model.weights().embed.raw();
    const double step_weight_bytes =
        static_cast<double>(wbytes) - (tied ? 0.0 : static_cast<double>(model.weights().embed.nbytes()));
    const LinearFormat fmt0 = model.weights().layers.at(0).q.format;
    const std::string format = fmt0 == LinearFormat::Fp8Block ? "fp8-block"
                               : fmt0 == LinearFormat::AwqInt4 ? "awq-int4"
                                                               : dtype_name(model.weights().layers.at(0).q.weight.dtype());
    if (a.json) {
        nlohmann::json j = {{"model", a.model},
                            {"weights_format", format},
                            {"device", device_description()},
                            {"prefill_tok_s", p},
                            {"decode_tok_s", d},
                            {"prompt_len", a.prompt_len},
                            {"gen_len", a.gen_len},
                            {"batch", B},
                            {"repeat", a.repeat},
                            {"exact", a.exact},
                            {"weights_bytes", wbytes},
                            {"kv_bytes_per_position", dev.kv_bytes_per_position()},
                            {"batch1_step", dev.batch1_step()},
                            {"step_weight_bytes", step_weight_bytes},
                            {"prefill_flops", prefill_flops}};
        fmt::print("{}\n", j.dump());
    } else {
        fmt::print("model {}  weights {} ({})  device {}\n", a.model, human_bytes(static_cast<double>(wbytes)), format,
                   device_description());
        fmt::print("prefill {:>5} tokens: {:10.1f} tok/s (median of {})\n", a.prompt_len, p, a.repeat);
        if (a.gen_len > 0)
            fmt::print("decode  {:>5} tokens x batch {}: {:10.1f} tok/s (median of {})\n", a.gen_len, B, d, a.repeat);
        if (a.gen_len > 0 && B == 1) fmt::print("decode step: {}\n", dev.batch1_step());
    }
}

}  // namespace lmscope::cuda
