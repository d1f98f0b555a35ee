#!/usr/bin/env python3
"""Golden data for lmscope's GPT (nanochat v0) training code: loss, gradients, 10-step trajectory.

A faithful, functional re-statement of nanochat v0 (karpathy/nanochat @ 3a5e0bc, nanochat/gpt.py,
nanochat/muon.py, scripts/base_train.py) in plain torch, on the CPU (deterministic), for a tiny
configuration: depth 2 (n_embd 128, 1 head of 128, 1 kv head), vocab 512, batch 2, sequence 64.

Writes OUT_DIR/{gpt_config.json, model.safetensors, golden.safetensors}:
  model.safetensors   F32 weights at nanochat's init (made with torch's RNG, seed 1234), nanochat names
  golden.safetensors  (metadata generator "tools/golden_gpt.py v1")
    idx, targets         I64 (2, 64); a few targets are -1 (ignored by the loss)
    rope_cos, rope_sin   F32 (64, 64): nanochat's tables, bf16-rounded values
    loss                 F64 [1]   step-0 loss at nanochat's init, computed in float64
    grad.lm_head.weight  F32       its gradient (float64 math); every other gradient is exactly zero at
                                   this init (lm_head = 0): metadata "zero_grads" lists them
    alt.<name>           F32       a second init: lm_head and both c_proj ~ N(0, (0.5/sqrt(fan_in))^2)
                                   (seed 4321), everything else as model.safetensors
    alt_loss             F64 [1]   loss at the alt init (float64)
    alt_logits           F32 (2, 64, 512) soft-capped logits at the alt init (float64 math)
    alt_grad.<name>      F32       every parameter's gradient at the alt init (float64 math)
    traj_loss_f64        F64 [11]  losses of 10 optimiser steps from model.safetensors on the same batch
                                   (losses before steps 0..9 and after step 9): model, AdamW and Muon all
                                   in float64, Newton-Schulz in float64
    traj_loss_bf16ns     F64 [11]  same, model and optimisers in float32, Newton-Schulz emulating
                                   nanochat's bf16: values rounded to bf16 (RNE) at the points listed in
                                   newton_schulz() (each matmul output and each fused elementwise result)
The optimisers follow nanochat v0: AdamW (betas 0.8/0.95, eps 1e-10, wd 0, lr 0.2 (wte) and 0.004
(lm_head) x (n_embd/768)^-0.5, torch.optim.AdamW math) and Muon (lr 0.02, momentum 0.85 -> 0.95 over
300 steps, nesterov, 5 NS steps), grad clip 1.0 (torch.nn.utils.clip_grad_norm_), LR multiplier
1.0 then linear to 0 over the last 20% of num_iterations = 10.

Run on the GPU machine (torch + safetensors installed):  python3 tools/golden_gpt.py OUT_DIR
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

GENERATOR = "tools/golden_gpt.py v1"
CFG = dict(architecture="nanochat-gpt-v0", depth=2, n_layer=2, n_embd=128, n_head=1, n_kv_head=1,
           head_dim=128, vocab_size=512, sequence_len=64)
B, T = 2, 64
EPS = 2.0 ** -23  # F.rms_norm default eps (FLT_EPSILON, see architectures.md 1.6)
SOFTCAP = 15.0
STEPS = 10


def param_shapes(cfg):
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    hd, nh, nkv = cfg["head_dim"], cfg["n_head"], cfg["n_kv_head"]
    shapes = [("transformer.wte.weight", (V, C))]
    for i in range(L):
        p = f"transformer.h.{i}."
        shapes += [(p + "attn.c_q.weight", (nh * hd, C)), (p + "attn.c_k.weight", (nkv * hd, C)),
                   (p + "attn.c_v.weight", (nkv * hd, C)), (p + "attn.c_proj.weight", (C, nh * hd)),
                   (p + "mlp.c_fc.weight", (4 * C, C)), (p + "mlp.c_proj.weight", (C, 4 * C))]
    shapes.append(("lm_head.weight", (V, C)))
    return shapes


def is_zero_init(name):
    return name == "lm_head.weight" or name.endswith("c_proj.weight")


def init_weights(cfg, gen):
    """nanochat v0 init: Linear N(0, std) std = 1/sqrt(fan_in) * min(1, sqrt(fan_out/fan_in)),
    embedding N(0, 1), zeros for lm_head and both c_proj."""
    W = {}
    for name, (fo, fi) in param_shapes(cfg):
        if is_zero_init(name):
            W[name] = torch.zeros(fo, fi)
        elif name == "transformer.wte.weight":
            W[name] = torch.randn(fo, fi, generator=gen)
        else:
            std = 1.0 / math.sqrt(fi) * min(1.0, math.sqrt(fo / fi))
            W[name] = torch.randn(fo, fi, generator=gen) * std
    return W


def rope_tables(T_, hd, base=10000):
    channel_range = torch.arange(0, hd, 2, dtype=torch.float32)
    inv_freq = 1.0 / (base ** (channel_range / hd))
    t = torch.arange(T_, dtype=torch.float32)
    freqs = torch.outer(t, inv_freq)
    return freqs.cos().bfloat16(), freqs.sin().bfloat16()  # nanochat v0: bf16 unconditionally


def norm(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


def rope(x, cos, sin):  # x (B, T, H, D), cos/sin (T, D/2); nanochat: rotation by -theta
    d = x.shape[3] // 2
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * c + x2 * s, x1 * (-s) + x2 * c], 3)


def forward(W, idx, targets, cos, sin, cfg=CFG):
    Bn, Tn = idx.shape
    C, V = cfg["n_embd"], cfg["vocab_size"]
    hd, nh, nkv = cfg["head_dim"], cfg["n_head"], cfg["n_kv_head"]
    cos, sin = cos[:Tn].to(W["lm_head.weight"].dtype), sin[:Tn].to(W["lm_head.weight"].dtype)
    x = norm(W["transformer.wte.weight"][idx])
    mask = torch.ones(Tn, Tn, dtype=torch.bool).tril()
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        h = norm(x)
        q = (h @ W[p + "attn.c_q.weight"].T).view(Bn, Tn, nh, hd)
        k = (h @ W[p + "attn.c_k.weight"].T).view(Bn, Tn, nkv, hd)
        v = (h @ W[p + "attn.c_v.weight"].T).view(Bn, Tn, nkv, hd)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        q, k = norm(q), norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        rep = nh // nkv
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(Bn, Tn, nh * hd)
        x = x + y @ W[p + "attn.c_proj.weight"].T
        h = norm(x)
        u = torch.relu(h @ W[p + "mlp.c_fc.weight"].T).square()
        x = x + u @ W[p + "mlp.c_proj.weight"].T
    x = norm(x)
    logits = x @ W["lm_head.weight"].T
    logits = SOFTCAP * torch.tanh(logits / SOFTCAP)
    loss = F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
    return loss, logits


def loss_and_grads(W32, idx, targets, cos, sin):
    W = {k: v.double().clone().requires_grad_(True) for k, v in W32.items()}
    loss, logits = forward(W, idx, targets, cos, sin)
    names = list(W.keys())
    grads = torch.autograd.grad(loss, [W[n] for n in names])
    return loss.detach(), logits.detach(), dict(zip(names, grads))


# --- optimisers (nanochat v0) ----------------------------------------------------------------

def lr_multiplier(it, num_iterations, warmup_ratio=0.0, warmdown_ratio=0.2, final_lr_frac=0.0):
    warmup_iters = round(warmup_ratio * num_iterations)
    warmdown_iters = round(warmdown_ratio * num_iterations)
    if it < warmup_iters:
        return (it + 1) / warmup_iters
    elif it <= num_iterations - warmdown_iters:
        return 1.0
    progress = (num_iterations - it) / warmdown_iters
    return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it):
    frac = min(it / 300, 1)
    return (1 - frac) * 0.85 + frac * 0.95


def newton_schulz(G, steps, bf16):
    """zeropower_via_newtonschulz5. bf16=True emulates nanochat's bf16 run (torch.compile'd): the
    input, the normalised X, each matmul output (A, A@A, B@X) and each fused elementwise result
    (B = b*A + c*AA, X = a*X + BX) are rounded to bf16; arithmetic in between is f32."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    rnd = (lambda t: t.bfloat16().float()) if bf16 else (lambda t: t)
    X = rnd(G.float()) if bf16 else G.clone()
    tr = G.size(0) > G.size(1)
    if tr:
        X = X.T
    X = rnd(X / (X.norm() + 1e-7))
    for _ in range(steps):
        A = rnd(X @ X.T)
        AA = rnd(A @ A)
        Bm = rnd(b * A + c * AA)
        BX = rnd(Bm @ X)
        X = rnd(a * X + BX)
    if tr:
        X = X.T
    return X.to(G.dtype)


def trajectory(W0, idx, targets, cos, sin, dtype, bf16_ns):
    W = {k: v.to(dtype).clone().requires_grad_(True) for k, v in W0.items()}
    names = list(W.keys())
    C = CFG["n_embd"]
    scale = (C / 768) ** -0.5
    adam_lr = {"transformer.wte.weight": 0.2 * scale, "lm_head.weight": 0.004 * scale}
    b1, b2, eps = 0.8, 0.95, 1e-10
    m = {n: torch.zeros_like(W[n]) for n in adam_lr}
    v = {n: torch.zeros_like(W[n]) for n in adam_lr}
    buf = {n: torch.zeros_like(W[n]) for n in names if n not in adam_lr}
    losses = []
    for it in range(STEPS + 1):
        for n in names:
            W[n].grad = None
        loss, _ = forward(W, idx, targets, cos, sin)
        losses.append(loss.item())
        if it == STEPS:
            break
        loss.backward()
        torch.nn.utils.clip_grad_norm_([W[n] for n in names], 1.0)
        lrm = lr_multiplier(it, STEPS)
        mom = muon_momentum(it)
        t = it + 1
        with torch.no_grad():
            for n in names:
                p, g = W[n], W[n].grad
                if n in adam_lr:  # torch.optim.AdamW (single tensor), weight_decay 0
                    lr = adam_lr[n] * lrm
                    m[n].lerp_(g, 1 - b1)
                    v[n].mul_(b2).addcmul_(g, g, value=1 - b2)
                    bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
                    denom = (v[n].sqrt() / math.sqrt(bc2)).add_(eps)
                    p.addcdiv_(m[n], denom, value=-(lr / bc1))
                else:  # Muon, nesterov
                    lr = 0.02 * lrm
                    bb = buf[n]
                    bb.lerp_(g, 1 - mom)
                    gg = g.lerp_(bb, mom)
                    X = newton_schulz(gg, 5, bf16_ns)
                    p.add_(X, alpha=-lr * max(1, p.size(-2) / p.size(-1)) ** 0.5)
    return torch.tensor(losses, dtype=torch.float64)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: golden_gpt.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    gen = torch.Generator().manual_seed(1234)
    W = init_weights(CFG, gen)
    V = CFG["vocab_size"]
    idx = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.roll(idx, -1, 1).clone()
    targets[:, -1] = torch.randint(0, V, (B,), generator=gen)
    targets[0, 5] = -1
    targets[1, 17:20] = -1
    targets[1, 63] = -1
    cos, sin = rope_tables(T, CFG["head_dim"])

    G = {"idx": idx, "targets": targets, "rope_cos": cos.float().contiguous(),
         "rope_sin": sin.float().contiguous()}
    loss, _, grads = loss_and_grads(W, idx, targets, cos, sin)
    G["loss"] = loss.reshape(1)
    zero = [n for n, g in grads.items() if n != "lm_head.weight" and bool((g == 0).all())]
    assert len(zero) == len(grads) - 1, "expected every gradient but lm_head's to be exactly zero"
    G["grad.lm_head.weight"] = grads["lm_head.weight"].float().contiguous()

    gen2 = torch.Generator().manual_seed(4321)
    Walt = dict(W)
    for name, (fo, fi) in param_shapes(CFG):
        if is_zero_init(name):
            Walt[name] = torch.randn(fo, fi, generator=gen2) * (0.5 / math.sqrt(fi))
            G["alt." + name] = Walt[name].contiguous()
    aloss, alogits, agrads = loss_and_grads(Walt, idx, targets, cos, sin)
    G["alt_loss"] = aloss.reshape(1)
    G["alt_logits"] = alogits.float().contiguous()
    for n, g in agrads.items():
        G["alt_grad." + n] = g.float().contiguous()

    G["traj_loss_f64"] = trajectory(W, idx, targets, cos, sin, torch.float64, bf16_ns=False)
    G["traj_loss_bf16ns"] = trajectory(W, idx, targets, cos, sin, torch.float32, bf16_ns=True)

    meta = {"generator": GENERATOR, "torch": torch.__version__, "config": json.dumps(CFG),
            "zero_grads": json.dumps(zero), "batch": f"{B}x{T}", "steps": str(STEPS)}
    save_file({k: v.contiguous() for k, v in W.items()}, os.path.join(out, "model.safetensors"),
              metadata={"generator": GENERATOR, "format": "pt"})
    save_file(G, os.path.join(out, "golden.safetensors"), metadata=meta)
    with open(os.path.join(out, "gpt_config.json"), "w") as f:
        json.dump(CFG, f, indent=2)
        f.write("\n")
    print("loss", loss.item(), "alt_loss", aloss.item())
    print("traj_f64", G["traj_loss_f64"].tolist())
    print("traj_bf16ns", G["traj_loss_bf16ns"].tolist())


if __name__ == "__main__":
    main()
