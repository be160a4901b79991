#!/usr/bin/env python3
"""Explanation fixtures: what real Ecco 0.1.2 computes on the tiny fixture
models, next to independent float64 references computed with PyTorch autograd.

For each model directory in MODELS (written by fixtures_models.py) this runs

    lm = ecco.from_pretrained(dir, activations=True, model_config=ECCO_CONFIG,
                              verbose=False, gpu=False)
    out = lm.generate(PROMPT, generate=G, do_sample=False,
                      attribution=['grad_x_input', 'saliency', 'ig'],
                      output_hidden_states=True)

and out.rankings(), out.rankings_watch() and out.layer_predictions(), then
recomputes everything in float64 from the weights as stored, and writes

  tests/fixtures/<model>/explain_reference.safetensors   (tensors listed below)
  tests/fixtures/<model>/explain_reference.json          texts, settings, shapes,
      Ecco's activation layer order, agreement figures, notes, versions.

T = n_input + G.  Attribution rows are zero-padded: row g belongs to the token
at position t = n_input + g and is non-zero only on positions 0 .. t-1.

Ecco (float32, exactly as Ecco returns them)
  ecco_ids                   I32 [T]        prompt + Ecco's greedy tokens
  ecco_grad_x_input          F32 [G, T]     out.attribution['grad_x_input']
  ecco_gradient              F32 [G, T]     out.attribution['saliency']
  ecco_integrated_gradients  F32 [G, T]     out.attribution['ig']
  ecco_activations           F32 [L, F, T-1] out.activations['decoder'][0]: mlp.c_proj
                             inputs, layers in Ecco's (string-sorted) order, last
                             generated token missing (see the json)
  ecco_rankings              I32 [L, G]     out.rankings(printJson=True)['rankings']
  ecco_watch_rankings        I32 [L, G, 3]  out.rankings_watch(WATCH, position=n_input+g)
  ecco_layer_top_probs       F32 [L, G, 10] out.layer_predictions(position=n_input+g)
                             probabilities (Ecco returns token strings, not ids)
float64 references (stored as F32; ranks and ids as I32)
  ref_<m>_<s>                F32 [G, T]     m in {grad_x_input, gradient},
                             s in {prob, logit, logprob}
  ref_integrated_gradients_prob F32 [G, T]  zero baseline, 50-point Gauss-Legendre
  ref_activations            F32 [L, T, F]  post-GELU MLP activations, all positions
  ref_hidden_states          F32 [L+1, T, C] HF convention (0: wte+wpe; L: after ln_f)
  ref_attention              F32 [L, NH, T, T] softmax probabilities
  ref_rankings               I32 [L, G]     standard logit lens (ln_f on layers < L)
  ref_rankings_raw           I32 [L, G]     Ecco's lens (no ln_f; layer L has it)
  ref_layer_top_ids[_raw]    I32 [L, G, 10] top-10 of softmax(lens logits),
  ref_layer_top_probs[_raw]  F32 [L, G, 10] descending, ties by lower id
  ref_watch_rankings[_raw]   I32 [L, G, 3]  ranks of WATCH ids
Rank = 1 + number of vocabulary entries with a strictly larger logit.
Lens row (l, g) reads hidden state l+1 at position n_input+g-1 and ranks the
token at n_input+g.

Run through tools/make_fixtures.sh after fixtures_models.py (Ecco 0.1.2 is
installed there with --no-deps; see tools/requirements.txt).
"""
import contextlib
import io
import json
import os
import sys
import warnings

os.environ["MPLBACKEND"] = "Agg"  # Ecco's plots must not open a window
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import safetensors.numpy  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer, GPT2LMHeadModel  # noqa: E402

import captum  # noqa: E402
import ecco  # noqa: E402

from ecco_call import ECCO_CONFIG  # noqa: E402  (tools/, beside this script)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MODELS = ["tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep"]
PROMPT = "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4."
G = 8
ATTRIBUTION = ["grad_x_input", "saliency", "ig"]
# Ecco's key (the name passed in `attribution`, not its alias) -> fixture tensor
ECCO_KEYS = {"grad_x_input": "ecco_grad_x_input", "saliency": "ecco_gradient",
             "ig": "ecco_integrated_gradients"}
WATCH = [11, 500, 1024]
TOPK = 10
IG_STEPS = 50
TARGETS = ("prob", "logit", "logprob")
METHODS = ("grad_x_input", "gradient")

TOL_ATTR_REL = 1e-4  # Ecco grad_x_input / saliency vs float64, norm-wise per row
TOL_IG_ABS = 1e-3    # Ecco IG vs float64 IG, max abs
TOL_ACT_ABS = 1e-4   # Ecco activations vs float64 (times max(1, max |ref|))
TOL_PROB_ABS = 1e-5  # Ecco layer_predictions probabilities vs float64


def sci(x):
    """A float for the json, rounded to 3 significant digits."""
    return float(f"{float(x):.2e}")


def run_ecco(model_dir, tok_check_ids):
    """Everything Ecco 0.1.2 returns for the fixture run (its prints captured)."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. torch.tensor(tensor) in output.rankings
        lm = ecco.from_pretrained(model_dir, model_config=dict(ECCO_CONFIG), activations=True,
                                  verbose=False, gpu=False)
        assert lm.tokenizer(PROMPT)["input_ids"] == tok_check_ids, "Ecco's tokenizer differs"
        # transformers 4.37 no longer takes output_hidden_states for generate() from the
        # model config, so Ecco's generate output would have no hidden states and
        # rankings()/layer_predictions() would fail; pass it through Ecco's
        # **generate_kwargs.
        out = lm.generate(PROMPT, generate=G, do_sample=False, attribution=list(ATTRIBUTION),
                          output_hidden_states=True)
        n = out.n_input_tokens
        rank = out.rankings(printJson=True)["rankings"]
        watch = [out.rankings_watch(watch=list(WATCH), position=n + g, printJson=True)["rankings"]
                 for g in range(G)]
        preds = [out.layer_predictions(position=n + g, topk=TOPK, printJson=True)
                 for g in range(G)]
        plt.close("all")
    layer_keys = sorted(lm._all_activations_dict["decoder"].keys())  # what Ecco's array uses
    return dict(out=out, n=n, rank=np.asarray(rank), watch=np.stack(watch, axis=1),
                preds=preds, layer_keys=layer_keys)


def references(model, ids, n):
    """float64 references for the sequence `ids` (list of T ints), prompt length n."""
    T = len(ids)
    tr = model.transformer
    L, V = model.config.n_layer, model.config.vocab_size
    x = torch.tensor([ids])
    wte = tr.wte.weight.detach()
    W_U = model.lm_head.weight.detach()  # tied: the same tensor as wte

    acts = {}
    hooks = [blk.mlp.c_proj.register_forward_pre_hook(
        lambda mod, inp, l=l: acts.__setitem__(l, inp[0].detach()))
        for l, blk in enumerate(tr.h)]
    with torch.no_grad():
        o = model(x, output_hidden_states=True, output_attentions=True, use_cache=False)
    for h in hooks:
        h.remove()
    ref = {
        "ref_activations": torch.stack([acts[l][0] for l in range(L)]),
        "ref_hidden_states": torch.stack([h[0] for h in o.hidden_states]),
        "ref_attention": torch.stack([a[0] for a in o.attentions]),
    }
    logits = o.logits[0]
    assert logits[n - 1:T - 1].argmax(-1).tolist() == ids[n:], "float64 argmax != Ecco's ids"
    top2 = torch.topk(logits[n - 1:T - 1], 2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()

    # attribution: s_t from the output at t-1; inputs are the token embeddings only
    nodes, omega = np.polynomial.legendre.leggauss(IG_STEPS)
    alpha = torch.tensor((1 + nodes) / 2, dtype=torch.float64)
    w = torch.tensor(omega / 2, dtype=torch.float64)
    attr = {f"ref_{m}_{s}": torch.zeros(G, T, dtype=torch.float64) for m in METHODS for s in TARGETS}
    attr["ref_integrated_gradients_prob"] = torch.zeros(G, T, dtype=torch.float64)

    def score(v):  # [t, C] -> [t]: L2 norm per position, normalised to sum 1
        nrm = v.norm(dim=-1)
        return nrm / nrm.sum()

    def target(lg, s, tok):
        if s == "prob":
            return torch.softmax(lg, -1)[..., tok]
        if s == "logit":
            return lg[..., tok]
        return torch.log_softmax(lg, -1)[..., tok]

    for g in range(G):
        t = n + g
        e = wte[ids[:t]].clone().requires_grad_(True)
        lg = model(inputs_embeds=e[None], use_cache=False).logits[0, -1]
        for s in TARGETS:
            grad, = torch.autograd.grad(target(lg, s, ids[t]), e, retain_graph=True)
            attr[f"ref_grad_x_input_{s}"][g, :t] = score(grad * e.detach())
            attr[f"ref_gradient_{s}"][g, :t] = score(grad)
        xs = (alpha[:, None, None] * e.detach()[None]).requires_grad_(True)  # [K, t, C]
        p = target(model(inputs_embeds=xs, use_cache=False).logits[:, -1], "prob", ids[t])
        grads, = torch.autograd.grad(p.sum(), xs)  # the K samples are independent
        attr["ref_integrated_gradients_prob"][g, :t] = score(
            e.detach() * (w[:, None, None] * grads).sum(0))
    ref.update(attr)

    # logit lens at positions n-1 .. T-2 (they predict the G generated tokens)
    hs = o.hidden_states
    tgt = torch.tensor(ids[n:])
    order_ids = np.arange(V)
    for lens in ("", "_raw"):
        ranks = np.zeros((L, G), np.int32)
        watch = np.zeros((L, G, len(WATCH)), np.int32)
        top_ids = np.zeros((L, G, TOPK), np.int32)
        top_p = np.zeros((L, G, TOPK), np.float64)
        for l in range(1, L + 1):
            h = hs[l][0, n - 1:T - 1]
            if lens == "" and l < L:  # hidden state L already has ln_f (HF convention)
                with torch.no_grad():
                    h = tr.ln_f(h)
            lens_logits = (h @ W_U.T).detach()
            chosen = lens_logits.gather(1, tgt[:, None])
            ranks[l - 1] = (1 + (lens_logits > chosen).sum(-1)).numpy()
            for j, wid in enumerate(WATCH):
                watch[l - 1, :, j] = (1 + (lens_logits > lens_logits[:, wid:wid + 1]).sum(-1)).numpy()
            probs = torch.softmax(lens_logits, -1).numpy()
            for g in range(G):
                order = np.lexsort((order_ids, -probs[g]))[:TOPK]
                top_ids[l - 1, g] = order
                top_p[l - 1, g] = probs[g, order]
        ref[f"ref_rankings{lens}"] = ranks
        ref[f"ref_watch_rankings{lens}"] = watch
        ref[f"ref_layer_top_ids{lens}"] = top_ids
        ref[f"ref_layer_top_probs{lens}"] = top_p
    out = {}
    for k, v in ref.items():
        v = v.detach().numpy() if torch.is_tensor(v) else v
        out[k] = v.astype(np.int32) if v.dtype.kind in "iu" else v.astype(np.float32)
    return out, {k: (v.detach().numpy() if torch.is_tensor(v) else v) for k, v in ref.items()}, margin


def row_rel(a, b):
    """Per-row ||a - b|| / ||b||, max over rows."""
    return max(np.linalg.norm(a[g] - b[g]) / np.linalg.norm(b[g]) for g in range(len(b)))


def one_model(name):
    d = os.path.join(ROOT, name)
    base = json.load(open(os.path.join(d, "reference.json"), encoding="utf-8"))
    prompt_ids = base["greedy_ids"][:base["n_prompt"]]
    assert base["prompt"] == PROMPT

    torch.manual_seed(0)
    ec = run_ecco(d, prompt_ids)
    out, n = ec["out"], ec["n"]
    ecco_ids = out.token_ids[0].tolist()
    T = n + G
    assert n == len(prompt_ids) and len(ecco_ids) == T, (n, len(ecco_ids))
    assert ecco_ids == base["greedy_ids"][:T], "Ecco's greedy ids differ from HF greedy"

    model = GPT2LMHeadModel.from_pretrained(d, torch_dtype=torch.float32).double().eval()
    cfg = model.config
    L, NH, C, V = cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.vocab_size
    F = cfg.n_inner or 4 * C
    ref32, ref64, margin = references(model, ecco_ids, n)

    res = {"ecco_ids": np.asarray(ecco_ids, np.int32)}
    for key, field in ECCO_KEYS.items():
        rows = out.attribution[key]
        assert len(rows) == G and all(r.shape == (n + g,) for g, r in enumerate(rows))
        m = np.zeros((G, T), np.float32)
        for g, r in enumerate(rows):
            m[g, :n + g] = r
        res[field] = m
    act = out.activations["decoder"]
    assert act.shape == (1, L, F, T - 1) and act.dtype == np.float32, (act.shape, act.dtype)
    res["ecco_activations"] = np.ascontiguousarray(act[0])
    res["ecco_rankings"] = ec["rank"].astype(np.int32)
    res["ecco_watch_rankings"] = ec["watch"].astype(np.int32)
    ecco_top_p = np.zeros((L, G, TOPK), np.float32)
    tok = AutoTokenizer.from_pretrained(d)
    token_mismatch = 0
    for g, layers in enumerate(ec["preds"]):
        assert len(layers) == L
        for l, items in enumerate(layers):
            for k, it in enumerate(items):
                ecco_top_p[l, g, k] = np.float32(float(it["prob"]))
                if it["token"] != tok.decode(int(ref32["ref_layer_top_ids_raw"][l, g, k])):
                    token_mismatch += 1
    res["ecco_layer_top_probs"] = ecco_top_p
    res.update(ref32)

    # ---- agreement checks -------------------------------------------------------------
    ag, notes = {}, []
    for field, refk in (("ecco_grad_x_input", "grad_x_input"), ("ecco_gradient", "gradient")):
        for s in TARGETS:
            ag[f"{field}_vs_ref_{refk}_{s}_max_row_rel"] = sci(
                row_rel(res[field].astype(np.float64), ref64[f"ref_{refk}_{s}"]))
        err = row_rel(res[field].astype(np.float64), ref64[f"ref_{refk}_prob"])
        assert err <= TOL_ATTR_REL, f"{name}: {field} vs float64 prob target: {err:.2e}"
    ig_abs = np.abs(res["ecco_integrated_gradients"] - ref64["ref_integrated_gradients_prob"]).max()
    ag["ecco_integrated_gradients_vs_ref_max_abs"] = sci(ig_abs)
    ag["ecco_integrated_gradients_vs_ref_max_row_rel"] = sci(
        row_rel(res["ecco_integrated_gradients"].astype(np.float64),
                ref64["ref_integrated_gradients_prob"]))
    assert ig_abs <= TOL_IG_ABS, f"{name}: Ecco IG vs float64 IG: {ig_abs:.2e}"
    ag["ref_integrated_gradients_prob_vs_ref_grad_x_input_prob_max_abs"] = sci(
        np.abs(ref64["ref_integrated_gradients_prob"] - ref64["ref_grad_x_input_prob"]).max())

    layer_order = [int(k) for k in ec["layer_keys"]]
    assert ec["layer_keys"] == sorted(str(i) for i in range(L)), ec["layer_keys"]
    ref_act = ref64["ref_activations"]
    act_err = max(np.abs(res["ecco_activations"][i].T - ref_act[l, :T - 1]).max()
                  for i, l in enumerate(layer_order))
    act_scale = max(1.0, np.abs(ref_act).max())
    ag["ecco_activations_vs_ref_max_abs"] = sci(act_err)
    ag["ref_activations_max_abs"] = sci(np.abs(ref_act).max())
    assert act_err <= TOL_ACT_ABS * act_scale, f"{name}: activations differ by {act_err:.2e}"

    assert np.array_equal(res["ecco_rankings"], res["ref_rankings_raw"]), \
        f"{name}: Ecco rankings\n{res['ecco_rankings']}\n!= raw-lens ranks\n{res['ref_rankings_raw']}"
    assert np.array_equal(res["ecco_watch_rankings"], res["ref_watch_rankings_raw"]), name
    assert np.array_equal(res["ref_rankings"][L - 1], np.ones(G)), "greedy token not rank 1"
    p_err = np.abs(ecco_top_p - ref64["ref_layer_top_probs_raw"]).max()
    ag["ecco_layer_top_probs_vs_ref_raw_max_abs"] = sci(p_err)
    ag["ecco_layer_top_tokens_vs_ref_raw_mismatches"] = token_mismatch
    assert p_err <= TOL_PROB_ABS and token_mismatch == 0, (name, p_err, token_mismatch)
    ag["rankings_differ_standard_vs_raw"] = int((res["ref_rankings"] != res["ref_rankings_raw"]).sum())
    ag["min_top2_margin_generated"] = sci(margin)

    notes += [
        "Ecco stores attributions under the names passed in attribution=[...] ('grad_x_input',"
        " 'saliency', 'ig'), not under their aliases ('gradient', 'integrated_gradients');"
        " ecco_gradient is out.attribution['saliency'], ecco_integrated_gradients is"
        " out.attribution['ig'].",
        "Ecco 0.1.2's attribution target is softmax(logits[:, -1])[token] (probability), via"
        " Captum: 'saliency' = Captum Saliency (|gradient| w.r.t. the token embeddings; abs does"
        " not change the L2 norm), 'grad_x_input' = InputXGradient, 'ig' ="
        " IntegratedGradients(zero baseline, n_steps=50, gausslegendre); each row is the L2 norm"
        " over the embedding axis normalised to sum 1 (aggregation 'L2').",
        "Ecco computes every row in float32 with a fresh forward over the prefix (no KV cache,"
        " no attention mask); its token embeddings are one_hot @ wte (exact).",
        "ecco_activations: mlp.c_proj inputs from Ecco's last analysis forward, which runs on"
        " the sequence WITHOUT the last generated token (T-1 positions); layers are in Ecco's"
        " string-sorted order, ecco_activations_layers gives the model layer of each row;"
        " layout (layer, neuron, position) after dropping Ecco's batch dim.",
        "Ecco's rankings/layer_predictions/rankings_watch use the hidden states HF generate()"
        " returns (KV cache, float32): lm_head applied without ln_f to layers 1..L-1; layer L"
        " already has ln_f. ref_*_raw reproduce that lens; ref_* apply ln_f to layers < L.",
        "With transformers 4.37.2 generate() no longer reads output_hidden_states from the model"
        " config, so Ecco 0.1.2 would return no hidden states and rankings() would fail;"
        " output_hidden_states=True is passed through lm.generate(**generate_kwargs).",
        "ecco_layer_top_probs: Ecco's layer_predictions returns decoded token strings and"
        " str(float32) probabilities; the strings were checked against decode(ref_layer_top_ids_raw).",
        "Normalised scores cannot tell the prob and logprob targets apart: grad log p ="
        " grad p / p is a per-row constant multiple, so ref_*_logprob equal ref_*_prob up to"
        " rounding (IG excepted, which is not computed for them); the logit target differs.",
        "Ecco's rankings use argsort position (ties broken by sort order); the references count"
        " strictly larger logits. No ties occur in these fixtures (checked: equal arrays).",
    ]
    n_gen_text = tok.decode(ecco_ids[n:], clean_up_tokenization_spaces=False)
    shapes = {k: {"dtype": {"int32": "I32", "float32": "F32"}[str(v.dtype)], "shape": list(v.shape)}
              for k, v in sorted(res.items())}
    summary = {
        "model": name,
        "prompt": PROMPT,
        "n_input": n,
        "G": G,
        "T": T,
        "ecco_ids": ecco_ids,
        "generated_ids": ecco_ids[n:],
        "generated_text": n_gen_text,
        "model_dims": {"n_layer": L, "n_head": NH, "n_embd": C, "n_inner": F, "vocab_size": V},
        "ecco_activations_layers": layer_order,
        "ecco_activations_positions": T - 1,
        "ecco_attribution_keys": ECCO_KEYS,
        "settings": {
            "ecco_from_pretrained": {"model_config": ECCO_CONFIG, "activations": True,
                                     "verbose": False, "gpu": False},
            "ecco_generate": {"generate": G, "do_sample": False, "attribution": ATTRIBUTION,
                              "output_hidden_states": True},
            "ecco_rankings_watch": {"watch": WATCH, "position": "n_input + g"},
            "ecco_layer_predictions": {"topk": TOPK, "position": "n_input + g"},
            "reference_dtype": "float64 (weights as stored), saved as F32",
            "reference_targets": {"prob": "softmax(logits[t-1])[x_t]",
                                  "logit": "logits[t-1][x_t]",
                                  "logprob": "log_softmax(logits[t-1])[x_t]"},
            "integrated_gradients": {"baseline": "zero", "n_steps": IG_STEPS,
                                     "quadrature": "numpy leggauss: alpha=(1+x)/2, w=omega/2",
                                     "scaled": "token embeddings only (wpe added inside)",
                                     "target": "prob"},
            "watch_ids": WATCH,
            "topk": TOPK,
            "rank": "1 + number of vocabulary entries with a strictly larger logit",
            "lens_rows": "row (l, g): hidden_states[l+1] at position n_input+g-1, token n_input+g",
            "top_order": "descending probability, ties by lower id",
            "torch_threads": 1,
        },
        "tensors": shapes,
        "agreement": ag,
        "tolerances": {"attribution_row_rel": TOL_ATTR_REL, "ig_abs": TOL_IG_ABS,
                       "activations_abs_times_max1_maxref": TOL_ACT_ABS,
                       "layer_probs_abs": TOL_PROB_ABS},
        "notes": notes,
        "versions": {"ecco": ecco.__version__, "captum": captum.__version__,
                     "torch": torch.__version__, "transformers": transformers.__version__,
                     "safetensors": safetensors.__version__, "numpy": np.__version__},
    }
    res = {k: np.ascontiguousarray(v) for k, v in res.items()}
    path = os.path.join(d, "explain_reference.safetensors")
    safetensors.numpy.save_file(res, path)
    back = safetensors.numpy.load_file(path)
    assert set(back) == set(res)
    for k, v in res.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    with open(os.path.join(d, "explain_reference.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
        f.write("\n")
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in
             ("explain_reference.safetensors", "explain_reference.json")}
    print(f"{name}: n_input {n}, G {G}, layers in Ecco's order {layer_order}, "
          f"{sum(sizes.values())} bytes")
    for k, v in ag.items():
        print(f"    {k}: {v}")
    return sizes


def main():
    torch.set_num_threads(1)  # deterministic float reductions
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    assert ecco.__version__ == "0.1.2", ecco.__version__
    total = 0
    for name in MODELS:
        total += sum(one_model(name).values())
    print(f"explain fixtures: {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
