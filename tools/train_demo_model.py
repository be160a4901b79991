#!/usr/bin/env python3
"""Trains eccolo's embedded demo model, a small GPT-2, from text that Debian
itself ships: the English package descriptions of Debian 12 ("bookworm") main.

Run through tools/train_demo_model.sh, which fetches the description files with
apt and sets up the Python environment.  Steps:

1. Corpus.  Debian 12's Packages files carry only the one-line (short)
   description of each package; the full descriptions (short + long) are in the
   archive's i18n/Translation-en files, which apt downloads when
   Acquire::Languages includes "en" (the Debian docker image turns that off;
   tools/train_demo_model.sh turns it back on for a private lists directory).
   Each package's Description-en is decoded (Debian policy 5.6.13: the first
   line is the synopsis; continuation lines start with one space; " ." is an
   empty line; lines starting with two spaces are shown verbatim, other lines
   are filled into paragraphs), written as one document
       "<package>: <synopsis>\n<paragraph>\n\n<paragraph>..."
   deduplicated on the description text (many binary packages of one source
   share a description; the first package in name order is kept), shuffled with
   a fixed seed and split into training and held-out documents.  Documents are
   separated by <|endoftext|> in the token stream.  Short descriptions from the
   Packages files of packages that have no Translation-en entry are added too.
2. Tokenizer.  A byte-level BPE (tokenizers.ByteLevelBPETokenizer: GPT-2's
   byte-to-unicode map and pre-tokenisation regex, no prefix space) trained on
   the training documents only, <|endoftext|> as its only special token, saved
   as GPT-2 vocab.json + merges.txt; checked against transformers'
   GPT2TokenizerFast loaded from those two files.
3. Model.  transformers.GPT2LMHeadModel (gelu_new, tied lm_head, no dropout)
   trained with AdamW, linear warmup and cosine decay, on random 256-token
   windows of the training stream (fixed seed), bfloat16 autocast; the
   checkpoint with the best held-out loss is kept.
4. Output.  A Hugging Face directory (config.json, generation_config.json,
   model.safetensors in F16, vocab.json, merges.txt, tokenizer_config.json,
   special_tokens_map.json), MODEL.md (the model card) and metrics.json.

Everything is seeded (--seed).  By default the length of the cosine decay is
fitted to --time-budget-min: planned at the end of the warmup from the measured
speed and re-planned at every evaluation (other jobs may share the cores), so
the weights depend on the machine's speed; metrics.json records the plan, and
`--schedule PLAN --time-budget-min 0` (the command in MODEL.md) replays it step
for step, as does `--steps N` for a plain cosine over N steps.  Bitwise-identical
weights also need the same library versions and kind of CPU.
`--trial` only measures the training speed of a few shapes; `--card-only`
redoes the example generations and MODEL.md of an existing model directory.
"""
import argparse
import copy
import datetime
import glob
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("RAYON_NUM_THREADS", "2")  # tokenizers' thread pool
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import ByteLevelBPETokenizer  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast  # noqa: E402

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
EOT = "<|endoftext|>"
ECCO_PROMPT = "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4."
SAMPLE_PROMPTS = [
    ECCO_PROMPT,
    "python3-numpy: Numerical Python adds a fast array facility to the Python language\n",
    "libssl3: Secure Sockets Layer toolkit - shared libraries\n",
    "fonts-dejavu-core: Vera font family derivate with additional characters\n",
    "golang-github-spf13-cobra-dev:",
    "This package contains the",
    "The GNU C Library",
]
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- corpus

def read_list_file(path):
    """Text of an apt lists file, decompressed by apt itself (lz4, gz, xz, ...)."""
    if path.endswith((".lz4", ".gz", ".xz", ".bz2", ".zst", ".lzma")):
        helper = "/usr/lib/apt/apt-helper"
        out = subprocess.run([helper, "cat-file", path], check=True, stdout=subprocess.PIPE).stdout
    else:
        with open(path, "rb") as f:
            out = f.read()
    return out.decode("utf-8", errors="replace")


def deb822_records(text):
    """Yields dicts of the fields of a deb822 file (continuation lines kept, newline-joined)."""
    rec, key = {}, None
    for line in text.split("\n"):
        if not line.strip():
            if rec:
                yield rec
            rec, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                rec[key] += "\n" + line
        else:
            key, _, val = line.partition(":")
            rec[key] = val.strip()
    if rec:
        yield rec


def decode_description(value):
    """(synopsis, long text) of a Description field, as Debian policy 5.6.13 reads it."""
    lines = value.split("\n")
    synopsis = lines[0].strip()
    paras, cur, verb = [], [], []  # cur: lines of the paragraph; verb: pending verbatim block

    def flush_verbatim():
        if verb:
            cur.extend(textwrap.dedent("\n".join(verb)).split("\n"))
            verb.clear()

    def flush_para():
        flush_verbatim()
        if cur:
            paras.append("\n".join(x.rstrip() for x in cur))
            cur.clear()

    flowing = False
    for raw in lines[1:]:
        line = raw[1:] if raw[:1] in (" ", "\t") else raw
        line = line.replace("\t", "    ").rstrip()
        if line == ".":
            flush_para()
            flowing = False
        elif line.startswith(" "):  # verbatim (policy: two or more leading spaces)
            verb.append(line)
            flowing = False
        elif line:
            flush_verbatim()
            line = re.sub(r" {2,}", " ", line.strip())  # "end.  Next" -> "end. Next"
            if flowing and cur:
                cur[-1] += " " + line
            else:
                cur.append(line)
            flowing = True
    flush_para()
    return synopsis, "\n\n".join(p for p in paras if p.strip())


def build_corpus(lists_dir, heldout_frac, seed):
    tr_files = sorted(glob.glob(os.path.join(lists_dir, "*_i18n_Translation-en*")))
    tr_files = [f for f in tr_files if not f.endswith((".diff", ".IndexDiff"))]
    pk_files = sorted(f for f in glob.glob(os.path.join(lists_dir, "*_Packages*"))
                      if "debian" in os.path.basename(f) and not f.endswith(".IndexDiff"))
    if not tr_files:
        sys.exit(f"no *_i18n_Translation-en* file in {lists_dir}: run tools/train_demo_model.sh "
                 "(it runs apt-get update with Acquire::Languages=en into that directory)")
    sources = []
    for f in tr_files + pk_files:
        with open(f, "rb") as fh:
            sources.append({"file": os.path.basename(f), "bytes": os.path.getsize(f),
                            "sha256": hashlib.sha256(fh.read()).hexdigest()})
    releases = []
    for f in sorted(glob.glob(os.path.join(lists_dir, "*_InRelease"))):
        rel = next((r for r in deb822_records(read_list_file(f)) if "Origin" in r), {})
        releases.append({k: rel.get(k, "").split("\n")[0] for k in ("Origin", "Suite", "Codename", "Version", "Date")})

    by_pkg = {}
    for f in tr_files:
        for rec in deb822_records(read_list_file(f)):
            if "Package" in rec and "Description-en" in rec and rec["Package"] not in by_pkg:
                by_pkg[rec["Package"]] = rec["Description-en"]
    n_translation = len(by_pkg)
    n_short_only = 0
    for f in pk_files:
        for rec in deb822_records(read_list_file(f)):
            name, desc = rec.get("Package"), rec.get("Description")
            if name and desc and name not in by_pkg:
                by_pkg[name] = desc
                n_short_only += 1

    docs, seen = [], set()
    for name in sorted(by_pkg):
        synopsis, body = decode_description(by_pkg[name])
        key = synopsis + "\n" + body
        if not synopsis or key in seen:
            continue
        seen.add(key)
        doc = f"{name}: {synopsis}" + (f"\n{body}" if body else "")
        docs.append(doc.replace(EOT, ""))
    random.Random(seed).shuffle(docs)
    n_held = max(1, int(round(len(docs) * heldout_frac)))
    info = {
        "sources": sources, "releases": releases,
        "packages_with_translation_en": n_translation, "packages_short_description_only": n_short_only,
        "packages": len(by_pkg), "documents": len(docs),
    }
    return docs[n_held:], docs[:n_held], info


# --------------------------------------------------------------------------- tokenizer

def train_tokenizer(train_docs, vocab_size, out_dir):
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(train_docs, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=[EOT], show_progress=False)
    os.makedirs(out_dir, exist_ok=True)
    tok.save_model(out_dir)
    return tok


def check_tokenizer(tok, tok_dir, texts):
    hf = GPT2TokenizerFast(vocab_file=os.path.join(tok_dir, "vocab.json"),
                           merges_file=os.path.join(tok_dir, "merges.txt"))
    vocab = json.load(open(os.path.join(tok_dir, "vocab.json"), encoding="utf-8"))
    assert EOT in vocab, "<|endoftext|> missing from vocab.json"
    assert hf.eos_token_id == vocab[EOT] == tok.token_to_id(EOT)
    n = 0
    for t in texts:
        a = tok.encode(t).ids
        b = hf(t)["input_ids"]
        if a != b:
            raise SystemExit(f"tokenizer mismatch on {t[:80]!r}: {a[:20]} vs {b[:20]}")
        n += len(a)
    return n


def encode_stream(tok, docs, eot_id):
    out = []
    for i in range(0, len(docs), 2048):
        for enc in tok.encode_batch(docs[i:i + 2048]):
            out.extend(enc.ids)
            out.append(eot_id)
    return np.asarray(out, dtype=np.uint16)


# --------------------------------------------------------------------------- model

def make_model(args, vocab_size, eot_id):
    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=args.seq_len, n_embd=args.n_embd, n_layer=args.n_layer,
        n_head=args.n_head, n_inner=None, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
        initializer_range=0.02, scale_attn_weights=True, use_cache=True,
        bos_token_id=eot_id, eos_token_id=eot_id, tie_word_embeddings=True)
    torch.manual_seed(args.seed)
    return GPT2LMHeadModel(cfg)


def count_params(model):
    return sum(p.numel() for p in model.parameters())  # tied lm_head counted once


def heldout_chunks(stream, seq_len, limit=None):
    """Non-overlapping windows: x = s[i:i+L], y = s[i+1:i+L+1], i = 0, L, 2L, ..."""
    n = (len(stream) - 1) // seq_len
    if limit is not None:
        n = min(n, limit)
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(stream[idx].astype(np.int64))


@torch.no_grad()
def evaluate(model, chunks, batch=16, autocast=False):
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, len(chunks), batch):
        c = chunks[i:i + batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(c[:, :-1]).logits
        lp = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                               c[:, 1:].reshape(-1), reduction="sum")
        tot += lp.item()
        cnt += c[:, 1:].numel()
    model.train()
    return tot / cnt


def unigram_loss(train_stream, targets, vocab_size):
    counts = np.bincount(train_stream.astype(np.int64), minlength=vocab_size).astype(np.float64)
    p = (counts + 1.0) / (counts.sum() + vocab_size)
    return float(-np.log(p[targets.reshape(-1).numpy()]).mean())


def parse_schedule(text):
    """"s0:T,s0:T,..." -> [(s0, T), ...]"""
    plan = [tuple(int(v) for v in item.split(":")) for item in text.split(",") if item]
    assert plan and all(s0 < T for s0, T in plan) and all(a[0] < b[0] for a, b in zip(plan, plan[1:]))
    return plan


def format_schedule(plan):
    return ",".join(f"{s0}:{T}" for s0, T in plan)


def cosine_progress(step, plan):
    """Progress p in [0, 1] of the cosine decay at `step`.  plan = [(s0, T), ...]: from step
    s0 on, p advances linearly so as to reach 1 at step T (the plan made at s0)."""
    p = 0.0
    for i, (s0, T) in enumerate(plan):
        nxt = plan[i + 1][0] if i + 1 < len(plan) else None
        if nxt is not None and step >= nxt:
            p += (1 - p) * (nxt - s0) / (T - s0)
        else:
            return min(1.0, p + (1 - p) * max(0, step - s0) / (T - s0))
    return p


def lr_at(step, plan, warmup, peak, floor_frac):
    """Linear warmup over `warmup` steps, then cosine decay from peak to floor_frac * peak."""
    if step < warmup or not plan:
        return peak * min(1.0, (step + 1) / warmup)
    t = cosine_progress(step, plan)
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def make_optimizer(model, args):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


def train_step(model, opt, x, args):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        logits = model(x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    opt.step()
    return loss.item()


def batch_sampler(stream, seq_len, batch, seed):
    g = np.random.default_rng(seed)
    hi = len(stream) - seq_len - 1
    offs = np.arange(seq_len + 1)[None, :]
    while True:
        starts = g.integers(0, hi, size=batch)[:, None]
        yield torch.from_numpy(stream[starts + offs].astype(np.int64))


def trial(args, train_stream, vocab_size, eot_id):
    """Tokens per second of training steps for a few shapes (no loss comparison)."""
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.trial_shapes.split(",")]
    for (L, C, H, B) in shapes:
        a = copy.copy(args)
        a.n_layer, a.n_embd, a.n_head, a.batch_size = L, C, H, B
        model = make_model(a, vocab_size, eot_id)
        opt = make_optimizer(model, a)
        it = batch_sampler(train_stream, a.seq_len, B, a.seed)
        for _ in range(2):
            train_step(model, opt, next(it), a)
        t = time.time()
        n = 0
        while time.time() - t < args.trial_seconds:
            train_step(model, opt, next(it), a)
            n += 1
        dt = (time.time() - t) / n
        np_ = count_params(model)
        log(f"trial n_layer={L} n_embd={C} n_head={H} batch={B} params={np_/1e6:.2f}M "
            f"bf16={a.bf16}: {dt:.3f} s/step, {B * a.seq_len / dt:.0f} tokens/s, "
            f"{B * a.seq_len / dt * args.time_budget_min * 60 / 1e6:.1f}M tokens in the budget")


# --------------------------------------------------------------------------- output

def save_model_dir(model, tok_dir, out_dir):
    if os.path.isdir(out_dir):
        for f in os.listdir(out_dir):
            p = os.path.join(out_dir, f)
            if os.path.isfile(p):
                os.remove(p)
    os.makedirs(out_dir, exist_ok=True)
    m16 = copy.deepcopy(model).to(torch.float16)
    m16.config.torch_dtype = torch.float16
    m16.save_pretrained(out_dir, safe_serialization=True)
    hf = GPT2TokenizerFast(vocab_file=os.path.join(tok_dir, "vocab.json"),
                           merges_file=os.path.join(tok_dir, "merges.txt"),
                           model_max_length=model.config.n_positions)
    hf.save_pretrained(out_dir, legacy_format=True)  # vocab.json, merges.txt, tokenizer_config.json, ...
    tj = os.path.join(out_dir, "tokenizer.json")
    if os.path.exists(tj):
        os.remove(tj)  # vocab.json + merges.txt are the tokenizer; keep the directory small
    for f in ("vocab.json", "merges.txt"):  # byte-identical to the trained files
        shutil.copyfile(os.path.join(tok_dir, f), os.path.join(out_dir, f))


def greedy_samples(model_dir, prompts, n_new):
    tok = GPT2TokenizerFast.from_pretrained(model_dir)
    model = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    out = []
    for p in prompts:
        ids = tok(p, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            g = model.generate(ids, max_new_tokens=n_new, do_sample=False,
                               pad_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        new = g[0, ids.shape[1]:].tolist()
        out.append({"prompt": p, "prompt_ids": ids[0].tolist(), "generated_ids": new,
                    "generated_text": tok.decode(new)})
    return out, model


def machine_name():
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores, {model}"


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))


def fmt_int(n):
    return f"{n:,}"


def write_model_card(out_dir, m):
    args = argparse.Namespace(**m["args"])
    samples = m["samples"]
    c = m["corpus"]
    tr = m["training"]
    md = []
    w = md.append
    w("# eccolo demo model: a small GPT-2 trained on Debian's package descriptions\n")
    w("This directory is eccolo's embedded demo model: a GPT-2-architecture language model "
      f"with {m['model']['params']/1e6:.2f} M parameters, trained from scratch in "
      f"{tr['train_seconds']/60:.0f} minutes on a 2-core CPU on the English package descriptions of Debian 12 "
      "(\"bookworm\"). It writes Debian-description-like English; it knows nothing else, and is "
      "meant for demonstrating and testing eccolo (saliency, activations, NMF, logit lens) with text "
      "that is not noise, not for any real use. It is a standard Hugging Face GPT-2 checkpoint "
      "(`GPT2LMHeadModel.from_pretrained` loads it).\n")
    w("## Files\n")
    w("| file | contents |\n|---|---|")
    for f in sorted(os.listdir(out_dir)):
        if f in ("MODEL.md",):
            continue
        w(f"| `{f}` | {fmt_int(os.path.getsize(os.path.join(out_dir, f)))} bytes |")
    w(f"\nTotal (with this card): about {m['dir_bytes']/1e6:.1f} MB. The weights are stored in F16; "
      "`lm_head` is tied to `transformer.wte` and not stored.\n")

    w("## Corpus\n")
    w("**Source.** The `Description-en` field of every package in Debian 12 `main`, as the Debian "
      "archive distributes it in `dists/bookworm/main/i18n/Translation-en` (Debian 12's `Packages` "
      "files carry only the one-line synopsis plus `Description-md5`; the full descriptions are in "
      "Translation-en). `tools/train_demo_model.sh` downloads these with apt itself "
      "(`apt-get update -o Acquire::Languages=en` into a private lists directory, signature-checked "
      "against the archive keyring that every Debian 12 machine has). "
      + ("Every package of the `Packages` file of the same update has a Translation-en entry, so it adds no "
         "text. " if c["packages_short_description_only"] == 0 else
         f"The synopses of the {c['packages_short_description_only']} packages of the `Packages` file of the "
         "same update that have no Translation-en entry are added. ")
      + "No other text is used.\n")
    w("Files used:\n")
    for s in c["sources"]:
        w(f"- `{s['file']}`: {fmt_int(s['bytes'])} bytes, sha256 `{s['sha256']}`")
    for r in c["releases"]:
        w(f"- release file: {r['Origin']} {r['Suite']} ({r['Codename']}) {r['Version']}, dated {r['Date']}")
    w("")
    w("**Processing.** Each description is decoded as Debian policy §5.6.13 defines the field (first line "
      "the synopsis; `.` lines are paragraph breaks; lines indented by two or more spaces are kept "
      "verbatim, with their common indentation removed; other lines are filled into one line per paragraph) "
      "and written as one document `<package>: <synopsis>\\n<paragraph>\\n\\n<paragraph>…`. Documents with "
      "the same description text (the binary packages of one source often share one) are kept once "
      "(first package name in sorted order), shuffled with seed "
      f"{args.seed} and split into {fmt_int(c['train_documents'])} training and "
      f"{fmt_int(c['heldout_documents'])} held-out documents ({args.heldout_frac:.0%}). In the token "
      "stream, every document is followed by `<|endoftext|>`.\n")
    w("| | documents | UTF-8 bytes | tokens (incl. one `<|endoftext|>` per document) |\n|---|---|---|---|")
    w(f"| training | {fmt_int(c['train_documents'])} | {fmt_int(c['train_bytes'])} | {fmt_int(c['train_tokens'])} |")
    w(f"| held-out | {fmt_int(c['heldout_documents'])} | {fmt_int(c['heldout_bytes'])} | {fmt_int(c['heldout_tokens'])} |")
    w(f"\n{fmt_int(c['packages'])} packages read ({fmt_int(c['packages_with_translation_en'])} with a "
      f"Translation-en entry, {fmt_int(c['packages_short_description_only'])} with a synopsis only), "
      f"{fmt_int(c['documents'])} distinct descriptions.\n")
    w("**Licences.** The package descriptions are part of the metadata of the Debian archive. Each "
      "description is written by the package's maintainer (often adapted from the upstream project's "
      "own description) and ships inside that package's `control` file, so it is covered by that "
      "package's licence; every package in Debian `main` is under a licence that meets the Debian Free "
      "Software Guidelines, which permit modification and redistribution. The Translation-en files "
      "themselves are compiled by the Debian Description Translation Project from those control files. "
      "There is no single licence statement covering the description texts as a collection, so this model "
      "(a derived work trained on some 60 000 such texts, under many different DFSG-free licences, "
      "copyleft ones such as the GPL among them) is offered on the understanding that these licences "
      "allow it; we have not checked each package's licence individually. The per-package licences "
      "are listed in `/usr/share/doc/<package>/copyright` of each package and at "
      "https://metadata.ftp-master.debian.org/changelogs/. This is a good-faith summary, not legal advice.\n")

    t = m["tokenizer"]
    w("## Tokenizer\n")
    w(f"Byte-level BPE (`tokenizers.ByteLevelBPETokenizer`, tokenizers {t['tokenizers_version']}) with "
      f"GPT-2's byte-to-unicode mapping and pre-tokenisation regex, no prefix space, trained on the training "
      f"documents only: {fmt_int(t['vocab_size'])} tokens (256 bytes, {fmt_int(t['merges'])} merges, and "
      f"`<|endoftext|>` = id {t['eot_id']}, its only special token), minimum pair frequency 2. Saved as "
      "GPT-2's `vocab.json` + `merges.txt`; transformers' `GPT2TokenizerFast` loaded from these two files "
      f"gives the same ids as the trained tokenizer on {fmt_int(t['check_texts'])} test texts "
      f"({fmt_int(t['check_tokens'])} tokens, held-out documents and edge cases). It encodes the training "
      f"text at {c['train_bytes']/max(1,c['train_tokens']-c['train_documents']):.2f} bytes per token.\n")

    a = m["model"]
    w("## Architecture\n")
    w(f"GPT-2 (`model_type: gpt2`): {a['n_layer']} layers, n_embd {a['n_embd']}, {a['n_head']} heads, "
      f"MLP {4*a['n_embd']}, n_positions {a['n_positions']}, vocabulary {a['vocab_size']}, activation "
      f"`gelu_new`, layer-norm epsilon 1e-5, tied input/output embeddings, no dropout. "
      f"**{fmt_int(a['params'])} parameters** ({fmt_int(a['params_non_embedding'])} outside the token and "
      f"position embeddings). `bos_token_id` = `eos_token_id` = {t['eot_id']} (`<|endoftext|>`).\n")

    w("## Training\n")
    w(f"- torch {m['versions']['torch']}, transformers {m['versions']['transformers']}, on {tr['machine']}, "
      f"`torch.set_num_threads({tr['threads']})`, {'bfloat16 autocast (weights and optimizer in float32)' if tr['bf16'] else 'float32'}.")
    w(f"- AdamW (β = 0.9, 0.95; weight decay {tr['weight_decay']} on matrices and embeddings, none on "
      f"biases and layer norms), peak learning rate {tr['lr']}, linear warmup over {tr['warmup_steps']} "
      f"steps, then cosine decay to {tr['lr_floor']:.0%} of the peak, reached at step {tr['steps_planned']}; "
      f"gradient norm clipped at {tr['grad_clip']}.")
    if not args.steps and not args.schedule:
        w(f"- The length of the decay was fitted to the {args.time_budget_min:g}-minute budget of the "
          "training loop: planned at the end of the warmup from the measured speed, and re-planned at "
          "every evaluation (about every "
          f"{args.eval_minutes:g} minutes) from the speed since the previous one, since other jobs shared "
          "the machine's two cores; the cosine's progress advances at the pace of the latest plan, so the "
          "learning rate stays continuous. The plan (`step:end-step` pairs, metrics.json "
          "`training.schedule`) is part of the reproduction command below.")
    w(f"- Batches of {tr['batch_size']} windows of {tr['seq_len']} + 1 tokens drawn at random offsets of "
      f"the training stream (numpy PCG64, seed {tr['seed']}): {fmt_int(tr['tokens_per_step'])} tokens per step.")
    w(f"- {fmt_int(tr['steps_done'])} steps, {fmt_int(tr['tokens_seen'])} tokens "
      f"({tr['tokens_seen']/c['train_tokens']:.2f} epochs), {tr['train_seconds']/60:.1f} minutes of training "
      f"({tr['tokens_per_second']:.0f} tokens/s on average), {m['total_seconds']/60:.1f} minutes for the whole "
      f"script{' (the time budget cut the schedule short)' if tr['stopped_by_budget'] else ''}. "
      f"The held-out loss was measured at steps {', '.join(str(x) for x in tr['eval_steps'])} on the first "
      f"{tr['eval_chunks']} held-out windows; the checkpoint with the best such loss (step {tr['best_step']}) "
      "is the one saved.")
    if args.selection_note:
        w(f"- Choice of the shape: {args.selection_note}")
    w("")

    e = m["eval"]
    w("## Results\n")
    w("Losses are mean cross-entropy in nats per token, with this tokenizer. The held-out set is the "
      f"held-out token stream cut into {fmt_int(e['heldout_windows'])} non-overlapping windows of "
      f"{tr['seq_len']} + 1 tokens; every token after the first of a window is predicted "
      f"({fmt_int(e['heldout_targets'])} predictions).\n")
    w("| | loss (nats/token) | perplexity | bits per byte |\n|---|---|---|---|")
    bpb = e["heldout_bytes_per_token"]
    for label, v, held in (("training loss (mean of the last 50 steps)", e["train_loss_last50"], False),
                           ("training split, F16 weights (first 128 windows)", e["train_loss_eval"], False),
                           ("**held-out, F16 weights as saved**", e["heldout_loss"], True),
                           ("held-out, F32 weights before rounding", e["heldout_loss_f32"], True),
                           ("**held-out, add-one unigram model** (training-split counts)",
                            e["unigram_heldout_loss"], True)):
        b = f"{v / math.log(2) / bpb:.3f}" if held else "–"
        w(f"| {label} | {v:.4f} | {math.exp(v):.1f} | {b} |")
    w(f"\nThe model's held-out loss is {e['unigram_heldout_loss'] - e['heldout_loss']:.2f} nats per token "
      "below the unigram model's. (Bits per byte use the held-out text's "
      f"{bpb:.3f} bytes per predicted token.)\n")

    w("## Example generations\n")
    w("Greedy (`do_sample=False`), up to 35 new tokens (stopping after `<|endoftext|>`), transformers with "
      "the F16 weights loaded as float32, as eccolo computes; strings in Python notation.\n")
    w("```")
    for s in samples:
        w(f"prompt:    {s['prompt']!r}\ngenerated: {s['generated_text']!r}\n")
    w("```\n")
    w("## Reproducing\n")
    w("On a fresh Debian 12 machine with network access, from a clone of eccolo:\n")
    w("```sh\n" + m["reproduce"] + "\n```\n")
    w("The script fetches the description files with apt (Debian updates them with point releases; the "
      "sha256 sums above identify the files used), creates `.venv-tools` with the versions in "
      "`tools/requirements.txt`, and writes this directory. All randomness is seeded (corpus shuffle, "
      "initialisation, batch offsets). `--schedule` replays the learning-rate plan of this run and "
      "`--time-budget-min 0` lifts the time limit, so the run does the same steps whatever the machine's "
      "speed; with the same description files, library versions and kind of CPU (bfloat16 matrix products "
      "may round differently on CPUs without AVX512-BF16) it gives the same weights, bit for bit (checked "
      "on small runs). `tools/train_demo_model.sh` without arguments trains afresh with a 54-minute budget, "
      "whose schedule then depends on the machine's speed.\n")
    with open(os.path.join(out_dir, "MODEL.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md))


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lists-dir", default=os.path.join(REPO, "build-demo-model", "apt", "lists"),
                    help="apt lists directory holding *_i18n_Translation-en* and *_Packages*")
    ap.add_argument("--work-dir", default=os.path.join(REPO, "build-demo-model"))
    ap.add_argument("--out", default=os.path.join(REPO, "models", "demo"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--heldout-frac", type=float, default=0.02)
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--n-layer", type=int, default=5)
    ap.add_argument("--n-embd", type=int, default=320)
    ap.add_argument("--n-head", type=int, default=5)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--lr-floor", type=float, default=0.1, help="final lr as a fraction of the peak")
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="bfloat16 autocast in training (2-3x faster on CPUs with AVX512-BF16/AMX)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=54.0,
                    help="wall-time budget of the training loop (evaluations included); 0: none")
    ap.add_argument("--steps", type=int, default=0,
                    help="number of steps (cosine schedule length); 0: derive it from the measured speed")
    ap.add_argument("--plan-margin", type=float, default=0.95,
                    help="adaptive schedule: plan for this fraction of the time left")
    ap.add_argument("--eval-minutes", type=float, default=4.0,
                    help="adaptive schedule: evaluate and re-plan about this often")
    ap.add_argument("--schedule", default="",
                    help="replay the decay plan of an earlier run (metrics.json training.schedule)")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop after this many steps without changing the schedule (replays a run "
                         "that the time budget stopped)")
    ap.add_argument("--eval-every", type=int, default=0, help="with --steps: evaluate every this many steps")
    ap.add_argument("--eval-chunks", type=int, default=48)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--trial", action="store_true", help="only measure the speed of --trial-shapes")
    ap.add_argument("--trial-shapes", default="4x256x4x16,6x256x4x16,4x384x6x16,6x384x6x16",
                    help="n_layer x n_embd x n_head x batch, comma-separated")
    ap.add_argument("--trial-seconds", type=float, default=20)
    ap.add_argument("--selection-note", default="")
    ap.add_argument("--max-docs", type=int, default=0, help="debug: use only this many documents")
    ap.add_argument("--card-only", action="store_true",
                    help="only redo the example generations and MODEL.md of an existing --out directory")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.card_only:
        # regenerate the samples and MODEL.md of an existing --out directory
        with open(os.path.join(args.out, "metrics.json"), encoding="utf-8") as f:
            m = json.load(f)
        m["samples"], _ = greedy_samples(args.out, SAMPLE_PROMPTS, 35)
        if args.selection_note:
            m["args"]["selection_note"] = m["training"]["selection_note"] = args.selection_note
        with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(m, f, indent=1, ensure_ascii=False)
        write_model_card(args.out, m)
        m["dir_bytes"] = dir_bytes(args.out)
        with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(m, f, indent=1, ensure_ascii=False)
        write_model_card(args.out, m)
        for s in m["samples"]:
            log(f"sample {s['prompt']!r} -> {s['generated_text']!r}")
        return
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)

    # 1. corpus
    train_docs, held_docs, cinfo = build_corpus(args.lists_dir, args.heldout_frac, args.seed)
    if args.max_docs:
        train_docs, held_docs = train_docs[:args.max_docs], held_docs[:max(20, args.max_docs // 50)]
    corpus_txt = os.path.join(args.work_dir, "corpus")
    os.makedirs(corpus_txt, exist_ok=True)
    for name, docs in (("train.txt", train_docs), ("heldout.txt", held_docs)):
        with open(os.path.join(corpus_txt, name), "w", encoding="utf-8") as f:
            f.write(EOT.join(docs))
    log(f"corpus: {cinfo['packages']} packages, {cinfo['documents']} distinct descriptions; "
        f"{len(train_docs)} training, {len(held_docs)} held-out documents; "
        f"{sum(len(d.encode()) for d in train_docs)/1e6:.1f} MB of training text")

    # 2. tokenizer
    tok_dir = os.path.join(args.work_dir, "tokenizer")
    tok = train_tokenizer(train_docs, args.vocab_size, tok_dir)
    eot_id = tok.token_to_id(EOT)
    vocab_size = tok.get_vocab_size()
    checks = held_docs[:200] + [
        ECCO_PROMPT, "  leading spaces,\ttabs\n\nand   runs  of spaces ", "naïve café – “quotes” 日本語 🙂",
        "python3-foo is a library. python3-", "It's we'll they're I'd 123456 1,234.5 x86_64 C++ <|end",
        "text" + EOT + "more text",
    ]
    n_check_tok = check_tokenizer(tok, tok_dir, checks)
    log(f"tokenizer: {vocab_size} tokens, <|endoftext|> = {eot_id}; GPT2TokenizerFast agrees on "
        f"{len(checks)} texts ({n_check_tok} tokens)")
    train_stream = encode_stream(tok, train_docs, eot_id)
    held_stream = encode_stream(tok, held_docs, eot_id)
    log(f"tokens: {len(train_stream)} training, {len(held_stream)} held-out")

    if args.trial:
        trial(args, train_stream, vocab_size, eot_id)
        return

    # 3. model
    model = make_model(args, vocab_size, eot_id)
    n_params = count_params(model)
    n_emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    log(f"model: n_layer={args.n_layer} n_embd={args.n_embd} n_head={args.n_head} "
        f"params={n_params} ({n_params - n_emb} non-embedding)")
    opt = make_optimizer(model, args)
    held_eval = heldout_chunks(held_stream, args.seq_len, args.eval_chunks)
    batches = batch_sampler(train_stream, args.seq_len, args.batch_size, args.seed)
    if args.time_budget_min <= 0 and not (args.steps or args.schedule):
        sys.exit("--time-budget-min 0 (no limit) needs --steps or --schedule")
    budget = args.time_budget_min * 60 if args.time_budget_min > 0 else float("inf")
    tokens_per_step = args.batch_size * args.seq_len

    # measure the speed of a step and of an evaluation to plan the schedule
    t_train0 = time.time()
    warmup = args.warmup_steps
    # The schedule: warmup, then cosine decay whose pace is `plan` (see cosine_progress).
    #  --steps N:         plan [(warmup, N)], evaluation every --eval-every steps;
    #  --schedule S:      replays the plan of an earlier run (evaluations at its re-plan steps);
    #  neither (default): the plan is made at the end of the warmup from the measured speed and
    #                     re-made at every evaluation (about every --eval-minutes) so that the
    #                     decay ends inside the budget even when the machine's speed changes
    #                     (other jobs on the cores).  metrics.json records it for --schedule.
    eval_every = args.eval_every
    if args.schedule:
        plan = parse_schedule(args.schedule)
        eval_steps = {s0 for s0, _ in plan[1:]}
    elif args.steps:
        plan = [(warmup, args.steps)]
        eval_every = eval_every or max(50, args.steps // 12)
        eval_steps = set(range(eval_every, args.steps, eval_every))
    else:
        plan, eval_steps = [], set()
    adaptive = not plan
    losses = []
    step = 0
    best = (float("inf"), -1, None)
    history = []
    stopped_by_budget = False
    t_seg, s_seg = None, None  # start time and step of the current pace measurement

    def do_eval():
        nonlocal best
        hl = evaluate(model, held_eval, autocast=args.bf16)
        n = max(1, step - (history[-1]["step"] if history else 0))
        history.append({"step": step, "train_loss": float(np.mean(losses[-n:])), "heldout_loss": hl,
                        "minutes": (time.time() - t_train0) / 60})
        mark = ""
        if hl < best[0]:
            best = (hl, step, copy.deepcopy(model.state_dict()))
            mark = " (best)"
        log(f"eval step {step}: held-out loss {hl:.4f}{mark}")

    def replan():
        step_s = (time.time() - t_seg) / (step - s_seg)  # includes the evaluations of the segment
        remaining = budget - (time.time() - t_train0) - 5
        T = step + max(1, int(args.plan_margin * remaining / step_s))
        plan.append((step, T))
        log(f"pace {step_s:.3f} s/step ({tokens_per_step/step_s:.0f} tokens/s), {remaining/60:.1f} min left: "
            f"decay ends at step {T}")

    while (not plan or step < plan[-1][1]) and not (args.max_steps and step >= args.max_steps):
        if time.time() - t_train0 > budget:
            stopped_by_budget = True
            log(f"time budget reached at step {step}")
            break
        if step == min(5, warmup - 1):
            t_seg, s_seg = time.time(), step
        if adaptive and step == warmup:
            replan()
            t_seg, s_seg, t_eval = time.time(), step, time.time()
        lr = lr_at(step, plan, warmup, args.lr, args.lr_floor)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        losses.append(train_step(model, opt, next(batches), args))
        step += 1
        if step % args.log_every == 0:
            el = time.time() - t_train0
            log(f"step {step}/{plan[-1][1] if plan else '?'} loss {np.mean(losses[-args.log_every:]):.4f} "
                f"lr {lr:.2e} {step * tokens_per_step / el:.0f} tok/s elapsed {el/60:.1f} min")
        if (plan and step == plan[-1][1]) or step == args.max_steps:
            do_eval()
        elif (adaptive and step > warmup and time.time() - t_eval > args.eval_minutes * 60
              and budget - (time.time() - t_train0) > 150):
            do_eval()   # evaluations happen exactly at the re-plan steps, so --schedule replays them
            replan()
            t_seg, s_seg, t_eval = time.time(), step, time.time()
        elif step in eval_steps:
            do_eval()
    train_seconds = time.time() - t_train0
    if not history or history[-1]["step"] != step:
        do_eval()
    model.load_state_dict(best[2])
    log(f"training done: {step} steps in {train_seconds/60:.1f} min; best held-out (subset) "
        f"{best[0]:.4f} at step {best[1]}")

    # 4. output + final evaluation of the saved (F16) weights
    held_all = heldout_chunks(held_stream, args.seq_len)
    hl_f32 = evaluate(model, held_all)
    save_model_dir(model, tok_dir, args.out)
    samples, m16 = greedy_samples(args.out, SAMPLE_PROMPTS, 35)
    hl16 = evaluate(m16, held_all)
    tl16 = evaluate(m16, heldout_chunks(train_stream, args.seq_len, 128))
    uni = unigram_loss(train_stream, held_all[:, 1:], vocab_size)
    held_bytes_per_tok = (sum(len(d.encode()) for d in held_docs)) / len(held_stream)
    log(f"held-out loss: model F16 {hl16:.4f} (F32 {hl_f32:.4f}), unigram {uni:.4f}")
    for s in samples:
        log(f"sample {s['prompt']!r} -> {s['generated_text']!r}")

    merges = sum(1 for line in open(os.path.join(tok_dir, "merges.txt"), encoding="utf-8")
                 if line.strip() and not line.startswith("#version"))
    reproduce = "tools/train_demo_model.sh " + " ".join(
        [f"--seed {args.seed}", f"--vocab-size {args.vocab_size}", f"--n-layer {args.n_layer}",
         f"--n-embd {args.n_embd}", f"--n-head {args.n_head}", f"--batch-size {args.batch_size}",
         f"--lr {args.lr:g}", f"--lr-floor {args.lr_floor:g}", f"--warmup-steps {args.warmup_steps}",
         f"--schedule {format_schedule(plan)}", f"--eval-chunks {args.eval_chunks}",
         "--time-budget-min 0"] + ([] if args.bf16 else ["--no-bf16"])
        + ([f"--max-steps {step}"] if stopped_by_budget or args.max_steps else []))
    m = {
        "seed": args.seed,
        "corpus": dict(cinfo, train_documents=len(train_docs), heldout_documents=len(held_docs),
                       train_bytes=sum(len(d.encode()) for d in train_docs),
                       heldout_bytes=sum(len(d.encode()) for d in held_docs),
                       train_tokens=int(len(train_stream)), heldout_tokens=int(len(held_stream))),
        "tokenizer": {"type": "byte-level BPE", "vocab_size": vocab_size, "merges": merges, "eot_id": eot_id,
                      "check_texts": len(checks), "check_tokens": n_check_tok,
                      "tokenizers_version": tokenizers.__version__},
        "model": {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head,
                  "n_positions": args.seq_len, "vocab_size": vocab_size, "params": n_params,
                  "params_non_embedding": n_params - n_emb, "dtype": "F16"},
        "training": {"seed": args.seed, "steps_planned": plan[-1][1] if plan else 0, "steps_done": step,
                     "schedule": format_schedule(plan), "eval_steps": [h["step"] for h in history],
                     "stopped_by_budget": stopped_by_budget, "best_step": best[1],
                     "batch_size": args.batch_size, "seq_len": args.seq_len, "tokens_per_step": tokens_per_step,
                     "tokens_seen": step * tokens_per_step, "lr": args.lr, "lr_floor": args.lr_floor,
                     "warmup_steps": warmup, "weight_decay": args.weight_decay, "grad_clip": args.grad_clip,
                     "bf16": args.bf16, "threads": args.threads, "time_budget_min": args.time_budget_min,
                     "train_seconds": round(train_seconds, 1),
                     "tokens_per_second": step * tokens_per_step / train_seconds,
                     "eval_chunks": len(held_eval),
                     "machine": machine_name(),
                     "selection_note": args.selection_note, "history": history},
        "eval": {"train_loss_last50": float(np.mean(losses[-50:])), "train_loss_eval": tl16,
                 "heldout_loss": hl16, "heldout_loss_f32": hl_f32, "unigram_heldout_loss": uni,
                 "heldout_windows": int(len(held_all)), "heldout_targets": int(held_all[:, 1:].numel()),
                 "heldout_bytes_per_token": held_bytes_per_tok, "loss_unit": "nats per token"},
        "samples": samples,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__,
                     "safetensors": safetensors.__version__, "python": platform.python_version()},
        "reproduce": reproduce,
        "args": {k: v for k, v in vars(args).items() if k not in ("lists_dir", "work_dir", "out")},
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    }
    m["total_seconds"] = round(time.time() - T0, 1)
    with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(m, f, indent=1, ensure_ascii=False)
    write_model_card(args.out, dict(m, dir_bytes=dir_bytes(args.out) + 12000))
    m["dir_bytes"] = dir_bytes(args.out)
    with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(m, f, indent=1, ensure_ascii=False)
    write_model_card(args.out, m)
    log(f"wrote {args.out}: {m['dir_bytes']/1e6:.2f} MB; total {m['total_seconds']/60:.1f} min")
    if m["dir_bytes"] > 20e6:
        sys.exit("model directory exceeds 20 MB")


if __name__ == "__main__":
    main()
