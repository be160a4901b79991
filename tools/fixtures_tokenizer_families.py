#!/usr/bin/env python3
"""Tokenizers of each supported family's pipeline, and Hugging Face's ids for a
conformance corpus, for tests/model/test_tokenizer_families.c.

Writes tests/fixtures/tokenizers/<name>/{tokenizer.json,tokenizer_config.json}
and tests/fixtures/tokenizer_families.json. Which files are real and which are
trained look-alikes is written into tests/fixtures/tokenizers/README.md:

  real (Apache-2.0, from the PyPI wheel mistral-common, pinned below by SHA-256):
    mistral-v0.1   tokenizer.model.v1 (Mistral 7B v0.1, 32000 pieces) converted with
                   transformers' LlamaConverter, legacy=True: Llama 2's pipeline
    mistral-v0.3   tokenizer.model.v3 (Mistral 7B v0.3, 32768 pieces), legacy=False:
                   Metaspace(prepend_scheme=first, split=false)
  real (Apache-2.0, qwen.tiktoken from the PyPI wheel dashscope 2.0.2, pinned by SHA-256):
    qwen2.5-real16k  the first 16384 ranks of Qwen's BPE (Qwen 1/2/2.5/3 share its 151643 regular
                   tokens) converted as transformers converts tiktoken files, with Qwen 2.5's pipeline
                   and added tokens; the fixture also records tiktoken's own ids
  trained look-alikes (tokenizers' BpeTrainer on the text below, with exactly the
  JSON settings of the real family's tokenizer.json: normalizer, pre-tokenizer,
  model flags, post-processor, decoder, added tokens and tokenizer_config.json):
    pythia         GPT-NeoX-20B / Pythia: NFC, ByteLevel, whitespace-run added tokens
    llama2         Llama 2: Prepend + Replace normalizers, byte fallback, <s> template
    llama3         Llama 3: Split(\\p{N}{1,3} pattern) + ByteLevel, ignore_merges, <|begin_of_text|>
    qwen2          Qwen 2/2.5/3: NFC, Split((?i:...) pattern) + ByteLevel, im_start/im_end
    gemma          Gemma 2/3: Replace(" ", "▁"), Split(" ", MergedWithPrevious), byte fallback, <bos>
    coverage       not a family: NFKD, a Replace regex, Digits, Split(String) MergedWithNext,
                   Metaspace(always, split) and its decoder, to exercise the rest
    coverage2      not a family: NFKC/Prepend/NFD/NFC, Split Removed, MergedWithPrevious with $,
                   Contiguous inverted, ByteLevel with a prefix space after Split, single_word
                   tokens, a BOS+EOS template, a Replace(regex) decoder

For each corpus line the fixture records, from tokenizers (Tokenizer.from_file):
ids with the file's template ("file"), without it ("plain"), with special tokens
read as text ("nospecial"), decode(file ids) ("decode"), and from transformers'
AutoTokenizer on the directory ("hf": what the family's tokenizer's encode(text)
returns; it follows tokenizer_config.json's add_bos_token).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import tokenizers
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MISTRAL_WHEEL = "mistral-common==1.13.1"
MISTRAL_FILES = {
    "tokenizer.model.v1": "mistral_common/data/tokenizer.model.v1",
    "tokenizer.model.v3": "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3",
}
DASHSCOPE_WHEEL = "dashscope==2.0.2"
DASHSCOPE_SHA = "0602d1800f7433bdb7953560986eaf5146454ed3988636c0a91963ba24e74258"
QWEN_TIKTOKEN_SHA = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
QWEN_RANKS = 16384  # the first ranks of Qwen's BPE: a real, smaller BPE (what training stopped there gives)
QWEN25_ADDED = [("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
                ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
                ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
                ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
                ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
                ("<|repo_name|>", False), ("<|file_sep|>", False)]
LICENSES = {  # English training text: Debian's copies of these licences
    "/usr/share/common-licenses/GPL-3": "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986",
    "/usr/share/common-licenses/Apache-2.0": "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
}
LLAMA3_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

MULTILINGUAL = [
    "Tiếng Việt là ngôn ngữ của người Việt. Những người Nguyễn được học tiếng Việt.",
    "Le café de la façade est naïf; l'été à Paris, où les élèves étudient.",
    "Straße, Größe, Übung, Ärger, schön und Öl. Ångström och Øre.",
    "Русский язык: привет, мир! Ελληνικά: γειά σου κόσμε. עברית: שלום עולם. العربية: مرحبا بالعالم",
    "中文分词测试，日本語のテキスト、한국어 문장입니다. 東京と大阪。",
    "हिन्दी भाषा में नमस्ते दुनिया। ภาษาไทย สวัสดีชาวโลก",
    "emoji 😀🎉👍🏽 👨‍👩‍👧 🇫🇷🇯🇵 ❤️ ✨",
    "def f(x):\n    return x**2 + 1  # square\n\nfor i in range(10):\n\tprint(i)\n",
    "int main(void) { int a[3] = {1, 2, 3}; return a[0] * 42 - 7; }",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 42 100 1234 2024 3.14159 1,000,000 ٣٤٥ ½ ① Ⅻ",
]

CORPUS = [
    "Hello world",
    "Frameworks for Machine Learning include: 1. TensorFlow\n2. PyTorch\n3.Scikit-learn\n4.",
    "I'm sure you'll see they've done what we'd said; it's John's and I'd've",
    "DON'T SHOUT, IT'S fine 'tis, it'ſ and it'\u212a",
    "",
    " ",
    "x",
    "  two leading spaces",
    "trailing spaces   ",
    "many     spaces  between   words" + " " * 30 + "end",
    "line one\nline two\n\n\nafter blank lines\n",
    "crlf line\r\nnext line\r\n\r\n",
    "   \n  \n\t\t\t   \n  x",
    "\n" * 12,
    "digits 1234567890123 3.14159265358979 007 1,000,000 -2e10 12:30",
    "٣٤٥ ½ ① ⅫⅢ 𝟙𝟚𝟛 ¹²³",
    "café naïve résumé Ångström façade Øre straße",
    "combining: e\u0301 a\u0300 n\u0303 o\u0308\u0304 q\u0307\u0323",
    "NFC: \u212b \u2126 \u1e9b\u0323 \u1100\u1161\u11a8 \uac00\u11a8 \u0958 \u2000",
    "NFKC: \ufb01 \u2460 \u00bd \uff21\uff42 \u3000 \u00b2 \u2122 \u017f",
    "Tiếng Việt: người, những, được, Nguyễn, Việt Nam",
    "Vie\u0302\u0323t Nam, Nguye\u0302\u0303n (decomposed)",
    "中文分词测试，日本語のテキスト、한국어 문장",
    "Русский, Ελληνικά, עברית, العربية, हिन्दी, ภาษาไทย",
    "emoji: 😀🎉👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ❤️",
    "def f(x):\n    return x**2 + 1  # square\n",
    "for (int i = 0; i < n; i++) { a[i] = b[i] * 2; }",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "https://example.com/path?q=1&r=two#frag",
    "\u00a0non-breaking\u00a0space, em\u2003space, nel\u0085x, ideographic\u3000space, mvs\u180ex",
    "zero\u200bwidth and\u2028line separator",
    "Mixed123numbers456and789letters",
    "!!! ??? ... --- ___ *** ### ▁▁ ▁x",
    "<0x41> <unk> [INST] hi [/INST]",
    "a<|endoftext|>b <|endoftext|>  <|endoftext|>",
    "<s>Hello</s> <s> world </s>",
    "Hello<s>world",
    "<|begin_of_text|>Hi<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhey",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n<tool_call>x</tool_call>",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos><pad>",
    "a <mask> b<mask>c  <mask>, xyz xyzw wxyz; end\nsecond line\nthird",
]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def training_text():
    lines = []
    for path, want in LICENSES.items():
        assert sha256(path) == want, f"{path} is not the expected text"
        lines += [l for l in open(path, encoding="utf-8").read().split("\n") if l.strip()]
    return lines + MULTILINGUAL * 20 + CORPUS


def train(tok, vocab_size, special, alphabet=None, limit=None):
    kw = dict(vocab_size=vocab_size, special_tokens=special, show_progress=False, min_frequency=2)
    if alphabet is not None:
        kw["initial_alphabet"] = alphabet
    if limit is not None:
        kw["limit_alphabet"] = limit
    tok.train_from_iterator(training_text(), trainers.BpeTrainer(**kw))
    return tok


def special(content, normalized=False, special=True):
    return AddedToken(content, special=special, normalized=normalized, lstrip=False, rstrip=False, single_word=False)


def template(bos, bos_id):
    return processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                         special_tokens=[(bos, bos_id)])


def byte_tokens():
    return [f"<0x{b:02X}>" for b in range(256)]


def make_pythia():
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    train(tok, 1500, ["<|endoftext|>", "<|padding|>"], pre_tokenizers.ByteLevel.alphabet())
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.add_special_tokens([special("<|endoftext|>"), special("<|padding|>")])
    # GPT-NeoX-20B adds runs of 24 down to 2 spaces as (normalized, not special) tokens
    tok.add_tokens([AddedToken(" " * n, special=False, normalized=True) for n in range(24, 1, -1)])
    cfg = {"add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
           "unk_token": "<|endoftext|>", "tokenizer_class": "GPTNeoXTokenizer"}
    return tok, cfg


def make_llama2(vocab_size=1500, name="<s>"):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    train(tok, vocab_size, ["<unk>", "<s>", "</s>"] + byte_tokens(), limit=150)
    tok.pre_tokenizer = None  # Llama 2's tokenizer.json: no pre-tokenizer, a legacy normalizer
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.post_processor = template("<s>", 1)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([special("<unk>"), special("<s>"), special("</s>")])
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "legacy": True, "tokenizer_class": "LlamaTokenizer", "padding_side": "left"}
    return tok, cfg


def make_llama3():
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    train(tok, 1500, [], pre_tokenizers.ByteLevel.alphabet())
    tok.add_special_tokens([special(s) for s in specials])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True), template("<|begin_of_text|>", bos)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "clean_up_tokenization_spaces": True,
           "model_input_names": ["input_ids", "attention_mask"], "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, cfg


def make_qwen2():
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    train(tok, 1500, [], pre_tokenizers.ByteLevel.alphabet())
    tok.add_special_tokens([special("<|endoftext|>"), special("<|im_start|>"), special("<|im_end|>")])
    tok.add_tokens([special("<tool_call>", special=False), special("</tool_call>", special=False)])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    cfg = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
           "errors": "replace", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer",
           "unk_token": None}
    return tok, cfg


def make_gemma():
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    heads = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>", "<end_of_turn>"]
    train(tok, 1500, heads + byte_tokens(), limit=150)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous", invert=False)
    tok.post_processor = template("<bos>", 2)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([special(s) for s in heads])
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<bos>", "eos_token": "<eos>",
           "pad_token": "<pad>", "unk_token": "<unk>", "tokenizer_class": "GemmaTokenizer"}
    return tok, cfg


def make_coverage():
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Replace(Regex(r"\s+"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split("-", behavior="merged_with_next", invert=False),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)])
    train(tok, 800, ["<unk>"] + byte_tokens()[:200], limit=120)  # some bytes lack a token: <unk> then
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")])
    tok.add_special_tokens([AddedToken("[SEP]", special=True, normalized=False, lstrip=True, rstrip=True)])
    tok.add_tokens([AddedToken("cafe\u0301", special=False, normalized=True)])
    return tok, {"tokenizer_class": "PreTrainedTokenizerFast"}


def make_coverage2():
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Prepend("^"), normalizers.NFD(),
                                           normalizers.NFC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[,;]"), behavior="removed", invert=False),
        pre_tokenizers.Split(Regex(r"\w+$"), behavior="merged_with_previous", invert=False),
        pre_tokenizers.Split(Regex(r"\s"), behavior="contiguous", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)])
    train(tok, 900, ["<s>", "</s>"], pre_tokenizers.ByteLevel.alphabet())
    tok.add_special_tokens([special("<s>"), special("</s>"),
                            AddedToken("<mask>", special=True, normalized=False, lstrip=True, single_word=True)])
    tok.add_tokens([AddedToken("xyz", special=False, normalized=True, single_word=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s>:0 $A:0 </s>:0", pair="<s>:0 $A:0 </s>:0 $B:1",
                                                       special_tokens=[("<s>", 0), ("</s>", 1)])
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace(Regex(r"\^"), "")])
    return tok, {"tokenizer_class": "PreTrainedTokenizerFast"}


def fetch_qwen(tmp):
    """Qwen's BPE ranks (qwen.tiktoken, the 151643 regular tokens of Qwen 1/2/2.5/3) from the dashscope wheel (Apache-2.0)."""
    d = os.path.join(tmp, "dashscope")
    os.makedirs(d, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", DASHSCOPE_WHEEL, "-d", d], check=True)
    whl = os.path.join(d, [f for f in os.listdir(d) if f.endswith(".whl")][0])
    assert sha256(whl) == DASHSCOPE_SHA, "the dashscope wheel is not the pinned one"
    with zipfile.ZipFile(whl) as z:
        data = z.read("dashscope/resources/qwen.tiktoken")
    assert hashlib.sha256(data).hexdigest() == QWEN_TIKTOKEN_SHA
    lines = [l for l in data.decode().split("\n") if l][:QWEN_RANKS]
    path = os.path.join(tmp, "qwen-prefix.tiktoken")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_qwen_real(tiktoken_file):
    """Qwen 2.5's pipeline over the first QWEN_RANKS of Qwen's real BPE, converted the way transformers converts
    tiktoken files; its special tokens follow the regular ones, in Qwen 2.5's order."""
    from transformers.convert_slow_tokenizer import TikTokenConverter
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    vocab, merges = TikTokenConverter(vocab_file=tiktoken_file, pattern=QWEN2_PATTERN).extract_vocab_merges_from_model(
        tiktoken_file)
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in QWEN25_ADDED])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    ranks = load_tiktoken_bpe(tiktoken_file)
    specials = {t: len(ranks) + i for i, (t, _) in enumerate(QWEN25_ADDED)}
    enc = tiktoken.Encoding("qwen-prefix", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    cfg = {"add_prefix_space": False, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
           "errors": "replace", "split_special_tokens": False, "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}
    return tok, cfg, enc


def fetch_mistral(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", MISTRAL_WHEEL, "-d", tmp], check=True)
    whl = os.path.join(tmp, [f for f in os.listdir(tmp) if f.endswith(".whl")][0])
    out = {}
    with zipfile.ZipFile(whl) as z:
        for name, member in MISTRAL_FILES.items():
            out[name] = os.path.join(tmp, name)
            with open(out[name], "wb") as f:
                f.write(z.read(member))
    return out


def make_mistral(model_file, legacy):
    """What transformers 4's LlamaConverter wrote for Mistral (its v5 converter path is broken for this):
    the pieces as a BPE vocabulary, merges ordered by piece score, control pieces as special tokens."""
    import sentencepiece as spm
    from transformers.tokenization_utils_base import generate_merges
    from transformers.convert_slow_tokenizer import import_protobuf

    sp = spm.SentencePieceProcessor(model_file=model_file)
    proto = import_protobuf().ModelProto()
    proto.ParseFromString(open(model_file, "rb").read())
    vocab = {p.piece: i for i, p in enumerate(proto.pieces)}
    scores = {p.piece: p.score for p in proto.pieces}
    merges = generate_merges(vocab, scores)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=proto.trainer_spec.unk_piece, fuse_unk=True,
                               byte_fallback=True, dropout=None))
    tok.add_tokens([AddedToken(p.piece, normalized=False, special=p.type == 3)
                    for p in proto.pieces if p.type in (3, 4)])
    if legacy:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = template("<s>", 1)  # what LlamaTokenizerFast wrote into Mistral's tokenizer.json
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "legacy": legacy, "tokenizer_class": "LlamaTokenizer"}
    return tok, cfg, sp


def references(name, d, sp=None):
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    nospecial = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    nospecial.encode_special_tokens = True
    hf = transformers.AutoTokenizer.from_pretrained(d)
    lines, disagree = [], 0
    for text in CORPUS:
        file_ids = tok.encode(text).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        hf_ids = hf.encode(text)
        disagree += hf_ids != file_ids
        entry = {"file": file_ids, "plain": plain, "nospecial": nospecial.encode(text, add_special_tokens=False).ids,
                 "hf": hf_ids, "decode": tok.decode(file_ids, skip_special_tokens=False),
                 "decode_plain": tok.decode(plain, skip_special_tokens=False)}
        if sp is not None and hasattr(sp, "encode_ordinary"):  # Qwen's real BPE: tiktoken itself
            entry["tiktoken"] = sp.encode(text, allowed_special="all")
        elif sp is not None:  # the real tokenizer: SentencePiece itself
            entry["sentencepiece"] = sp.encode(text)
        lines.append(entry)
    print(f"  {name}: {len(tok.get_vocab())} ids; transformers differs from tokenizers+template on {disagree} lines")
    return {"n_vocab": max(tok.get_vocab().values()) + 1, "lines": lines}


def main():
    out = {"tokenizers_version": tokenizers.__version__, "transformers_version": transformers.__version__,
           "corpus": CORPUS, "families": {}}
    base = os.path.join(ROOT, "tokenizers")
    makers = {"pythia": make_pythia, "llama2": make_llama2, "llama3": make_llama3, "qwen2": make_qwen2,
              "gemma": make_gemma, "coverage": make_coverage, "coverage2": make_coverage2}
    with tempfile.TemporaryDirectory() as tmp:
        real = fetch_mistral(tmp)
        for name, model_file, legacy in (("mistral-v0.1", real["tokenizer.model.v1"], True),
                                         ("mistral-v0.3", real["tokenizer.model.v3"], False)):
            tok, cfg, sp = make_mistral(model_file, legacy)
            d = os.path.join(base, name)
            os.makedirs(d, exist_ok=True)
            tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
            json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
            out["families"][name] = references(name, d, sp)
        tok, cfg, enc = make_qwen_real(fetch_qwen(tmp))
        d = os.path.join(base, "qwen2.5-real16k")
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
        out["families"]["qwen2.5-real16k"] = references("qwen2.5-real16k", d, enc)
    for name, make in makers.items():
        tok, cfg = make()
        d = os.path.join(base, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        json.dump(cfg, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=1)
        out["families"][name] = references(name, d)
    with open(os.path.join(ROOT, "tokenizer_families.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")).replace('{"file"', '\n{"file"'))


if __name__ == "__main__":
    main()
