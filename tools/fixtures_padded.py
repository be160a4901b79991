#!/usr/bin/env python3
"""A padded-vocabulary fixture (issue 14): tests/fixtures/tiny-gpt2-padded/.

Pythia pads its 50277 tokens to 50304 embedding rows, Qwen and Llama variants
pad too: config.json's vocab_size (the rows of wte / lm_head) exceeds the
tokenizer's size, and the extra rows are never text. This fixture is
tests/fixtures/tiny-gpt2 (F32, 2 layers, C=64, 1025 tokens, tied) with its
embedding padded to VOCAB_PADDED rows, stored as F16, and the padding rows
chosen so that their logits are the largest at every position of the reference
sequence (by at least MARGIN nats): an engine that does not mask them would
generate, sample and rank them.

Writes tests/fixtures/tiny-gpt2-padded/:
  config.json, tokenizer.json (tiny-gpt2's), model.safetensors (F16)
  reference.safetensors
    prompt_ids       I32 [T0]
    greedy_ids       I32 [T0 + N_NEW]   greedy among the 1025 tokens, no stop at <|endoftext|>
    greedy_logprobs  F64 [N_NEW]        log_softmax over all VOCAB_PADDED rows (as transformers)
    rankings         I32 [L, N_NEW]     logit lens ("standard": ln_f on every layer) rank of each
                                        generated token among the tokens (1 = best)
    layer_top_ids    I32 [L, N_NEW, K]  the K best tokens per layer and generated position
    layer_top_probs  F64 [L, N_NEW, K]  their softmax probabilities over all rows
  reference.json     sizes, margins, versions
All numbers are float64 from the weights as stored (F16), by transformers'
GPT2LMHeadModel loaded from the written directory (so transformers accepts
the padded checkpoint too).

Run with /work/.venv-hf/bin/python tools/fixtures_padded.py (versions in
tools/requirements-padded.txt); needs tests/fixtures/tiny-gpt2.
"""
import json
import os
import shutil

import numpy as np
import safetensors
import safetensors.numpy
import tokenizers
import torch
import transformers
from transformers import GPT2LMHeadModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
SRC = os.path.join(ROOT, "tiny-gpt2")
DST = os.path.join(ROOT, "tiny-gpt2-padded")

PROMPT = "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4."
N_TOK = 1025          # the tokenizer's ids
VOCAB_PADDED = 1088   # rows: the next multiple of 64
N_NEW = 12
K = 10
MARGIN = 20.0         # nats by which a padding logit beats every token's


def final_hidden(model, ids):
    """(T, C) float64: ln_f of the last layer, the input of lm_head."""
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[-1][0].numpy()


def masked_greedy(model, prompt, n):
    ids = list(prompt)
    logprobs = []
    for _ in range(n):
        with torch.no_grad():
            z = model(torch.tensor([ids])).logits[0, -1].numpy()
        t = int(np.argmax(z[:N_TOK]))
        m = z.max()
        logprobs.append(z[t] - m - np.log(np.exp(z - m).sum()))
        ids.append(t)
    return ids, np.array(logprobs)


def main():
    tok = tokenizers.Tokenizer.from_file(os.path.join(SRC, "tokenizer.json"))
    assert tok.get_vocab_size() == N_TOK
    prompt = tok.encode(PROMPT).ids
    cfg = json.load(open(os.path.join(SRC, "config.json")))
    w = safetensors.numpy.load_file(os.path.join(SRC, "model.safetensors"))
    wte = w["transformer.wte.weight"]
    assert wte.shape == (N_TOK, cfg["n_embd"]) and cfg["vocab_size"] == N_TOK

    # 1. the unpadded model (weights rounded to F16, as they will be stored), in float64:
    #    greedy among the tokens, and the hidden states the padding rows must beat
    w16 = {k: v.astype(np.float16) for k, v in w.items()}
    if os.path.isdir(DST):
        shutil.rmtree(DST)
    os.makedirs(DST)
    shutil.copy(os.path.join(SRC, "tokenizer.json"), DST)

    def write(vocab, tensors):
        c = dict(cfg, vocab_size=vocab, torch_dtype="float16")
        c.pop("transformers_version", None)
        with open(os.path.join(DST, "config.json"), "w") as f:
            json.dump(c, f, indent=2, sort_keys=True)
            f.write("\n")
        safetensors.numpy.save_file(tensors, os.path.join(DST, "model.safetensors"), metadata={"format": "pt"})

    def load():
        return GPT2LMHeadModel.from_pretrained(DST, dtype=torch.float64).eval()

    write(N_TOK, w16)
    model = load()
    seq, _ = masked_greedy(model, prompt, N_NEW)
    h = final_hidden(model, seq)                      # (T, C)
    z_tok = h @ w16["transformer.wte.weight"].astype(np.float64).T

    # 2. padding rows: a multiple of the mean final hidden state, large enough that
    #    each padding logit beats the best token by MARGIN at every position
    u = h.mean(axis=0)
    u /= np.linalg.norm(u)
    proj = h @ u
    assert proj.min() > 0.1, f"the hidden states do not share a direction (min projection {proj.min():.3g})"
    lam = ((z_tok.max(axis=1) + MARGIN) / proj).max()
    scale = lam * (1 + 0.002 * np.arange(VOCAB_PADDED - N_TOK))
    pad = (scale[:, None] * u[None, :]).astype(np.float16)
    w16p = dict(w16)
    w16p["transformer.wte.weight"] = np.concatenate([w16["transformer.wte.weight"], pad])
    write(VOCAB_PADDED, w16p)

    # 3. references from the padded checkpoint as stored
    model = load()
    assert model.config.vocab_size == VOCAB_PADDED
    ids, logprobs = masked_greedy(model, prompt, N_NEW)
    assert ids == seq, "the padding rows changed the tokens' logits"
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    logits = out.logits[0].numpy()
    T0, T = len(prompt), len(ids)
    rows = range(T0 - 1, T - 1)                      # the positions that predict the generated tokens
    margin = min(logits[r, N_TOK:].max() - logits[r, :N_TOK].max() for r in rows)
    assert margin >= MARGIN * 0.9, f"padding beats the tokens by only {margin:.3g}"
    L = cfg["n_layer"]
    wte64 = model.transformer.wte.weight.detach().numpy()
    lnf = model.transformer.ln_f
    ranks = np.zeros((L, N_NEW), np.int32)
    top_ids = np.zeros((L, N_NEW, K), np.int32)
    top_probs = np.zeros((L, N_NEW, K))
    lens_margin = np.inf
    for l in range(1, L + 1):
        hs = out.hidden_states[l][0]
        with torch.no_grad():
            x = (hs if l == L else lnf(hs)).numpy()  # hidden_states[L] already has ln_f
        for g, r in enumerate(rows):
            z = x[r] @ wte64.T
            zt = z[:N_TOK]
            ranks[l - 1, g] = 1 + int((zt > zt[ids[r + 1]]).sum())
            order = np.lexsort((np.arange(N_TOK), -zt))[:K + 1]
            top_ids[l - 1, g] = order[:K]
            m = z.max()
            top_probs[l - 1, g] = np.exp(zt[order[:K]] - m) / np.exp(z - m).sum()
            lens_margin = min(lens_margin, zt[order[K - 1]] - zt[order[K]])
    safetensors.numpy.save_file({
        "prompt_ids": np.array(prompt, np.int32),
        "greedy_ids": np.array(ids, np.int32),
        "greedy_logprobs": logprobs,
        "rankings": ranks,
        "layer_top_ids": top_ids,
        "layer_top_probs": top_probs,
    }, os.path.join(DST, "reference.safetensors"))
    with open(os.path.join(DST, "reference.json"), "w") as f:
        json.dump({
            "source": "tests/fixtures/tiny-gpt2 with wte padded to vocab_size rows, stored F16",
            "prompt": PROMPT,
            "n_tokens": N_TOK,
            "vocab_size": VOCAB_PADDED,
            "n_new": N_NEW,
            "top_k_layers": K,
            "min_padding_margin_nats": float(margin),
            "min_lens_top_k_gap": float(lens_margin),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "numpy": np.__version__, "safetensors": safetensors.__version__},
        }, f, indent=2)
        f.write("\n")
    print(f"wrote {DST}: {T0} prompt tokens, {N_NEW} generated, padding margin {margin:.2f} nats, "
          f"lens top-k gap {lens_margin:.3g}")


if __name__ == "__main__":
    main()
