#!/usr/bin/env python3
"""Draws training curves from `lmscope train` logs (log.jsonl) as one self-contained SVG, no libraries.

Usage: tools/plot_training.py OUT.svg LABEL=RUN_DIR [LABEL=RUN_DIR ...]
Each run contributes its training loss (thin line, smoothed over 20 steps) and validation loss (dots).
"""
import json
import math
import sys

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 420, 60, 170, 30, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def load(run_dir):
    train, val = [], []
    with open(f"{run_dir}/log.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if "loss" in r:
                train.append((r["step"], r["loss"]))
            if "val_loss" in r:
                val.append((r["step"], r["val_loss"], r.get("val_bpb")))
    return train, val


def smooth(points, k=20):
    out, acc = [], []
    for s, v in points:
        acc.append(v)
        if len(acc) > k:
            acc.pop(0)
        out.append((s, sum(acc) / len(acc)))
    return out


def main():
    out = sys.argv[1]
    runs = [a.split("=", 1) for a in sys.argv[2:]]
    data = [(label, *load(d)) for label, d in runs]
    xs = [s for _, t, v in data for s, _ in t] + [s for _, t, v in data for s, *_ in v]
    ys = [l for _, t, v in data for _, l in t] + [l for _, t, v in data for _, l, _ in v]
    x0, x1 = 0, max(xs) or 1
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
    sx = lambda x: PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R)
    sy = lambda y: PAD_T + (y1 - y) / (y1 - y0) * (H - PAD_T - PAD_B)
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5
        p.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        p.append(f'<text x="{PAD_L - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5
        p.append(f'<text x="{sx(x):.1f}" y="{H - PAD_B + 16}" text-anchor="middle">{int(x)}</text>')
    p.append(f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 12}" text-anchor="middle">step</text>')
    p.append(f'<text x="16" y="{H / 2}" transform="rotate(-90 16 {H / 2})" text-anchor="middle">loss (nats)</text>')
    for i, (label, train, val) in enumerate(data):
        c = COLORS[i % len(COLORS)]
        pts = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in smooth(train))
        p.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
        for s, v, _ in val:
            p.append(f'<circle cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="3.5" fill="{c}"/>')
        ly = PAD_T + 20 + 40 * i
        last = f"val {val[-1][1]:.3f}, {val[-1][2]:.3f} bpb" if val and val[-1][2] else ""
        p.append(f'<line x1="{W - PAD_R + 12}" x2="{W - PAD_R + 32}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        p.append(f'<text x="{W - PAD_R + 36}" y="{ly + 4}">{label}</text>')
        p.append(f'<text x="{W - PAD_R + 36}" y="{ly + 18}" fill="#555">{last}</text>')
    p.append(f'<text x="{PAD_L}" y="18">training loss (20-step mean, lines) and validation loss (dots), Brown corpus</text>')
    p.append("</svg>")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(p) + "\n")


if __name__ == "__main__":
    main()
