// `lmscope run --device cuda` and `lmscope bench --device cuda [--batch B]`: the CLI commands' GPU
// paths, kept out of cmd_run.cpp / cmd_bench.cpp (which call these from one marked block each).
// Plain C++: in a build without CUDA the CudaDecoder constructor throws "built without CUDA".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/sampler.h"

namespace lmscope {

class DecoderModel;
class Tokenizer;

namespace cuda {

struct CliRunArgs {
    int max_new_tokens = 64;
    SamplingParams sampling;
    std::string save_logits;  // prompt logits (T, V) as safetensors, as the CPU path
    std::string model_dir;
    std::vector<int64_t> eos;  // ids that end generation
};
/** Prefill + sampled decode on the GPU; text (or ids) to stdout, speeds to stderr, as `run`. */
void cli_run(const DecoderModel& model, const std::vector<int32_t>& ids, const Tokenizer* tok, const CliRunArgs& a);

struct CliBenchArgs {
    std::string model;
    int prompt_len = 512, gen_len = 128, repeat = 5, batch = 1;
    bool json = false;
    bool exact = false;
    uint64_t seed = 0;
};
/**
 * Per run: prefill prompt_len random tokens into sequence 0 (timed, CUDA events), prefill the other
 * batch-1 sequences, then gen_len greedy steps of all `batch` sequences chained on the GPU (timed).
 * One warm-up run, then `repeat`; medians reported.
 */
void cli_bench(const DecoderModel& model, const CliBenchArgs& a);

}  // namespace cuda
}  // namespace lmscope
