#!/usr/bin/env python3
"""The peer's side of the benchmark: Ecco 0.1.2 and scikit-learn, one job per
process (harness.py starts each in its own subprocess and measures its peak RSS).

  ecco_worker.py check
      Ecco imports and generates 3 tokens with grad_x_input on tests/fixtures/tiny-gpt2.

  ecco_worker.py generate --model DIR --prompt TEXT --generate N --attribution M[,M]
                          --repeats R --threads K --device cpu|cuda --out PREFIX [--save-activations]
      lm = ecco.from_pretrained(DIR, activations=True, ...); one warm-up lm.generate of
      2 tokens, then R timed calls of lm.generate(prompt, generate=N, attribution=[M]).
      Writes PREFIX.json (times, ids, versions) and PREFIX.npz (ids, attribution.<M>
      [G, T] zero-padded as eccolo lays them out, and with --save-activations Ecco's
      activations [L, F, T-1] in Ecco's layer order).

  ecco_worker.py nmf-ecco --acts PREFIX.npz --components K --out FILE.json
      Ecco's own NMF (ecco.output.NMF, which calls scikit-learn) on the activations
      Ecco captured: timed, with the relative error ||X - WH||_F / ||X||_F.

  ecco_worker.py nmf-sklearn --run-dir DIR --components K [--eval NMF.safetensors ...] --out FILE.json
      scikit-learn NMF, called as Ecco calls it, on eccolo's activation matrix of run DIR
      (X = max(acts, 0), rows = positions, columns = layer x neuron); --eval also
      recomputes the relative error of eccolo's factorisations on the same X.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))
from ecco_call import ECCO_CONFIG, SKLEARN_NMF  # noqa: E402


def setup_threads(n):
    import torch
    torch.set_num_threads(n)
    return torch


def versions():
    import importlib.metadata as md
    v = {"python": sys.version.split()[0]}
    for p in ("torch", "transformers", "ecco", "captum", "scikit-learn", "numpy"):
        try:
            v[p] = md.version(p)
        except md.PackageNotFoundError:
            v[p] = None
    return v


def import_ecco():
    # Ecco 0.1.2 imports matplotlib.cm.get_cmap (for its plots), which matplotlib 3.9 removed;
    # where the installed matplotlib is newer (the GPU machine's), give it the same function.
    import matplotlib.cm
    if not hasattr(matplotlib.cm, "get_cmap"):
        import matplotlib

        def get_cmap(name=None, lut=None):
            cmap = matplotlib.colormaps[name or matplotlib.rcParams["image.cmap"]]
            return cmap.resampled(lut) if lut else cmap
        matplotlib.cm.get_cmap = get_cmap
    import ecco
    return ecco


def load_ecco(model, device):
    ecco = import_ecco()
    with contextlib.redirect_stdout(io.StringIO()):
        return ecco.from_pretrained(model, model_config=dict(ECCO_CONFIG), activations=True,
                                    verbose=False, gpu=(device == "cuda"))


def ecco_generate(lm, prompt, n, attribution):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lm.generate(prompt, generate=n, do_sample=False, attribution=list(attribution))


def sync(torch, device):
    if device == "cuda":
        torch.cuda.synchronize()


def cmd_check(a):
    setup_threads(1)
    lm = load_ecco(os.path.join(REPO, "tests", "fixtures", "tiny-gpt2"), "cpu")
    out = ecco_generate(lm, "Frameworks for Machine Learning include:", 3, ["grad_x_input"])
    rows = out.attribution["grad_x_input"]
    assert len(rows) == 3 and abs(float(rows[0].sum()) - 1) < 1e-4, rows
    act = out.activations["decoder"]
    assert act.ndim == 4 and act.shape[1] == 2, act.shape
    v = versions()
    print("ecco check: ok (" + ", ".join(f"{k} {v[k]}" for k in ("ecco", "torch", "transformers",
                                                                   "scikit-learn")) + ")")


def cmd_generate(a):
    import numpy as np
    torch = setup_threads(a.threads)
    methods = a.attribution.split(",")
    t0 = time.perf_counter()
    lm = load_ecco(a.model, a.device)
    load_s = time.perf_counter() - t0
    ecco_generate(lm, a.prompt, 2, methods)  # warm-up: first-call costs stay out of the timings
    sync(torch, a.device)
    times = []
    out = None
    for _ in range(a.repeats):
        if times and sum(times) >= a.max_seconds:
            break  # long workloads: fewer repeats (the count is reported)
        out = None
        t0 = time.perf_counter()
        out = ecco_generate(lm, a.prompt, a.generate, methods)
        sync(torch, a.device)
        times.append(time.perf_counter() - t0)
    ids = out.token_ids[0].cpu().numpy().astype(np.int32)
    n, T = int(out.n_input_tokens), len(ids)
    arrays = {"ids": ids}
    for m in methods:
        rows = out.attribution[m]
        mat = np.zeros((T - n, T), np.float32)
        for g, r in enumerate(rows):
            mat[g, :len(r)] = r
        arrays["attribution." + m] = mat
    if a.save_activations:
        arrays["activations"] = np.ascontiguousarray(out.activations["decoder"][0])
        layer_keys = sorted(lm._all_activations_dict["decoder"].keys())
    else:
        layer_keys = None
    np.savez(a.out + ".npz", **arrays)
    info = {"times": times, "load_s": load_s, "n_input": n, "n_tokens": T, "generated": T - n,
            "ids": ids.tolist(), "device": lm.device, "threads": torch.get_num_threads(),
            "activation_layer_order": layer_keys, "versions": versions()}
    with open(a.out + ".json", "w") as f:
        json.dump(info, f)


def rel_error(X, W, H):
    """||X - W H||_F / ||X||_F in float64, W [T, K], H [K, F]."""
    import numpy as np
    X = X.astype(np.float64, copy=False)
    return float(np.linalg.norm(X - W.astype(np.float64) @ H.astype(np.float64)) / np.linalg.norm(X))


def cmd_nmf_ecco(a):
    import numpy as np
    setup_threads(a.threads)
    import_ecco()
    from ecco.output import NMF
    acts = np.load(a.acts)["activations"]  # [L, F, T-1], Ecco's layout without the batch axis
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when max_iter is reached
        t0 = time.perf_counter()
        nmf = NMF({"decoder": acts[None]}, n_components=a.components)
        seconds = time.perf_counter() - t0
    X = nmf.activations  # [T-1, L*F] = max(acts, 0), rows = positions
    W, H = nmf.components.T, nmf.model.components_
    res = {"rows": int(X.shape[0]), "cols": int(X.shape[1]), "seconds": seconds,
           "relative_error": rel_error(X, W, H), "iterations": int(nmf.model.n_iter_)}
    with open(a.out, "w") as f:
        json.dump(res, f)


def st_header(path):
    """The JSON header of a safetensors file (tensor index and __metadata__)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def cmd_nmf_sklearn(a):
    import numpy as np
    from safetensors.numpy import load_file
    from sklearn.decomposition import NMF
    from threadpoolctl import threadpool_limits
    acts = load_file(os.path.join(a.run_dir, "tensors.safetensors"))["activations"]  # [L, T, F]
    L, T, F = acts.shape
    X = np.maximum(acts, 0).transpose(1, 0, 2).reshape(T, L * F)
    with threadpool_limits(a.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model = NMF(n_components=min(a.components, T), **SKLEARN_NMF)
        W = model.fit_transform(X)
        seconds = time.perf_counter() - t0
    res = {"rows": T, "cols": L * F, "seconds": seconds, "iterations": int(model.n_iter_),
           "relative_error": rel_error(X, W, model.components_), "eval": {}}
    for path in a.eval or []:
        t = load_file(path)
        meta = st_header(path).get("__metadata__", {})
        res["eval"][path] = {"relative_error": rel_error(X, t["factors"].T, t["loadings"]),
                             "reported_relative_error": float(meta.get("relative_error", "nan"))}
    with open(a.out, "w") as f:
        json.dump(res, f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check")
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--generate", type=int, required=True)
    g.add_argument("--attribution", default="grad_x_input")
    g.add_argument("--repeats", type=int, default=1)
    g.add_argument("--max-seconds", type=float, default=float("inf"))
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--device", default="cpu")
    g.add_argument("--save-activations", action="store_true")
    g.add_argument("--out", required=True)
    e = sub.add_parser("nmf-ecco")
    e.add_argument("--acts", required=True)
    e.add_argument("--components", type=int, default=10)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--out", required=True)
    s = sub.add_parser("nmf-sklearn")
    s.add_argument("--run-dir", required=True)
    s.add_argument("--components", type=int, default=10)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--eval", nargs="*")
    s.add_argument("--out", required=True)
    a = p.parse_args()
    {"check": cmd_check, "generate": cmd_generate, "nmf-ecco": cmd_nmf_ecco,
     "nmf-sklearn": cmd_nmf_sklearn}[a.cmd](a)


if __name__ == "__main__":
    main()
