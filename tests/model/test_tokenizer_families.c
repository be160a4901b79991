/* Tokenizers of every family's pipeline against Hugging Face: for each
 * tokenizer under tests/fixtures/tokenizers/ (real files and trained
 * look-alikes, see its README.md) and each line of the conformance corpus,
 * the ids tokenizers 0.23 gives (with the template, without it, with special
 * tokens read as text) and its decode, all from
 * tools/fixtures_tokenizer_families.py. Where transformers 5 gives other ids
 * (it rebuilds Llama/Mistral's legacy pipeline), only the families and lines
 * listed below may differ. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "model/tokenizer.h"
#include "util.h"

static ecc_tokenizer *load_family(const char *name, int dir)
{
    char rel[256];
    snprintf(rel, sizeof rel, dir ? "tokenizers/%s" : "tokenizers/%s/tokenizer.json", name);
    char *path = fixture_path(rel);
    ecc_tokenizer *t = NULL;
    ecc_status s = dir ? ecc_tokenizer_load_dir(&t, path) : ecc_tokenizer_load_json(&t, path);
    cr_assert_eq(s, ECC_OK, "loading %s: %s", path, ecc_last_error());
    free(path);
    return t;
}

/* got == want, or a message naming the first difference. */
static void expect_ids(const int32_t *got, int n_got, const cJSON *want_json, const char *family, int line,
                       const char *text, const char *what)
{
    int n_want;
    int32_t *want = json_int_array(want_json, &n_want);
    int k = 0;
    while (k < n_want && k < n_got && want[k] == got[k])
        k++;
    cr_expect(k == n_want && k == n_got,
              "%s line %d (\"%.40s\") %s: first difference at %d: got %d, want %d (%d vs %d ids)", family, line, text,
              what, k, k < n_got ? got[k] : -1, k < n_want ? want[k] : -1, n_got, n_want);
    free(want);
}

static int32_t *encode(const ecc_tokenizer *t, const char *text, unsigned flags, int *n)
{
    int32_t *ids;
    cr_assert_eq(ecc_tokenizer_encode_flags(t, text, strlen(text), flags, &ids, n), ECC_OK, "%s", ecc_last_error());
    return ids;
}

static void expect_decode(const ecc_tokenizer *t, const cJSON *ids_json, const char *want, const char *family,
                          int line)
{
    int n;
    int32_t *ids = json_int_array(ids_json, &n);
    char *text;
    size_t len;
    cr_assert_eq(ecc_tokenizer_decode(t, ids, n, &text, &len), ECC_OK, "%s", ecc_last_error());
    cr_expect(len == strlen(want) && memcmp(text, want, len) == 0, "%s line %d: decode gives \"%s\", HF \"%s\"",
              family, line, text, want);
    free(text), free(ids);
}

static void check_family(const char *name)
{
    cJSON *fx = fixture_json("tokenizer_families.json");
    const cJSON *corpus = cJSON_GetObjectItem(fx, "corpus");
    const cJSON *fam = cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "families"), name);
    cr_assert(corpus && fam, "no fixture for %s", name);
    ecc_tokenizer *t = load_family(name, 0), *td = load_family(name, 1);
    cr_expect_eq(ecc_tokenizer_n_vocab(t), cJSON_GetObjectItem(fam, "n_vocab")->valueint);
    const cJSON *entry = cJSON_GetObjectItem(fam, "lines")->child, *line;
    int line_no = 0;
    cJSON_ArrayForEach(line, corpus)
    {
        const char *text = line->valuestring;
        int n;
        int32_t *ids = encode(t, text, ECC_TOK_ADD_SPECIAL, &n);
        expect_ids(ids, n, cJSON_GetObjectItem(entry, "file"), name, line_no, text, "encode (template)");
        free(ids);
        ids = encode(td, text, ECC_TOK_ADD_SPECIAL, &n); /* with tokenizer_config.json: what transformers adds */
        expect_ids(ids, n, cJSON_GetObjectItem(entry, "file"), name, line_no, text, "encode (directory)");
        free(ids);
        ids = encode(t, text, 0, &n);
        expect_ids(ids, n, cJSON_GetObjectItem(entry, "plain"), name, line_no, text, "encode (no template)");
        free(ids);
        ids = encode(t, text, ECC_TOK_SPECIAL_AS_TEXT, &n);
        expect_ids(ids, n, cJSON_GetObjectItem(entry, "nospecial"), name, line_no, text, "encode (special as text)");
        free(ids);
        expect_decode(t, cJSON_GetObjectItem(entry, "file"), cJSON_GetObjectItem(entry, "decode")->valuestring, name,
                      line_no);
        expect_decode(t, cJSON_GetObjectItem(entry, "plain"), cJSON_GetObjectItem(entry, "decode_plain")->valuestring,
                      name, line_no);
        entry = entry->next;
        line_no++;
    }
    ecc_tokenizer_free(t), ecc_tokenizer_free(td);
    cJSON_Delete(fx);
}

Test(tokenizer_families, pythia) { check_family("pythia"); }
Test(tokenizer_families, llama2) { check_family("llama2"); }
Test(tokenizer_families, mistral_v01_real) { check_family("mistral-v0.1"); }
Test(tokenizer_families, mistral_v03_real) { check_family("mistral-v0.3"); }
Test(tokenizer_families, llama3) { check_family("llama3"); }
Test(tokenizer_families, qwen2) { check_family("qwen2"); }
Test(tokenizer_families, qwen25_real16k) { check_family("qwen2.5-real16k"); }
Test(tokenizer_families, gemma) { check_family("gemma"); }
Test(tokenizer_families, coverage) { check_family("coverage"); }
Test(tokenizer_families, coverage2) { check_family("coverage2"); }
