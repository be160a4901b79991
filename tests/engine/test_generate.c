/* Generation: greedy ids equal to transformers' generate, forced
 * continuations' log-probabilities, seeded sampling, stopping at
 * <|endoftext|>. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "engine/run.h"
#include "io/safetensors.h"
#include "engine/sampling.h"
#include "testutil.h"
#include "util.h"

static const char *k_models[] = {"tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-sharded"};
#define N_MODELS 3

static ecc_model *open_fixture(const char *name)
{
    char *dir = fixture_path(name);
    ecc_model *m;
    cr_assert_eq(ecc_model_open(&m, dir), ECC_OK, "%s", ecc_last_error());
    free(dir);
    return m;
}

/* reference.safetensors tensor (malloc'd); *n = element count */
static void *ref_tensor(const char *model, const char *name, ecc_dtype dtype, int *n)
{
    char rel[256];
    size_t numel;
    snprintf(rel, sizeof rel, "%s/reference.safetensors", model);
    void *p = fixture_tensor(rel, name, dtype, NULL, &numel);
    *n = (int)numel;
    return p;
}

static ecc_options cpu_options(void)
{
    ecc_options o;
    ecc_options_default(&o);
    o.device = ECC_DEVICE_CPU;
    return o;
}

Test(generate, greedy_ids_match_transformers)
{
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_fixture(k_models[k]);
        int np, ng;
        int32_t *prompt = ref_tensor(k_models[k], "prompt_ids", ECC_I32, &np);
        int32_t *greedy = ref_tensor(k_models[k], "greedy_ids", ECC_I32, &ng);
        ecc_options o = cpu_options();
        /* eccolo keeps every token inside the context (so the last one has
         * activations too); transformers may use one position more */
        o.max_new_tokens = ECC_MIN(ng - np, m->cfg.n_positions - np);
        ecc_run *r;
        cr_assert_eq(ecc_generate(&r, m, prompt, np, &o), ECC_OK, "%s", ecc_last_error());
        cr_assert_eq(r->T, np + o.max_new_tokens, "%s: generated %d tokens", k_models[k], r->T - np);
        for (int i = 0; i < r->T; i++)
            cr_assert_eq(r->ids[i], greedy[i], "%s: token %d is %d, transformers generated %d", k_models[k], i,
                         r->ids[i], greedy[i]);
        ecc_run_free(r);
        free(prompt);
        free(greedy);
        ecc_model_close(m);
    }
}

Test(generate, forced_continuation_logprobs_match_transformers)
{
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_fixture(k_models[k]);
        int np, nf, nl;
        int32_t *prompt = ref_tensor(k_models[k], "prompt_ids", ECC_I32, &np);
        int32_t *forced = ref_tensor(k_models[k], "forced_ids", ECC_I32, &nf);
        double *lp = ref_tensor(k_models[k], "forced_logprobs", ECC_F64, &nl);
        cr_assert_eq(nl, nf - np);
        /* three paths to the same numbers: the prefill (nothing explained), the
         * explanation's saved forward (activations), the backward's logits (saliency) */
        static const char *path[] = {"prefill", "saved forward", "backward"};
        for (int mode = 0; mode < 3; mode++) {
            ecc_options o = cpu_options();
            o.continuation_ids = forced + np;
            o.n_continuation = nf - np;
            o.activations = mode == 1;
            o.attribution = mode == 2 ? ECC_ATTR_GRAD_X_INPUT : 0;
            ecc_run *r;
            cr_assert_eq(ecc_generate(&r, m, prompt, np, &o), ECC_OK, "%s", ecc_last_error());
            cr_assert_eq(r->T, nf);
            cr_assert_eq(memcmp(r->ids, forced, sizeof(int32_t) * (size_t)nf), 0, "forced ids must be kept as given");
            /* fp32 against float64: 1e-4 norm-wise over the continuation, and per token */
            double e = rel_err(r->logprobs, lp, (size_t)nl);
            cr_assert(e <= 1e-4, "%s, %s: log-probabilities differ by %.3g (relative)", k_models[k], path[mode], e);
            for (int i = 0; i < nl; i++)
                cr_assert(fabs(r->logprobs[i] - lp[i]) <= 1e-4 * (1 + fabs(lp[i])), "%s, %s: token %d: %.7f vs %.7f",
                          k_models[k], path[mode], i, (double)r->logprobs[i], lp[i]);
            ecc_run_free(r);
        }
        free(prompt);
        free(forced);
        free(lp);
        ecc_model_close(m);
    }
}

static ecc_run *sample_run(ecc_model *m, const int32_t *prompt, int np, uint64_t seed, int top_k, float top_p)
{
    ecc_options o = cpu_options();
    o.sample = 1;
    o.seed = seed;
    o.top_k = top_k;
    o.top_p = top_p;
    o.max_new_tokens = 24;
    o.stop_at_eos = 0;
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, prompt, np, &o), ECC_OK, "%s", ecc_last_error());
    return r;
}

Test(generate, sampling_is_reproducible_for_a_seed)
{
    ecc_model *m = open_fixture("tiny-gpt2");
    int np;
    int32_t *prompt = ref_tensor("tiny-gpt2", "prompt_ids", ECC_I32, &np);
    ecc_run *a = sample_run(m, prompt, np, 7, 0, 1.0f), *b = sample_run(m, prompt, np, 7, 0, 1.0f);
    ecc_run *c = sample_run(m, prompt, np, 8, 0, 1.0f);
    cr_assert_eq(a->T, b->T);
    cr_assert_eq(memcmp(a->ids, b->ids, sizeof(int32_t) * (size_t)a->T), 0, "same seed, different tokens");
    cr_assert_neq(memcmp(a->ids, c->ids, sizeof(int32_t) * (size_t)a->T), 0,
                  "seeds 7 and 8 gave the same 24 tokens: the seed is not used");
    /* top-k 1 is greedy whatever the seed */
    ecc_run *k1 = sample_run(m, prompt, np, 99, 1, 1.0f);
    ecc_options o = cpu_options();
    o.max_new_tokens = 24;
    o.stop_at_eos = 0;
    ecc_run *g;
    cr_assert_eq(ecc_generate(&g, m, prompt, np, &o), ECC_OK);
    cr_assert_eq(memcmp(k1->ids, g->ids, sizeof(int32_t) * (size_t)g->T), 0, "top-k 1 must equal greedy");
    ecc_run_free(a);
    ecc_run_free(b);
    ecc_run_free(c);
    ecc_run_free(k1);
    ecc_run_free(g);
    free(prompt);
    ecc_model_close(m);
}

/* A padded vocabulary: ids 4 and 5 are padding rows with the largest logits.
 * Greedy and sampled picks stay among ids 0..3, with top-k and top-p too;
 * the log-probability is over all 6 rows. */
Test(sampling, padding_rows_are_never_picked)
{
    const float logits[6] = {1.0f, 2.0f, 3.0f, -1.0f, 9.0f, 8.0f};
    double z = 0;
    for (int i = 0; i < 6; i++)
        z += exp(logits[i]);
    ecc_pick_params pp = {.greedy = 1, .temperature = 1.0f, .top_p = 1.0f, .n_tokens = 4};
    int32_t t;
    float lp;
    ecc_pick(&t, &lp, logits, 6, -1, &pp, 0);
    cr_assert_eq(t, 2, "greedy picked %d", t);
    cr_assert_float_eq(lp, (float)log(exp(3.0) / z), 1e-6, "log-probability over all rows");
    pp.greedy = 0;
    int seen[6] = {0};
    for (int k = 0; k <= 6; k += 2)
        for (int s = 0; s < 2000; s++) {
            pp.top_k = k;
            pp.top_p = s % 2 ? 0.95f : 1.0f;
            ecc_pick(&t, &lp, logits, 6, -1, &pp, (uint64_t)s);
            cr_assert(t >= 0 && t < 4, "sampled the padding row %d (top_k %d)", t, k);
            cr_assert_float_eq(lp, (float)log(exp(logits[t]) / z), 1e-5);
            seen[t]++;
        }
    cr_assert(seen[1] > 0 && seen[2] > 0, "the samples never varied");
}

/* Frequencies of ecc_pick against the softmax it should sample from. */
Test(sampling, frequencies_follow_the_distribution)
{
    const float logits[5] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    const int N = 40000;
    double z = 0, p[5];
    for (int i = 0; i < 5; i++)
        z += exp(logits[i]);
    for (int i = 0; i < 5; i++)
        p[i] = exp(logits[i]) / z;
    ecc_pick_params pp = {.greedy = 0, .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .seed = 3};
    int count[5] = {0};
    for (int s = 0; s < N; s++) {
        int32_t t;
        float lp;
        ecc_pick(&t, &lp, logits, 5, -1, &pp, (uint64_t)s);
        cr_assert(t >= 0 && t < 5);
        cr_assert_float_eq(lp, (float)log(p[t]), 1e-5, "logprob of the chosen token");
        count[t]++;
    }
    for (int i = 0; i < 5; i++) {
        double sigma = sqrt(N * p[i] * (1 - p[i]));
        cr_assert(fabs(count[i] - N * p[i]) < 5 * sigma, "token %d drawn %d times, expected %.0f +- %.0f", i,
                  count[i], N * p[i], sigma);
    }
    /* top-k 2 keeps tokens 2 and 1, in proportion e^3 : e^2 */
    pp.top_k = 2;
    int in2 = 0, n2 = 0;
    for (int s = 0; s < N; s++) {
        int32_t t;
        float lp;
        ecc_pick(&t, &lp, logits, 5, -1, &pp, (uint64_t)s);
        cr_assert(t == 2 || t == 1, "top-k 2 drew token %d", t);
        in2 += t == 2;
        n2++;
    }
    double q = exp(3.0) / (exp(3.0) + exp(2.0));
    cr_assert(fabs(in2 - n2 * q) < 5 * sqrt(n2 * q * (1 - q)));
    /* top-p 0.5: the most likely token alone has p = 0.61 >= 0.5 */
    pp.top_k = 0;
    pp.top_p = 0.5f;
    for (int s = 0; s < 1000; s++) {
        int32_t t;
        float lp;
        ecc_pick(&t, &lp, logits, 5, -1, &pp, (uint64_t)s);
        cr_assert_eq(t, 2);
    }
    /* temperature sharpens: at 0.05 the arg-max is all but certain */
    pp.top_p = 1.0f;
    pp.temperature = 0.05f;
    for (int s = 0; s < 1000; s++) {
        int32_t t;
        float lp;
        ecc_pick(&t, &lp, logits, 5, -1, &pp, (uint64_t)s);
        cr_assert_eq(t, 2);
    }
}

Test(generate, stops_after_endoftext)
{
    /* a copy of tiny-gpt2 whose eos is the third greedy token */
    int np, ng;
    int32_t *prompt = ref_tensor("tiny-gpt2", "prompt_ids", ECC_I32, &np);
    int32_t *greedy = ref_tensor("tiny-gpt2", "greedy_ids", ECC_I32, &ng);
    int32_t eos = greedy[np + 2];
    int first = np + 2; /* stop at the first occurrence */
    for (int i = np; i < np + 2; i++)
        if (greedy[i] == eos)
            first = i;
    char *src = fixture_path("tiny-gpt2"), *dir = test_tmpdir("eos");
    copy_dir(src, dir);
    char *cfg_path = ecc_path_join(dir, "config.json"), *text;
    size_t len;
    cr_assert_eq(ecc_read_file(cfg_path, 1 << 20, &text, &len), ECC_OK);
    cJSON *cfg = cJSON_Parse(text);
    cJSON_ReplaceItemInObject(cfg, "eos_token_id", cJSON_CreateNumber(eos));
    char *out = cJSON_Print(cfg);
    write_file(cfg_path, out, strlen(out));
    ecc_model *m;
    cr_assert_eq(ecc_model_open(&m, dir), ECC_OK, "%s", ecc_last_error());
    ecc_options o = cpu_options();
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, prompt, np, &o), ECC_OK);
    cr_assert_eq(r->T, first + 1, "stopped after %d tokens", r->T - np);
    cr_assert(r->stopped_at_eos);
    cr_assert_eq(r->ids[r->T - 1], eos);
    ecc_run_free(r);
    /* --no-stop goes on */
    o.stop_at_eos = 0;
    cr_assert_eq(ecc_generate(&r, m, prompt, np, &o), ECC_OK);
    cr_assert_eq(r->T, np + o.max_new_tokens);
    ecc_run_free(r);
    ecc_model_close(m);
    cJSON_Delete(cfg);
    free(out);
    free(text);
    free(cfg_path);
    free(src);
    free(dir);
    free(prompt);
    free(greedy);
}

/* Llama 3 lists several end ids in config.json, and generation_config.json may
 * add more: generation stops at the first of any of them. */
Test(generate, stops_at_any_eos_of_a_list)
{
    int np, ng;
    int32_t *prompt = ref_tensor("tiny-gpt2", "prompt_ids", ECC_I32, &np);
    int32_t *greedy = ref_tensor("tiny-gpt2", "greedy_ids", ECC_I32, &ng);
    int32_t stop = greedy[np + 3]; /* only in generation_config.json */
    int first = np + 3;
    for (int i = np; i < np + 3; i++)
        if (greedy[i] == stop)
            first = i;
    char *src = fixture_path("tiny-gpt2"), *dir = test_tmpdir("eos");
    copy_dir(src, dir);
    char *cfg_path = ecc_path_join(dir, "config.json"), *gen_path = ecc_path_join(dir, "generation_config.json");
    char *text;
    size_t len;
    cr_assert_eq(ecc_read_file(cfg_path, 1 << 20, &text, &len), ECC_OK);
    cJSON *cfg = cJSON_Parse(text);
    int32_t listed[2] = {1000, 1001}; /* ids greedy decoding does not reach in this run */
    for (int i = np; i < np + 8 && i < ng; i++)
        cr_assert(greedy[i] != 1000 && greedy[i] != 1001, "pick other ids for the test");
    cJSON_ReplaceItemInObject(cfg, "eos_token_id", cJSON_CreateIntArray((const int[]){listed[0], listed[1]}, 2));
    char *out = cJSON_Print(cfg), gen[128];
    write_file(cfg_path, out, strlen(out));
    snprintf(gen, sizeof gen, "{\"eos_token_id\": [%d, %d]}", (int)listed[1], (int)stop);
    write_file(gen_path, gen, strlen(gen));
    ecc_model *m;
    cr_assert_eq(ecc_model_open(&m, dir), ECC_OK, "%s", ecc_last_error());
    const int32_t *eos;
    cr_assert_eq(ecc_model_eos_ids(m, &eos), 3); /* config's two, then generation_config's new one */
    cr_expect(eos[0] == listed[0] && eos[1] == listed[1] && eos[2] == stop);
    cr_expect_eq(ecc_model_config(m)->eos_token_id, listed[0]);
    ecc_options o = cpu_options();
    o.max_new_tokens = 8;
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, prompt, np, &o), ECC_OK, "%s", ecc_last_error());
    cr_expect_eq(r->T, first + 1, "stopped after %d tokens", r->T - np);
    cr_expect(r->stopped_at_eos);
    ecc_run_free(r);
    ecc_model_close(m);
    /* an id outside the vocabulary is an error naming the file */
    write_file(gen_path, "{\"eos_token_id\": [5, 99999]}", 28);
    cr_expect_eq(ecc_model_open(&m, dir), ECC_ERR_FORMAT);
    cr_expect(strstr(ecc_last_error(), "generation_config.json"), "%s", ecc_last_error());
    cJSON_Delete(cfg);
    free(out), free(text), free(cfg_path), free(gen_path), free(src), free(dir), free(prompt), free(greedy);
}
