// lmscope train: trains nanochat's v0 GPT on the Brown corpus (or --data) on the CPU; see train/trainer.h.
#include "cli/commands.h"
#include "train/trainer.h"

namespace lmscope {

void register_train(CLI::App& app) {
    auto opt = std::make_shared<train::TrainOptions>();
    CLI::App* sub = app.add_subcommand("train", "Train a nanochat-style GPT (BPE tokenizer, Muon + AdamW) on text");
    sub->add_option("--arch", opt->arch, "Model architecture: gpt (nanochat v0)")->capture_default_str();
    auto* d = sub->add_option("--depth", opt->depth, "Layers; n_embd = 64 x depth, heads of 128")->capture_default_str();
    sub->add_option("--seq-len", opt->seq_len, "Tokens per sequence")->capture_default_str();
    sub->add_option("--batch", opt->batch, "Sequences per step")->capture_default_str();
    sub->add_option("--steps", opt->steps, "Optimiser steps (default 100)");
    sub->add_option("--tokens", opt->tokens, "Token budget instead of --steps");
    sub->add_option("--lr-embedding", opt->lr_embedding, "AdamW lr of wte (x (n_embd/768)^-0.5)")->capture_default_str();
    sub->add_option("--lr-unembedding", opt->lr_unembedding, "AdamW lr of lm_head (x (n_embd/768)^-0.5)")
        ->capture_default_str();
    sub->add_option("--lr-matrix", opt->lr_matrix, "Muon lr of the block matrices")->capture_default_str();
    sub->add_option("--seed", opt->seed, "Init seed")->capture_default_str();
    sub->add_option("--vocab-size", opt->vocab_size,
                    "BPE vocabulary incl. 9 specials (default: 65536 for >= 100 MB of text, 8192 for >= 1 MB, else 1024)");
    sub->add_option("--data", opt->data, "A .txt file or folder of .txt files (default: the Brown corpus)");
    sub->add_option("--out", opt->out, "Checkpoint folder (default runs/gpt-d<depth>)");
    sub->add_option("--eval-every", opt->eval_every, "Validation loss / bpb every N steps (0: at the end)");
    sub->add_option("--eval-tokens", opt->eval_tokens, "Validation tokens per evaluation (0: all)")->capture_default_str();
    sub->add_option("--save-every", opt->save_every, "Checkpoint every N steps (0: at the end)");
    sub->add_option("--stop-at", opt->stop_at, "Stop after this step and save (resume later with --resume)");
    sub->add_option("--resume", opt->resume, "Continue a checkpoint folder exactly where it stopped");
    sub->add_option("--log-every", opt->log_every, "Print a step line every N steps")->capture_default_str();
    sub->add_flag("!--muon-f32", opt->muon_bf16, "Newton-Schulz in f32 (default: emulate nanochat's bf16)");
    sub->callback([opt, d]() {
        opt->depth_set = d->count() > 0;
        train::run_training(*opt);
    });
}

}  // namespace lmscope
