// lmscope run: generation from a Hugging Face model folder with the KV cache.
//   lmscope run --model DIR (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N] [--temperature T
//               --top-k K --top-p P --seed S] [--chat [--system S] [--no-think]] [--save-logits FILE]
// Generated text streams to stdout (ids when the prompt was given as --ids); speeds go to stderr.
#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/commands.h"
#include "cli/common.h"
#include "train/gpt_cli.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cuda/cli_cuda.h"  // --device cuda (issue 7)
#include "io/safetensors.h"
#include "model/decoder.h"
#include "model/sampler.h"
#include "tokenizer/tokenizer.h"

namespace lmscope {

namespace {

struct RunOptions {
    std::string model;
    std::string prompt;
    std::string ids;
    int max_new_tokens = 64;
    float temperature = 0.0f;
    int top_k = 0;
    float top_p = 1.0f;
    uint64_t seed = 0;
    bool chat = false;
    bool no_think = false;
    std::string system;
    std::string save_logits;
    int threads = 0;
    std::string device = "cpu";  // --device (issue 7)
    bool fp8_activations = false;
    bool bf16_activations = false;
};

void run_command(const RunOptions& o) {
    if (o.prompt.empty() == o.ids.empty()) throw UsageError("run: give exactly one of --prompt or --ids");
    if (o.max_new_tokens < 0) throw UsageError("run: --max-new-tokens must be >= 0");
    if (o.chat && !o.ids.empty()) throw UsageError("run: --chat needs --prompt (text), not --ids");
    if (o.threads > 0) ThreadPool::set_global_threads(o.threads);
    if (is_gpt_model_dir(o.model)) {  // a GPT of `lmscope train` (src/train/gpt_cli.cpp)
        if (o.device != "cpu" || o.chat || o.fp8_activations || o.bf16_activations)
            throw UsageError("run: a GPT checkpoint runs on the CPU only, without --chat, --fp8-activations or --bf16-activations");
        gpt_run({o.model, o.prompt, o.ids.empty() ? std::vector<int32_t>{} : parse_id_list(o.ids, "--ids"),
                 o.max_new_tokens, {o.temperature, o.top_k, o.top_p, o.seed}, o.save_logits});
        return;
    }

    DecoderModel model = DecoderModel::load(o.model, o.device != "cuda");  // no CPU copies for a GPU run
    const ModelConfig& cfg = model.config();
    apply_fp8_activations_flag(o.fp8_activations, model.weights().num_fp8_linears, o.device, "run");
    apply_bf16_activations_flag(o.bf16_activations, &model.weights(), o.device, "run");

    std::optional<Tokenizer> tok;
    std::vector<int32_t> ids;
    if (!o.ids.empty()) {
        ids = parse_id_list(o.ids, "--ids");
    } else {
        tok = Tokenizer::load(o.model);
        std::string text = o.prompt;
        if (o.chat) {
            std::vector<ChatMessage> msgs;
            if (!o.system.empty()) msgs.push_back({"system", o.system});
            msgs.push_back({"user", o.prompt});
            text = apply_chat_template_qwen3(msgs, true, !o.no_think);
        }
        ids = tok->encode(text);
        if (ids.empty()) throw UsageError("run: the prompt encodes to no tokens");
    }
    for (int32_t id : ids)
        if (id < 0 || id >= cfg.vocab_size)
            fail("prompt token id {} is outside the model's vocabulary [0, {})", id, cfg.vocab_size);

    // ---- --device cuda (issue 7): the same generation on the GPU, src/cuda/cli_cuda.cpp ----
    if (o.device == "cuda") {
        cuda::CliRunArgs ca{o.max_new_tokens, {o.temperature, o.top_k, o.top_p, o.seed}, o.save_logits, o.model,
                            std::vector<int64_t>(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end())};
        if (tok)
            for (const char* s : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"})
                if (auto id = tok->token_to_id(s)) ca.eos.push_back(*id);
        cuda::cli_run(model, ids, tok ? &*tok : nullptr, ca);
        return;
    }
    // ---- end --device cuda ----

    const int64_t T = static_cast<int64_t>(ids.size()), V = cfg.vocab_size;
    KVCache cache = model.new_cache(T + o.max_new_tokens);
    const bool want_all = !o.save_logits.empty();
    std::vector<float> logits(static_cast<size_t>((want_all ? T : 1) * V));

    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    model.forward(ids.data(), T, cache, logits.data(), want_all);
    const double prefill_s = std::chrono::duration<double>(clock::now() - t0).count();

    if (want_all) {
        SafetensorsWriter w;
        w.set_metadata("model", o.model);
        w.set_metadata("generator", std::string("lmscope ") + LMSCOPE_VERSION);
        Tensor t(DType::F32, {T, V}, Storage::allocate(logits.size() * sizeof(float)));
        std::copy(logits.begin(), logits.end(), t.data_mut<float>());
        w.add("logits", t);
        w.write(o.save_logits);
    }

    std::vector<int64_t> eos(cfg.eos_token_ids.begin(), cfg.eos_token_ids.end());
    if (tok)
        for (const char* s : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>"})
            if (auto id = tok->token_to_id(s)) eos.push_back(*id);
    auto is_eos = [&](int32_t id) { return std::find(eos.begin(), eos.end(), id) != eos.end(); };

    Sampler sampler({o.temperature, o.top_k, o.top_p, o.seed});
    std::optional<StreamDecoder> stream;
    if (tok) stream.emplace(*tok);
    const float* last = logits.data() + (want_all ? (T - 1) * V : 0);
    int generated = 0;
    double decode_s = 0;
    std::vector<float> step_logits(static_cast<size_t>(V));
    for (int i = 0; i < o.max_new_tokens; ++i) {
        const int32_t next = sampler.sample(last, V);
        ++generated;
        if (stream) {
            if (!(tok->is_special(next) && is_eos(next))) fmt::print("{}", stream->push(next));
        } else {
            fmt::print("{}{}", i ? " " : "", next);
        }
        std::fflush(stdout);
        if (is_eos(next) || i + 1 == o.max_new_tokens) break;
        auto t1 = clock::now();
        model.forward(&next, 1, cache, step_logits.data(), false);
        decode_s += std::chrono::duration<double>(clock::now() - t1).count();
        last = step_logits.data();
    }
    if (stream) fmt::print("{}", stream->flush());
    if (o.max_new_tokens > 0) fmt::print("\n");
    fmt::print(stderr, "prefill: {} tokens in {:.3f} s ({:.1f} tok/s); decode: {} tokens in {:.3f} s ({:.1f} tok/s); {} threads\n",
               T, prefill_s, T / prefill_s, std::max(0, generated - 1), decode_s,
               generated > 1 ? (generated - 1) / decode_s : 0.0, ThreadPool::global().size());
}

}  // namespace

void register_run(CLI::App& app) {
    auto o = std::make_shared<RunOptions>();
    CLI::App* c = app.add_subcommand("run", "Generate text (or token ids) from a Hugging Face model folder");
    c->add_option("--model", o->model, "Model folder: config.json + safetensors (+ tokenizer.json)")->required();
    c->add_option("--prompt", o->prompt, "Prompt text (needs tokenizer.json)");
    c->add_option("--ids", o->ids, "Prompt as token ids, comma separated (no tokenizer needed)");
    c->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate; 0 runs the prompt only")
        ->capture_default_str();
    c->add_option("--temperature", o->temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
    c->add_option("--top-k", o->top_k, "Keep the k most likely tokens (0 = all)")->capture_default_str();
    c->add_option("--top-p", o->top_p, "Nucleus sampling threshold")->capture_default_str()->check(
        CLI::Range(0.0f, 1.0f));
    c->add_option("--seed", o->seed, "Sampling seed")->capture_default_str();
    c->add_flag("--chat", o->chat, "Wrap the prompt in the Qwen3 chat template (user turn + assistant prompt)");
    c->add_option("--system", o->system, "System message for --chat");
    c->add_flag("--no-think", o->no_think, "With --chat: disable Qwen3 thinking (empty <think></think> block)");
    c->add_option("--save-logits", o->save_logits,
                  "Write the prompt's logits to this safetensors file (tensor 'logits', F32 [T, vocab])");
    c->add_option("--threads", o->threads, "Worker threads (default: all cores)");
    c->add_flag("--fp8-activations", o->fp8_activations, kFp8ActivationsHelp);
    c->add_flag("--bf16-activations", o->bf16_activations, kBf16ActivationsHelp);
    c->add_option("--device", o->device, "cpu or cuda (issue 7)")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
    c->callback([o] { run_command(*o); });
}

}  // namespace lmscope
