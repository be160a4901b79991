#!/usr/bin/env python3
"""Analysis fixtures: Ecco 0.1.2's own ecco.analysis (cca, svcca, pwcca, cka) on
the activation matrices of the fixture models, every layer against every layer.

Inputs are the PyTorch reference captures already committed in
tests/fixtures/<model>/explain_reference.safetensors (ref_activations [L, T, F],
ref_hidden_states [L+1, T, C], T = 53 tokens for every model). The cases of two
models pair matrices of different widths over 53 positions (not the same text):
they test the functions, not a comparison anyone would make.
Writes tests/fixtures/analysis_reference.safetensors:

  in.<name>              F32 [L, T, N]  the layers compared (eccolo's layout)
  <case>.<method>        F64 [La, Lb]   Ecco's value, on the float64 upcast of the inputs
  <case>.<method>.tol    F64 [La, Lb]   max(1e-6, 10 x Ecco's own spread): the largest change of
                                        Ecco's value when the same pair is computed along another
                                        rounding path -- the tokens in another order (4 random
                                        permutations; every method is invariant to it) or the second
                                        input moved by ~2 ulp (relative N(0, 4e-16) noise, 2 draws).
                                        Large only where the problem is ill-conditioned: hidden states
                                        after the final layer norm are rank-deficient, and PWCCA then
                                        depends on singular vectors of nearly equal singular values
  <case>.<method>.f32    F64 [La, Lb]   Ecco's value on the float32 inputs themselves (its usual path)
  metadata "cases": JSON list of {"case", "a", "b", "methods", "dims"}

Ecco's package __init__ imports torch and transformers; ecco.analysis needs only
numpy, so the package is registered without running its __init__ and
ecco/analysis.py and ecco/svcca_lib run unchanged. One exception: pwcca's branch
for the second input reads acts1[y_idxs] where it means acts2 (an IndexError when
the widths differ); the fixture runs Ecco's
compute_pwcca with that one name corrected (checked to occur exactly once; on the
first input's branch it is Ecco's code unchanged, and the script counts where
unpatched Ecco differs or raises).

Run: python3 -m venv .venv-analysis && .venv-analysis/bin/pip install -r tools/requirements-analysis.txt
     && .venv-analysis/bin/pip install --no-deps ecco==0.1.2 && .venv-analysis/bin/python tools/fixtures_analysis.py
"""
import importlib.util
import inspect
import json
import os
import sys
import types
import warnings

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def load_ecco_analysis():
    spec = importlib.util.find_spec("ecco")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("ecco is not installed: pip install --no-deps ecco==0.1.2")
    pkg = types.ModuleType("ecco")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["ecco"] = pkg  # skip ecco/__init__.py (torch, transformers)
    import ecco.analysis as ea
    import ecco.svcca_lib.pwcca as pw

    src = inspect.getsource(pw.compute_pwcca)
    bug = 'acts1[sresults["y_idxs"]]'
    assert src.count(bug) == 1, "Ecco's pwcca is not the 0.1.2 source this fixture knows"
    ns = dict(pw.__dict__)
    exec(src.replace(bug, 'acts2[sresults["y_idxs"]]'), ns)
    return ea, ns["compute_pwcca"]


def main():
    warnings.simplefilter("ignore")  # numpy's warnings on Ecco's constant-layer paths
    ea, pwcca_fixed = load_ecco_analysis()
    refs = {m: load_file(os.path.join(ROOT, m, "explain_reference.safetensors"))
            for m in ("tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep")}
    inputs = {
        "deep_act": refs["tiny-gpt2-deep"]["ref_activations"],   # [12, 53, 8]
        "deep_hid": refs["tiny-gpt2-deep"]["ref_hidden_states"],  # [13, 53, 16]
        "f16_hid": refs["tiny-gpt2-f16"]["ref_hidden_states"],    # [4, 53, 48]
        "tiny_act": refs["tiny-gpt2"]["ref_activations"],         # [2, 53, 256]: more neurons than tokens
    }
    dead = inputs["deep_act"].copy()  # two dead neurons: Ecco's remove_small drops them
    dead[:, :, 0], dead[:, :, 3] = 0.0, 0.25
    inputs["dead_act"] = dead
    all4 = ["cca", "svcca", "pwcca", "cka"]
    cases = [
        dict(case="deep_act", a="deep_act", b="deep_act", methods=all4, dims=5),
        dict(case="deep_hid", a="deep_hid", b="deep_hid", methods=all4, dims=10),
        dict(case="f16_hid", a="f16_hid", b="f16_hid", methods=all4, dims=20),
        dict(case="tiny_act", a="tiny_act", b="tiny_act", methods=["svcca", "cka"], dims=20),
        dict(case="f16_deep_hid", a="f16_hid", b="deep_hid", methods=all4, dims=10),   # 48 vs 16: pwcca's y side
        dict(case="deep_act_hid", a="deep_act", b="deep_hid", methods=all4, dims=8),   # 8 vs 16: pwcca's x side
        dict(case="dead_act", a="dead_act", b="dead_act", methods=all4, dims=5),
        dict(case="act_dead", a="deep_act", b="dead_act", methods=all4, dims=5),       # 8 vs 6 kept: y side
    ]
    out = {f"in.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
    rng = np.random.default_rng(21)
    for c in cases:
        A32, B32 = inputs[c["a"]], inputs[c["b"]]
        A, B = A32.astype(np.float64), B32.astype(np.float64)
        for m in c["methods"]:
            def f(x, y, m=m):  # x, y: (T, N) -> Ecco's (N, T)
                if m == "svcca":
                    return ea.svcca(x.T, y.T, dims=c["dims"])
                if m == "pwcca":
                    return pwcca_fixed(x.T, y.T, epsilon=1e-10)[0]
                return getattr(ea, m)(x.T, y.T)
            shape = (A.shape[0], B.shape[0])
            val, tol, v32 = np.zeros(shape), np.zeros(shape), np.zeros(shape)
            n_bug = n_raise = 0
            for i in range(shape[0]):
                for j in range(shape[1]):
                    val[i, j] = f(A[i], B[j])
                    if m == "pwcca":  # Ecco unpatched: equal on its x side, else wrong or IndexError
                        try:
                            n_bug += ea.pwcca(A[i].T, B[j].T) != val[i, j]
                        except IndexError:
                            n_raise += 1
                    v32[i, j] = f(A32[i], B32[j])
                    sens = 0.0  # Ecco's own spread: the same pair with another rounding path
                    for _ in range(4):  # tokens in another order (every method is invariant to it)
                        p = rng.permutation(A.shape[1])
                        sens = max(sens, abs(f(A[i][p], B[j][p]) - val[i, j]))
                    for _ in range(2):  # the second input moved by ~2 ulp
                        Bp = B[j] * (1 + 4e-16 * rng.standard_normal(B[j].shape))
                        sens = max(sens, abs(f(A[i], Bp) - val[i, j]))
                    tol[i, j] = max(1e-6, 10 * sens)
            key = f"{c['case']}.{m}"
            out[key], out[key + ".tol"], out[key + ".f32"] = val, tol, v32
            print(f"{key:22s} {shape}  values {val.min():.4f}..{val.max():.4f}  tol max {tol.max():.1e}  "
                  f"|f32 - f64| max {np.abs(v32 - val).max():.1e}" +
                  (f"  (unpatched Ecco: {n_bug} differ, {n_raise} IndexError)" if m == "pwcca" else ""))
    save_file(out, os.path.join(ROOT, "analysis_reference.safetensors"), metadata={"cases": json.dumps(cases)})


if __name__ == "__main__":
    main()
