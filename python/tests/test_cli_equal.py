"""The Python package gives the command line's results bit for bit: the same
request through eccolo.generate / explain / batch / run_nmf and through the
eccolo command (whose numbers tests/explain, tests/nmf and tests/report
check against PyTorch, real Ecco and scikit-learn) must give identical
tensors, NMF factors and report pages. Everything runs on one CPU thread on
both sides, so that the two use the same reduction order."""
import json

import numpy as np
import pytest

import eccolo
from conftest import PROMPT, fixture, read_safetensors, run_cli

MODELS = ["tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep", "tiny-gpt2-sharded"]
CAPTURE = ["--activations", "--attention", "--hidden-states", "--rankings"]


def open_lm(model, **kw):
    return eccolo.from_pretrained(fixture(model), activations=True, attention=True, hidden_states=True,
                                  verbose=False, device="cpu", threads=1, **kw)


def assert_same(py_tensors, cli_file, what):
    cli, _ = read_safetensors(cli_file)
    for name, want in cli.items():
        got = py_tensors.get(name)
        assert got is not None, "%s: the Python output has no tensor %s" % (what, name)
        assert got.dtype == want.dtype and got.shape == want.shape, (what, name, got.dtype, got.shape, want.shape)
        assert got.tobytes() == want.tobytes(), "%s: tensor %s differs from the command line's" % (what, name)
    return cli


@pytest.mark.parametrize("model", MODELS)
def test_generate_equals_eccolo_generate(model, tmp_path):
    cli_dir = tmp_path / "cli"
    run_cli("generate", "--model", fixture(model), "--raw", "--prompt", PROMPT, "--max-new-tokens", 8,
            "--attribution", "grad_x_input,saliency,ig", *CAPTURE, "--threads", 1, "--device", "cpu", "--quiet",
            "--out", cli_dir)
    lm = open_lm(model)
    out = lm.generate(PROMPT, generate=8, attribution=["grad_x_input", "saliency", "ig"])
    # rankings were not asked of generate(): rankings() computes them over the same tokens
    out.rankings()
    cli = assert_same(out.tensors, cli_dir / "tensors.safetensors", model)
    assert sorted(out.tensors) == sorted(cli)
    # Ecco's views of the same memory
    n = out.n_input_tokens
    m = cli["attribution.integrated_gradients"]
    for g, row in enumerate(out.attribution["ig"]):
        assert row.tobytes() == m[g, :n + g].tobytes()
    a = out.activations["decoder"]
    assert a.shape == (1, cli["activations"].shape[0], cli["activations"].shape[2], cli["activations"].shape[1])
    assert np.array_equal(a[0], cli["activations"].transpose(0, 2, 1))
    info = json.load(open(cli_dir / "run.json", encoding="utf-8"))
    assert out.token_texts == info["tokens"] and out.output_text == info["text"]
    # saved by Python: the same file contents
    out.save(tmp_path / "py")
    assert_same(read_safetensors(tmp_path / "py" / "tensors.safetensors")[0], cli_dir / "tensors.safetensors", model)


def test_sampling_forced_and_lens_equal_the_command_line(tmp_path):
    m = fixture("tiny-gpt2")
    lm = open_lm("tiny-gpt2")
    run_cli("generate", "--model", m, "--raw", "--prompt", "Once upon a time", "--max-new-tokens", 12, "--sample",
            "--seed", 7, "--temperature", 0.8, "--top-k", 40, "--top-p", 0.95, "--attribution", "grad_x_input",
            "--threads", 1, "--device", "cpu", "--quiet", "--no-stop", "--out", tmp_path / "s")
    out = lm.generate("Once upon a time", generate=12, do_sample=True, seed=7, temperature=0.8, top_k=40, top_p=0.95,
                      attribution=["grad_x_input"], activations=False, attention=False, output_hidden_states=False,
                      stop_at_eos=False)
    assert_same(out.tensors, tmp_path / "s" / "tensors.safetensors", "sampling")
    # a forced continuation, with Ecco's (raw) lens and the logit target
    run_cli("generate", "--model", m, "--raw", "--prompt", "The capital of France is", "--continuation",
            " Paris, and", "--attribution", "ig,gradient", "--target", "logit", "--rankings", "--lens", "raw",
            "--watch-ids", "11,500", "--threads", 1, "--device", "cpu", "--quiet", "--out", tmp_path / "f")
    lm_raw = eccolo.from_pretrained(m, hidden_states=False, verbose=False, device="cpu", threads=1, lens="raw",
                                    target="logit")
    out = lm_raw.explain("The capital of France is", " Paris, and", attribution=["ig", "gradient"])
    out.rankings_watch(watch=[11, 500])
    assert_same(out.tensors, tmp_path / "f" / "tensors.safetensors", "forced")
    info = json.load(open(tmp_path / "f" / "run.json", encoding="utf-8"))
    assert out.info["parameters"] == info["parameters"] and out.info["explain"]["target"] == "logit"


def test_nmf_and_report_equal_eccolo_nmf_and_report(tmp_path):
    lm = open_lm("tiny-gpt2-deep")
    out = lm.generate(PROMPT, generate=8, attribution=["grad_x_input"])
    nmf = out.run_nmf(n_components=5, from_layer=3, to_layer=9)
    py = tmp_path / "py"
    out.save(py)  # run.json, tensors.safetensors, nmf.safetensors
    cli_nmf = tmp_path / "cli-nmf.safetensors"
    run_cli("nmf", py, "--components", 5, "--from-layer", 3, "--to-layer", 9, "--threads", 1, "--device", "cpu",
            "--out", cli_nmf)
    t, meta = read_safetensors(cli_nmf)
    assert nmf.components.tobytes() == t["factors"].tobytes()
    assert nmf.loadings.tobytes() == t["loadings"].tobytes()
    pt, pmeta = read_safetensors(py / "nmf.safetensors")
    for k in ("relative_error", "iterations", "layer_from", "layer_to", "init", "solver", "run_ids"):
        assert pmeta[k] == meta[k], k
    assert abs(nmf.relative_error - float(meta["relative_error"])) == 0
    # the page of the saved run: eccolo report's, byte for byte
    run_cli("report", py)
    page = open(py / "report.html", encoding="utf-8").read()
    assert eccolo.load(str(py)).html().html == page
    # and the in-memory page of the output differs only in where the run and its factors are
    mem = out.html().html
    assert mem.replace('"run_dir":"(in memory)"', '"run_dir":%s' % json.dumps(str(py))).replace(
        "(in memory)/nmf.safetensors", str(py / "nmf.safetensors")) == page


def test_batch_equals_eccolo_batch(tmp_path):
    prompts = [PROMPT, "Hello world", "The capital of France is"]
    conts = [None, None, " Paris"]
    with open(tmp_path / "p.jsonl", "w", encoding="utf-8") as f:
        for i, (p, c) in enumerate(zip(prompts, conts)):
            rec = {"id": "p%d" % i, "prompt": p}
            if c:
                rec["continuation"] = c
            f.write(json.dumps(rec) + "\n")
    run_cli("batch", "--model", fixture("tiny-gpt2"), "--prompts", tmp_path / "p.jsonl", "--out", tmp_path / "b",
            "--max-new-tokens", 6, "--attribution", "grad_x_input", "--activations", "--threads", 1, "--device",
            "cpu", "--batch-size", 8, "--quiet")
    lm = open_lm("tiny-gpt2", )
    outs = lm.batch(prompts, generate=6, continuations=conts, attribution=["grad_x_input"], attention=False,
                    output_hidden_states=False)
    for i, out in enumerate(outs):
        assert_same(out.tensors, tmp_path / "b" / "runs" / ("p%d" % i) / "tensors.safetensors", "batch %d" % i)
    assert outs[2].generated_text == " Paris"
