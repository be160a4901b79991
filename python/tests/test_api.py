"""The package's own promises: the tokenizer against Hugging Face's ids,
errors as Python exceptions with the library's message, arrays that view the
run's memory and outlive the output, explanations computed later equal to
those computed at once, lm(inputs), save and load, and the views' HTML."""
import gc
import html
import json
import os
import re

import numpy as np
import pytest

import eccolo
from conftest import PROMPT, fixture, read_safetensors, run_cli


@pytest.fixture(scope="module")
def lm():
    return eccolo.from_pretrained(fixture("tiny-gpt2"), verbose=False, device="cpu", threads=1)


def test_tokenizer_equals_hugging_face(lm):
    corpus = json.load(open(fixture("tokenizer_corpus.json"), encoding="utf-8"))
    ref = corpus["tokenizers"]["small-tokenizer"]  # tiny-gpt2's tokenizer.json; ids from transformers
    for text, ids in zip(corpus["corpus"], ref["ids"]):
        assert lm.tokenizer.encode(text) == ids, text
        assert lm.tokenizer(text)["input_ids"] == ids
    for case in ref["decode"]:
        assert lm.tokenizer.decode(case["ids"]) == case["text"]
    # vocabulary spellings: the inverse of vocab.json
    vocab = json.load(open(fixture("small-tokenizer/vocab.json"), encoding="utf-8"))
    for tok, i in vocab.items():
        assert lm.tokenizer.convert_ids_to_tokens(i) == tok
    assert lm.tokenizer.eos_token_id == int(ref["eot"]) and lm.tokenizer.eos_token == "<|endoftext|>"
    enc = lm.tokenizer(["Hello world", "Hello there"], return_tensors="np")  # 4 tokens each here
    assert enc.input_ids.shape == (2, 4) and enc.attention_mask.sum() == 8
    assert enc.input_ids[1].tolist() == lm.tokenizer.encode("Hello there")
    with pytest.raises(ValueError, match="different numbers of tokens"):
        lm.tokenizer(["Hello world", "Hi all"], return_tensors="np")


def test_errors_are_exceptions_with_the_librarys_message(lm, tmp_path):
    with pytest.raises(ValueError) as e:
        lm.generate(PROMPT, generate=4, do_sample=True, top_p=1.5)
    assert str(e.value) == "--top-p must be a number from 1e-06 to 1 (got '1.5')"
    assert isinstance(e.value, eccolo.InputError) and e.value.status == 1
    with pytest.raises(ValueError, match="max_length set to 8 while input token has more tokens"):
        lm.generate(PROMPT)  # Ecco's error, Ecco's default max_length
    with pytest.raises(ValueError, match="eccolo computes grad_x_input"):
        lm.generate("Hi", generate=2, attribution=["lrp"])
    with pytest.raises(ValueError, match="does not fit|context|positions"):
        lm.generate("Hi", generate=100000)
    # files: a corrupt checkpoint is an OSError naming the file
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("config.json", "tokenizer.json"):
        (bad / f).write_bytes(open(fixture("tiny-gpt2/" + f), "rb").read())
    (bad / "model.safetensors").write_bytes(open(fixture("tiny-gpt2/model.safetensors"), "rb").read()[:5000])
    with pytest.raises(OSError) as e:
        eccolo.from_pretrained(str(bad))
    assert "model.safetensors" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no run.json"):
        eccolo.load(str(bad))
    # paths that do not exist: OSError, with the library's message
    with pytest.raises(OSError, match="no such run directory"):
        eccolo.load(str(tmp_path / "nowhere"))
    with pytest.raises(OSError, match="no such directory"):
        eccolo.from_pretrained(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="not-a-model"):  # a hub id not in the cache: bad input
        eccolo.from_pretrained("someone/not-a-model")
    out = lm.generate("Hello world", generate=2)
    out.save(tmp_path / "run")
    tf = tmp_path / "run" / "tensors.safetensors"
    tf.write_bytes(tf.read_bytes()[:-3])
    with pytest.raises(OSError, match="tensors.safetensors"):
        eccolo.load(str(tmp_path / "run"))
    # memory: a budget too small for the explanation says what would fit
    with pytest.raises(MemoryError) as e:
        lm.generate(PROMPT, generate=4, attribution=["ig"], mem_budget="1K")
    assert isinstance(e.value, eccolo.OutOfMemoryError) and "\n" not in str(e.value)
    with pytest.raises(TypeError, match="unexpected keyword"):
        lm.generate("Hi", generate=2, num_beams=3)


def test_arrays_view_the_run_and_outlive_the_output(lm):
    out = lm.generate(PROMPT, generate=5, attribution=["grad_x_input"], activations=True)
    a = out.activations["decoder"]
    s = out.attribution["grad_x_input"][2]
    t = out.tensors["activations"]
    assert np.shares_memory(a, t) and not a.flags.writeable  # a view, no copy
    assert np.shares_memory(s, out.tensors["attribution.grad_x_input"])
    keep = np.array(t)
    keep_s = np.array(s)
    del out
    gc.collect()
    junk = [lm.generate("Hello world", generate=5, activations=True).tensors["activations"] for _ in range(3)]
    assert np.array_equal(t, keep) and np.array_equal(s, keep_s) and len(junk) == 3
    assert abs(float(s.sum()) - 1) < 1e-5  # rows sum to 1 over the positions before the token


def test_later_explanations_equal_those_computed_at_once(lm):
    eager = lm.generate(PROMPT, generate=6, attribution=["grad_x_input", "ig"], activations=True, attention=True)
    lazy = lm.generate(PROMPT, generate=6)
    lazy.primary_attributions(attr_method="ig")  # computed now, over the same tokens
    lazy.primary_attributions()
    lazy.attention(layer=1)
    lazy.run_nmf(n_components=3)
    for name in ("attribution.grad_x_input", "attribution.integrated_gradients", "attention", "activations"):
        assert lazy.tensors[name].tobytes() == eager.tensors[name].tobytes(), name
    assert sorted(lazy.attribution) == ["grad_x_input", "ig"]


def test_forward_only_and_forced(lm):
    lm2 = eccolo.from_pretrained(fixture("tiny-gpt2"), activations=True, verbose=False, device="cpu", threads=1)
    inputs = lm2.tokenizer("Hello computer", return_tensors="np")
    out = lm2(inputs)
    n = inputs["input_ids"].shape[1]
    assert out.n_tokens == out.n_input_tokens == n and out.activations["decoder"].shape[3] == n
    # the same as the prompt part of a longer run (causal: later tokens change nothing before them)
    longer = lm2.generate("Hello computer", generate=3)
    assert np.allclose(out.activations["decoder"], longer.activations["decoder"][..., :n], rtol=1e-5, atol=1e-6)
    two = lm2(lm2.tokenizer(["Hello computer", "Hello world!"], return_tensors=None)["input_ids"][0:1])
    assert two.n_tokens == n
    f = lm.explain("The capital of France is", " Paris", attribution=["grad_x_input"])
    assert f.generated_text == " Paris" and f.logprobs.shape == (len(lm.tokenizer.encode(" Paris")),)
    assert (f.logprobs < 0).all()
    assert f.info["parameters"]["mode"] == "forced"


def test_save_load_and_eccolo_report(lm, tmp_path):
    out = lm.generate(PROMPT, generate=6, attribution=["saliency"], activations=True)
    nmf = out.run_nmf(n_components=4)
    out.save(tmp_path / "r")
    back = eccolo.load(str(tmp_path / "r"))
    assert sorted(back.attribution) == ["gradient"]
    assert back.attribution["gradient"][3].tobytes() == out.attribution["saliency"][3].tobytes()
    assert back._factors is not None and back.tokens == out.tokens
    # the command line reads what Python saved
    run_cli("report", tmp_path / "r")
    t, _ = read_safetensors(tmp_path / "r" / "nmf.safetensors")
    assert t["factors"].tobytes() == nmf.components.tobytes()
    # a loaded run computes more with the model run.json names
    back.attention(layer=0)
    assert back.attention_values.shape[0] == 2


def test_views_are_the_report_page_in_an_iframe(lm, tmp_path):
    out = lm.generate(PROMPT, generate=6, attribution=["grad_x_input", "ig"])
    v = out.primary_attributions(attr_method="ig", style="detailed", ignore_tokens=[0, 3])
    page = v.html
    assert page.startswith("<!DOCTYPE html>")
    assert re.search(r'"show":\{"view":"saliency","method":"integrated_gradients","token":0,"detailed":true,'
                     r'"ignore":\[0,3\]\}', page)
    frag = v._repr_html_()
    m = re.match(r'<iframe [^>]*srcdoc="([^"]*)"', frag)
    assert m and html.unescape(m.group(1)) == page  # the whole page, escaped into the attribute
    assert "<script" not in frag.split("srcdoc=")[0]
    p = v.save_html(str(tmp_path / "v.html"))
    assert open(p, encoding="utf-8").read() == page
    # no network: every script and style is inline, the page forbids the rest
    assert "default-src 'none'" in page and not re.search(r'<(script|link)[^>]+(src|href)=', page)
    d = out.primary_attributions(printJson=True)
    assert len(d["attributions"]) == 6 and len(d["tokens"]) == out.n_tokens
    assert eccolo.NMF is not None and out.run_nmf(n_components=2).plot()._repr_html_().startswith("<svg")


def test_the_installed_command_and_its_default_model():
    """pip install puts the C program and the demo model inside the package; the eccolo command runs
    that program with that model as its default (in a clone, the build's program and models/demo)."""
    info = run_cli("info").stdout
    default = re.search(r"default model: (.*)", info).group(1).strip()
    assert os.path.isfile(os.path.join(default, "config.json")), info
    if os.path.isdir(eccolo._lib.NATIVE):  # installed
        assert default == os.path.join(eccolo._lib.NATIVE, "models", "demo")
        assert eccolo.demo_model() == default
    out = run_cli("generate", "--prompt", "Hello", "--max-new-tokens", 3, "--device", "cpu", "--quiet").stdout
    assert out.startswith("Hello")


def test_selected_layers_and_batch_errors():
    deep = eccolo.from_pretrained(fixture("tiny-gpt2-deep"), activations=True, verbose=False, device="cpu",
                                  threads=1)
    every = deep.generate(PROMPT, generate=3).activations["decoder"]
    assert every.shape[1] == 12  # numeric layer order, all of them
    some = eccolo.from_pretrained(fixture("tiny-gpt2-deep"), activations=True, activations_layer_nums=[2, 5, 3],
                                  verbose=False, device="cpu", threads=1)
    a = some.generate(PROMPT, generate=3).activations["decoder"]
    assert a.shape[1] == 3 and np.array_equal(a, every[:, [2, 3, 5]])
    with pytest.raises(ValueError, match="activations_layer_nums"):
        eccolo.from_pretrained(fixture("tiny-gpt2-deep"), activations=True, activations_layer_nums=[12])
    # a batch with one request that cannot run: its error, and which one
    with pytest.raises(ValueError) as e:
        deep.batch(["Hello world", PROMPT * 20], generate=4)
    assert e.value.index == 1 and "context" in str(e.value)
