/* eccolo tokenize: the ids Hugging Face's encode(text) gives with the
 * family's default special tokens (from tests/fixtures/tokenizer_families.json),
 * a text file read byte for byte, empty text, --no-special, and errors. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Run eccolo tokenize --json; returns the parsed output. */
static cJSON *tokenize_json(const char *const *args)
{
    char *out, *err;
    int rc = run_cli(&out, &err, args);
    cr_assert_eq(rc, 0, "exit code %d; stderr:\n%s", rc, err);
    cr_assert_str_empty(err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "not JSON: %s", out);
    free(out), free(err);
    return j;
}

static void expect_ids(const cJSON *j, const cJSON *want, const char *what)
{
    int n_got, n_want;
    int32_t *got = json_int_array(cJSON_GetObjectItem(j, "ids"), &n_got), *w = json_int_array(want, &n_want);
    cr_expect(n_got == n_want && memcmp(got, w, sizeof *got * (size_t)n_got) == 0, "%s: %d ids, HF %d", what, n_got,
              n_want);
    free(got), free(w);
}

/* Every corpus line of the families whose template transformers follows: --text-file gives HF's ids. */
Test(cli_tokenize, matches_hf_encode)
{
    cJSON *fx = fixture_json("tokenizer_families.json");
    const char *families[] = {"llama3", "qwen2", "gemma", "pythia", "mistral-v0.3"};
    char *dir = test_tmpdir("tok"), *file = ecc_path_join(dir, "text.txt");
    for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s", families[f]);
        char *model = fixture_path(rel);
        const cJSON *line, *entry = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(fx, "families"),
                                                                            families[f]), "lines")->child;
        int k = 0;
        cJSON_ArrayForEach(line, cJSON_GetObjectItem(fx, "corpus"))
        {
            const cJSON *want = cJSON_GetObjectItem(entry, "hf");
            if (k++ % 3 == 0) { /* a third of the lines, to keep the test short */
                write_file(file, line->valuestring, strlen(line->valuestring));
                cJSON *j = tokenize_json(ARGS("tokenize", "--model", model, "--text-file", file, "--json"));
                char what[160];
                snprintf(what, sizeof what, "%s line %d", families[f], k - 1);
                if (strcmp(families[f], "mistral-v0.3") != 0 || k - 1 != 33) /* [INST]: see tokenizers/README.md */
                    expect_ids(j, want, what);
                cJSON_Delete(j);
            }
            entry = entry->next;
        }
        free(model);
    }
    free(file), free(dir);
    cJSON_Delete(fx);
}

Test(cli_tokenize, empty_text_and_bos)
{
    char *llama = fixture_path("tokenizers/llama2"), *qwen = fixture_path("tokenizers/qwen2");
    cJSON *j = tokenize_json(ARGS("tokenize", "--model", llama, "--text", "", "--json"));
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), 1); /* just <s> */
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0)->valueint, 1);
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "added_positions"), 0)->valueint, 0);
    cJSON_Delete(j);
    j = tokenize_json(ARGS("tokenize", "--model", qwen, "--text", "", "--json"));
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), 0); /* Qwen adds nothing */
    cJSON_Delete(j);
    /* --no-special: <|im_start|> is text, more than one token */
    j = tokenize_json(ARGS("tokenize", "--model", qwen, "--text", "<|im_start|>", "--json", "--no-special"));
    cr_expect_gt(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), 1);
    cJSON_Delete(j);
    j = tokenize_json(ARGS("tokenize", "--model", qwen, "--text", "<|im_start|>", "--json"));
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "ids")), 1);
    cJSON_Delete(j);
    free(llama), free(qwen);
}

Test(cli_tokenize, errors)
{
    char *out, *err, *qwen = fixture_path("tokenizers/qwen2"), *dir = test_tmpdir("tok");
    char *bad = ecc_path_join(dir, "bad.txt");
    write_file(bad, "ok\xC3(", 4);
    const char *const *cases[] = {
        ARGS("tokenize", "--model", qwen),
        ARGS("tokenize", "--model", qwen, "--text", "a", "--text-file", bad),
        ARGS("tokenize", "--model", qwen, "--text-file", bad),
        ARGS("tokenize", "--model", dir, "--text", "a"),
        ARGS("tokenize", "--bogus"),
    };
    const char *want[] = {"no text", "only one of", "invalid UTF-8 at byte 2", "no tokenizer found", "unknown option"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_cli(&out, &err, cases[i]);
        cr_expect_eq(rc, 2, "case %zu: exit %d", i, rc);
        cr_expect(strstr(err, want[i]) && strncmp(err, "eccolo: error: ", 15) == 0, "case %zu: %s", i, err);
        free(out), free(err);
    }
    free(bad), free(dir), free(qwen);
}

static cJSON *read_run(const char *dir)
{
    char *p = ecc_path_join(dir, "run.json"), *text;
    size_t len;
    cr_assert_eq(ecc_read_file(p, 1 << 24, &text, &len), ECC_OK, "%s", ecc_last_error());
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert(j);
    free(text), free(p);
    return j;
}

/* A model whose tokenizer adds a BOS: a text prompt gets it (and run.json
 * says so, and its text is what was typed), --prompt-ids do not. */
Test(cli_tokenize, generate_adds_the_bos_of_text_prompts)
{
    char *src = fixture_path("tiny-gpt2"), *dir = test_tmpdir("bos"), *out_a = test_tmpdir("runa");
    char *out_b = test_tmpdir("runb"), *cfg = ecc_path_join(dir, "tokenizer_config.json");
    copy_dir(src, dir);
    const char *tc = "{\"add_bos_token\": true, \"bos_token\": \"<|endoftext|>\", \"tokenizer_class\": \"GPT2Tokenizer\"}";
    write_file(cfg, tc, strlen(tc));
    char *o, *e;
    int rc = run_cli(&o, &e, ARGS("generate", "--model", dir, "--prompt", "Hello world", "--max-new-tokens", "2",
                                  "--out", out_a, "--quiet", "--device", "cpu"));
    cr_assert_eq(rc, 0, "%s", e);
    cr_expect(strncmp(o, "Hello world", 11) == 0, "printed text starts with the BOS: %s", o);
    free(o), free(e);
    cJSON *run = read_run(out_a);
    const cJSON *ids = cJSON_GetObjectItem(run, "token_ids"), *added = cJSON_GetObjectItem(run, "added_tokens");
    cr_expect_eq(cJSON_GetArrayItem(ids, 0)->valueint, 1024); /* <|endoftext|> */
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(added, "positions")), 1);
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(added, "positions"), 0)->valueint, 0);
    cr_expect(strstr(cJSON_GetObjectItem(added, "by")->valuestring, "tokenizer_config.json"));
    cr_expect(strncmp(cJSON_GetObjectItem(run, "text")->valuestring, "Hello world", 11) == 0);
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(run, "tokens"), 0)->valuestring, "<|endoftext|>");
    cJSON_Delete(run);
    rc = run_cli(&o, &e, ARGS("generate", "--model", dir, "--prompt-ids", "100,200", "--max-new-tokens", "1", "--out",
                              out_b, "--quiet", "--device", "cpu"));
    cr_assert_eq(rc, 0, "%s", e);
    free(o), free(e);
    run = read_run(out_b);
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(run, "token_ids"), 0)->valueint, 100); /* as given */
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(run, "added_tokens"), "positions")), 0);
    cJSON_Delete(run);
    cJSON *j = tokenize_json(ARGS("tokenize", "--model", dir, "--text", "Hello world", "--json"));
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "ids"), 0)->valueint, 1024);
    cJSON_Delete(j);
    free(src), free(dir), free(out_a), free(out_b), free(cfg);
}
