// lmscope train: trains nanochat's v0 GPT (default) or a small Qwen3 (--arch qwen3, saved as a Hugging
// Face checkpoint) on the Brown corpus (or --data) on the CPU; see train/trainer.h.
#include "cli/commands.h"
#include "core/error.h"
#include "train/trainer.h"

namespace lmscope {

void register_train(CLI::App& app) {
    auto opt = std::make_shared<train::TrainOptions>();
    auto tie = std::make_shared<std::pair<bool, bool>>(false, false);
    CLI::App* sub = app.add_subcommand("train", "Train a nanochat-style GPT or a small Qwen3 (BPE tokenizer, Muon + AdamW) on text");
    auto* a = sub->add_option("--arch", opt->arch,
                              "Model architecture: gpt (nanochat v0) or qwen3 (Qwen3ForCausalLM, saved as a Hugging "
                              "Face checkpoint)")
                  ->capture_default_str();
    auto* d = sub->add_option("--depth", opt->depth,
                              "Layers; gpt: n_embd = 64 x depth, heads of 128; qwen3: hidden = 64 x depth, heads of 64")
                  ->capture_default_str();
    sub->add_option("--hidden", opt->hidden, "qwen3: hidden_size (default 64 x depth)");
    sub->add_option("--heads", opt->heads, "qwen3: attention heads (default hidden / head_dim)");
    sub->add_option("--kv-heads", opt->kv_heads, "qwen3: key/value heads (default heads / 2 when even, else heads)");
    sub->add_option("--head-dim", opt->head_dim, "qwen3: head_dim (default 64)");
    sub->add_option("--intermediate", opt->intermediate, "qwen3: MLP intermediate_size (default 3 x hidden)");
    sub->add_flag("--tie", tie->first, "qwen3: tie lm_head to embed_tokens (tie_word_embeddings, as Qwen3-0.6B)");
    sub->add_flag("--no-tie", tie->second, "qwen3: a separate lm_head (the default)");
    sub->add_option("--seq-len", opt->seq_len, "Tokens per sequence")->capture_default_str();
    sub->add_option("--batch", opt->batch, "Sequences per step")->capture_default_str();
    sub->add_option("--steps", opt->steps, "Optimiser steps (default 100)");
    sub->add_option("--tokens", opt->tokens, "Token budget instead of --steps");
    sub->add_option("--lr-embedding", opt->lr_embedding, "AdamW lr of wte (x (n_embd/768)^-0.5)")->capture_default_str();
    sub->add_option("--lr-unembedding", opt->lr_unembedding,
                    "AdamW lr of lm_head (x (n_embd/768)^-0.5); qwen3 tied: of embed_tokens")
        ->capture_default_str();
    sub->add_option("--lr-matrix", opt->lr_matrix, "Muon lr of the block matrices")->capture_default_str();
    sub->add_option("--lr-norm", opt->lr_norm, "qwen3: AdamW lr of the RMSNorm weights (x (hidden/768)^-0.5)")
        ->capture_default_str();
    sub->add_option("--seed", opt->seed, "Init seed")->capture_default_str();
    sub->add_option("--vocab-size", opt->vocab_size,
                    "BPE vocabulary incl. 9 specials (default: 65536 for >= 100 MB of text, 8192 for >= 1 MB, else 1024)");
    sub->add_option("--data", opt->data, "A .txt file or folder of .txt files (default: the Brown corpus)");
    sub->add_option("--out", opt->out, "Checkpoint folder (default runs/<arch>-d<depth>)");
    sub->add_option("--eval-every", opt->eval_every, "Validation loss / bpb every N steps (0: at the end)");
    sub->add_option("--eval-tokens", opt->eval_tokens, "Validation tokens per evaluation (0: all)")->capture_default_str();
    sub->add_option("--save-every", opt->save_every, "Checkpoint every N steps (0: at the end)");
    sub->add_option("--stop-at", opt->stop_at, "Stop after this step and save (resume later with --resume)");
    sub->add_option("--resume", opt->resume, "Continue a checkpoint folder exactly where it stopped");
    sub->add_option("--log-every", opt->log_every, "Print a step line every N steps")->capture_default_str();
    sub->add_flag("!--muon-f32", opt->muon_bf16, "Newton-Schulz in f32 (default: emulate nanochat's bf16)");
    sub->callback([opt, d, a, tie]() {
        opt->depth_set = d->count() > 0;
        opt->arch_set = a->count() > 0;
        if (tie->first && tie->second) throw UsageError("give --tie or --no-tie, not both");
        opt->tie = tie->first ? 1 : tie->second ? 0 : -1;
        train::run_training(*opt);
    });
}

}  // namespace lmscope
