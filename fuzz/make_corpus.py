#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

    fuzz/make_corpus.py [--eccolo BUILD/eccolo]

Seeds are small, real-shaped files made from tests/fixtures (cut down) and
hand-written edge cases. The run-directory targets (report, nmf) need run
directories: with --eccolo, the script writes them with `eccolo generate
--out` on tests/fixtures/tiny-gpt2 (plus `eccolo nmf`); without it those two
corpora are left as they are. Multi-file inputs join their files with the
separator line of fuzz/fuzz_common.h (FUZZ_SEP)."""
import argparse
import json
import os
import struct
import subprocess
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "tests", "fixtures")
CORPUS = os.path.join(REPO, "fuzz", "corpus")
SEP = b"\n=====ECCOLO-FUZZ-PART=====\n"


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def reset(target):
    """Remove the seeds this script writes; keep cov-* (inputs a campaign added, see docs/FUZZING.md)."""
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if not f.startswith("cov-"):
            os.remove(os.path.join(d, f))


def read(*parts):
    with open(os.path.join(FIX, *parts), "rb") as f:
        return f.read()


# ---- safetensors -------------------------------------------------------------

DT = {"F32": ("<f", 4), "F16": ("<e", 2), "BF16": (None, 2), "F64": ("<d", 8), "I64": ("<q", 8),
      "I32": ("<i", 4), "I16": ("<h", 2), "I8": ("<b", 1), "U8": ("<B", 1), "BOOL": ("<B", 1)}


def st_bytes(tensors, meta=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, off, data = {}, 0, b""
    if meta is not None:
        header["__metadata__"] = meta
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def raw_of(dt, shape, seed=1):
    n = numel(shape)
    if dt == "BF16":
        return b"".join(struct.pack("<f", (i * 0.37 + seed) % 5 - 2.5)[2:] for i in range(n))
    fmt, size = DT[dt]
    if fmt in ("<f", "<e", "<d"):
        return b"".join(struct.pack(fmt, (i * 0.37 + seed) % 5 - 2.5) for i in range(n))
    if dt == "BOOL":
        return bytes((i + seed) % 2 for i in range(n))
    lo = {1: 0 if fmt == "<B" else -100, 2: -1000, 4: -100000, 8: -10**12}[size]
    return b"".join(struct.pack(fmt, lo + (i * 7 + seed) % 200) for i in range(n))


def cut_real_model(path, max_elems=64):
    """A real checkpoint's tensor table (names, dtypes, ranks) with small shapes."""
    raw = read(*path)
    hlen = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hlen])
    meta = header.pop("__metadata__", None)
    out = []
    for name, e in header.items():
        shape = [min(d, 4) for d in e["shape"]]
        while numel(shape) > max_elems:
            shape[shape.index(max(shape))] //= 2
        out.append((name, e["dtype"], shape, raw_of(e["dtype"], shape, len(out))))
    return st_bytes(out, meta)


def corpus_safetensors():
    reset("safetensors")
    put("safetensors", "tiny-gpt2-deep-cut.safetensors", cut_real_model(("tiny-gpt2-deep", "model.safetensors")))
    put("safetensors", "tiny-gpt2-f16-cut.safetensors", cut_real_model(("tiny-gpt2-f16", "model.safetensors"), 16))
    every = [(dt.lower(), dt, [2, 3], raw_of(dt, [2, 3])) for dt in DT]
    put("safetensors", "every-dtype.safetensors", st_bytes(every, {"format": "pt", "note": "every dtype"}))
    put("safetensors", "scalar-and-empty.safetensors",
        st_bytes([("scalar", "F32", [], raw_of("F32", [])), ("empty", "F32", [0, 5], b""),
                  ("v", "I32", [3], raw_of("I32", [3]))]))
    put("safetensors", "unpadded.safetensors", st_bytes([("a", "F16", [4], raw_of("F16", [4]))], pad=False))
    put("safetensors", "eight-dims.safetensors",
        st_bytes([("x", "U8", [1, 2, 1, 2, 1, 2, 1, 2], raw_of("U8", [16]))], {"n_input": "3"}))
    put("safetensors", "metadata-only.safetensors", st_bytes([], {"format": "eccolo"}))
    put("safetensors", "empty-header.safetensors", st_bytes([]))
    put("safetensors", "unicode-names.safetensors",
        st_bytes([("h.0.attn\u00e9\u65e5", "F32", [1], raw_of("F32", [1])), ("q\"uote", "I8", [2], b"\x01\xff")]))
    # the nmf and explain fixtures: real run outputs, cut to small shapes
    put("safetensors", "nmf-reference-cut.safetensors", cut_real_model(("tiny-gpt2-deep", "nmf_reference.safetensors")))


# ---- config.json ---------------------------------------------------------------

def corpus_config():
    reset("config")
    for m in ("tiny-gpt2", "tiny-gpt2-deep", "tiny-gpt2-f16"):
        put("config", m + ".json", read(m, "config.json"))
    base = json.loads(read("tiny-gpt2", "config.json"))
    gpt2 = {"model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768, "n_ctx": 1024, "vocab_size": 50257,
            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, "n_inner": None,
            "scale_attn_by_inverse_layer_idx": True, "tie_word_embeddings": False, "eos_token_id": 50256}
    put("config", "gpt2-n_ctx.json", json.dumps(gpt2))
    put("config", "minimal.json", '{"model_type":"gpt2","n_layer":1,"n_head":1,"n_embd":1,"n_positions":1,'
                                  '"vocab_size":1}')
    bad = dict(base, n_embd=66)
    put("config", "not-multiple.json", json.dumps(bad))
    put("config", "llama.json", json.dumps(dict(base, model_type="llama")))
    put("config", "relu.json", json.dumps(dict(base, activation_function="relu")))
    put("config", "deep-nesting.json", '{"model_type":"gpt2","x":' + "[" * 200 + "]" * 200 + "}")


# ---- tokenizers ----------------------------------------------------------------

def byte_symbols():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_vocab():
    sym = byte_symbols()
    vocab = {sym[b]: i for i, b in enumerate(sorted(sym))}
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("\u0120", "w"), ("\u0120w", "o"), ("r", "l"),
              ("\u0120wo", "rl"), ("\u0120worl", "d")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def corpus_tokenizers():
    reset("tokenizer_bpe")
    v, m = read("small-tokenizer", "vocab.json"), read("small-tokenizer", "merges.txt")
    put("tokenizer_bpe", "small.bpe", v + SEP + m + SEP + "Hello world, it's 2024 — naïve 日本".encode())
    vocab, merges = tiny_vocab()
    mt = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    put("tokenizer_bpe", "tiny.bpe", json.dumps(vocab).encode() + SEP + mt.encode() + SEP + b"hello world")
    put("tokenizer_bpe", "tiny-crlf.bpe", json.dumps(vocab).encode() + SEP + mt.replace("\n", "\r\n").encode())
    put("tokenizer_bpe", "no-merges.bpe", json.dumps(vocab).encode() + SEP)
    # a cut of GPT-2's own files: the byte symbols, the first merges and their results
    gv = json.loads(read("gpt2-tokenizer", "vocab.json"))
    gm = read("gpt2-tokenizer", "merges.txt").decode().split("\n")
    keep = {t: i for t, i in gv.items() if i < 256}
    lines = [gm[0]]
    for line in gm[1:400]:
        if not line:
            continue
        a, b = line.split(" ")
        if a in keep and b in keep and (a + b) in gv:
            keep[a + b] = gv[a + b]
            lines.append(line)
    keep["<|endoftext|>"] = gv["<|endoftext|>"]
    put("tokenizer_bpe", "gpt2-cut.bpe", json.dumps(keep, ensure_ascii=False).encode() + SEP +
        ("\n".join(lines) + "\n").encode() + SEP + b"The quick brown fox<|endoftext|> jumps")

    reset("tokenizer_json")
    tj = read("small-tokenizer", "tokenizer.json")
    put("tokenizer_json", "small.json", tj + SEP + "Hello <|endoftext|> world\n\n  x".encode())
    j = json.loads(tj)
    j["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in j["model"]["merges"]]
    put("tokenizer_json", "small-array-merges.json", json.dumps(j, ensure_ascii=False).encode())
    tiny = {"version": "1.0", "added_tokens": [{"id": len(vocab) - 1, "content": "<|endoftext|>", "special": True},
                                               {"id": len(vocab), "content": "<extra_\u00e9>", "special": False}],
            "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]}}
    put("tokenizer_json", "tiny.json", json.dumps(tiny, ensure_ascii=False).encode() + SEP +
        "hello world<extra_é>".encode())

    reset("tokenize")
    texts = json.loads(read("tokenizer_corpus.json"))["corpus"]
    for i, t in enumerate(texts[:40]):
        put("tokenize", f"corpus-{i:02d}", bytes([i & 1]) + t.encode())
    put("tokenize", "eot", b"\x00a<|endoftext|>b<|endoftext|><|endoftext|>")
    put("tokenize", "invalid-utf8", b"\x01ok \xc3\x28 \xed\xa0\x80 \xf4\x90\x80\x80 \xc0\xaf")
    put("tokenize", "long-space", b"\x00" + b" " * 3000 + b"x")
    put("tokenize", "nul-bytes", b"\x01a\x00b\x00\x00 c")


# ---- model directories (config.json + model.safetensors) ---------------------------

def gpt2_tensors(cfg, dtype, prefix="", untied=False):
    V, C, P, L = cfg["vocab_size"], cfg["n_embd"], cfg["n_positions"], cfg["n_layer"]
    F = cfg.get("n_inner") or 4 * C
    shapes = [("wte.weight", [V, C]), ("wpe.weight", [P, C])]
    for l in range(L):
        h = f"h.{l}."
        shapes += [(h + "ln_1.weight", [C]), (h + "ln_1.bias", [C]), (h + "attn.c_attn.weight", [C, 3 * C]),
                   (h + "attn.c_attn.bias", [3 * C]), (h + "attn.c_proj.weight", [C, C]),
                   (h + "attn.c_proj.bias", [C]), (h + "ln_2.weight", [C]), (h + "ln_2.bias", [C]),
                   (h + "mlp.c_fc.weight", [C, F]), (h + "mlp.c_fc.bias", [F]), (h + "mlp.c_proj.weight", [F, C]),
                   (h + "mlp.c_proj.bias", [C])]
    shapes += [("ln_f.weight", [C]), ("ln_f.bias", [C])]
    out = [(prefix + n, dtype, sh, raw_of(dtype, sh, i)) for i, (n, sh) in enumerate(shapes)]
    if untied:
        out.append(("lm_head.weight", dtype, [V, C], raw_of(dtype, [V, C], 99)))
    return out


def corpus_model():
    reset("model")
    base = {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8, "n_positions": 16, "vocab_size": 1025,
            "n_inner": None, "eos_token_id": 1024, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    put("model", "tiny-f16.model", json.dumps(base).encode() + SEP + st_bytes(gpt2_tensors(base, "F16"), {"format": "pt"}))
    c2 = dict(base, n_layer=2, n_embd=4, n_inner=8, n_positions=8)
    put("model", "two-layers-f32.model", json.dumps(c2).encode() + SEP + st_bytes(gpt2_tensors(c2, "F32")))
    c3 = dict(base, n_embd=4, tie_word_embeddings=False, scale_attn_by_inverse_layer_idx=True)
    put("model", "untied-bf16-prefixed.model",
        json.dumps(c3).encode() + SEP + st_bytes(gpt2_tensors(c3, "BF16", "transformer.", untied=True)))


# ---- batch ---------------------------------------------------------------------

def corpus_batch():
    reset("batch")
    lines = [
        {"id": "p1", "prompt": "The capital of France is", "max_new_tokens": 4},
        {"id": "p2", "prompt": "Hello", "continuation": " world"},
        {"id": "p1", "prompt": "duplicate"},
        {"id": "../escape", "prompt": "x"},
        {"id": "p3", "prompt": "x", "max_new_tokens": 1.5},
        {"id": "p4", "prompt": "x", "continuation": None, "max_new_tokens": None},
    ]
    put("batch", "prompts.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n  \r\n{bad json\n")
    put("batch", "manifest.jsonl", '{"id":"p1","status":"done","line":1}\n{"id":"p2","status":"failed"}\n{"id":"p3","st')
    put("batch", "unicode.jsonl", json.dumps({"id": "u-1", "prompt": "naïve 日本 🙂\u0000x"}, ensure_ascii=False) + "\n")
    put("batch", "big-number.jsonl", '{"id":"n","prompt":"x","max_new_tokens":1e300}\n{"id":"m","prompt":"y",'
                                     '"max_new_tokens":-0}\n')


# ---- run directories (report, nmf) ------------------------------------------------

def run_seed(eccolo, tmp, name, args, nmf=None):
    out = os.path.join(tmp, name)
    cmd = [eccolo, "generate", "--model", os.path.join(FIX, "tiny-gpt2"), "--out", out, "--quiet",
           "--device", "cpu", "--threads", "1"] + args
    subprocess.run(cmd, check=True)
    if nmf:
        subprocess.run([eccolo, "nmf", out, "--components", str(nmf), "--max-iter", "20", "--device", "cpu",
                        "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "run.json")) as f:
        run = json.load(f)
    run["model"]["dir"] = "tests/fixtures/tiny-gpt2"  # relative: found when fuzzing from the repository root
    parts = [json.dumps(run, ensure_ascii=False, indent=1).encode()]
    with open(os.path.join(out, "tensors.safetensors"), "rb") as f:
        parts.append(f.read())
    if nmf:
        with open(os.path.join(out, "nmf.safetensors"), "rb") as f:
            parts.append(f.read())
    return SEP.join(parts)


def corpus_runs(eccolo):
    reset("report")
    reset("nmf")
    with tempfile.TemporaryDirectory() as tmp:
        a = run_seed(eccolo, tmp, "all", ["--prompt", "The cat sat", "--max-new-tokens", "3", "--attribution",
                                          "grad_x_input,gradient", "--activations", "--attention", "--rankings",
                                          "--top-k-layers", "3", "--watch-ids", "11,12"], nmf=2)
        put("report", "all-views-nmf.run", a)
        put("nmf", "all-views.run", a)
        b = run_seed(eccolo, tmp, "layers", ["--prompt", "Hi", "--max-new-tokens", "2", "--activations", "--layers",
                                             "1:2"])
        put("report", "activations-layer1.run", b)
        put("nmf", "activations-layer1.run", b)
        c = run_seed(eccolo, tmp, "plain", ["--prompt", "A", "--max-new-tokens", "1", "--attention",
                                            "--hidden-states"])
        put("report", "attention.run", c)
        put("nmf", "no-activations.run", c)
        d = run_seed(eccolo, tmp, "forced", ["--prompt", "x y", "--continuation", " z", "--attribution", "ig",
                                             "--ig-steps", "2", "--rankings", "--top-k-layers", "1"])
        put("report", "forced-ig.run", d)
        # a run written before run.json recorded its tensors file, and a pair from different runs
        j, rest = b.split(SEP, 1)
        run = json.loads(j)
        tf = run.pop("tensors_file")
        put("report", "legacy-no-tensors-file.run", json.dumps(run, ensure_ascii=False).encode() + SEP + rest)
        run["tensors_file"] = dict(tf, header_fnv1a64="0123456789abcdef")
        put("nmf", "mismatched-pair.run", json.dumps(run, ensure_ascii=False).encode() + SEP + rest)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eccolo", help="the eccolo binary, to write run-directory seeds")
    a = ap.parse_args()
    corpus_safetensors()
    corpus_config()
    corpus_tokenizers()
    corpus_batch()
    corpus_model()
    if a.eccolo:
        corpus_runs(os.path.abspath(a.eccolo))
    for t in sorted(os.listdir(CORPUS)):
        d = os.path.join(CORPUS, t)
        files = os.listdir(d)
        print(f"{t}: {len(files)} files, {sum(os.path.getsize(os.path.join(d, f)) for f in files)} bytes")


if __name__ == "__main__":
    main()
