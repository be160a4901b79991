#!/usr/bin/env python3
"""eccolo against Ecco 0.1.2 (and scikit-learn's NMF) on the same checkpoints,
prompt, tokens and threads. bench/run.sh sets everything up and runs this with
bench/.venv's python; see bench/README.md.

For every workload (model x generated length x attribution method):
  1. Ecco, in its own process (ecco_worker.py generate): model load, one warm-up
     lm.generate, then timed lm.generate calls; greedy, so it picks the tokens.
  2. eccolo, each run its own process, given Ecco's exact prompt and generated ids
     (--prompt-ids, --continuation-ids): one untimed warm-up run, then timed runs;
     the time is run.json's timings.total (setup + generation + explanation; the
     model load is timed apart as timings.load and not included).
  3. agreement of the two engines' attribution rows and activations.
  4. NMF with 10 components: Ecco's own NMF on the activations Ecco captured,
     scikit-learn called the same way on eccolo's (full-length) matrix, and
     `eccolo nmf` with --solver mu and --solver hals on the same matrix.
Then sgemm on the shapes of eccolo's explain forward and batched backward (bench_sgemm),
and the report: bench/results/<device>.json, bench/results/time_vs_tokens_<device>.png
and the <device> section of bench/RESULTS.md.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from make_models import model_dir  # noqa: E402

PROMPT = "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4."
PROMPT_TOKENS = 28  # with GPT-2's tokenizer; a length past the context is cut to fit it
COMPONENTS = 10
# Ecco's name for a method -> eccolo's
ECCOLO_METHOD = {"grad_x_input": "grad_x_input", "ig": "integrated_gradients"}
PHASES = ["setup", "prefill", "decode", "explain_forward", "backward", "rankings", "integrated_gradients", "total"]
BACKWARD_SGEMM_MAX_ROWS = 65536  # as bench_backward.c: the backward's packed rows, one chunk


# ---- plan --------------------------------------------------------------------------------

def plan(a):
    """(workloads, NMF-only sizes). A workload: model, Ecco attribution method, tokens to generate."""
    if a.quick:
        models, lengths, ig, nmf_sizes = ["distilgpt2"], [35, 128], [], []
    else:
        models, lengths, ig, nmf_sizes = ["distilgpt2", "gpt2"], [35, 128, 512, 1024], [35], [64, 256, 1024]
    ints = lambda x: [int(v) for v in x.split(",") if v]  # noqa: E731
    models = a.models.split(",") if a.models is not None else models
    lengths = ints(a.lengths) if a.lengths is not None else lengths
    ig = ints(a.ig) if a.ig is not None else ig
    nmf_sizes = ints(a.nmf_sizes) if a.nmf_sizes is not None else nmf_sizes
    work = [dict(model=m, method="grad_x_input", generate=n) for m in models for n in lengths]
    work += [dict(model=m, method="ig", generate=n) for m in models for n in ig]
    return work, nmf_sizes


# ---- processes -----------------------------------------------------------------------------

def bench_env(threads):
    """The environment of every measured process: same threads, OpenBLAS left to its own choices."""
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    env.update(MPLBACKEND="Agg", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


class Failed(Exception):
    pass


def run_measured(cmd, env, log):
    """Run cmd to completion; (wall seconds, peak RSS in MiB). Output goes to the log file."""
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(shlex.quote(c) for c in cmd) + "\n").encode())
        f.flush()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        with open(log, errors="replace") as f:
            tail = f.read().strip().splitlines()[-3:]
        raise Failed(f"exit code {p.returncode}: {' | '.join(tail)} (log: {os.path.relpath(log, REPO)})")
    run_measured.cpu_s = ru.ru_utime + ru.ru_stime  # CPU time: wall >> cpu / threads means waiting
    return wall, ru.ru_maxrss / 1024.0  # Linux: KiB


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- the engines ---------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.env = bench_env(a.threads)
        self.py = sys.executable
        self.worker = os.path.join(HERE, "ecco_worker.py")
        os.makedirs(a.work, exist_ok=True)
        self.log = os.path.join(a.work, "log.txt")

    def ecco(self, mdir, wl, out, save_activations):
        cmd = [self.py, self.worker, "generate", "--model", mdir, "--prompt", PROMPT,
               "--generate", str(wl["generate"]), "--attribution", wl["method"],
               "--repeats", str(self.a.repeats), "--max-seconds", str(self.a.ecco_max_seconds),
               "--threads", str(self.a.threads), "--device", self.a.device, "--out", out]
        if save_activations:
            cmd.append("--save-activations")
        wall, rss = run_measured(cmd, self.env, self.log)
        with open(out + ".json") as f:
            info = json.load(f)
        info.update(process_wall_s=wall, process_cpu_s=run_measured.cpu_s, peak_rss_mib=rss)
        return info

    def eccolo_generate(self, mdir, ids, n_input, flags, out, repeats):
        """One untimed warm-up run, then `repeats` runs; the last run's output stays in `out`."""
        base = [self.a.eccolo, "generate", "--model", mdir, "--prompt-ids", ",".join(map(str, ids[:n_input])),
                "--no-stop", "--threads", str(self.a.threads), "--device", self.a.device, "--quiet",
                "--out", out] + flags
        if len(ids) > n_input:
            base += ["--continuation-ids", ",".join(map(str, ids[n_input:]))]
        runs, rss = [], 0.0
        for r in range(repeats + 1):
            wall, peak = run_measured(base, self.env, self.log)
            if r == 0:
                continue
            with open(os.path.join(out, "run.json")) as f:
                run = json.load(f)
            runs.append(dict(timings=run["timings"], process_wall_s=wall, process_cpu_s=run_measured.cpu_s))
            rss = max(rss, peak)
        med = {p: statistics.median(x["timings"].get(p, 0.0) for x in runs) for p in PHASES + ["load"]}
        return dict(runs=runs, timings=med, total_s=med["total"], peak_rss_mib=rss, repeats=repeats,
                    device=run["device"], threads=run["threads"])

    def eccolo_nmf(self, run_dir, solver, out):
        cmd = [self.a.eccolo, "nmf", run_dir, "--components", str(COMPONENTS), "--solver", solver,
               "--threads", str(self.a.threads), "--device", self.a.device, "--out", out]
        wall, _ = run_measured(cmd, self.env, self.log)
        meta = st_metadata(out)
        return dict(solver=solver, seconds=float(meta["seconds"]), process_wall_s=wall,
                    reported_relative_error=float(meta["relative_error"]), iterations=int(meta["iterations"]))

    def nmf_all(self, run_dir, ecco_npz):
        """NMF of one activation matrix by every solver; ecco_npz: Ecco's own activations, or None."""
        res = {}
        files = {}
        for solver in ("mu", "hals"):
            files[solver] = os.path.join(run_dir, f"nmf_{solver}.safetensors")
            try:
                res["eccolo_" + solver] = self.eccolo_nmf(run_dir, solver, files[solver])
            except Failed as e:
                res["eccolo_" + solver] = dict(error=str(e))
                files.pop(solver)
        out = os.path.join(run_dir, "nmf_sklearn.json")
        cmd = [self.py, self.worker, "nmf-sklearn", "--run-dir", run_dir, "--components", str(COMPONENTS),
               "--threads", str(self.a.threads), "--out", out, "--eval"] + list(files.values())
        try:
            run_measured(cmd, self.env, self.log)
            with open(out) as f:
                sk = json.load(f)
            for solver, path in files.items():
                res["eccolo_" + solver]["relative_error"] = sk["eval"][path]["relative_error"]
            res["sklearn_full"] = {k: sk[k] for k in ("rows", "cols", "seconds", "relative_error", "iterations")}
            for r in res.values():
                r.setdefault("rows", sk["rows"])
                r.setdefault("cols", sk["cols"])
        except Failed as e:
            res["sklearn_full"] = dict(error=str(e))
        if ecco_npz:
            out = os.path.join(run_dir, "nmf_ecco.json")
            cmd = [self.py, self.worker, "nmf-ecco", "--acts", ecco_npz, "--components", str(COMPONENTS),
                   "--threads", str(self.a.threads), "--out", out]
            try:
                run_measured(cmd, self.env, self.log)
                with open(out) as f:
                    res["ecco"] = json.load(f)
            except Failed as e:
                res["ecco"] = dict(error=str(e))
        return res

    def sgemm(self, shapes):
        """{(M, N, K): GFLOP/s} measured by bench_sgemm with the same threads and device."""
        if not shapes:
            return {}
        cmd = [self.a.sgemm, "--device", self.a.device, "--threads", str(self.a.threads),
               "--repeats", str(max(1, min(3, self.a.repeats)))] + [f"{m}x{n}x{k}" for m, n, k in shapes]
        out = os.path.join(self.a.work, "sgemm.jsonl")
        env = dict(self.env)
        with open(out, "w") as f:
            p = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise Failed(p.stderr.strip())
        rates = {}
        with open(out) as f:
            for line in f:
                d = json.loads(line)
                rates[(d["M"], d["N"], d["K"])] = d["gflops"]
        return rates


def st_metadata(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)).get("__metadata__", {})


# ---- agreement and FLOPs -------------------------------------------------------------------

def agreement(ecco_npz, ecco_info, run_dir, method):
    e = np.load(ecco_npz)
    t = load_file(os.path.join(run_dir, "tensors.safetensors"))
    res = {}
    assert t["token_ids"].tolist() == e["ids"].tolist(), "eccolo ran other tokens than Ecco"
    a = e["attribution." + method].astype(np.float64)
    b = t["attribution." + ECCOLO_METHOD[method]].astype(np.float64)
    if a.shape == b.shape and a.size:
        res["attribution_max_abs"] = float(np.abs(a - b).max())
        res["attribution_max_row_rel"] = float((np.linalg.norm(a - b, axis=1) /
                                                np.maximum(np.linalg.norm(a, axis=1), 1e-30)).max())
    else:
        res["attribution_shapes"] = [list(a.shape), list(b.shape)]
    if "activations" in e.files and "activations" in t:
        ea = e["activations"]  # [L, F, T-1], layers in Ecco's (string-sorted) order
        order = [int(k) for k in ecco_info["activation_layer_order"]]
        ours = t["activations"][order][:, :ea.shape[2], :].transpose(0, 2, 1)
        d = np.abs(ours.astype(np.float64) - ea)
        res["activations_max_abs"] = float(d.max())
        res["activations_max_abs_rel"] = float(d.max() / max(np.abs(ea).max(), 1e-30))
        res["activation_positions_compared"] = int(ea.shape[2])
    return res


def backward_flops(cfg, T, n_input):
    """as bench_backward.c: matrix products of all targets' prefixes, attention, lm head (fwd + bwd)."""
    C, F, L, V = cfg["n_embd"], cfg["n_inner"], cfg["n_layer"], cfg["vocab_size"]
    rows = sum(range(n_input, T))
    sq = sum(t * t for t in range(n_input, T))
    G = T - n_input
    return 2 * rows * (2 * C * F + 4 * C * C) * L + 8 * sq * C * L + 4 * G * V * C


def forward_flops(cfg, T):
    """the explain forward over T tokens: QKV, projection, MLP, and QK^T and PV over the T x T square."""
    C, F, L = cfg["n_embd"], cfg["n_inner"], cfg["n_layer"]
    return L * (2 * T * (4 * C * C + 2 * C * F) + 4 * T * T * C)


# ---- facts about the run -------------------------------------------------------------------

def sh(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    mem = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem = int(next(l for l in f if l.startswith("MemTotal")).split()[1]) / 2**20
    except (OSError, StopIteration):
        pass
    gpu = sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    return dict(cpu=cpu or platform.processor(), cores=os.cpu_count(), ram_gib=round(mem, 1),
                gpu=gpu or None, os=platform.platform())


def eccolo_commit():
    head = sh(["git", "-C", REPO, "rev-parse", "--short", "HEAD"]) or "unknown"
    status = sh(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
    dirty = any(not re.search(r"bench/(RESULTS\.md|results/)", l) for l in status.splitlines())
    return head + ("-dirty" if dirty else "")


# ---- merging with the saved results of an earlier run ---------------------------------------

RUN_KEYS = ("date", "command", "mode", "eccolo_commit", "wall_s", "loadavg_start", "loadavg_end", "plan")


def merge(out, old):
    """Keep the rows of `old` (an earlier run's results dict, same device) that `out` does not repeat.
    Every row carries `run`, the date of the run it comes from; out["meta"]["earlier_runs"] describes
    the earlier runs that still have rows. Rows are ordered as a full run orders them."""
    meta, ometa = out["meta"], old["meta"]
    for r in out["workloads"] + out["nmf"]:
        r["run"] = meta["date"]
    for r in old["workloads"] + old["nmf"]:
        r.setdefault("run", ometa["date"])
    tags = {w["tag"] for w in out["workloads"]}
    sources = {r["source"] for r in out["nmf"]}
    out["workloads"] += [w for w in old["workloads"] if w["tag"] not in tags]
    out["nmf"] += [r for r in old["nmf"] if r["source"] not in sources]
    model_order = lambda m: (m != "distilgpt2", m)  # noqa: E731
    out["workloads"].sort(key=lambda w: (w["method"] != "grad_x_input", model_order(w["model"]), w["generate"]))
    out["nmf"].sort(key=lambda r: ("eccolo run" in r["source"], model_order(r["model"]), r["T"]))
    runs = {r["date"]: r for r in ometa.get("earlier_runs", [])}
    runs[ometa["date"]] = {k: ometa.get(k) for k in RUN_KEYS}
    used = {r["run"] for r in out["workloads"] + out["nmf"]} - {meta["date"]}
    meta["earlier_runs"] = [runs[d] for d in sorted(used) if d in runs]
    if not meta.get("versions"):
        meta["versions"] = ometa.get("versions", {})
    for k, v in ometa.get("models", {}).items():
        meta.setdefault("models", {}).setdefault(k, v)
    return out


def nmf_rerun(b, a, saved):
    """The NMF comparisons again, on the activation matrices the saved run left in its work directory."""
    rows = []
    for w in saved["workloads"]:
        wdir = os.path.join(a.work, w["tag"])
        if w["method"] != "grad_x_input" or "eccolo" not in w or not os.path.isdir(os.path.join(wdir, "eccolo")):
            continue
        say(f"{w['tag']}: NMF")
        rows.append(dict(source=f"{w['model']}, {w['G']} generated", model=w["model"], T=w["T"],
                         **b.nmf_all(os.path.join(wdir, "eccolo"), os.path.join(wdir, "ecco.npz"))))
    for r in saved["nmf"]:
        edir = os.path.join(a.work, f"nmf-{r['model']}-{r['T']}", "eccolo")
        if "eccolo run" not in r["source"] or not os.path.isdir(edir):
            continue
        say(f"NMF on {r['model']} activations, T = {r['T']}")
        rows.append(dict(source=r["source"], model=r["model"], T=r["T"], **b.nmf_all(edir, None)))
    return rows


# ---- the whole benchmark -------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3; --quick: 1)")
    p.add_argument("--ecco-max-seconds", type=float, default=300,
                   help="Ecco stops repeating once its timed calls took this long (at least one call)")
    p.add_argument("--eccolo", default=os.path.join(REPO, "build-bench", "eccolo"))
    p.add_argument("--sgemm", default=os.path.join(REPO, "build-bench", "bench_sgemm"))
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--models", help="override: comma-separated models (distilgpt2,gpt2)")
    p.add_argument("--lengths", help="override: generated lengths with grad_x_input, e.g. 35,128")
    p.add_argument("--ig", help="override: generated lengths with integrated gradients ('' for none)")
    p.add_argument("--nmf-sizes", help="override: T of the NMF-only runs on gpt2 ('' for none)")
    p.add_argument("--command", default="bench/run.sh", help="how this run was started (for the report)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of the saved bench/results/<device>.json that this run does not repeat "
                        "(e.g. add the 1024-token workloads to an earlier run's table)")
    p.add_argument("--nmf-only", action="store_true",
                   help="only the NMF comparisons, again, on the activations the saved run left in bench/work "
                        "(after a change to eccolo's NMF); implies --merge")
    a = p.parse_args()
    if a.repeats is None:
        a.repeats = 1 if a.quick else 3
    a.work = os.path.join(a.work, a.device)
    b = Bench(a)
    started = time.time()
    overridden = any(x is not None for x in (a.models, a.lengths, a.ig, a.nmf_sizes))
    jpath = os.path.join(HERE, "results", f"{a.device}.json")
    saved = None
    if a.merge or a.nmf_only:
        try:
            with open(jpath) as f:
                saved = json.load(f)
        except FileNotFoundError:
            if a.nmf_only:
                sys.exit(f"--nmf-only: no saved results ({os.path.relpath(jpath, REPO)}): run the benchmark first")
    meta = dict(mode="nmf-only" if a.nmf_only else "custom" if overridden else "quick" if a.quick else "full",
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                command=a.command, quick=a.quick, device=a.device, threads=a.threads, repeats=a.repeats,
                ecco_max_seconds=a.ecco_max_seconds, machine=machine(), eccolo_commit=eccolo_commit(),
                eccolo_info=sh([a.eccolo, "info"]).splitlines()[:3], loadavg_start=os.getloadavg(),
                openblas_env_unset=True, prompt=PROMPT)
    work, nmf_sizes = ([], []) if a.nmf_only else plan(a)
    meta["plan"] = dict(models=sorted({w["model"] for w in work}, key=len),
                        lengths=sorted({w["generate"] for w in work if w["method"] == "grad_x_input"}),
                        ig=sorted({w["generate"] for w in work if w["method"] == "ig"}), nmf_sizes=nmf_sizes)
    nmf_model = "gpt2" if "gpt2" in {w['model'] for w in work} or not work else work[-1]["model"]
    say(f"{len(work)} workloads, NMF sizes {nmf_sizes}, device {a.device}, threads {a.threads}, "
        f"repeats {a.repeats}; load average {os.getloadavg()[0]:.2f}; log: {os.path.relpath(b.log, REPO)}")
    models, results, nmf_rows, shapes = {}, [], [], set()
    for wl in work:
        name = wl["model"]
        if name not in models:
            d, kind = model_dir(name)
            with open(os.path.join(d, "config.json")) as f:
                cfg = json.load(f)
            cfg.setdefault("n_inner", None)
            cfg["n_inner"] = cfg["n_inner"] or 4 * cfg["n_embd"]
            models[name] = dict(dir=d, kind=kind, config=cfg)
        m = models[name]
        n_pos = m["config"]["n_positions"]
        tag = f"{name}-{wl['method']}-{wl['generate']}"
        wdir = os.path.join(a.work, tag)
        os.makedirs(wdir, exist_ok=True)
        row = dict(wl, tag=tag)
        results.append(row)
        try:
            gen = min(wl["generate"], n_pos - PROMPT_TOKENS)
            say(f"{tag}: Ecco (generate {gen})")
            save_acts = wl["method"] == "grad_x_input"
            info = b.ecco(m["dir"], dict(wl, generate=gen), os.path.join(wdir, "ecco"), save_acts)
            n_in, ids = info["n_input"], info["ids"]
            T = len(ids)
            row.update(n_input=n_in, T=T, G=T - n_in, ecco=dict(
                times=info["times"], total_s=statistics.median(info["times"]), repeats=len(info["times"]),
                peak_rss_mib=info["peak_rss_mib"], load_s=info["load_s"], device=info["device"],
                process_wall_s=info["process_wall_s"], process_cpu_s=info["process_cpu_s"],
                threads=info["threads"]), versions=info["versions"])
            say(f"{tag}: Ecco {row['ecco']['total_s']:.2f} s (median of {len(info['times'])}); eccolo")
            flags = ["--attribution", ECCOLO_METHOD[wl["method"]], "--activations"]
            edir = os.path.join(wdir, "eccolo")
            row["eccolo"] = b.eccolo_generate(m["dir"], ids, n_in, flags, edir, a.repeats)
            row["speedup"] = row["ecco"]["total_s"] / max(row["eccolo"]["total_s"], 1e-9)
            say(f"{tag}: eccolo {row['eccolo']['total_s']:.3f} s; speedup {row['speedup']:.1f}x")
            row["agreement"] = agreement(os.path.join(wdir, "ecco.npz"), info, edir, wl["method"])
            if wl["method"] == "grad_x_input":
                cfg = m["config"]
                rows_b = sum(range(n_in, T))
                row["flops"] = dict(
                    backward_gflop=backward_flops(cfg, T, n_in) / 1e9, forward_gflop=forward_flops(cfg, T) / 1e9,
                    backward_sgemm_shape=[min(rows_b, BACKWARD_SGEMM_MAX_ROWS), cfg["n_inner"], cfg["n_embd"]],
                    forward_sgemm_shape=[T, cfg["n_inner"], cfg["n_embd"]])
                shapes.add(tuple(row["flops"]["backward_sgemm_shape"]))
                shapes.add(tuple(row["flops"]["forward_sgemm_shape"]))
                say(f"{tag}: NMF")
                nmf = b.nmf_all(edir, os.path.join(wdir, "ecco.npz"))
                nmf_rows.append(dict(source=f"{name}, {T - n_in} generated", model=name, T=T, **nmf))
        except (Failed, AssertionError, OSError, KeyError, ValueError) as e:
            row["error"] = str(e)
            say(f"{tag}: FAILED: {e}")
    for T in nmf_sizes:
        name = nmf_model
        if name not in models:
            d, kind = model_dir(name)
            models[name] = dict(dir=d, kind=kind)
        wdir = os.path.join(a.work, f"nmf-{name}-{T}")
        say(f"NMF on {name} activations, T = {T}")
        try:
            edir = os.path.join(wdir, "eccolo")
            os.makedirs(wdir, exist_ok=True)
            cmd = [a.eccolo, "generate", "--model", models[name]["dir"], "--prompt", PROMPT, "--raw",
                   "--max-new-tokens", str(T - PROMPT_TOKENS), "--no-stop", "--activations",
                   "--threads", str(a.threads), "--device", a.device, "--quiet", "--out", edir]
            run_measured(cmd, b.env, b.log)
            with open(os.path.join(edir, "run.json")) as f:
                Tr = json.load(f)["n_tokens"]
            nmf_rows.append(dict(source=f"{name}, T = {Tr} (eccolo run)", model=name, T=Tr,
                                 **b.nmf_all(edir, None)))
        except (Failed, OSError, KeyError, ValueError) as e:
            nmf_rows.append(dict(source=f"{name}, T = {T}", model=name, T=T, error=str(e)))
            say(f"NMF T = {T}: FAILED: {e}")
    if a.nmf_only:
        nmf_rows = nmf_rerun(b, a, saved)
    say("sgemm on the same shapes")
    try:
        rates = b.sgemm(sorted(shapes))
    except Failed as e:
        rates = {}
        meta["sgemm_error"] = str(e)
    for row in results:
        f = row.get("flops")
        if not f or "eccolo" not in row:
            continue
        tm = row["eccolo"]["timings"]
        f["backward_s"], f["forward_s"] = tm["backward"], tm["explain_forward"]
        f["backward_gflops"] = f["backward_gflop"] / tm["backward"] if tm["backward"] > 0 else None
        f["forward_gflops"] = f["forward_gflop"] / tm["explain_forward"] if tm["explain_forward"] > 0 else None
        f["backward_sgemm_gflops"] = rates.get(tuple(f["backward_sgemm_shape"]))
        f["forward_sgemm_gflops"] = rates.get(tuple(f["forward_sgemm_shape"]))
    meta.update(loadavg_end=os.getloadavg(), wall_s=time.time() - started,
                versions=next((r["versions"] for r in results if "versions" in r), {}),
                models={k: dict(dir=os.path.relpath(v["dir"], REPO) if v["dir"].startswith(REPO) else v["dir"],
                                kind=v["kind"]) for k, v in models.items()})
    out = dict(meta=meta, workloads=results, nmf=nmf_rows)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    if saved:
        out = merge(out, saved)
    with open(jpath, "w") as f:
        json.dump(out, f, indent=1)
    import report
    png = report.plot(out, os.path.join(HERE, "results", f"time_vs_tokens_{a.device}.png"))
    section = report.section(out, png)
    report.write_section(os.path.join(HERE, "RESULTS.md"), a.device, section)
    print()
    print(report.summary(out))
    say(f"done in {meta['wall_s'] / 60:.1f} min: bench/RESULTS.md, {os.path.relpath(jpath, REPO)}, "
        f"{os.path.relpath(png, REPO) if png else '(no plot)'}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
