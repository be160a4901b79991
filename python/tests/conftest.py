"""Shared by the Python tests: fixture paths, the eccolo command, a reader
of safetensors files in plain numpy (an independent reader of what the
command line writes), and headless Chromium."""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
PROMPT = "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4."
# how Ecco finds the embeddings and activations of a GPT-2 given as a directory (tools/ecco_call.py)
ECCO_CONFIG = {"embedding": "transformer.wte.weight", "type": "causal", "activations": ["mlp\\.c_proj"],
               "token_prefix": "Ġ", "partial_token_prefix": ""}


def fixture(name):
    return os.path.join(FIXTURES, name)


def eccolo_command():
    """The eccolo command pip installed beside this Python (or $ECCOLO_BIN)."""
    env = os.environ.get("ECCOLO_BIN")
    if env:
        return [env]
    exe = os.path.join(os.path.dirname(sys.executable), "eccolo")
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-m", "eccolo._cli"]


def run_cli(*args, check=True):
    p = subprocess.run(eccolo_command() + [str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("eccolo %s failed (%d): %s" % (" ".join(map(str, args)), p.returncode, p.stderr))
    return p


_DT = {"F32": "<f4", "I32": "<i4", "F16": "<f2", "F64": "<f8", "I64": "<i8", "U8": "|u1"}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, read with numpy only."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=_DT[t["dtype"]]).reshape(t["shape"])
    return out, meta


def chromium():
    for c in (os.environ.get("ECCOLO_CHROMIUM"), "/usr/lib/chromium/chromium", "/usr/bin/chromium"):
        if c and os.access(c, os.X_OK):
            return c
    return None


def browse(url, mode, tmp_path, extra=()):
    """Headless Chromium on URL with MODE (--dump-dom or --screenshot=FILE);
    (stdout, stderr). The flags of /work/shared/reference/machine.md."""
    exe = chromium()
    if exe is None:
        pytest.fail("Chromium not found ($ECCOLO_CHROMIUM, /usr/lib/chromium/chromium, /usr/bin/chromium): "
                    "apt-get install chromium (tools/setup.sh does)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
            "--user-data-dir=%s" % profile, "--enable-logging=stderr", "--v=0", *extra, mode, url]
    p = subprocess.run(["timeout", "-k", "5", "120"] + args, capture_output=True, text=True)
    shutil.rmtree(profile, ignore_errors=True)
    assert p.returncode == 0, "chromium exited with %d: %s" % (p.returncode, p.stderr[-2000:])
    return p.stdout, p.stderr


def console_errors(stderr):
    """Lines where a page logged an error or threw (Chromium's console log)."""
    return [l for l in stderr.splitlines() if "CONSOLE" in l and ("Uncaught" in l or "Error" in l)]
