#!/usr/bin/env python3
"""Batch throughput: 64 prompts x 32 generated tokens with grad_x_input and
activations, through one `eccolo batch` process versus 64 separate
`eccolo generate` processes, on the same machine with the same threads.

    python3 bench/batch_throughput.py [--eccolo build-bench/eccolo] [--models demo,distilgpt2]
                                      [--prompts 64] [--tokens 32] [--batch-sizes 1,8,64] [--threads 2]

Wall time includes process start and model load for both sides: that is what
a user running a prompt file pays. Both sides generate greedily with --no-stop,
so every prompt gets exactly --tokens tokens, and the script checks that the
batch's token ids equal the separate runs' (same work, same result).
Writes the section between <!-- BEGIN batch-cpu --> and <!-- END batch-cpu -->
of bench/RESULTS.md and bench/results/batch_cpu.json. Standard library only.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODELS = {"demo": os.path.join(REPO, "models", "demo"),
          "distilgpt2": os.path.join(HERE, "models", "distilgpt2")}
SUBJECTS = ["The committee", "A small library", "The compiler", "My neighbour", "The river", "This package",
            "The old train", "Our kernel"]
VERBS = ["provides", "was built to handle", "is a tool for", "explains"]
OBJECTS = ["network traffic", "images and sound", "the history of the town", "parallel computations"]


def prompts(n):
    """n distinct prompts of 4 to 9 words (deterministic)."""
    out = []
    for i in range(n):
        s, v, o = SUBJECTS[i % 8], VERBS[(i // 8) % 4], OBJECTS[(i // 32 + i) % 4]
        out.append({"id": f"p{i:03d}", "prompt": f"{s} {v} {o}" + ("," if i % 3 == 0 else "")})
    return out


def env_for(threads):
    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def timed(cmd, env, log):
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(cmd) + "\n").encode())
        f.flush()
        t0 = time.perf_counter()
        p = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"batch_throughput: {cmd[:2]} failed with exit code {p.returncode}; see {log}")
    return wall


def token_ids(run_dir):
    with open(os.path.join(run_dir, "run.json")) as f:
        return json.load(f)["token_ids"]


def write_section(path, text):
    with open(path) as f:
        md = f.read()
    begin, end = "<!-- BEGIN batch-cpu -->", "<!-- END batch-cpu -->"
    if begin not in md:
        md = md.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    md = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{text}{end}", md, flags=re.S)
    with open(path + ".tmp", "w") as f:
        f.write(md)
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eccolo", default=os.path.join(REPO, "build-bench", "eccolo"))
    p.add_argument("--models", default="demo,distilgpt2")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--batch-sizes", default="1,8,64")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--work", default=os.path.join(HERE, "work", "batch"))
    a = p.parse_args()
    env = env_for(a.threads)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    log = os.path.join(a.work, "log.txt")
    plist = prompts(a.prompts)
    jsonl = os.path.join(a.work, "prompts.jsonl")
    with open(jsonl, "w") as f:
        for r in plist:
            f.write(json.dumps(r) + "\n")
    common = ["--max-new-tokens", str(a.tokens), "--no-stop", "--attribution", "grad_x_input", "--activations",
              "--threads", str(a.threads), "--device", "cpu"]
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    load0 = os.getloadavg()[0]
    rows = []
    for name in a.models.split(","):
        model = MODELS.get(name, name)
        if not os.path.isdir(model):
            print(f"batch_throughput: no {model}; skipping {name} (bench/run.sh --setup-only makes it)")
            continue
        single_dir = os.path.join(a.work, name, "single")
        t_single = 0.0
        for r in plist:
            t_single += timed([a.eccolo, "generate", "--model", model, "--prompt", r["prompt"], "--quiet",
                               "--out", os.path.join(single_dir, r["id"])] + common, env, log)
        print(f"{name}: {a.prompts} separate processes: {t_single:.1f} s", flush=True)
        for b in [int(x) for x in a.batch_sizes.split(",")]:
            out = os.path.join(a.work, name, f"batch{b}")
            t = timed([a.eccolo, "batch", "--model", model, "--prompts", jsonl, "--out", out, "--batch-size", str(b),
                       "--quiet"] + common, env, log)
            same = all(token_ids(os.path.join(out, "runs", r["id"])) == token_ids(os.path.join(single_dir, r["id"]))
                       for r in plist)
            if not same:
                sys.exit(f"batch_throughput: {name} batch size {b}: token ids differ from the separate runs")
            rows.append(dict(model=name, batch_size=b, batch_s=t, single_s=t_single, ratio=t_single / t,
                             prompts_per_s=a.prompts / t, single_prompts_per_s=a.prompts / t_single))
            print(f"{name}: eccolo batch --batch-size {b}: {t:.1f} s ({t_single / t:.1f}x)", flush=True)
    meta = dict(date=started.strftime("%Y-%m-%d %H:%M UTC"), commit=commit, threads=a.threads, prompts=a.prompts,
                tokens=a.tokens, loadavg_start=load0, loadavg_end=os.getloadavg()[0], cpu=cpu_name(),
                cores=os.cpu_count())
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "batch_cpu.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)
    L = ["## Batch throughput (CPU)", "",
         f"Run {meta['date']} by `python3 bench/batch_throughput.py`, eccolo {commit}, {meta['cpu']}, "
         f"{meta['cores']} cores, `--threads {a.threads}`; load average {load0:.2f} at the start, "
         f"{meta['loadavg_end']:.2f} at the end.", "",
         f"{a.prompts} prompts × {a.tokens} generated tokens (greedy, `--no-stop`), grad×input and activations: "
         f"one `eccolo batch` process against {a.prompts} separate `eccolo generate --out` processes, run one "
         "after another. Wall time of the processes, start and model load included on both sides. The batch's "
         "token ids were checked equal to the separate runs'.", "",
         "| model | batch size | eccolo batch s | separate processes s | ratio | prompts/s (batch, separate) |",
         "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        L.append(f"| {r['model']} | {r['batch_size']} | {r['batch_s']:.1f} | {r['single_s']:.1f} | "
                 f"**{r['ratio']:.1f}×** | {r['prompts_per_s']:.2f}, {r['single_prompts_per_s']:.2f} |")
    L += ["", "demo: the embedded 9M-parameter model (`models/demo`); distilgpt2: random weights of the real shape "
          "(`bench/models/distilgpt2`, made by `bench/run.sh --setup-only`).", ""]
    write_section(os.path.join(HERE, "RESULTS.md"), "\n".join(L))
    print("bench/RESULTS.md: batch-cpu section written")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
