// `lmscope run` and `lmscope trace` on a GPT checkpoint of `lmscope train` (a folder with
// gpt_config.json, model.safetensors, tokenizer.json): the nanochat GPT has no KV cache (it is the f32
// training engine), so generation re-runs the window of the last sequence_len tokens per new token.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "trace/default_run.h"

namespace lmscope {

struct TraceMeta;
namespace gpt {
struct GptConfig;
}

/** True when `dir` is a folder with gpt_config.json. */
bool is_gpt_model_dir(const std::string& dir);

struct GptRunArgs {
    std::string model;
    std::string prompt;          // encoded with the checkpoint's tokenizer, after <|bos|>
    std::vector<int32_t> ids;    // or these ids as given
    int max_new_tokens = 0;
    SamplingParams sampling;
    std::string save_logits;     // the prompt's logits (T, V) as safetensors 'logits'
};
void gpt_run(const GptRunArgs& a);

struct GptTraceArgs {
    DefaultTraceOptions base;
    std::string model, prompt;
    std::vector<int32_t> ids;
};
/** The forward pass of a trained GPT on a prompt, every component recorded (as `trace --model` for HF). */
int gpt_trace(const GptTraceArgs& a);

/** Architecture fields of the trace header for a GPT config (shared with the default trace). */
void fill_gpt_trace_meta(TraceMeta& m, const gpt::GptConfig& cfg, int64_t batch, int64_t seq_len);

}  // namespace lmscope
