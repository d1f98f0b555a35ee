#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_safetensors: a few small valid safetensors files and a few
malformed ones (each well under 2 KB). Run from anywhere; output goes to fuzz/corpus/fuzz_safetensors/."""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "fuzz_safetensors")
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
         "U8": 1, "BOOL": 1}


def image(header, data=b"", pad=True):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def build(tensors, metadata=None):
    """tensors: [(name, dtype, shape)] laid out contiguously, in order, with patterned bytes."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += bytes((len(data) + i * 37 + 5) & 0xFF for i in range(n))
    return image(header, data)


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "valid_small": build([("w", "F32", [2, 2]), ("b", "BF16", [3]), ("s", "I64", []), ("e", "F16", [0, 4])],
                             {"format": "pt"}),
        "valid_all_dtypes": build([(d.lower(), d, [3]) for d in sorted(SIZES, key=lambda d: -SIZES[d])]),
        "valid_fp8_scale": build([("q.weight", "F8_E4M3", [4, 4]), ("q.weight_scale", "F32", [1])]),
        "valid_gaps_unpadded": image(
            b'{"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},'
            b'"b":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}}', bytes(range(16)), pad=False),
        "bad_truncated": build([("w", "F32", [4, 4])])[:-10],
        "bad_overlap": image({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)),
        "bad_dtype": image({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\x00"),
        "bad_huge_length": struct.pack("<Q", 2**64 - 1) + b"{}",
        "bad_overflow_shape": image({"w": {"dtype": "U8", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}),
    }
    for name, blob in seeds.items():
        assert len(blob) < 2048, name
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print(f"wrote {len(seeds)} seeds to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
