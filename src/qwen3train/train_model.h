// The Qwen3 as a train::TrainModel (train/trainer.h): what `lmscope train --arch qwen3` drives.
// Optimiser split: Muon for the block projections (q/k/v/o, gate/up/down); AdamW for the rest, lr x
// (hidden/768)^-0.5 as the GPT: embed_tokens lr_embedding (untied) or lr_unembedding (tied: it is the
// output head too, and lr_embedding's 0.2 would wreck it), lm_head lr_unembedding, every RMSNorm
// weight (input/post-attention/final, q_norm, k_norm) lr_norm.
#pragma once

#include <memory>

#include "qwen3train/config.h"
#include "train/trainer.h"

namespace lmscope::qwen3train {

std::unique_ptr<train::TrainModel> make_qwen3_train_model(const Qwen3Config& cfg);

}  // namespace lmscope::qwen3train
