"""The benchmark's report: the plot, the device's section of bench/RESULTS.md and a
terminal summary, all from the results dict that harness.py writes as
bench/results/<device>.json. `python bench/report.py bench/results/cpu.json`
redraws the plot and rewrites that section from a saved JSON."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE_TITLE = {"cpu": "CPU", "cuda": "GPU (CUDA)"}
HEADER = """# eccolo vs Ecco: benchmark results

Written by `bench/run.sh` (see bench/README.md for what it runs and how long it takes).
Each device has its own section; a run rewrites only its own device's section.
"""
PLACEHOLDER = {
    "cpu": "No CPU run has been made yet: `bench/run.sh --device cpu`.",
    "cuda": "No GPU run has been made yet: on a machine with an NVIDIA GPU, `bench/run.sh --device cuda` "
            "(offline: `--wheels DIR`, see bench/README.md).",
}


def s(x):
    """seconds, to about 3 significant digits"""
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def g(x, digits=2):
    return "–" if x is None else f"{x:.{digits}e}"


def label(w):
    method = {"grad_x_input": "grad×input", "ig": "integrated gradients"}[w["method"]]
    return f"{w['model']} · {method}"


def plot(out, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    models = sorted({w["model"] for w in out["workloads"]}, key=lambda m: (m != "distilgpt2", m))
    markers = {"distilgpt2": "o", "gpt2": "s"}
    drawn = False
    for m in models:
        rows = sorted((w for w in out["workloads"] if w["model"] == m and w["method"] == "grad_x_input"
                       and "ecco" in w and "eccolo" in w), key=lambda w: w["G"])
        if not rows:
            continue
        x = [w["G"] for w in rows]
        ax.plot(x, [w["ecco"]["total_s"] for w in rows], marker=markers.get(m, "^"), color="tab:red",
                linestyle="-" if m == "gpt2" else "--", label=f"Ecco 0.1.2, {m}")
        ax.plot(x, [w["eccolo"]["total_s"] for w in rows], marker=markers.get(m, "^"), color="tab:blue",
                linestyle="-" if m == "gpt2" else "--", label=f"eccolo, {m}")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    meta = out["meta"]
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.set_xticks(sorted({w["G"] for w in out["workloads"] if "G" in w and w["method"] == "grad_x_input"}))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("generated tokens")
    ax.set_ylabel("seconds (generation + grad×input + activations)")
    ax.set_title(f"{DEVICE_TITLE[meta['device']]}, {meta['threads']} threads, {meta['date']}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def nmf_cell(r):
    if r is None:
        return "–"
    if "error" in r:
        return "failed"
    return f"{s(r['seconds'])} s · {r['relative_error']:.4f} · {r['iterations']} it"


def section(out, png):
    meta, work = out["meta"], out["workloads"]
    mc, v = meta["machine"], meta.get("versions", {})
    L = [f"## {DEVICE_TITLE[meta['device']]}", ""]
    mode = {"quick": "quick mode", "full": "full run"}.get(meta.get("mode"), "custom run")
    pl = meta.get("plan", {})
    nums = lambda xs: ", ".join(map(str, xs))  # noqa: E731
    what = f"{', '.join(pl.get('models', []))}; grad×input at {nums(pl.get('lengths', []))} generated tokens"
    if pl.get("ig"):
        what += f", integrated gradients at {nums(pl['ig'])}"
    if pl.get("nmf_sizes"):
        what += f"; NMF of gpt2 activations at T = {nums(pl['nmf_sizes'])}"
    if meta.get("mode") == "nmf-only":
        mode, what = "NMF only", "the NMF comparisons again, on the activations of the earlier runs' workloads"
    L.append(f"Run {meta['date']} by `{meta['command']}`, {mode} ({what}), in {meta['wall_s'] / 60:.1f} min.")
    marks = {r["date"]: sym for r, sym in zip(meta.get("earlier_runs", []), "†‡§¶")}
    for r in meta.get("earlier_runs", []):
        la = r.get("loadavg_start") or [0]
        L.append(f"Rows marked {marks[r['date']]} come from an earlier run kept by `--merge`: {r['date']} by "
                 f"`{r['command']}`, eccolo {r['eccolo_commit']}, in {r['wall_s'] / 60:.1f} min, load average "
                 f"{la[0]:.2f} at its start.")
    L.append("")

    def name(w):
        """a workload's name in the tables, with its run's mark"""
        return f"{label(w)} · {w.get('G', w['generate'])}{marks.get(w.get('run'), '')}"
    gpu = f"; GPU: {mc['gpu']}" if mc.get("gpu") else ""
    L.append(f"- Machine: {mc['cpu']}, {mc['cores']} cores, {mc['ram_gib']} GiB RAM{gpu}. "
             f"Load average {meta['loadavg_start'][0]:.2f} at the start, {meta['loadavg_end'][0]:.2f} at the end "
             f"(the benchmark's own {meta['threads']} threads count in the second)"
             + (" — other work was running on the machine when it started, so the times are noisy." if
                meta["loadavg_start"][0] > 0.5 * mc["cores"] else "."))
    info = "; ".join(x for x in meta.get("eccolo_info", [])[1:3])
    L.append(f"- eccolo {meta['eccolo_commit']} ({info}), `--threads {meta['threads']}`.")
    L.append(f"- Ecco {v.get('ecco')} with torch {v.get('torch')}, transformers {v.get('transformers')}, "
             f"captum {v.get('captum')}, scikit-learn {v.get('scikit-learn')}, numpy {v.get('numpy')}, "
             f"Python {v.get('python')}; `torch.set_num_threads({meta['threads']})`.")
    models = ", ".join(f"{k}: {'real checkpoint' if m['kind'] == 'real' else 'random weights of the real shape'}"
                       f" (`{m['dir']}`)" for k, m in meta.get("models", {}).items())
    L.append(f"- Models: {models}. Both engines load the same directory.")
    L.append(f"- Same threads for both (OMP_NUM_THREADS={meta['threads']}), OPENBLAS_CORETYPE and "
             "OPENBLAS_L2_SIZE unset for both. Prompt: the Ecco article's, 28 tokens. Ecco generates "
             "greedily; eccolo is given Ecco's prompt and generated ids (`--prompt-ids`, `--continuation-ids`), "
             "so both do the same work on the same tokens.")
    L.append(f"- Times exclude process start and model load. Ecco: `lm.generate(prompt, generate=N, "
             f"attribution=[M])` with `activations=True`, timed in a long-lived process after one warm-up "
             f"call; eccolo: run.json's `timings.total` (setup — on a GPU this includes copying the weights to it —, "
             f"generation, explanation), after one untimed run. "
             f"Median of the timed repeats ({meta['repeats']} asked; Ecco stops repeating after {meta['ecco_max_seconds']:.0f} s "
             "of timed calls; the table gives each count). Peak RSS: each engine's process, from wait4.")
    L.append("")
    L.append("### End-to-end time")
    L.append("")
    L.append("| workload | tokens (prompt + generated) | Ecco s | eccolo s | Ecco / eccolo | repeats (Ecco, eccolo) "
             "| Ecco peak RSS MiB | eccolo peak RSS MiB | CPU use (Ecco, eccolo) |")
    L.append("|---|---|---:|---:|---:|---|---:|---:|---|")

    def use(cpu, wall):
        return f"{100 * cpu / (meta['threads'] * wall):.0f} %" if cpu is not None and wall else "–"
    for w in work:
        if "error" in w and "eccolo" not in w:
            L.append(f"| {name(w)} | – | failed: {w['error'][:120]} | | | | | | |")
            continue
        e, o = w["ecco"], w["eccolo"]
        last = o["runs"][-1] if o.get("runs") else {}
        L.append(f"| {name(w)} | {w['n_input']} + {w['G']} | {s(e['total_s'])} | {s(o['total_s'])} "
                 f"| **{w['speedup']:.1f}×** | {e['repeats']}, {o['repeats']} | {e['peak_rss_mib']:.0f} "
                 f"| {o['peak_rss_mib']:.0f} | {use(e.get('process_cpu_s'), e.get('process_wall_s'))}, "
                 f"{use(last.get('process_cpu_s'), last.get('process_wall_s'))} |")
    L.append("")
    L.append(f"CPU use: the process's CPU time over {meta['threads']} threads × its wall time (whole process, "
             "model load and warm-up included); far below 100 % means the threads waited for cores that other "
             "work held.")
    if any(w.get("generate", 0) + 28 > 1024 for w in work):
        L.append("")
        L.append("A requested length past the context (1024 positions) is cut to fit it: 28 + 996 = 1024 tokens.")
    if png:
        L += ["", f"![time vs generated tokens](results/{os.path.basename(png)})"]
    L += ["", "### eccolo's phases (median seconds, from run.json)", ""]
    L.append("| workload | " + " | ".join(p.replace("_", " ") for p in
                                           ["setup", "prefill", "decode", "explain_forward", "backward",
                                            "integrated_gradients", "total"]) + " | load (not in total) |")
    L.append("|---|" + "---:|" * 8)
    for w in work:
        if "eccolo" not in w:
            continue
        t = w["eccolo"]["timings"]
        L.append(f"| {name(w)} | " + " | ".join(
            s(t[p]) if t.get(p) else "–" for p in
            ["setup", "prefill", "decode", "explain_forward", "backward", "integrated_gradients", "total"])
            + f" | {s(t.get('load'))} |")
    L += ["", "### Agreement (same tokens)", ""]
    L.append("Attribution rows: max |Ecco − eccolo| over all entries, and max over rows of "
             "‖Ecco − eccolo‖₂ / ‖Ecco‖₂. Activations: max |Ecco − eccolo| over the positions Ecco "
             "captures (all but the last token; Ecco's string-sorted layer order mapped back), absolute and "
             "relative to max |activation|.")
    L.append("")
    L.append("| workload | attribution max abs | attribution max row-relative | activations max abs | "
             "activations max abs, relative |")
    L.append("|---|---:|---:|---:|---:|")
    for w in work:
        a = w.get("agreement")
        if not a:
            continue
        L.append(f"| {name(w)} | {g(a.get('attribution_max_abs'))} | "
                 f"{g(a.get('attribution_max_row_rel'))} | {g(a.get('activations_max_abs'))} | "
                 f"{g(a.get('activations_max_abs_rel'))} |")
    L += ["", "### NMF, 10 components", ""]
    L.append("Each cell: seconds · relative error ‖X − WH‖_F / ‖X‖_F (recomputed in float64 on the same X) · "
             "iterations. X = max(activations, 0), rows = positions, columns = layer × neuron. *Ecco* is "
             "Ecco's own `NMF` (scikit-learn `NMF(n_components=10, init='random', random_state=0, "
             "max_iter=500)`, solver cd) on the activations Ecco captured, which miss the last token; "
             "*scikit-learn* is the same call on eccolo's full matrix; *eccolo mu / hals* is "
             "`eccolo nmf RUN --components 10 --solver mu|hals` on that same full matrix (its seconds are the "
             "solver's, from nmf.safetensors; scikit-learn's are `fit_transform`'s).")
    L.append("")
    L.append("| activations | X (rows × cols) | Ecco (rows − 1) | scikit-learn | eccolo mu | eccolo hals "
             "| scikit-learn / eccolo hals |")
    L.append("|---|---|---|---|---|---|---:|")
    for r in out["nmf"]:
        if "error" in r and "sklearn_full" not in r:
            L.append(f"| {r['source']}{marks.get(r.get('run'), '')} | failed: {r['error'][:120]} | | | | | |")
            continue
        sk, hals = r.get("sklearn_full"), r.get("eccolo_hals")
        shape = f"{sk['rows']} × {sk['cols']}" if sk and "rows" in sk else "–"
        ratio = (f"{sk['seconds'] / hals['seconds']:.1f}×" if sk and hals and "seconds" in sk and
                 "seconds" in hals and hals["seconds"] > 0 else "–")
        L.append(f"| {r['source']}{marks.get(r.get('run'), '')} | {shape} | {nmf_cell(r.get('ecco'))} | {nmf_cell(sk)} | "
                 f"{nmf_cell(r.get('eccolo_mu'))} | {nmf_cell(hals)} | {ratio} |")
    L += ["", "### GFLOP/s of eccolo's explanation passes", ""]
    L.append("FLOPs counted from the shapes (as bench/bench_backward.c counts them): backward = the matrix "
             "products over every target's prefix (2·rows·(2CF + 4C²)·L), the attention products (8·Σt²·C·L) "
             "and the lm head (4·G·V·C); explain forward = 2T(4C² + 2CF)·L + 4T²C·L. sgemm: `bench_sgemm` "
             "(the same BLAS, threads and device) on (rows × C) @ (C × F), rows = the backward's packed rows "
             f"(at most 65536, one chunk) or T for the forward, best of {max(1, min(3, meta['repeats']))}.")
    L.append("")
    L.append("| workload | backward GFLOP | backward s | backward GFLOP/s | sgemm GFLOP/s (shape) | "
             "forward GFLOP | forward s | forward GFLOP/s | sgemm GFLOP/s (shape) |")
    L.append("|---|---:|---:|---:|---|---:|---:|---:|---|")
    for w in work:
        f = w.get("flops")
        if not f or "backward_s" not in f:
            continue

        def rate(x):
            return "–" if x is None else f"{x:.0f}"

        def sg(key):
            shp = "×".join(map(str, f[key + "_sgemm_shape"]))
            return f"{rate(f.get(key + '_sgemm_gflops'))} ({shp})"
        L.append(f"| {name(w)} | {f['backward_gflop']:.0f} | {s(f['backward_s'])} | "
                 f"{rate(f['backward_gflops'])} | {sg('backward')} | {f['forward_gflop']:.1f} | "
                 f"{s(f['forward_s'])} | {rate(f['forward_gflops'])} | {sg('forward')} |")
    if meta.get("sgemm_error"):
        L.append("")
        L.append(f"bench_sgemm failed: {meta['sgemm_error']}")
    L += ["", f"Raw numbers: `bench/results/{meta['device']}.json`; logs of every process: "
              f"`bench/work/{meta['device']}/log.txt` (not committed)."]
    return "\n".join(L) + "\n"


def write_section(path, device, text):
    """Replace the text between this device's markers in RESULTS.md, keeping the others."""
    try:
        with open(path) as f:
            md = f.read()
    except FileNotFoundError:
        md = HEADER
    for dev in ("cpu", "cuda"):
        if f"<!-- BEGIN {dev} -->" not in md:
            md = md.rstrip("\n") + f"\n\n<!-- BEGIN {dev} -->\n## {DEVICE_TITLE[dev]}\n\n{PLACEHOLDER[dev]}\n" \
                                   f"<!-- END {dev} -->\n"
    md = re.sub(rf"<!-- BEGIN {device} -->.*?<!-- END {device} -->",
                lambda _: f"<!-- BEGIN {device} -->\n{text}<!-- END {device} -->", md, flags=re.S)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(md)
    os.replace(tmp, path)


def summary(out):
    lines = [f"{'workload':40s} {'T':>5s} {'Ecco s':>9s} {'eccolo s':>9s} {'ratio':>7s} {'max row-rel':>11s}"]
    for w in out["workloads"]:
        if "eccolo" not in w:
            lines.append(f"{label(w) + ' · ' + str(w['generate']):40s} failed: {w.get('error', '')[:80]}")
            continue
        a = w.get("agreement", {})
        lines.append(f"{label(w) + ' · ' + str(w['G']):40s} {w['T']:5d} {s(w['ecco']['total_s']):>9s} "
                     f"{s(w['eccolo']['total_s']):>9s} {w['speedup']:6.1f}x {g(a.get('attribution_max_row_rel')):>11s}")
    for r in out["nmf"]:
        cells = [f"{k}={s(r[k]['seconds'])}s/{r[k]['relative_error']:.4f}" for k in
                 ("ecco", "sklearn_full", "eccolo_mu", "eccolo_hals") if k in r and "seconds" in r[k]]
        lines.append(f"NMF {r['source']}: " + ", ".join(cells))
    return "\n".join(lines)


def ensure_sections(path):
    """RESULTS.md with both devices' sections (a placeholder where no run was made)."""
    write_section(path, "none", "")


if __name__ == "__main__":
    import json
    if sys.argv[1:] == ["--ensure-sections"]:
        ensure_sections(os.path.join(HERE, "RESULTS.md"))
        sys.exit(0)
    with open(sys.argv[1]) as f:
        data = json.load(f)
    dev = data["meta"]["device"]
    png = plot(data, os.path.join(HERE, "results", f"time_vs_tokens_{dev}.png"))
    write_section(os.path.join(HERE, "RESULTS.md"), dev, section(data, png))
    print(summary(data))
