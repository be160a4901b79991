#!/usr/bin/env python3
"""The benchmark's model checkpoints.

For each name in MODELS, use a real checkpoint when the local Hugging Face
cache has one (with model.safetensors, which both engines read); otherwise
write GPT-2-shaped random weights to bench/models/<name>/ in Hugging Face
layout, with GPT-2's real tokenizer files (vocab.json + merges.txt from
tests/fixtures/gpt2-tokenizer). Random weights cost exactly what trained ones
cost: the benchmark measures time, memory and agreement, not text quality.

    python bench/make_models.py [distilgpt2 gpt2]

prints one line per model: name, directory, "real" or "random".
harness.py imports model_dir() from here.
"""
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODELS_DIR = os.path.join(HERE, "models")
TOKENIZER_DIR = os.path.join(REPO, "tests", "fixtures", "gpt2-tokenizer")

# The real shapes; everything else is GPT2Config's default (gelu_new, eps 1e-5,
# tied lm_head, eos 50256).
SHAPES = {
    "distilgpt2": dict(n_layer=6, n_embd=768, n_head=12, n_inner=3072, vocab_size=50257, n_positions=1024),
    "gpt2": dict(n_layer=12, n_embd=768, n_head=12, n_inner=3072, vocab_size=50257, n_positions=1024),
}
# where the Hub keeps them now, and their old names
HUB_IDS = {
    "distilgpt2": ["distilbert/distilgpt2", "distilgpt2"],
    "gpt2": ["openai-community/gpt2", "gpt2"],
}
SEEDS = {"distilgpt2": 6, "gpt2": 12}


def hub_cache():
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def cached_checkpoint(name):
    """The snapshot directory of a real checkpoint of `name` in the local HF cache, or None."""
    for hub_id in HUB_IDS[name]:
        repo = os.path.join(hub_cache(), "models--" + hub_id.replace("/", "--"))
        try:
            with open(os.path.join(repo, "refs", "main")) as f:
                snap = os.path.join(repo, "snapshots", f.read().strip())
        except OSError:
            continue
        need = ["config.json", "model.safetensors"]
        if all(os.path.exists(os.path.join(snap, n)) for n in need) and (
                os.path.exists(os.path.join(snap, "tokenizer.json"))
                or os.path.exists(os.path.join(snap, "vocab.json"))):
            return snap
    return None


def model_dir(name):
    """(directory, kind) of the checkpoint the benchmark uses for `name`; kind is 'real' or 'random'."""
    snap = cached_checkpoint(name)
    if snap:
        return snap, "real"
    return os.path.join(MODELS_DIR, name), "random"


def write_random(name, out):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(SEEDS[name])
    config = GPT2Config(**SHAPES[name])
    model = GPT2LMHeadModel(config).eval()  # Hugging Face's own initialisation (N(0, 0.02), ...)
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(TOKENIZER_DIR, f), os.path.join(tmp, f))
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def main(names):
    for name in names:
        if name not in SHAPES:
            sys.exit(f"make_models.py: unknown model {name!r} (known: {', '.join(SHAPES)})")
        d, kind = model_dir(name)
        if kind == "random" and not os.path.exists(os.path.join(d, "model.safetensors")):
            os.makedirs(MODELS_DIR, exist_ok=True)
            write_random(name, d)
        print(f"{name}\t{d}\t{kind}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(SHAPES))
