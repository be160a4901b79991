#!/usr/bin/env python3
"""Tokenizer speed: eccolo's tokenizer against Hugging Face's Rust tokenizers (one thread).

Encodes 1 MB of English text (Debian's licence texts, /usr/share/common-licenses, concatenated and
repeated to 1 MB) with each tokenizer given, in one call without special tokens; fastest of
--repeats timed runs after a warm-up, for both. Both must give the same ids. Prints a Markdown
table for bench/RESULTS.md.

usage: bench/tokenizer_speed.py [--build build-dev] [--repeats 5] [DIR ...]
  DIR: tokenizer directories (default: GPT-2's and the family fixtures under tests/fixtures)
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402
from tokenizers import models, pre_tokenizers  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def english_mb():
    parts = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            parts.append(open(path, encoding="utf-8", errors="replace").read())
    text = "\n".join(parts)
    while len(text.encode()) < 1 << 20:
        text += "\n" + text
    return text.encode()[: 1 << 20].decode("utf-8", errors="ignore")


def hf_tokenizer(d):
    if os.path.exists(os.path.join(d, "tokenizer.json")):
        return Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    t = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's pipeline
    return t


def fnv(ids):
    h = 1469598103934665603
    for i in ids:
        h = ((h ^ i) * 1099511628211) & (2**64 - 1)
    return f"{h:016x}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-dev"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("dirs", nargs="*")
    a = ap.parse_args()
    dirs = a.dirs or [os.path.join(ROOT, "tests/fixtures/gpt2-tokenizer")] + sorted(
        glob.glob(os.path.join(ROOT, "tests/fixtures/tokenizers/*/")))
    text = english_mb()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        path = f.name
    load = os.getloadavg()[0]
    print(f"1 MiB of English text ({len(text.encode())} bytes); fastest of {a.repeats}; load average {load:.2f}\n")
    print("| tokenizer | ids | HF tokenizers s | eccolo s | eccolo / HF |")
    print("|---|---:|---:|---:|---:|")
    for d in dirs:
        d = d.rstrip("/")
        hf = hf_tokenizer(d)
        hf.encode(text, add_special_tokens=False)
        best = 1e30
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            enc = hf.encode(text, add_special_tokens=False)
            best = min(best, time.perf_counter() - t0)
        out = subprocess.run([os.path.join(a.build, "bench_tokenizer"), d, path, str(a.repeats)], check=True,
                             capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1")).stdout
        ours = json.loads(out)
        same = "" if ours["fnv"] == fnv(enc.ids) else f" (ids differ: {ours['ids']} vs {len(enc.ids)})"
        print(f"| {os.path.basename(d)}{same} | {len(enc.ids)} | {best:.3f} | {ours['seconds']:.3f} | "
              f"{ours['seconds'] / best:.2f} |")
    os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
