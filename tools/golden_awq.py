#!/usr/bin/env python3
"""Golden data for lmscope's AWQ tests, from a PyTorch re-implementation of AutoAWQ / llm-awq.

Writes OUT/golden.safetensors (copy it to tests/golden/awq_pack/golden.safetensors), metadata
generator "tools/golden_awq.py v1". Reimplemented (no autoawq import), from AutoAWQ 0.2.x:
  pseudo_quantize_tensor (quantizer.py), WQLinear_GEMM.from_linear (modules/linear/gemm.py, packing
  order [0,2,4,6,1,3,5,7]), unpack_awq + reverse_awq_order + dequantize_gemm (utils/packing_utils.py);
  llm-awq auto_scale._search_module_scale (and AutoAWQ's duo_scaling variant) and
  auto_clip.auto_clip_layer (with AutoAWQ's max(1, n // 512) stride guard).
Tensors:
  pack.w F32 [64, 256]           weight (out, in); g = 128
  pack.f32.wq / .scales / .zeros  pseudo_quantize in float32: fake-quant weight, scales/zeros [64, 2]
  pack.f16.*                      the same on the weight cast to float16 (AutoAWQ's packing path)
  pack.qweight I32 [256, 8], pack.qzeros I32 [2, 8], pack.scales F16 [2, 64]   from_linear
  pack.deq F32 [256, 64]          dequantize_gemm of the packed tensors (Wt)
  order.qweight I32 [1, 2]        codes 0..15 in logical columns 0..15 packed (0x75316420, 0xFDB9ECA8)
  search.x F32 [256, 256], search.w1 F32 [64, 256], search.w2 F32 [32, 256]: a toy group
    (module output = concat(x w1^T, x w2^T)), g = 128
  search.losses F64 [20], search.best I64 [1], search.scales F32 [256]       llm-awq semantics
  search_duo.losses / .best / .scales                                           duo_scaling=True
  clip.max_val F32 [64, 2]       auto_clip_layer on w1 * best scales with x / best scales
Run where torch is installed:  python3 tools/golden_awq.py OUT_DIR
"""
import os
import sys

import torch
from safetensors.torch import save_file

GENERATOR = "tools/golden_awq.py v1"
G = 128


def pseudo_quantize_tensor(w, n_bit=4, q_group_size=128):
    org_w_shape = w.shape
    w = w.reshape(-1, q_group_size)
    max_val = w.amax(dim=1, keepdim=True)
    min_val = w.amin(dim=1, keepdim=True)
    max_int = 2 ** n_bit - 1
    min_int = 0
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    zeros = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    w = (torch.clamp(torch.round(w / scales) + zeros, min_int, max_int) - zeros) * scales
    w = w.reshape(org_w_shape)
    return w, scales.view(org_w_shape[0], -1), zeros.view(org_w_shape[0], -1)


def from_linear(weight, group_size, scales, zeros):
    """AutoAWQ WQLinear_GEMM.from_linear; weight (out, in) fake-quantised, scales/zeros (in/g, out)."""
    out_f, in_f = weight.shape
    scale_zeros = zeros * scales
    sc = scales.clone().half()
    intweight = []
    for idx in range(in_f):
        intweight.append(torch.round((weight[:, idx] + scale_zeros[idx // group_size]) / sc[idx // group_size]).to(torch.int)[:, None])
    intweight = torch.cat(intweight, dim=1)
    intweight = intweight.t().contiguous().to(dtype=torch.int32)
    qweight = torch.zeros((intweight.shape[0], intweight.shape[1] // 32 * 4), dtype=torch.int32)
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    for col in range(intweight.shape[1] // 8):
        for i in range(8):
            qweight[:, col] |= intweight[:, col * 8 + order_map[i]] << (i * 4)
    zeros = zeros.to(dtype=torch.int32)
    qzeros = torch.zeros((zeros.shape[0], zeros.shape[1] // 32 * 4), dtype=torch.int32)
    for col in range(zeros.shape[1] // 8):
        for i in range(8):
            qzeros[:, col] |= zeros[:, col * 8 + order_map[i]] << (i * 4)
    return qweight, qzeros, sc


AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def unpack_awq(qweight, qzeros, bits=4):
    shifts = torch.arange(0, 32, bits)
    iweight = torch.bitwise_right_shift(qweight[:, :, None], shifts[None, None, :]).to(torch.int8)
    iweight = iweight.view(iweight.shape[0], -1)
    izeros = torch.bitwise_right_shift(qzeros[:, :, None], shifts[None, None, :]).to(torch.int8)
    izeros = izeros.view(izeros.shape[0], -1)
    return iweight, izeros


def reverse_awq_order(iweight, izeros, bits=4):
    rev = torch.arange(iweight.shape[-1], dtype=torch.int32).view(-1, 32 // bits)[:, AWQ_REVERSE_ORDER].view(-1)
    izeros = izeros[:, rev]
    iweight = iweight[:, rev]
    return iweight, izeros


def dequantize_gemm(qweight, qzeros, scales, bits=4, group_size=128):
    iweight, izeros = unpack_awq(qweight, qzeros, bits)
    iweight, izeros = reverse_awq_order(iweight, izeros, bits)
    iweight = torch.bitwise_and(iweight, (2 ** bits) - 1)
    izeros = torch.bitwise_and(izeros, (2 ** bits) - 1)
    scales = scales.repeat_interleave(group_size, dim=0)
    izeros = izeros.repeat_interleave(group_size, dim=0)
    return (iweight - izeros).float() * scales.float()   # float32 here (AutoAWQ: fp16)


def search_scale(x, linears, forward, duo):
    org_out = forward(linears)
    x_mean = x.abs().view(-1, x.shape[-1]).mean(0)
    if duo:
        weight = torch.cat(linears, dim=0)
        org_shape = weight.shape
        weight = weight.view(-1, G)
        w_scale = weight.abs() / (weight.abs().amax(dim=1, keepdim=True) + 1e-6)
        w_mean = w_scale.view(org_shape).mean(0)
    best_error, best_ratio, best_scales, history = float("inf"), -1, None, []
    for ratio in range(20):
        ratio = ratio * 1 / 20
        if duo:
            scales = (x_mean.pow(ratio) / (w_mean.pow(1 - ratio) + 1e-4)).clamp(min=1e-4)
        else:
            scales = x_mean.pow(ratio).clamp(min=1e-4).view(-1)
        scales = scales / (scales.max() * scales.min()).sqrt()
        if duo:
            scales[torch.isinf(scales)] = 1
            scales[torch.isnan(scales)] = 1
        q = [pseudo_quantize_tensor(w * scales.view(1, -1))[0] / scales.view(1, -1) for w in linears]
        out = forward(q)
        loss = (org_out - out).float().pow(2).mean().item()
        history.append(loss)
        if loss < best_error:
            best_error, best_ratio, best_scales = loss, ratio, scales
    return history, int(round(best_ratio * 20)), best_scales


def auto_clip_layer(w, input_feat, n_grid=20, max_shrink=0.5, n_sample_token=512):
    group_size = G
    input_feat = input_feat.view(-1, input_feat.shape[-1])
    input_feat = input_feat.reshape(1, input_feat.shape[0], -1, group_size)
    step = max(1, input_feat.shape[1] // n_sample_token)
    input_feat = input_feat[:, 0::step]
    w = w.reshape(w.shape[0], 1, -1, group_size)
    org_max_val = w.abs().amax(dim=-1, keepdim=True)
    best_max_val = org_max_val.clone()
    min_errs = torch.ones_like(org_max_val) * 1e9
    org_out = (input_feat * w).sum(dim=-1)
    for i_s in range(int(max_shrink * n_grid)):
        max_val = org_max_val * (1 - i_s / n_grid)
        cur_w = torch.clamp(w, -max_val, max_val)
        q_w = pseudo_quantize_tensor(cur_w)[0]
        cur_out = (input_feat * q_w).sum(dim=-1)
        err = (cur_out - org_out).pow(2).mean(dim=1).view(min_errs.shape)
        cur_best_idx = err < min_errs
        min_errs[cur_best_idx] = err[cur_best_idx]
        best_max_val[cur_best_idx] = max_val[cur_best_idx]
    return best_max_val.squeeze(1).squeeze(-1)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    t = {}
    # packing
    w = torch.randn(64, 256, generator=gen) * 0.05
    w[3, :128] += 0.3           # an offset group (zero clamps at 0)
    w[5, 128:] = 0.0            # a constant group (scale clamps at 1e-5)
    w[9, :] -= 0.2
    t["pack.w"] = w
    wq, s, z = pseudo_quantize_tensor(w.clone())
    t["pack.f32.wq"], t["pack.f32.scales"], t["pack.f32.zeros"] = wq, s, z
    wh = w.half()
    wqh, sh, zh = pseudo_quantize_tensor(wh.clone())
    t["pack.f16.wq"], t["pack.f16.scales"], t["pack.f16.zeros"] = wqh.float(), sh.float(), zh.float()
    qweight, qzeros, scales = from_linear(wqh, G, sh.t().contiguous(), zh.t().contiguous())
    t["pack.qweight"], t["pack.qzeros"], t["pack.scales"] = qweight, qzeros, scales
    t["pack.deq"] = dequantize_gemm(qweight, qzeros, scales, 4, G)
    codes = torch.arange(16, dtype=torch.int32)[None, :]
    q16 = torch.zeros((1, 2), dtype=torch.int32)
    for col in range(2):
        for i, o in enumerate([0, 2, 4, 6, 1, 3, 5, 7]):
            q16[:, col] |= codes[:, col * 8 + o] << (i * 4)
    t["order.qweight"] = q16
    # search on a toy group with salient input channels
    x = torch.randn(256, 256, generator=gen)
    x[:, [7, 100, 200]] *= 50.0
    w1 = torch.randn(64, 256, generator=gen) * 0.05
    w2 = torch.randn(32, 256, generator=gen) * 0.05
    t["search.x"], t["search.w1"], t["search.w2"] = x, w1, w2
    fwd = lambda ws: torch.cat([x @ ws[0].t(), x @ ws[1].t()], dim=1)
    for name, duo in (("search", False), ("search_duo", True)):
        hist, best, sc = search_scale(x, [w1, w2], fwd, duo)
        t[name + ".losses"] = torch.tensor(hist, dtype=torch.float64)
        t[name + ".best"] = torch.tensor([best], dtype=torch.int64)
        t[name + ".scales"] = sc.float()
        print(name, "best", best, "losses", [f"{h:.4g}" for h in hist])
    sc = t["search.scales"]
    t["clip.max_val"] = auto_clip_layer(w1 * sc.view(1, -1), x / sc.view(1, -1)).float()
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(out_dir, "golden.safetensors"),
              metadata={"generator": GENERATOR, "torch": torch.__version__})
    print("order.qweight", [hex(v & 0xFFFFFFFF) for v in q16[0].tolist()])
    print("wrote", os.path.join(out_dir, "golden.safetensors"))


if __name__ == "__main__":
    main()
