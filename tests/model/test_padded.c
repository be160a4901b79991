/* Padded vocabularies load (issue 14). tests/fixtures/tiny-gpt2-padded is
 * tiny-gpt2 with its embedding padded from 1025 tokens to 1088 rows (as
 * Pythia pads 50277 to 50304), the padding rows made to beat every token's
 * logit by > 20 nats at each position of the reference sequence
 * (tools/fixtures_padded.py, float64 transformers). An engine that does not
 * mask them generates, samples and ranks padding ids; before the fix eccolo
 * failed after generating, blaming a token id. Tolerances: float32 against
 * float64 transformers, 1e-4 relative (log-probabilities of about -50 agree
 * within 2e-5 absolute here). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eccolo.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define REF "tiny-gpt2-padded/reference.safetensors"
#define N_TOK 1025
#define V_ROWS 1088

static char *ids_csv(const int32_t *ids, int n)
{
    char *s = malloc((size_t)n * 12 + 1), *p = s;
    for (int i = 0; i < n; i++)
        p += sprintf(p, i ? ",%d" : "%d", ids[i]);
    *p = '\0';
    return s;
}

/* generate with ARGS into a fresh directory; returns its tensors file (open). */
static ecc_st_file *run_generate(const char *const *extra, int n_extra)
{
    char *m = fixture_path("tiny-gpt2-padded"), *dir = test_tmpdir("padded"), *run = ecc_path_join(dir, "run");
    int64_t shape[4];
    size_t n;
    int32_t *prompt = fixture_tensor(REF, "prompt_ids", ECC_I32, shape, &n);
    char *ids = ids_csv(prompt, (int)n);
    const char *args[32] = {"generate", "--model", m, "--prompt-ids", ids, "--device", "cpu", "--quiet", "--out", run};
    int k = 10;
    for (int i = 0; i < n_extra; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    char *out, *err;
    int rc = run_cli(&out, &err, args);
    cr_assert_eq(rc, 0, "generate on the padded model: exit %d\n%s", rc, err);
    free(out), free(err);
    char *tp = ecc_path_join(run, "tensors.safetensors");
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, tp), ECC_OK, "%s", ecc_last_error());
    free(tp), free(ids), free(prompt), free(run), free(dir), free(m);
    return f;
}

Test(padded, model_loads_with_its_padding)
{
    char *m = fixture_path("tiny-gpt2-padded");
    ecc_model *model = NULL;
    cr_assert_eq(ecc_model_open(&model, m), ECC_OK, "%s", ecc_last_error());
    const ecc_config *c = ecc_model_config(model);
    cr_assert_eq(c->vocab_size, V_ROWS);
    cr_assert_eq(c->n_tokens, N_TOK, "n_tokens %d: the tokenizer's size", c->n_tokens);
    ecc_model_close(model);
    free(m);
}

Test(padded, info_says_so)
{
    char *m = fixture_path("tiny-gpt2-padded"), *out, *err;
    int rc = run_cli(&out, &err, ARGS("info", "--model", m));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "vocabulary: 1088 rows, 1025 tokens, 63 padding"), "%s", out);
    free(out), free(err);
    char *plain = fixture_path("tiny-gpt2");
    rc = run_cli(&out, &err, ARGS("info", "--model", plain));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "vocabulary: 1025 tokens\n"), "%s", out);
    free(out), free(err), free(plain), free(m);
}

/* Greedy: transformers' tokens among the 1025, and their log-probabilities
 * over all 1088 rows; the logit lens ranks and predicts only tokens. */
Test(padded, greedy_and_lens_match_transformers)
{
    size_t n;
    int64_t shape[4];
    int32_t *want = fixture_tensor(REF, "greedy_ids", ECC_I32, shape, &n);
    double *want_lp = fixture_tensor(REF, "greedy_logprobs", ECC_F64, shape, NULL);
    int G = (int)shape[0];
    ecc_st_file *f = run_generate(ARGS("--max-new-tokens", "12", "--no-stop", "--rankings", "--top-k-layers", "10"),
                                  6);
    const ecc_st_tensor *ids = ecc_st_find(f, "token_ids"), *lp = ecc_st_find(f, "token_logprobs");
    cr_assert(ids && lp && ids->numel == n && lp->numel == (uint64_t)G);
    for (size_t i = 0; i < n; i++) {
        int32_t got;
        memcpy(&got, ids->data + 4 * i, 4);
        cr_assert_lt(got, N_TOK, "token %zu is the padding row %d", i, got);
        cr_assert_eq(got, want[i], "token %zu: %d, transformers %d", i, got, want[i]);
    }
    for (int g = 0; g < G; g++) {
        float got;
        memcpy(&got, lp->data + 4 * g, 4);
        cr_assert(fabs(got - want_lp[g]) <= 1e-4 * fabs(want_lp[g]), "log-probability %d: %.8g, transformers %.8g "
                  "(1e-4 relative)", g, (double)got, want_lp[g]);
    }
    /* the logit lens */
    int32_t *ranks = fixture_tensor(REF, "rankings", ECC_I32, shape, &n);
    const ecc_st_tensor *r = ecc_st_find(f, "rankings");
    cr_assert(r && r->numel == n);
    cr_assert_eq(memcmp(r->data, ranks, 4 * n), 0, "rankings differ from transformers' (ranked among the tokens)");
    int32_t *top = fixture_tensor(REF, "layer_top_ids", ECC_I32, shape, &n);
    double *top_p = fixture_tensor(REF, "layer_top_probs", ECC_F64, shape, NULL);
    const ecc_st_tensor *ti = ecc_st_find(f, "layer_top_ids"), *tp = ecc_st_find(f, "layer_top_probs");
    cr_assert(ti && tp && ti->numel == n && tp->numel == n);
    for (size_t i = 0; i < n; i++) {
        int32_t id;
        float p;
        memcpy(&id, ti->data + 4 * i, 4);
        memcpy(&p, tp->data + 4 * i, 4);
        cr_assert_lt(id, N_TOK, "layer prediction %zu is the padding row %d", i, id);
        cr_assert_eq(id, top[i], "layer prediction %zu: %d, transformers %d", i, id, top[i]);
        cr_assert(fabs(p - top_p[i]) <= 1e-4 * top_p[i] + 1e-30, "probability %zu: %.8g, transformers %.8g", i,
                  (double)p, top_p[i]);
    }
    ecc_st_close(f);
    free(want), free(want_lp), free(ranks), free(top), free(top_p);
}

/* Sampling, with and without top-k / top-p: never a padding id. */
Test(padded, sampling_never_picks_padding)
{
    static const char *const variants[][4] = {{"--top-k", "0", "--top-p", "1"},
                                              {"--top-k", "40", "--top-p", "1"},
                                              {"--top-k", "0", "--top-p", "0.9"}};
    for (int v = 0; v < 3; v++)
        for (int seed = 0; seed < 3; seed++) {
            char s[16];
            snprintf(s, sizeof s, "%d", seed);
            ecc_st_file *f = run_generate((const char *const[]){"--max-new-tokens", "12", "--no-stop", "--sample",
                                                                "--seed", s, variants[v][0], variants[v][1],
                                                                variants[v][2], variants[v][3]},
                                          10);
            const ecc_st_tensor *ids = ecc_st_find(f, "token_ids");
            for (uint64_t i = 0; i < ids->numel; i++) {
                int32_t id;
                memcpy(&id, ids->data + 4 * i, 4);
                cr_assert_lt(id, N_TOK, "sampled the padding row %d (%s %s %s %s, seed %d)", id, variants[v][0],
                             variants[v][1], variants[v][2], variants[v][3], seed);
            }
            ecc_st_close(f);
        }
}

/* eccolo batch (packed generation) gives the same tokens. */
Test(padded, batch_matches)
{
    size_t n;
    int32_t *want = fixture_tensor(REF, "greedy_ids", ECC_I32, NULL, &n);
    char *m = fixture_path("tiny-gpt2-padded"), *dir = test_tmpdir("padded-batch"), *p = ecc_path_join(dir, "p.jsonl");
    char *out = ecc_path_join(dir, "out");
    const char *line = "{\"id\": \"fw\", \"prompt\": \"Frameworks for Machine Learning include: 1. TensorFlow\\n2. "
                       "PyTorch\\n3.Scikit-learn\\n4.\"}\n{\"id\": \"hi\", \"prompt\": \"Hello\"}\n";
    write_file(p, line, strlen(line));
    char *o, *e;
    int rc = run_cli(&o, &e, ARGS("batch", "--model", m, "--prompts", p, "--out", out, "--max-new-tokens", "12",
                                  "--no-stop", "--device", "cpu", "--quiet"));
    cr_assert_eq(rc, 0, "batch: exit %d\n%s", rc, e);
    free(o), free(e);
    char *tp = ecc_path_join(out, "runs/fw/tensors.safetensors");
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, tp), ECC_OK, "%s", ecc_last_error());
    const ecc_st_tensor *ids = ecc_st_find(f, "token_ids");
    cr_assert(ids && ids->numel == n);
    cr_assert_eq(memcmp(ids->data, want, 4 * n), 0, "batch tokens differ from transformers'");
    ecc_st_close(f);
    free(tp), free(out), free(p), free(dir), free(m), free(want);
}

/* A padding id given as input is refused, saying it is padding. */
Test(padded, padding_ids_as_input_are_refused)
{
    char *m = fixture_path("tiny-gpt2-padded"), *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt-ids", "5,1030", "--device", "cpu"));
    cr_assert_eq(rc, 2, "exit %d\n%s", rc, err);
    cr_assert(strstr(err, "1030") && strstr(err, "padding"), "%s", err);
    free(out), free(err);
    rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt-ids", "5,6", "--rankings", "--watch-ids", "1087",
                                  "--device", "cpu"));
    cr_assert_eq(rc, 2, "exit %d\n%s", rc, err);
    cr_assert(strstr(err, "1087") && strstr(err, "padding"), "%s", err);
    free(out), free(err), free(m);
}
