"""Bytes of weights one decode step reads from a checkpoint folder (bench/cpu_bench.sh,
bench/llamacpp_bench.sh): every tensor of its safetensors files, less the embedding table when the
head is a tensor of its own (a decode step reads one row of the table)."""
import glob
import json
import os
import struct


def decode_weight_bytes(model: str) -> int:
    total = embed = 0
    for f in glob.glob(os.path.join(model, "*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
        for name, info in hdr.items():
            if name == "__metadata__":
                continue
            b = info["data_offsets"][1] - info["data_offsets"][0]
            total += b
            if name == "model.embed_tokens.weight":
                embed = b
    cfg = json.load(open(os.path.join(model, "config.json")))
    return total if cfg.get("tie_word_embeddings", False) else total - embed
