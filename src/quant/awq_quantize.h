// `lmscope quantize --awq IN OUT`: AWQ (or RTN) int4 group quantisation of a dense Qwen3 / Qwen2 /
// Llama checkpoint into the AutoAWQ "gemm" layout that transformers / vLLM / AutoAWQ load.
// Streaming: layer l is loaded as F32, searched and packed when the writer reaches its first tensor,
// so memory stays near one float layer plus the calibration activations (n_samples * seq_len * (H
// for the layer input + the inputs of the layer's linears)). Output folder written atomically.
// See docs/awq.md.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "quant/awq_search.h"

namespace lmscope {

struct AwqOptions {
    std::string method = "awq";      // "awq" | "rtn" (plain round-to-nearest, same packing, no calibration)
    int64_t group_size = 128;
    std::string calib_file;          // calibration text (paragraphs); empty: the Brown corpus
    std::string brown_dir;           // empty: awq_default_brown_dir()
    std::string tokenizer;           // tokenizer.json or folder; empty: the input folder
    int64_t n_samples = 128;         // calibration blocks ...
    int64_t seq_len = 512;           // ... of this many tokens
    std::vector<int32_t> calib_ids;  // token ids to use instead of text (tests); cut into blocks of seq_len
    bool duo_scaling = false;        // AutoAWQ's default (true) instead of llm-awq's
    bool clip = true;                // clip search after scaling
    bool report = true;              // OUT/awq/report.json: per-linear output MSE of AWQ vs RTN
    bool save_entries = true;        // OUT/awq/scales.{json,safetensors}
    bool progress = true;
    bool quantize_lm_head = false;   // also lm_head (RTN, same group size), written as lm_head.qweight/qzeros/
                                     // scales; a tied head is untied (the embedding table stays F16)
};

struct AwqQuantizeSummary {
    int64_t layers = 0;
    int64_t linears = 0;
    int64_t calib_tokens = 0;
    double seconds = 0;
    std::vector<AwqLayerReport> layer_reports;
    nlohmann::json report;  // also written to OUT/awq/report.json (awq method)
};

/** Quantises `in_dir` into `out_dir` (replaced atomically). Errors name the tensor / file / option. */
AwqQuantizeSummary awq_quantize_checkpoint(const std::string& in_dir, const std::string& out_dir, const AwqOptions& opt);

/**
 * Mean squared error of q(xq) against ref(x) over n rows. `row_scale` (out), when q's output rows were
 * divided by the next group's scales (up_proj before down_proj, v_proj before o_proj), is multiplied
 * back so that both outputs are in the original space (otherwise the fold itself would count as error).
 */
double awq_output_mse(const float* x, int64_t n, const Linear& ref, const Linear& q, const float* xq,
                      const std::vector<float>* row_scale = nullptr);

/**
 * Calibration token ids, n_samples blocks of seq_len: opt.calib_ids, else the text (opt.calib_file or the
 * Brown corpus) through opt.tokenizer (or `default_tokenizer`). Error on ids outside [0, vocab).
 */
std::vector<int32_t> awq_calibration_ids(const AwqOptions& opt, const std::string& default_tokenizer, int64_t vocab);

/** CLI entry for the lead's `lmscope quantize --awq IN OUT ...`: runs and prints a summary; returns the exit code. */
int awq_quantize_command(const std::string& in_dir, const std::string& out_dir, const AwqOptions& opt);

}  // namespace lmscope
