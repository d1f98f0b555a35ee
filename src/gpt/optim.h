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
#pragma once

#include <cstdint>
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
    double beta1 = 0.8, beta2 = 0.95, eps = 1e-10;
    double grad_clip = 1.0;  // <= 0: no clipping
    double warmup_ratio = 0.0, warmdown_ratio = 0.2, final_lr_frac = 0.0;
    int ns_steps = 5;
    bool muon_bf16 = true;
};

/** base_train.py get_lr_multiplier(it) for a run of num_iterations steps. */
double lr_multiplier(int64_t it, int64_t num_iterations, const OptimConfig& c);
/** base_train.py get_muon_momentum(it). */
double muon_momentum(int64_t it);
/** zeropower_via_newtonschulz5: out (rows, cols) from g (rows, cols). */
void newton_schulz5(float* out, const float* g, int64_t rows, int64_t cols, int steps, bool bf16);

class Optimizer {
public:
    Optimizer(GptModel& model, OptimConfig cfg);
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
    GptModel& model_;
    OptimConfig cfg_;
    int64_t t_ = 0;
    std::vector<float> exp_avg_, exp_avg_sq_, momentum_;  // same layout as the parameters
};

}  // namespace lmscope::gpt
