#!/usr/bin/env python3
"""All-pairs linear CKA between two gpt2-sized runs: `eccolo compare --method cka`
against Ecco 0.1.2's own `ecco.analysis.cka` called pair by pair (numpy), with
the same threads.

    python bench/bench_compare.py [--eccolo build-bench/eccolo] [--threads 2] [--tokens 1024]
                                  [--layers 12] [--neurons 3072] [--repeats 3] [--ecco-pairs 144]

The two runs are synthetic activations of gpt2's shape (12 layers x 1024 tokens
x 3072 MLP neurons, float32, as `eccolo generate --activations` writes them):
GELU of a low-rank signal the two runs share, drifting from layer to layer, plus
noise, so that the 144 values spread over (0, 1) rather than sit at 0. They are
written as two run directories (run.json + tensors.safetensors), and eccolo is
timed end to end as a user runs it (process start and reading 2 x 151 MB
included), and by the comparison alone (its own timer). Ecco is given the same
arrays in its layout (neurons, tokens) in a long-lived process; --ecco-pairs
times a subset and scales it to 144 pairs (each pair costs the same: three
3072 x 3072 x 1024 products). The values of both are compared.

Needs numpy, safetensors and Ecco 0.1.2 installed with --no-deps (its analysis
module uses numpy only; its package __init__, which imports torch, is skipped):
bench/.venv after `bench/run.sh --setup-only`, or a venv with
tools/requirements-analysis.txt. Writes the section between
<!-- BEGIN compare-cpu --> and <!-- END compare-cpu --> of bench/RESULTS.md and
bench/results/compare_cpu.json.
"""
import argparse
import datetime
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eccolo", default=os.path.join(REPO, "build-bench", "eccolo"))
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--tokens", type=int, default=1024)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--neurons", type=int, default=3072)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ecco-pairs", type=int, default=0, help="time this many of Ecco's pairs (default: all)")
    p.add_argument("--work", default=os.path.join(HERE, "work", "compare"))
    return p.parse_args()


A = parse()
# the same threads for numpy's BLAS as for eccolo, set before numpy loads
for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[k] = str(A.threads)
for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(k, None)
import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


def ecco_analysis():
    spec = importlib.util.find_spec("ecco")
    if spec is None:
        sys.exit("bench_compare: ecco is not installed (pip install --no-deps ecco==0.1.2)")
    pkg = types.ModuleType("ecco")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["ecco"] = pkg  # ecco/__init__.py imports torch; ecco.analysis needs numpy only
    import ecco.analysis
    return ecco.analysis


def activations(rng, shared, L, T, F, drift):
    """(L, T, F) float32: GELU(shared signal through a drifting map + noise)."""
    k = shared.shape[1]
    W = rng.standard_normal((k, F)).astype(np.float32)
    out = np.empty((L, T, F), dtype=np.float32)
    for l in range(L):
        W = (1 - drift) * W + drift * rng.standard_normal((k, F)).astype(np.float32)
        z = shared @ W / np.sqrt(k) + 0.7 * rng.standard_normal((T, F)).astype(np.float32)
        out[l] = 0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z ** 3)))
    return out


def write_run(d, acts):
    os.makedirs(d, exist_ok=True)
    L, T, _ = acts.shape
    save_file({"token_ids": np.arange(T, dtype=np.int32) % 50257, "activations": acts},
              os.path.join(d, "tensors.safetensors"))
    with open(os.path.join(d, "run.json"), "w") as f:
        json.dump({"n_tokens": T, "n_input": 1, "explain": {"activation_layers": [0, L]},
                   "note": "synthetic gpt2-shaped activations (bench/bench_compare.py)"}, f)


def write_section(path, text, tag="compare-cpu"):
    with open(path) as f:
        md = f.read()
    begin, end = f"<!-- BEGIN {tag} -->", f"<!-- END {tag} -->"
    if begin not in md:
        md = md.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    md = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}{end}", md, flags=re.S)
    with open(path + ".tmp", "w") as f:
        f.write(md)
    os.replace(path + ".tmp", path)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main():
    ea = ecco_analysis()
    L, T, F = A.layers, A.tokens, A.neurons
    rng = np.random.default_rng(2021)
    shared = rng.standard_normal((T, 48)).astype(np.float32)
    xa = activations(rng, shared, L, T, F, 0.25)
    xb = activations(rng, shared, L, T, F, 0.35)
    ra, rb = os.path.join(A.work, "run_a"), os.path.join(A.work, "run_b")
    write_run(ra, xa)
    write_run(rb, xb)
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()[0]
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()

    # eccolo, as a user runs it
    out = os.path.join(A.work, "values.json")
    cmd = [A.eccolo, "compare", ra, rb, "--method", "cka", "--threads", str(A.threads), "--device", "cpu",
           "--out", out]
    # twice: OpenMP's default (idle threads spin) and OMP_WAIT_POLICY=PASSIVE (they sleep), which
    # README.md advises when other processes share the cores: a spinning thread whose partner was
    # descheduled burns its time slice at every barrier
    timing = {}
    for policy in ("default", "PASSIVE"):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy == "PASSIVE":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        walls, inner = [], []
        for r in range(A.repeats + 1):  # the first run warms the page cache, untimed
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                sys.exit(f"bench_compare: eccolo compare failed: {p.stderr.strip()}")
            m = re.search(r"layer pairs in ([0-9.]+) s", p.stdout)
            if r > 0:
                walls.append(wall)
                inner.append(float(m.group(1)))
            print(f"eccolo compare ({policy}): {wall:.2f} s wall, {float(m.group(1)):.2f} s comparing" +
                  (" (warm-up)" if r == 0 else ""), flush=True)
        timing[policy] = (walls, inner)
    with open(out) as f:
        ours = np.array(json.load(f)["values"], dtype=np.float64)

    # Ecco, pair by pair, in its layout (neurons, tokens)
    pairs = [(i, j) for i in range(L) for j in range(L)]
    n = A.ecco_pairs if 0 < A.ecco_pairs < len(pairs) else len(pairs)
    ea.cka(xa[0].T[:, :64], xb[0].T[:, :64])  # load numpy's BLAS
    theirs = np.full((L, L), np.nan)
    t0 = time.perf_counter()
    for k, (i, j) in enumerate(pairs[:n]):
        theirs[i, j] = ea.cka(xa[i].T, xb[j].T)
        if (k + 1) % 12 == 0:
            print(f"Ecco cka: {k + 1}/{n} pairs, {time.perf_counter() - t0:.1f} s", flush=True)
    ecco_s = (time.perf_counter() - t0) * len(pairs) / n
    done = ~np.isnan(theirs)
    diff = float(np.max(np.abs(ours[done] - theirs[done])))
    # a float64 reference for a few pairs (the Gram route in float64), to say which of the two is off
    def gram64(x):
        xc = x.astype(np.float64)
        xc -= xc.mean(0)
        return xc @ xc.T
    ref_pairs = [(0, 0), (0, L - 1), (L // 2, L // 3), (L - 1, 0), (L - 1, L - 1)]
    ga = {i: gram64(xa[i]) for i in {p[0] for p in ref_pairs}}
    gb = {j: gram64(xb[j]) for j in {p[1] for p in ref_pairs}}
    exact = {(i, j): float(np.vdot(ga[i], gb[j]) / np.sqrt(np.vdot(ga[i], ga[i]) * np.vdot(gb[j], gb[j])))
             for i, j in ref_pairs}
    err_ours = max(abs(ours[i, j] - v) for (i, j), v in exact.items())
    err_ecco = max(abs(theirs[i, j] - v) for (i, j), v in exact.items() if done[i, j])

    med = lambda v: float(np.median(v))  # noqa: E731
    meta = dict(date=started.strftime("%Y-%m-%d %H:%M UTC"), commit=commit, threads=A.threads, cpu=cpu_name(),
                cores=os.cpu_count(), loadavg_start=load0, loadavg_end=os.getloadavg()[0], numpy=np.__version__,
                python=sys.version.split()[0], layers=L, tokens=T, neurons=F, ecco_pairs_timed=n)
    res = dict(meta=meta, eccolo_wall_s={k: v[0] for k, v in timing.items()},
               eccolo_compare_s={k: v[1] for k, v in timing.items()}, ecco_s=ecco_s, max_abs_diff=diff,
               values_range=[float(ours.min()), float(ours.max())], float64_pairs=ref_pairs,
               eccolo_err_float64=err_ours, ecco_err_float64=err_ecco)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "compare_cpu.json"), "w") as f:
        json.dump(res, f, indent=1)
    gflop = 3 * 2 * F * F * T * L * L / 1e9
    scaled = "" if n == len(pairs) else f" ({n} of the {len(pairs)} pairs timed, scaled to all)"
    Ls = ["## Comparing layers: all-pairs linear CKA (CPU)", "",
          f"Run {meta['date']} by `python bench/bench_compare.py --threads {A.threads}`, eccolo {commit}, "
          f"{meta['cpu']}, {meta['cores']} cores; load average {load0:.2f} at the start, "
          f"{meta['loadavg_end']:.2f} at the end. The machine is shared: times taken while other work runs are "
          "noisy, and the ratio with them.", "",
          f"Two synthetic runs of gpt2's MLP shape ({L} layers × {T} tokens × {F} neurons, float32; "
          "`bench/bench_compare.py` says how they are made), every layer of one against every layer of the "
          f"other: {L * L} linear CKA values. Ecco 0.1.2's `ecco.analysis.cka` called pair by pair on the same "
          f"arrays (numpy {np.__version__}, Python {meta['python']}, in one process, after a warm-up call), "
          f"against `eccolo compare run_a run_b --method cka --threads {A.threads}`; both with "
          f"{A.threads} threads (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS), OPENBLAS_CORETYPE unset.", "",
          "| | seconds | Ecco / eccolo |", "|---|---:|---:|",
          f"| Ecco, `cka` × {L * L} pairs{scaled} | {ecco_s:.1f} | |"]
    for policy, (walls, inner) in timing.items():
        tag = "" if policy == "default" else ", OMP_WAIT_POLICY=PASSIVE"
        Ls += [f"| eccolo compare{tag}: whole process (start, reading 2 × {xa.nbytes / 2**20:.0f} MiB, comparing) | "
               f"{med(walls):.2f} | **{ecco_s / med(walls):.0f}×** |",
               f"| eccolo compare{tag}: the comparison alone | {med(inner):.2f} | **{ecco_s / med(inner):.0f}×** |"]
    Ls += ["",
          f"Medians of {A.repeats} eccolo runs after a warm-up, each way (wall: "
          + "; ".join(f"{k} {', '.join(f'{w:.2f}' for w in v[0])} s" for k, v in timing.items()) + "). "
          f"Largest difference between the two sets of values: {diff:.1e} (values from "
          f"{ours.min():.3f} to {ours.max():.3f}). Against float64 on {len(ref_pairs)} pairs: eccolo within "
          f"{err_ours:.1e}, Ecco within {err_ecco:.1e} (Ecco's products and norms are float32 throughout; "
          "eccolo centres in double and sums the float32 Gram matrices' products in double).", "",
          f"Why: Ecco computes ‖XᵀY‖², ‖XᵀX‖ and ‖YᵀY‖ for every pair — three {F} × {F} × {T} products, "
          f"{gflop:.4g} GFLOP in all — while eccolo forms each layer's {T} × {T} Gram matrix once "
          f"({2 * L} symmetric rank-{F} updates, {2 * L * T * T * F / 1e9:.4g} GFLOP) and a pair is then one "
          f"dot product of two Gram matrices (⟨XXᵀ, YYᵀ⟩ = ‖XᵀY‖²), summed in double.", ""]
    write_section(os.path.join(HERE, "RESULTS.md"), "\n".join(Ls))
    for policy, (walls, inner) in timing.items():
        print(f"Ecco {ecco_s:.1f} s, eccolo ({policy}) {med(walls):.2f} s wall ({med(inner):.2f} s comparing): "
              f"{ecco_s / med(walls):.0f}x; max |diff| {diff:.1e}")
    print("bench/RESULTS.md: compare-cpu section written")


if __name__ == "__main__":
    main()
