#!/usr/bin/env python3
"""The error of --precision tf32 and bf16 against fp32, on one explanation run.

    python3 bench/precision_error.py [--eccolo build/eccolo] [--model models/demo] [--tokens 35] [--out DIR]

Runs `eccolo generate` with the Ecco article's prompt, grad_x_input and
activations, on the CPU (fp32) and on the GPU at fp32, tf32 and bf16, all with
the CPU's tokens forced (--continuation-ids) so that every run explains the
same text, and prints for each GPU run against the CPU and against GPU fp32:
the largest row-relative error of the attribution rows (max over rows of
||a - b||_2 / ||b||_2), the relative error of the activations
(||a - b||_F / ||b||_F) and of the token log-probabilities.
On a build with -DECCOLO_CUDA_EMULATE=ON it runs the kernels on the CPU, where
cuBLAS's tf32 / bf16 modes are modelled by rounding the products' inputs: an
estimate of the rounding error, not a measurement of tensor cores.
Needs numpy only (the safetensors files are read directly).
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROMPT = "Frameworks for Machine Learning include: 1. TensorFlow\\n2. PyTorch\\n3.Scikit-learn\\n4."
DTYPES = {"F32": np.float32, "I32": np.int32, "F16": np.float16}


def load(path):
    """{name: array} of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], DTYPES[t["dtype"]]).reshape(t["shape"])
    return out


def run(a, out, device, precision, cont=None):
    cmd = [a.eccolo, "generate", "--model", a.model, "--prompt", PROMPT, "--max-new-tokens", str(a.tokens),
           "--no-stop", "--attribution", "grad_x_input", "--activations", "--device", device, "--precision",
           precision, "--quiet", "--out", out]
    if cont:
        cmd += ["--continuation-ids", ",".join(map(str, cont))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"precision_error: {' '.join(cmd[:2])} --device {device} --precision {precision} failed: "
                 f"{p.stderr.strip()}")
    with open(os.path.join(out, "run.json")) as f:
        r = json.load(f)
    return r, load(os.path.join(out, "tensors.safetensors"))


def errors(x, ref):
    ax, ar = x["attribution.grad_x_input"].astype(np.float64), ref["attribution.grad_x_input"].astype(np.float64)
    rows = np.linalg.norm(ax - ar, axis=1) / np.maximum(np.linalg.norm(ar, axis=1), 1e-30)
    fro = lambda k: float(np.linalg.norm((x[k].astype(np.float64) - ref[k]).ravel()) /  # noqa: E731
                          max(np.linalg.norm(ref[k].astype(np.float64).ravel()), 1e-30))
    return dict(attribution_max_row_rel=float(rows.max()), activations_rel=fro("activations"),
                logprobs_rel=fro("token_logprobs"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eccolo", default=os.path.join(REPO, "build", "eccolo"))
    p.add_argument("--model", default=os.path.join(REPO, "models", "demo"))
    p.add_argument("--tokens", type=int, default=35)
    p.add_argument("--out", default=os.path.join(HERE, "work", "precision"))
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rcpu, cpu = run(a, os.path.join(a.out, "cpu"), "cpu", "fp32")
    cont = rcpu["token_ids"][rcpu["n_input"]:]
    res = {}
    _, gfp32 = run(a, os.path.join(a.out, "fp32"), "cuda", "fp32", cont)
    res["fp32"] = dict(vs_cpu=errors(gfp32, cpu))
    for prec in ("tf32", "bf16"):
        _, g = run(a, os.path.join(a.out, prec), "cuda", prec, cont)
        res[prec] = dict(vs_cpu=errors(g, cpu), vs_gpu_fp32=errors(g, gfp32))
    info = subprocess.run([a.eccolo, "info"], capture_output=True, text=True).stdout.strip().splitlines()
    print(f"model {a.model}, {rcpu['n_input']} + {len(cont)} tokens; {info[0] if info else ''}")
    print(f"{'precision':10s} {'against':12s} {'attr max row-rel':>17s} {'activations rel':>16s} "
          f"{'logprobs rel':>13s}")
    for prec, d in res.items():
        for against, e in d.items():
            print(f"{prec:10s} {against:12s} {e['attribution_max_row_rel']:17.3e} {e['activations_rel']:16.3e} "
                  f"{e['logprobs_rel']:13.3e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(model=a.model, tokens=len(cont), eccolo_info=info, errors=res), f, indent=1)


if __name__ == "__main__":
    main()
