// AWQ / RTN int4 for the nanochat GPT of `lmscope train` (issue 6, last paragraph).
//
// The GPT's norms have no weight and its MLP is ReLU², so AWQ's usual folds do not all exist:
//   norm -> c_q, c_k, c_v        skipped: a weightless RMSNorm has no weight to divide by s
//   norm -> mlp.c_fc             skipped: same
//   attn.c_v -> attn.c_proj      folded when c_v's out equals c_proj's in (n_kv_head == n_head; with GQA
//                                one v head feeds several query heads, so no per-channel fold exists)
//   mlp.c_fc -> mlp.c_proj       folded through ReLU²'s degree-2 homogeneity: relu(z / sqrt(s))^2 =
//                                relu(z)^2 / s for s > 0, so c_fc's rows are divided by sqrt(s) and
//                                c_proj's columns multiplied by s
// then llm-awq's clip search on c_v, attn.c_proj, mlp.c_fc, mlp.c_proj (not c_q / c_k). Every block
// linear is stored as AutoAWQ-layout int4 (qweight / qzeros / scales, group `group_size`); wte and
// lm_head stay F32. The output is an lmscope GPT checkpoint (gpt_config.json with a
// quantization_config, model.safetensors, tokenizer.json) that GptModel::load reads back (it expands
// the int4 weights to f32: the GPT engine is the f32 training engine).
#pragma once

#include <string>

#include "quant/awq_quantize.h"

namespace lmscope {

namespace gpt {
class GptModel;
}

/**
 * Folds AWQ scales into block `layer` of a float GPT, leaving its function unchanged: s_v (H*D) multiplies
 * attn.c_proj's input columns and divides attn.c_v's rows; s_fc (4C) multiplies mlp.c_proj's input
 * columns and divides mlp.c_fc's rows by sqrt(s_fc) (ReLU² is homogeneous of degree 2). Null: not folded.
 */
void awq_gpt_fold(gpt::GptModel& m, int64_t layer, const std::vector<float>* s_v, const std::vector<float>* s_fc);

/** True when `dir` holds a GPT checkpoint of `lmscope train` (gpt_config.json). */
bool is_gpt_checkpoint(const std::string& dir);

/** Quantises the GPT in `in_dir` into `out_dir` (atomic). opt.method awq | rtn; report as for HF models. */
AwqQuantizeSummary awq_quantize_gpt(const std::string& in_dir, const std::string& out_dir, const AwqOptions& opt);

}  // namespace lmscope
