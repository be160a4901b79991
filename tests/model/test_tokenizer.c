/* The GPT-2 tokenizer: ids identical to Hugging Face's on the conformance
 * corpus (tests/fixtures/tokenizer_corpus.json, from tools/fixtures_tokenizer.py),
 * lossless decoding, display strings and partial flags, and errors on
 * malformed files and input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/tokenizer.h"
#include "util.h"

typedef enum form { FORM_BPE, FORM_JSON, FORM_DIR } form;

static ecc_tokenizer *load(const char *name, form f)
{
    char rel[256];
    ecc_tokenizer *t = NULL;
    ecc_status s;
    snprintf(rel, sizeof rel, "%s/vocab.json", name);
    char *vocab = fixture_path(rel);
    snprintf(rel, sizeof rel, "%s/merges.txt", name);
    char *merges = fixture_path(rel);
    snprintf(rel, sizeof rel, "%s/tokenizer.json", name);
    char *tj = fixture_path(rel), *dir = fixture_path(name);
    if (f == FORM_BPE)
        s = ecc_tokenizer_load_bpe(&t, vocab, merges);
    else if (f == FORM_JSON)
        s = ecc_tokenizer_load_json(&t, tj);
    else
        s = ecc_tokenizer_load_dir(&t, dir);
    cr_assert_eq(s, ECC_OK, "loading %s: %s", name, ecc_last_error());
    free(vocab), free(merges), free(tj), free(dir);
    return t;
}

static int32_t *encode(const ecc_tokenizer *t, const char *text, int *n)
{
    int32_t *ids;
    cr_assert_eq(ecc_tokenizer_encode(t, text, strlen(text), &ids, n), ECC_OK, "%s", ecc_last_error());
    return ids;
}

static char *decode(const ecc_tokenizer *t, const int32_t *ids, int n)
{
    char *text;
    size_t len;
    cr_assert_eq(ecc_tokenizer_decode(t, ids, n, &text, &len), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(len, strlen(text));
    return text;
}

/* Every corpus line encodes to HF's ids and decodes back; the decode cases
 * (ids that are not valid UTF-8 on their own) match HF's text. */
static void check_corpus(const char *name, form f)
{
    cJSON *fx = fixture_json("tokenizer_corpus.json");
    const cJSON *corpus = cJSON_GetObjectItem(fx, "corpus");
    const cJSON *tk = cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "tokenizers"), name);
    cr_assert(corpus && tk);
    ecc_tokenizer *t = load(name, f);
    cr_expect_eq(ecc_tokenizer_n_vocab(t), cJSON_GetObjectItem(tk, "n_vocab")->valueint);
    cr_expect_eq(ecc_tokenizer_eot(t), cJSON_GetObjectItem(tk, "eot")->valueint);

    const cJSON *want_ids = cJSON_GetObjectItem(tk, "ids")->child, *line;
    int line_no = 0;
    cJSON_ArrayForEach(line, corpus)
    {
        cr_assert(want_ids, "%s: fewer id lists than corpus lines", name);
        int n_want, n_got;
        int32_t *want = json_int_array(want_ids, &n_want), *got = encode(t, line->valuestring, &n_got);
        int k = 0;
        while (k < n_want && k < n_got && want[k] == got[k])
            k++;
        cr_expect(k == n_want && k == n_got,
                  "%s (form %d) corpus line %d (\"%s\"): first difference at position %d: got %d, want %d "
                  "(%d vs %d ids)",
                  name, (int)f, line_no, line->valuestring, k, k < n_got ? got[k] : -1, k < n_want ? want[k] : -1,
                  n_got, n_want);
        char *back = decode(t, got, n_got);
        cr_expect_str_eq(back, line->valuestring, "%s corpus line %d does not round-trip", name, line_no);
        free(back), free(got), free(want);
        want_ids = want_ids->next;
        line_no++;
    }
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(tk, "decode"))
    {
        int n;
        int32_t *ids = json_int_array(cJSON_GetObjectItem(c, "ids"), &n);
        char *text = decode(t, ids, n);
        cr_expect_str_eq(text, cJSON_GetObjectItem(c, "text")->valuestring, "%s: decode of %d ids (first %d)", name,
                         n, ids[0]);
        free(text), free(ids);
    }
    ecc_tokenizer_free(t);
    cJSON_Delete(fx);
}

Test(tokenizer, gpt2_vocab_merges_matches_hf) { check_corpus("gpt2-tokenizer", FORM_BPE); }
Test(tokenizer, gpt2_dir_matches_hf) { check_corpus("gpt2-tokenizer", FORM_DIR); }
Test(tokenizer, small_vocab_merges_matches_hf) { check_corpus("small-tokenizer", FORM_BPE); }
Test(tokenizer, small_tokenizer_json_matches_hf) { check_corpus("small-tokenizer", FORM_JSON); }
Test(tokenizer, small_dir_matches_hf) { check_corpus("small-tokenizer", FORM_DIR); }

/* Newer tokenizer.json files write merges as [a, b] arrays. */
Test(tokenizer, tokenizer_json_merges_as_pairs)
{
    cJSON *j = fixture_json("small-tokenizer/tokenizer.json");
    cJSON *merges = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges"), *pairs = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        char *a = ecc_strdup(m->valuestring), *sp = strchr(a, ' ');
        *sp = '\0';
        const char *ab[2] = {a, sp + 1};
        cJSON_AddItemToArray(pairs, cJSON_CreateStringArray(ab, 2));
        free(a);
    }
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(j, "model"), "merges", pairs);
    char *dir = test_tmpdir("tok"), *path = ecc_path_join(dir, "tokenizer.json"), *text = cJSON_PrintUnformatted(j);
    write_file(path, text, strlen(text));
    ecc_tokenizer *a, *b = load("small-tokenizer", FORM_JSON);
    cr_assert_eq(ecc_tokenizer_load_json(&a, path), ECC_OK, "%s", ecc_last_error());
    const char *probe = "Frameworks for Machine Learning include: 1. TensorFlow <|endoftext|> café";
    int na, nb;
    int32_t *ia = encode(a, probe, &na), *ib = encode(b, probe, &nb);
    cr_assert_eq(na, nb);
    cr_assert_arr_eq(ia, ib, sizeof(int32_t) * (size_t)na);
    free(ia), free(ib), free(text), free(path), free(dir);
    ecc_tokenizer_free(a), ecc_tokenizer_free(b);
    cJSON_Delete(j);
}

Test(tokenizer, token_bytes)
{
    ecc_tokenizer *t = load("gpt2-tokenizer", FORM_BPE);
    size_t len;
    const uint8_t *b = ecc_tokenizer_token_bytes(t, 995, &len);
    cr_assert(b && len == 6 && memcmp(b, " world", 6) == 0);
    b = ecc_tokenizer_token_bytes(t, 50256, &len);
    cr_assert(b && len == 13 && memcmp(b, "<|endoftext|>", 13) == 0);
    cr_assert_null(ecc_tokenizer_token_bytes(t, 50257, &len));
    cr_assert_eq(len, 0);
    cr_assert_null(ecc_tokenizer_token_bytes(t, -1, &len));
    ecc_tokenizer_free(t);
}

/* Encode text, then check each token's partial flag (want: '0'/'1' per token). */
static void check_partial(const ecc_tokenizer *t, const char *text, const char *want)
{
    int n;
    int32_t *ids = encode(t, text, &n);
    char **display;
    uint8_t *partial;
    cr_assert_eq(ecc_tokenizer_display(t, ids, n, &display, &partial), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq((size_t)n, strlen(want), "\"%s\": %d tokens, expected %zu", text, n, strlen(want));
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        cr_expect_eq(partial[i], want[i] - '0', "\"%s\" token %d ('%s'): partial %d", text, i, display[i], partial[i]);
        size_t len;
        const uint8_t *b = ecc_tokenizer_token_bytes(t, ids[i], &len);
        if (ecc_utf8_valid((const char *)b, len)) /* valid tokens display as their own text */
            cr_expect(strlen(display[i]) == len && memcmp(display[i], b, len) == 0);
        at += len;
    }
    cr_expect_eq(at, strlen(text));
    ecc_tokenizer_display_free(display, n);
    free(partial), free(ids);
}

Test(tokenizer, display_and_partial)
{
    ecc_tokenizer *t = load("gpt2-tokenizer", FORM_BPE);
    check_partial(t, "Hello world", "00");
    check_partial(t, "Mixed123numbers", "01111"); /* M ixed 123 n umbers */
    check_partial(t, "café", "011");              /* c af é: é is a letter */
    check_partial(t, "a, b", "000");
    /* 😀 is two tokens, neither valid UTF-8 alone: partial, displayed as U+FFFD */
    int n;
    int32_t *ids = encode(t, "😀", &n);
    char **display;
    uint8_t *partial;
    cr_assert_eq(n, 2);
    cr_assert_eq(ecc_tokenizer_display(t, ids, n, &display, &partial), ECC_OK);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(partial[i], 1);
        cr_expect_str_eq(display[i], "\xEF\xBF\xBD");
    }
    ecc_tokenizer_display_free(display, n);
    free(partial), free(ids);
    /* a word split in several tokens: the continuations are partial */
    ids = encode(t, " Tokenization", &n);
    cr_assert_geq(n, 2);
    cr_assert_eq(ecc_tokenizer_display(t, ids, n, &display, &partial), ECC_OK);
    cr_expect_str_eq(display[0], " Token");
    cr_expect_eq(partial[0], 0);
    for (int i = 1; i < n; i++)
        cr_expect_eq(partial[i], 1, "token %d '%s'", i, display[i]);
    ecc_tokenizer_display_free(display, n);
    free(partial), free(ids);
    int32_t bad = 50257;
    cr_expect_eq(ecc_tokenizer_display(t, &bad, 1, &display, &partial), ECC_ERR_INPUT);
    ecc_tokenizer_free(t);
}

/* Long words, long runs of spaces and digits: the O(n log n) merge and PCRE2
 * must cope, and everything round-trips. */
Test(tokenizer, long_inputs)
{
    ecc_tokenizer *t = load("gpt2-tokenizer", FORM_BPE);
    const char *units[] = {"a", " ", "7", "!", "é", "😀", "ab ", "\n"};
    size_t total = 200000;
    char *text = malloc(total + 8);
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
        size_t len = 0, ul = strlen(units[u]);
        while (len + ul <= total)
            memcpy(text + len, units[u], ul), len += ul;
        text[len] = '\0';
        int n;
        int32_t *ids = encode(t, text, &n);
        cr_assert_gt(n, 0);
        char *back = decode(t, ids, n);
        cr_expect(strcmp(back, text) == 0, "unit '%s' does not round-trip", units[u]);
        free(back), free(ids);
    }
    free(text);
    ecc_tokenizer_free(t);
}

Test(tokenizer, empty_text)
{
    ecc_tokenizer *t = load("small-tokenizer", FORM_JSON);
    int32_t *ids;
    int n = -1;
    cr_assert_eq(ecc_tokenizer_encode(t, "", 0, &ids, &n), ECC_OK);
    cr_assert_eq(n, 0);
    char *text = decode(t, ids, 0);
    cr_assert_str_eq(text, "");
    free(text), free(ids);
    ecc_tokenizer_free(t);
}

static void expect_encode_error(const ecc_tokenizer *t, const char *text, size_t len, const char *msg)
{
    int32_t *ids = (int32_t *)1;
    int n = 1;
    cr_expect_eq(ecc_tokenizer_encode(t, text, len, &ids, &n), ECC_ERR_INPUT);
    cr_expect(strstr(ecc_last_error(), msg), "error \"%s\" lacks \"%s\"", ecc_last_error(), msg);
    cr_expect(ids == NULL && n == 0);
}

Test(tokenizer, invalid_utf8_input)
{
    ecc_tokenizer *t = load("small-tokenizer", FORM_BPE);
    expect_encode_error(t, "ab\xC3(", 4, "at byte 2");
    expect_encode_error(t, "\xC0\xAF", 2, "at byte 0");         /* overlong */
    expect_encode_error(t, "x\xED\xA0\x80", 4, "at byte 1");    /* surrogate */
    expect_encode_error(t, "xy\xF4\x90\x80\x80", 6, "at byte 2"); /* > U+10FFFF */
    expect_encode_error(t, "abc\xE2\x82", 5, "at byte 3");      /* truncated */
    expect_encode_error(t, "\x80", 1, "at byte 0");
    ecc_tokenizer_free(t);
}

Test(tokenizer, decode_errors_and_replacement)
{
    ecc_tokenizer *t = load("gpt2-tokenizer", FORM_BPE);
    char *text = (char *)1;
    int32_t bad[] = {15496, 50257};
    cr_expect_eq(ecc_tokenizer_decode(t, bad, 2, &text, NULL), ECC_ERR_INPUT);
    cr_expect(strstr(ecc_last_error(), "ids[1] = 50257"), "%s", ecc_last_error());
    cr_expect_null(text);
    bad[0] = -3;
    cr_expect_eq(ecc_tokenizer_decode(t, bad, 1, &text, NULL), ECC_ERR_INPUT);
    /* the token of each single byte, to decode arbitrary byte strings */
    int32_t byte_tok[256];
    for (int32_t id = 0, found = 0; id < 50257 && found < 256; id++) {
        size_t len;
        const uint8_t *b = ecc_tokenizer_token_bytes(t, id, &len);
        if (len == 1)
            byte_tok[b[0]] = id, found++;
    }
    static const struct {
        const char *bytes, *want;
    } cases[] = {
        {"\xF0\x9F\x98", "\xEF\xBF\xBD"},                               /* truncated: one U+FFFD */
        {"\xE0\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},       /* overlong: one per byte */
        {"\xED\xA0\x80x", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx"},     /* surrogate */
        {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xE2\x82(", "\xEF\xBF\xBD("},
        {"a\xC3\xA9\xFF", "a\xC3\xA9\xEF\xBF\xBD"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int32_t ids[8];
        int n = 0;
        for (const char *p = cases[c].bytes; *p; p++)
            ids[n++] = byte_tok[(uint8_t)*p];
        text = decode(t, ids, n);
        cr_expect_str_eq(text, cases[c].want, "case %zu", c);
        free(text);
    }
    ecc_tokenizer_free(t);
}

/* ---- malformed files ---- */

static char *write_tmp(const char *dir, const char *name, const char *content)
{
    char *path = ecc_path_join(dir, name);
    write_file(path, content, strlen(content));
    return path;
}

/* A vocab.json of the 256 byte symbols (GPT-2's first 256 ids) plus extra entries. */
static char *byte_vocab(const char *extra)
{
    cJSON *full = fixture_json("small-tokenizer/vocab.json"), *v = cJSON_CreateObject();
    const cJSON *e;
    cJSON_ArrayForEach(e, full) if (e->valueint < 256) cJSON_AddNumberToObject(v, e->string, e->valueint);
    char *text = cJSON_PrintUnformatted(v), *out = malloc(strlen(text) + strlen(extra) + 2);
    text[strlen(text) - 1] = '\0'; /* drop the closing brace */
    sprintf(out, "%s%s}", text, extra);
    free(text);
    cJSON_Delete(full), cJSON_Delete(v);
    return out;
}

static void expect_bpe_error(const char *vocab, const char *merges, ecc_status code, const char *msg)
{
    char *dir = test_tmpdir("tok");
    char *vp = write_tmp(dir, "vocab.json", vocab), *mp = write_tmp(dir, "merges.txt", merges);
    ecc_tokenizer *t = (ecc_tokenizer *)1;
    cr_expect_eq(ecc_tokenizer_load_bpe(&t, vp, mp), code, "vocab %.40s / merges %.40s: %s", vocab, merges,
                 ecc_last_error());
    cr_expect(strstr(ecc_last_error(), msg), "error \"%s\" lacks \"%s\"", ecc_last_error(), msg);
    cr_expect(strstr(ecc_last_error(), dir), "error \"%s\" does not name the file", ecc_last_error());
    cr_expect_null(t);
    free(vp), free(mp), free(dir);
}

Test(tokenizer, malformed_vocab_and_merges)
{
    char *ok = byte_vocab(",\"ab\":256,\"<|endoftext|>\":257");
    expect_bpe_error("{\"a\": 1,", "", ECC_ERR_FORMAT, "invalid JSON");
    expect_bpe_error("[1, 2]", "", ECC_ERR_FORMAT, "not a JSON object");
    expect_bpe_error("{}", "", ECC_ERR_FORMAT, "empty");
    expect_bpe_error("{\"a\": 1.5}", "", ECC_ERR_FORMAT, "not an integer");
    expect_bpe_error("{\"a\": -1}", "", ECC_ERR_FORMAT, "not an integer");
    expect_bpe_error("{\"a\": 1e300}", "", ECC_ERR_FORMAT, "not an integer");
    expect_bpe_error("{\"a\": \"1\"}", "", ECC_ERR_FORMAT, "not an integer");
    expect_bpe_error("{\"a\": 0, \"b\": 0}", "", ECC_ERR_FORMAT, "id 0 is given to two tokens");
    expect_bpe_error("{\"a\": 0, \"a\": 1}", "", ECC_ERR_FORMAT, "appears twice");
    expect_bpe_error("{\"a b\": 0}", "", ECC_ERR_FORMAT, "outside GPT-2's byte alphabet");
    expect_bpe_error("{\"a\": 0}", "", ECC_ERR_FORMAT, "lacks the byte-level symbol");
    expect_bpe_error(ok, "#version: 0.2\na b\nb yz\n", ECC_ERR_FORMAT, "line 3: 'b yz' refers to 'yz'");
    expect_bpe_error(ok, "#version: 0.2\n\na c\n", ECC_ERR_FORMAT, "line 3: 'a c' refers to 'ac'");
    expect_bpe_error(ok, "a b c\n", ECC_ERR_FORMAT, "line 1: expected two tokens");
    expect_bpe_error(ok, "ab\n", ECC_ERR_FORMAT, "line 1: expected two tokens");
    expect_bpe_error(ok, "a \n", ECC_ERR_FORMAT, "line 1: expected two tokens");

    /* the same vocabulary with good merges loads, and <|endoftext|> is special */
    char *dir = test_tmpdir("tok");
    char *vp = write_tmp(dir, "vocab.json", ok), *mp = write_tmp(dir, "merges.txt", "#version: 0.2\r\na b\r\n\r\n");
    ecc_tokenizer *t;
    cr_assert_eq(ecc_tokenizer_load_bpe(&t, vp, mp), ECC_OK, "%s", ecc_last_error());
    int n;
    int32_t *ids = encode(t, "abc<|endoftext|>", &n);
    cr_assert_eq(n, 3);
    cr_expect(ids[0] == 256 && ids[2] == 257 && ecc_tokenizer_eot(t) == 257 && ecc_tokenizer_n_vocab(t) == 258);
    free(ids), free(vp), free(mp), free(dir), free(ok);
    ecc_tokenizer_free(t);
}

static void expect_json_error(const char *content, ecc_status code, const char *msg)
{
    char *dir = test_tmpdir("tok"), *path = write_tmp(dir, "tokenizer.json", content);
    ecc_tokenizer *t = (ecc_tokenizer *)1;
    cr_expect_eq(ecc_tokenizer_load_dir(&t, dir), code, "%.60s: %s", content, ecc_last_error());
    cr_expect(strstr(ecc_last_error(), msg), "error \"%s\" lacks \"%s\"", ecc_last_error(), msg);
    cr_expect(strstr(ecc_last_error(), "tokenizer.json"), "error \"%s\" does not name the file", ecc_last_error());
    cr_expect_null(t);
    free(path), free(dir);
}

#define BYTELEVEL "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false}"

/* A tokenizer.json with the given vocabulary, merges and added tokens (JSON texts). */
static void make_doc(char doc[65536], const char *vocab, const char *merges, const char *added)
{
    snprintf(doc, 65536, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": %s}, \"added_tokens\": %s, %s}",
             vocab, merges, added, BYTELEVEL);
}

Test(tokenizer, malformed_tokenizer_json)
{
    expect_json_error("{\"model\": ", ECC_ERR_FORMAT, "invalid JSON");
    expect_json_error("{}", ECC_ERR_FORMAT, "expected an object \"model\"");
    expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}, " BYTELEVEL "}", ECC_ERR_UNSUPPORTED,
                      "model.type is not BPE");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}", ECC_ERR_UNSUPPORTED, "not ByteLevel");
    char *v = byte_vocab(",\"ab\":256"), doc[65536];
    make_doc(doc, v, "[\"a b\", \"a q\"]", "[]");
    expect_json_error(doc, ECC_ERR_FORMAT, "model.merges[1] refers to 'aq'");
    make_doc(doc, v, "[[\"a\"]]", "[]");
    expect_json_error(doc, ECC_ERR_FORMAT, "model.merges[0] is not");
    make_doc(doc, v, "[]", "[{\"id\": 3}]");
    expect_json_error(doc, ECC_ERR_FORMAT, "added_tokens[0] needs");
    make_doc(doc, v, "[]", "[{\"id\": 256, \"content\": \"[X]\"}]");
    expect_json_error(doc, ECC_ERR_FORMAT, "which the vocabulary gives to another token");

    /* added tokens outside the byte alphabet are fine, and split out first */
    make_doc(doc, v, "[\"a b\"]", "[{\"id\": 300, \"content\": \"<b é>\"}, {\"id\": 301, \"content\": \"<b\"}]");
    char *dir = test_tmpdir("tok"), *path = write_tmp(dir, "tokenizer.json", doc);
    ecc_tokenizer *t;
    cr_assert_eq(ecc_tokenizer_load_json(&t, path), ECC_OK, "%s", ecc_last_error());
    cr_expect_eq(ecc_tokenizer_n_vocab(t), 302);
    cr_expect_eq(ecc_tokenizer_eot(t), -1);
    int n;
    int32_t *ids = encode(t, "ab<b é>ab<b", &n);
    cr_assert_eq(n, 4);
    cr_expect(ids[0] == 256 && ids[1] == 300 && ids[2] == 256 && ids[3] == 301);
    char *text = decode(t, ids, n);
    cr_expect_str_eq(text, "ab<b é>ab<b");
    free(text), free(ids), free(path), free(dir), free(v);
    ecc_tokenizer_free(t);
}

Test(tokenizer, missing_files)
{
    char *dir = test_tmpdir("tok");
    ecc_tokenizer *t = (ecc_tokenizer *)1;
    cr_expect_eq(ecc_tokenizer_load_dir(&t, dir), ECC_ERR_IO);
    cr_expect(strstr(ecc_last_error(), "no tokenizer found: expected tokenizer.json, or vocab.json and merges.txt"),
              "%s", ecc_last_error());
    cr_expect(strstr(ecc_last_error(), dir));
    cr_expect_null(t);
    char *vp = write_tmp(dir, "vocab.json", "{}"), *mp = ecc_path_join(dir, "merges.txt");
    cr_expect_eq(ecc_tokenizer_load_dir(&t, dir), ECC_ERR_IO); /* vocab.json alone is not enough */
    cr_expect_eq(ecc_tokenizer_load_bpe(&t, mp, mp), ECC_ERR_IO);
    cr_expect(strstr(ecc_last_error(), "merges.txt: cannot open"), "%s", ecc_last_error());
    free(vp), free(mp), free(dir);
}
