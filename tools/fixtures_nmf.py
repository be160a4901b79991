#!/usr/bin/env python3
"""NMF fixtures: scikit-learn on the activation matrices of the fixture runs.

For each model with explain_reference.safetensors, X = max(ref_activations, 0)
arranged as Ecco does (rows = positions, columns = layer x neuron), and
writes <model>/nmf_reference.safetensors:
  X                   F32 [T, L*F]   the matrix (so the test needs no other file)
  sk_error_k{K}       F64 [1]        ||X - WH||_F / ||X||_F of
                                     NMF(n_components=K, init='random', random_state=0, max_iter=500)
                                     (Ecco's call: solver 'cd', tol 1e-4), K = 4, 10
  sk_mu_error_k{K}    F64 [1]        the same with solver='mu'
  nndsvd_W, nndsvd_H  F32            scikit-learn's _initialize_nmf(X, 10, 'nndsvd'), with its
                                     randomized SVD replaced by an exact one (numpy) so that the
                                     reference does not carry the randomized method's error
  nndsvda_W, nndsvda_H F32           ... 'nndsvda'
Run through tools/make_fixtures.sh after fixtures_ecco.py.
"""
import os
import warnings

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.decomposition import NMF
import sklearn.decomposition._nmf as sk_nmf

from ecco_call import SKLEARN_NMF  # tools/, beside this script

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MODELS = ["tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep"]


def rel_error(X, W, H):
    return np.linalg.norm(X.astype(np.float64) - W.astype(np.float64) @ H.astype(np.float64)) / np.linalg.norm(X)


def exact_svd(M, n_components, **_):
    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    return U[:, :n_components], S[:n_components], Vt[:n_components]


def main():
    warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter is expected
    sk_nmf._randomized_svd = exact_svd  # used by _initialize_nmf for nndsvd*
    for name in MODELS:
        ref = load_file(os.path.join(ROOT, name, "explain_reference.safetensors"))
        a = ref["ref_activations"]  # (L, T, F)
        X = np.ascontiguousarray(np.maximum(a, 0).transpose(1, 0, 2).reshape(a.shape[1], -1), dtype=np.float32)
        out = {"X": X}
        line = [name, f"X {X.shape}"]
        for k in (4, 10):
            for solver in ("cd", "mu"):
                m = NMF(n_components=k, solver=solver, **SKLEARN_NMF)
                W = m.fit_transform(X)
                err = rel_error(X, W, m.components_)
                key = f"sk_error_k{k}" if solver == "cd" else f"sk_mu_error_k{k}"
                out[key] = np.array([err], dtype=np.float64)
                line.append(f"{key} {err:.5f} ({m.n_iter_} it)")
        for init in ("nndsvd", "nndsvda"):
            W0, H0 = sk_nmf._initialize_nmf(X.astype(np.float64), 10, init=init, random_state=0)
            # randomized_svd returns Fortran-ordered arrays: safetensors writes the raw
            # buffer, so make them C-contiguous first
            out[f"{init}_W"] = np.ascontiguousarray(W0, dtype=np.float32)
            out[f"{init}_H"] = np.ascontiguousarray(H0, dtype=np.float32)
        save_file(out, os.path.join(ROOT, name, "nmf_reference.safetensors"))
        print("nmf fixtures:", ", ".join(line))


if __name__ == "__main__":
    main()
