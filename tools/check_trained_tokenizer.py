#!/usr/bin/env python3
"""Checks that HF `tokenizers` loads a tokenizer.json written by `lmscope train` (its BPE trainer) and
encodes like lmscope: reads a JSON file [{"text": ..., "ids": [...]}, ...] made with
`lmscope tokenize --json`, prints the number of mismatches, exits 1 on any.
Usage: tools/check_trained_tokenizer.py TOKENIZER_JSON CASES_JSON"""
import json
import sys

import tokenizers

tok = tokenizers.Tokenizer.from_file(sys.argv[1])
cases = json.load(open(sys.argv[2], encoding="utf-8"))
bad = 0
for c in cases:
    ids = tok.encode(c["text"], add_special_tokens=False).ids
    if ids != c["ids"]:
        bad += 1
        print("MISMATCH", repr(c["text"][:60]), ids[:12], c["ids"][:12])
print(f"{len(cases)} texts, {bad} mismatches (tokenizers {tokenizers.__version__}, vocab {tok.get_vocab_size()})")
sys.exit(1 if bad else 0)
