#!/usr/bin/env python3
"""Writes tests/golden/tokenizer_ids.json: the reference token ids of tests/data/tokenizer_cases.json.

Usage: tools/golden_tokenizer.py TOKENIZER_JSON [--cases FILE] [--out FILE]

Ids come from Hugging Face `tokenizers` (the Rust implementation lmscope must match), with
add_special_tokens=False so no BOS/EOS is added; special tokens written in the text are still
recognised. Needs only the `tokenizers` package and the tokenizer.json file: no network.
"""
import argparse
import hashlib
import json
import os
import sys

GENERATOR = "tools/golden_tokenizer.py v1"


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tokenizer", help="path to tokenizer.json")
    ap.add_argument("--cases", default=os.path.join(root, "tests", "data", "tokenizer_cases.json"))
    ap.add_argument("--out", default=os.path.join(root, "tests", "golden", "tokenizer_ids.json"))
    args = ap.parse_args()

    try:
        import tokenizers
    except ImportError:
        print("golden_tokenizer: the 'tokenizers' package is not installed", file=sys.stderr)
        return 1

    with open(args.tokenizer, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    with open(args.cases, encoding="utf-8") as f:
        cases = json.load(f)
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        print(f"golden_tokenizer: {args.cases}: expected a JSON array of strings", file=sys.stderr)
        return 1

    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    out = {
        "tokenizer_sha256": sha256,
        "generator": f"{GENERATOR} tokenizers=={tokenizers.__version__}",
        "cases": [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in cases],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"golden_tokenizer: wrote {len(cases)} cases to {args.out} ({out['generator']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
