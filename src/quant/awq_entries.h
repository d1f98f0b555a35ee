// AWQ search results ("scale entries" of seed 000, llm-awq's awq_results): export, import, apply.
//
// Grouped entry: name = the previous op's path (model.layers.0.input_layernorm), subnames = the
// linears it feeds, relative to the layer (self_attn.q_proj, ...), value = one scale per input channel.
// Flattened entry: one (linear path, value) per linear, with the linear's REAL path
// (model.layers.0.self_attn.q_proj). Readers also accept: the seed's joined keys
// (model.model.layers.0.input_layernorm.self_attn.q_proj, which name no module), AutoAWQ's extra
// "model." prefix, and llm-awq's {"scale": [(prev, (global names...), s)], "clip": [(name, max_val)]}
// converted to JSON (torch.save pickles are not read: see docs/awq.md for the one-line conversion).
// Applying: prev op / s (norm weight, or the LAST len(s) output rows and bias of a prev linear), each
// subname's input columns * s: the float model's function is unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lmscope {

struct AwqFloatLayer;

struct AwqScaleEntry {
    std::string name;                   // previous op, real path: model.layers.0.input_layernorm
    std::vector<std::string> subnames;  // relative to the layer: self_attn.q_proj, ...
    std::vector<float> value;           // (C) C = in_features of the subnames
};

struct AwqClipEntry {
    std::string name;  // linear, real path
    int64_t out = 0, n_groups = 0;
    std::vector<float> max_val;  // (out, n_groups): weights clamped to [-max_val, max_val] per group
};

struct AwqResults {
    std::vector<AwqScaleEntry> scale;
    std::vector<AwqClipEntry> clip;
};

/** "model.model.layers.0.x" / "layers.0.x" -> "model.layers.0.x" (AutoAWQ wraps the HF model once more). */
std::string awq_canonical_path(const std::string& path);
/**
 * Real linear path of a flattened key: canonical path, and the seed's joined form
 * "<layer>.<prev op>.<linear>" reduced to "<layer>.<linear>". Error when it names no decoder linear.
 */
std::string awq_real_linear_path(const std::string& key);
/** The previous op of a decoder linear (relative): q/k/v -> input_layernorm, o -> self_attn.v_proj, ... */
std::string awq_prev_op_of(const std::string& relative_linear);
/** Layer index in a path ("model.layers.12.mlp.up_proj" -> 12); -1 when none. */
int64_t awq_layer_index(const std::string& path);

/** One (real linear path, value) per linear, in entry order. */
std::vector<std::pair<std::string, std::vector<float>>> awq_flatten(const AwqResults& r);
/** Groups flattened entries by previous op; linears sharing a previous op must carry equal values. */
std::vector<AwqScaleEntry> awq_group(const std::vector<std::pair<std::string, std::vector<float>>>& flat);

/** JSON text: {"format", "grouped": [...], "flattened": [...], "clip": [...]}. */
std::string awq_entries_to_json(const AwqResults& r);
/** Parses lmscope's JSON, a bare list of grouped entries, a {key: [values]} flattened map, or llm-awq's layout. */
AwqResults awq_entries_from_json(const std::string& text, const std::string& label);
/** Writes `<base>.json` and `<base>.safetensors` (flattened scales by real path, `<linear>.clip_max_val`). */
void awq_save_entries(const AwqResults& r, const std::string& base);
/** Loads a .json or .safetensors written by awq_save_entries (or the forms above). */
AwqResults awq_load_entries(const std::string& path);

/** Applies the scale entries of this layer (others ignored); Error on length mismatches. Returns how many. */
int awq_apply_scales(AwqFloatLayer& layer, const AwqResults& r);
/** Applies the clip entries of this layer. Returns how many. */
int awq_apply_clips(AwqFloatLayer& layer, const AwqResults& r);

/**
 * Writes a float copy of the dense checkpoint `in_dir` with the entries applied (layers' linears and
 * norms as F32, other tensors unchanged) to `out_dir` atomically; config and tokenizer files copied.
 * With apply_clip false only the (function-preserving) scales are applied.
 */
void awq_apply_entries_checkpoint(const std::string& in_dir, const AwqResults& r, const std::string& out_dir,
                                  bool apply_clip);

}  // namespace lmscope
