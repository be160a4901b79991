"""Ecco 0.1.2's own notebook calls, copied from its documentation (README and
docstrings), with the import line changed to ``import eccolo as ecco``, on
the fixture models; and the numbers they give against what real Ecco 0.1.2
returned for the same calls (tests/fixtures/<model>/explain_reference.*,
written by tools/fixtures_ecco.py), with the tolerances of
tests/explain/test_explain.c."""
import json

import numpy as np
import pytest

from conftest import ECCO_CONFIG, PROMPT, fixture, read_safetensors

import eccolo as ecco  # the only line changed from Ecco's documentation

MODELS = ["tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep"]


def reference(model):
    t, _ = read_safetensors(fixture(model) + "/explain_reference.safetensors")
    j = json.load(open(fixture(model) + "/explain_reference.json", encoding="utf-8"))
    return t, j


def max_row_rel(got, want):
    return max(np.linalg.norm(got[g].astype(np.float64) - want[g]) / np.linalg.norm(want[g])
               for g in range(len(want)))


def test_readme_calls_run(tmp_path):
    # Ecco's README ("Documentation"), on the fixture model instead of distilgpt2
    # Load pre-trained language model. Setting 'activations' to True tells Ecco to capture neuron activations.
    lm = ecco.from_pretrained(fixture("tiny-gpt2"), activations=True)
    # Input text
    text = "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4."
    # Generate 20 tokens to complete the input text.
    output = lm.generate(text, generate=20, do_sample=True)
    # To view the input saliency
    v1 = output.saliency()
    # to view input saliency with more details (a bar and % value for each token)
    v2 = output.saliency(style="detailed")
    # We can run non-negative matrix factorization using run_nmf. We pass the number of factors/components to break down into
    nmf_1 = output.run_nmf(n_components=10)
    # nmf_1 now contains the necessary data to create the interactive nmf explorable:
    v3 = nmf_1.explore()
    assert output.n_tokens == output.n_input_tokens + 20 or output.token_ids[0][-1] == lm.tokenizer.eos_token_id
    assert output.activations["decoder"].shape[3] == output.n_tokens  # every token, the last one too
    assert nmf_1.components.shape == (10, output.n_tokens)
    for v, view in ((v1, "saliency"), (v2, "saliency"), (v3, "nmf")):
        assert v.show["view"] == view and v.html.startswith("<!DOCTYPE html>")
        assert "srcdoc=" in v._repr_html_()
    assert v2.show.get("detailed") is True
    # the sampled text is recorded with its seed: the same call with that seed gives the same tokens
    seed = int(output.info["parameters"]["seed"])
    again = lm.generate(text, generate=20, do_sample=True, seed=seed)
    assert np.array_equal(again.token_ids, output.token_ids)


def test_docstring_calls_run():
    # ecco.from_pretrained's docstring: a custom model and its configuration
    model_config = {
        'embedding': "transformer.wte.weight",
        'type': 'causal',
        'activations': [r'mlp\.c_proj'],  # (Ecco's docstring writes 'mlp\.c_proj', the same string)
        'token_prefix': ' ',
        'partial_token_prefix': ''
    }
    lm = ecco.from_pretrained(fixture("tiny-gpt2-f16"), model_config=model_config)
    # LM's docstring
    output = lm.generate("Hello computer")
    assert output.n_tokens == 8  # max_length=8 tokens in all, Ecco's default
    # OutputSeq.primary_attributions' docstring
    text = "The countries of the European Union are:\n1. Austria\n2. Belgium\n3. Bulgaria\n4."
    output = lm.generate(text, generate=20, do_sample=True)
    # Show primary attributions explorable
    output.primary_attributions()
    # Show detailed explorable
    output.primary_attributions(style="detailed")
    # LM.__call__'s docstring
    inputs = lm.tokenizer("Hello computer", return_tensors="pt")
    output = lm(inputs)
    assert output.n_tokens == output.n_input_tokens == len(lm.tokenizer.encode("Hello computer"))
    assert output.hidden_states.shape[1] == output.n_tokens


@pytest.mark.parametrize("model", MODELS)
def test_attributions_equal_real_eccos(model):
    ref, j = reference(model)
    n, G = j["n_input"], j["G"]
    # the calls of tools/fixtures_ecco.py, which recorded real Ecco's answers
    lm = ecco.from_pretrained(fixture(model), model_config=dict(ECCO_CONFIG), activations=True, verbose=False,
                              gpu=False)
    assert lm.tokenizer(PROMPT)["input_ids"] == j["ecco_ids"][:n]
    out = lm.generate(PROMPT, generate=G, do_sample=False, attribution=["grad_x_input", "saliency", "ig"],
                      output_hidden_states=True)
    assert out.token_ids[0].tolist() == j["ecco_ids"]
    assert out.n_input_tokens == n
    for key, field, tol in (("grad_x_input", "ecco_grad_x_input", 1e-4), ("saliency", "ecco_gradient", 1e-4),
                            ("ig", "ecco_integrated_gradients", 1e-3)):
        rows = out.attribution[key]
        assert [len(r) for r in rows] == [n + g for g in range(G)]  # Ecco's row lengths
        got = np.zeros((G, n + G), np.float32)
        for g, r in enumerate(rows):
            got[g, :n + g] = r
        # fp32 against Ecco's fp32: row-relative 1e-4, integrated gradients 1e-3 (test_explain.c)
        err = max_row_rel(got, ref[field].astype(np.float64))
        assert err <= tol, "%s: %s differs from Ecco's by %.3g (row-relative)" % (model, key, err)
    # activations: Ecco's (layer, neuron, position) in its string-sorted layer order, without the last token
    act = out.activations["decoder"][0]
    order = j["ecco_activations_layers"]
    P = j["ecco_activations_positions"]
    for row, layer in enumerate(order):
        a, b = act[layer, :, :P].astype(np.float64), ref["ecco_activations"][row].astype(np.float64)
        err = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert err <= 1e-4, "%s: activations of layer %d differ from Ecco's by %.3g" % (model, layer, err)


@pytest.mark.parametrize("model", MODELS)
def test_rankings_and_layer_predictions_equal_real_eccos(model):
    ref, j = reference(model)
    n, G = j["n_input"], j["G"]
    watch = j["settings"]["watch_ids"]
    lm = ecco.from_pretrained(fixture(model), model_config=dict(ECCO_CONFIG), verbose=False, gpu=False, lens="raw")
    out = lm.generate(PROMPT, generate=G, do_sample=False, output_hidden_states=True)
    rank = out.rankings(printJson=True)["rankings"]
    assert np.array_equal(rank, ref["ecco_rankings"]), "%s: rankings differ from Ecco's" % model
    wr = np.stack([out.rankings_watch(watch=watch, position=n + g, printJson=True)["rankings"]
                   for g in range(G)], axis=1)
    assert np.array_equal(wr, ref["ecco_watch_rankings"]), "%s: rankings_watch differs from Ecco's" % model
    for g in range(G):
        preds = out.layer_predictions(position=n + g, topk=10, printJson=True)
        probs = np.array([[float(it["prob"]) for it in layer] for layer in preds])
        assert np.abs(probs - ref["ecco_layer_top_probs"][:, g]).max() <= 1e-5  # test_explain.c's tolerance
        toks = [[it["token"] for it in layer] for layer in preds]
        want = [[lm.tokenizer.decode(int(i)) for i in ref["ref_layer_top_ids_raw"][l, g]]
                for l in range(len(preds))]
        assert toks == want
    # eccolo's default lens applies the final layer norm to every layer: the float64 reference's ranks
    lm2 = ecco.from_pretrained(fixture(model), verbose=False, gpu=False)
    out2 = lm2.generate(PROMPT, generate=G, do_sample=False)
    assert np.array_equal(out2.rankings(printJson=True)["rankings"], ref["ref_rankings"])
