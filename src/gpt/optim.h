// nanochat v0 optimisers and schedule (nanochat/muon.py, torch.optim.AdamW, scripts/base_train.py):
//   AdamW for wte and lm_head: betas (0.8, 0.95), eps 1e-10, weight decay 0, lr 0.2 (wte) and 0.004
//     (lm_head), both x (n_embd/768)^-0.5; torch's math (lerp'ed first moment, bias corrections).
//   Muon for every transformer.h matrix: lr 0.02, momentum (1-f)*0.85 + f*0.95 with f = min(it/300, 1),
//     nesterov, 5 Newton-Schulz steps (3.4445, -4.7750, 2.0315) on X / (||X||_F + 1e-7) (transposed when
//     rows > cols), update scaled by max(1, rows/cols)^0.5. nanochat runs Newton-Schulz in bf16;
//     muon_bf16 emulates it by rounding to bf16 (RNE) the input, the normalised X, each matmul output
//     and each elementwise result, arithmetic in f32 in between (tools/golden_gpt.py does the same).
//   Schedule: LR multiplier 1 then linear to final_lr_frac (0) over the last warmdown_ratio (0.2)
//     of the iterations; gradients clipped to global norm grad_clip (1.0) first.
// The optimiser works on an OptimTarget (flat parameter and gradient buffers, a ParamInfo list, each
// parameter either Muon (ParamInfo::matrix) or AdamW with its own base learning rate), so models other
// than the GPT (the Qwen3 of src/qwen3train) reuse it; Optimizer(GptModel&, cfg) builds the GPT's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gpt/gpt.h"

namespace lmscope {
class SafetensorsWriter;
class SafetensorsFile;
}  // namespace lmscope

namespace lmscope::gpt {

struct OptimConfig {
    double lr_embedding = 0.2;
    double lr_unembedding = 0.004;
    double lr_matrix = 0.02;
    double lr_norm = 0.004;  // models with learnable norm weights (the Qwen3): their AdamW lr, x (d/768)^-0.5
    double beta1 = 0.8, beta2 = 0.95, eps = 1e-10;
    double grad_clip = 1.0;  // <= 0: no clipping
    double warmup_ratio = 0.0, warmdown_ratio = 0.2, final_lr_frac = 0.0;
    int ns_steps = 5;
    bool muon_bf16 = true;
};

/** What an Optimizer updates. The buffers must outlive the Optimizer. */
struct OptimTarget {
    std::vector<float>* data = nullptr;   // parameters, laid out as `params` says
    std::vector<float>* grads = nullptr;  // gradients, same layout
    std::vector<ParamInfo> params;        // ParamInfo::matrix (2-D): Muon; else AdamW
    std::vector<double> adam_lr;          // per params[i]: AdamW base lr (before the schedule); unused for Muon
};

/** The GPT's target: AdamW lr lr_unembedding for lm_head and lr_embedding for wte, both x (n_embd/768)^-0.5. */
OptimTarget gpt_optim_target(GptModel& model, const OptimConfig& cfg);

/** base_train.py get_lr_multiplier(it) for a run of num_iterations steps. */
double lr_multiplier(int64_t it, int64_t num_iterations, const OptimConfig& c);
/** base_train.py get_muon_momentum(it). */
double muon_momentum(int64_t it);
/** zeropower_via_newtonschulz5: out (rows, cols) from g (rows, cols). */
void newton_schulz5(float* out, const float* g, int64_t rows, int64_t cols, int steps, bool bf16);

class Optimizer {
public:
    Optimizer(GptModel& model, OptimConfig cfg);
    /** Any model: `target` names the buffers and which parameter gets which update. */
    Optimizer(OptimTarget target, OptimConfig cfg);
    /**
     * One step: clip the model's gradients, then AdamW / Muon with step `it` of `num_iterations`
     * (it counts from 0). Returns the global gradient norm before clipping.
     */
    double step(int64_t it, int64_t num_iterations);
    /** Number of steps taken (AdamW's t). */
    int64_t steps_taken() const { return t_; }
    const OptimConfig& config() const { return cfg_; }

    /** Adds the state as tensors "adam.exp_avg.<param>", "adam.exp_avg_sq.<param>", "muon.momentum_buffer.<param>". */
    void save_to(SafetensorsWriter& w) const;
    /** Restores what save_to wrote (and the step count); Error naming `label` when anything is off. */
    void load_from(const SafetensorsFile& f, int64_t steps_taken, const std::string& label);

private:
    OptimTarget target_;
    OptimConfig cfg_;
    int64_t t_ = 0;
    std::vector<float> exp_avg_, exp_avg_sq_, momentum_;  // same layout as the parameters
};

}  // namespace lmscope::gpt
