"""How eccolo's peer scripts call Ecco and scikit-learn, in one place: the
fixtures (tools/fixtures_ecco.py, tools/fixtures_nmf.py) and the benchmark's
peer (bench/ecco_worker.py) must call them the same way."""

# how Ecco finds the embeddings and the MLP activations of a GPT-2 checkpoint given
# as a directory (its model-config.yaml knows only hub names)
ECCO_CONFIG = {
    "embedding": "transformer.wte.weight",
    "type": "causal",
    "activations": ["mlp\\.c_proj"],
    "token_prefix": "Ġ",
    "partial_token_prefix": "",
}

# scikit-learn's NMF as ecco.output.NMF calls it (plus n_components)
SKLEARN_NMF = dict(init="random", random_state=0, max_iter=500)
