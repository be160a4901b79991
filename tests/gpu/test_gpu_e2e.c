/* End to end on the fixture models: ecc_generate with --device cuda against
 * --device cpu. Greedy tokens identical; seeded samples identical; forced
 * log-probabilities within 1e-5; every explanation (three attribution
 * methods, activations, hidden states, attention, logit lens) close to the
 * CPU's; two GPU runs give the same bits; NMF on the GPU reaches the CPU's
 * relative error within 1e-4. Skipped, visibly, without a GPU.
 *
 * Tolerances (norm-wise relative ||gpu - cpu|| / ||cpu||): the models run in
 * fp32 on both sides with different summation orders (~1e-7 relative per
 * op), so activations, hidden states and attention <= 1e-5, attribution rows
 * <= 1e-4 (a backward pass through every layer, then a normalisation).
 * Logit-lens ranks and top ids are integers of near-continuous scores: a pair
 * of logits closer than the fp32 noise can swap, so at most 2 % of them may
 * differ, each rank by at most 1; the top probabilities <= 1e-5. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "gpu_testutil.h"
#include "model/model.h"
#include "nmf/nmf.h"
#include "engine/run.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

static const char *k_models[] = {"tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep"};
#define N_MODELS 3

static void need_gpu(void)
{
    char why[256] = "";
    if (ecc_gpu_count(why, sizeof why) == 0)
        cr_skip_test("no usable GPU: %s", why);
}

static ecc_model *open_model(const char *name)
{
    char *dir = fixture_path(name);
    ecc_model *m;
    cr_assert_eq(ecc_model_open(&m, dir), ECC_OK, "%s", ecc_last_error());
    free(dir);
    return m;
}

/* The fixture's reference sequence: n_input prompt ids, then G forced ids. */
typedef struct seq {
    int32_t *ids;
    int n_input, T;
} seq;

static seq ref_seq(const char *model)
{
    char rel[128];
    snprintf(rel, sizeof rel, "%s/explain_reference.json", model);
    cJSON *j = fixture_json(rel);
    seq s;
    s.n_input = cJSON_GetObjectItem(j, "n_input")->valueint;
    s.T = cJSON_GetObjectItem(j, "T")->valueint;
    cJSON_Delete(j);
    snprintf(rel, sizeof rel, "%s/explain_reference.safetensors", model);
    size_t n;
    s.ids = fixture_tensor(rel, "ecco_ids", ECC_I32, NULL, &n);
    cr_assert_eq((int)n, s.T);
    return s;
}

static ecc_run *run_explain(ecc_model *m, const seq *s, ecc_device dev)
{
    static const int32_t watch[3] = {11, 500, 1024};
    ecc_options o;
    ecc_options_default(&o);
    o.device = dev;
    o.continuation_ids = s->ids + s->n_input;
    o.n_continuation = s->T - s->n_input;
    o.attribution = ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT | ECC_ATTR_INTEGRATED_GRADIENTS;
    o.ig_steps = 16;
    o.activations = o.hidden_states = o.attention = o.rankings = 1;
    o.watch_ids = watch;
    o.n_watch = 3;
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, s->ids, s->n_input, &o), ECC_OK, "%s", ecc_last_error());
    cr_assert_str_eq(r->device, dev == ECC_DEVICE_CUDA ? "cuda" : "cpu");
    return r;
}

static const ecc_run_tensor *tensor(const ecc_run *r, const char *name)
{
    const ecc_run_tensor *t = ecc_run_tensor_get(r, name);
    cr_assert(t, "the run has no tensor %s", name);
    return t;
}

static size_t numel(const ecc_run_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

static void expect_close(const ecc_run *g, const ecc_run *c, const char *name, double tol, const char *model)
{
    const ecc_run_tensor *a = tensor(g, name), *b = tensor(c, name);
    size_t n = numel(b);
    cr_assert_eq(numel(a), n, "%s: %s has %zu elements on the GPU, %zu on the CPU", model, name, numel(a), n);
    const float *x = a->data, *y = b->data;
    for (size_t i = 0; i < n; i++)
        cr_assert(isfinite(x[i]), "%s: %s[%zu] is not finite", model, name, i);
    double e = rel_err_f(x, y, n);
    cr_assert(e <= tol, "%s: %s: relative error %.3g > %.0e", model, name, e, tol);
}

static void expect_rows_close(const ecc_run *g, const ecc_run *c, const char *name, double tol, const char *model)
{
    const ecc_run_tensor *a = tensor(g, name), *b = tensor(c, name);
    int G = (int)b->shape[0], T = (int)b->shape[1];
    cr_assert_eq(numel(a), numel(b));
    for (int r = 0; r < G; r++) {
        double e = rel_err_f((const float *)a->data + (size_t)r * T, (const float *)b->data + (size_t)r * T, (size_t)T);
        cr_assert(e <= tol, "%s: %s row %d: relative error %.3g > %.0e", model, name, r, e, tol);
    }
}

/* integer tensors: at most 2 % of entries differ, and (ranks) by at most max_step */
static void expect_ints_nearly_equal(const ecc_run *g, const ecc_run *c, const char *name, int max_step,
                                     const char *model)
{
    const ecc_run_tensor *a = tensor(g, name), *b = tensor(c, name);
    size_t n = numel(b), bad = 0;
    cr_assert_eq(numel(a), n);
    const int32_t *x = a->data, *y = b->data;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) {
            bad++;
            if (max_step > 0)
                cr_assert(abs(x[i] - y[i]) <= max_step, "%s: %s[%zu] = %d on the GPU, %d on the CPU", model, name, i,
                          x[i], y[i]);
        }
    cr_assert(bad * 50 <= n, "%s: %s: %zu of %zu entries differ", model, name, bad, n);
    if (bad)
        cr_log_warn("%s: %s: %zu of %zu entries differ (near-ties)", model, name, bad, n);
}

Test(gpu_e2e, greedy_tokens_and_logprobs_match_the_cpu, .timeout = 120)
{
    need_gpu();
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_model(k_models[k]);
        seq s = ref_seq(k_models[k]);
        ecc_run *r[2];
        for (int d = 0; d < 2; d++) {
            ecc_options o;
            ecc_options_default(&o);
            o.device = d ? ECC_DEVICE_CUDA : ECC_DEVICE_CPU;
            o.max_new_tokens = ecc_model_config(m)->n_positions - s.n_input;
            o.stop_at_eos = 0;
            cr_assert_eq(ecc_generate(&r[d], m, s.ids, s.n_input, &o), ECC_OK, "%s", ecc_last_error());
        }
        cr_assert_eq(r[0]->T, r[1]->T);
        for (int t = 0; t < r[0]->T; t++)
            cr_assert_eq(r[1]->ids[t], r[0]->ids[t], "%s: token %d: GPU %d, CPU %d", k_models[k], t, r[1]->ids[t],
                         r[0]->ids[t]);
        int G = r[0]->T - r[0]->n_input;
        for (int g = 0; g < G; g++)
            cr_assert(fabsf(r[1]->logprobs[g] - r[0]->logprobs[g]) <= 1e-5f, "%s: logprob %d: %.8g vs %.8g",
                      k_models[k], g, r[1]->logprobs[g], r[0]->logprobs[g]);
        ecc_run_free(r[0]), ecc_run_free(r[1]);
        free(s.ids);
        ecc_model_close(m);
    }
}

Test(gpu_e2e, seeded_samples_match_the_cpu, .timeout = 120)
{
    need_gpu();
    ecc_model *m = open_model("tiny-gpt2");
    seq s = ref_seq("tiny-gpt2");
    const struct {
        float temp;
        int top_k;
        float top_p;
    } P[] = {{1.0f, 0, 1.0f}, {0.8f, 40, 0.95f}, {1.2f, 0, 0.9f}};
    for (size_t p = 0; p < sizeof P / sizeof P[0]; p++)
        for (uint64_t seed = 1; seed <= 3; seed++) {
            ecc_run *r[2];
            for (int d = 0; d < 2; d++) {
                ecc_options o;
                ecc_options_default(&o);
                o.device = d ? ECC_DEVICE_CUDA : ECC_DEVICE_CPU;
                o.sample = 1;
                o.temperature = P[p].temp;
                o.top_k = P[p].top_k;
                o.top_p = P[p].top_p;
                o.seed = seed;
                o.max_new_tokens = 40;
                o.stop_at_eos = 0;
                cr_assert_eq(ecc_generate(&r[d], m, s.ids, s.n_input, &o), ECC_OK, "%s", ecc_last_error());
            }
            cr_assert_eq(r[0]->T, r[1]->T);
            cr_assert_eq(memcmp(r[0]->ids, r[1]->ids, sizeof(int32_t) * (size_t)r[0]->T), 0,
                         "seed %llu, parameters %zu: the GPU sampled other tokens than the CPU",
                         (unsigned long long)seed, p);
            ecc_run_free(r[0]), ecc_run_free(r[1]);
        }
    free(s.ids);
    ecc_model_close(m);
}

/* The padded vocabulary (tests/fixtures/tiny-gpt2-padded: 1025 tokens, 1088
 * rows, padding logits above every token's): on the GPU as on the CPU the
 * greedy tokens are transformers' (float64) among the tokens, log-probabilities
 * within 1e-4 relative, sampled ids and layer predictions never padding. */
Test(gpu_e2e, padded_vocabulary, .timeout = 300)
{
    need_gpu();
    ecc_model *m = open_model("tiny-gpt2-padded");
    size_t n, T;
    int64_t shape[4];
    const char *ref = "tiny-gpt2-padded/reference.safetensors";
    int32_t *prompt = fixture_tensor(ref, "prompt_ids", ECC_I32, NULL, &n);
    int32_t *want = fixture_tensor(ref, "greedy_ids", ECC_I32, NULL, &T);
    double *want_lp = fixture_tensor(ref, "greedy_logprobs", ECC_F64, NULL, NULL);
    int32_t *ranks = fixture_tensor(ref, "rankings", ECC_I32, shape, NULL);
    const int n_tok = ecc_model_config(m)->n_tokens;
    cr_assert_eq(n_tok, 1025);
    ecc_options o;
    ecc_options_default(&o);
    o.device = ECC_DEVICE_CUDA;
    o.max_new_tokens = (int)(T - n);
    o.stop_at_eos = 0;
    o.rankings = 1;
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, prompt, (int)n, &o), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq((size_t)r->T, T);
    for (size_t t = 0; t < T; t++)
        cr_assert_eq(r->ids[t], want[t], "token %zu: GPU %d, transformers %d", t, r->ids[t], want[t]);
    for (size_t g = 0; g < T - n; g++)
        cr_assert(fabs(r->logprobs[g] - want_lp[g]) <= 1e-4 * fabs(want_lp[g]), "logprob %zu: %.8g vs %.8g", g,
                  (double)r->logprobs[g], want_lp[g]);
    const ecc_run_tensor *rk = tensor(r, "rankings"), *top = tensor(r, "layer_top_ids");
    cr_assert_eq(memcmp(rk->data, ranks, sizeof(int32_t) * numel(rk)), 0, "GPU rankings differ from transformers'");
    for (size_t i = 0; i < numel(top); i++)
        cr_assert_lt(((const int32_t *)top->data)[i], n_tok, "layer prediction %zu is a padding row", i);
    ecc_run_free(r);
    o.rankings = 0;
    o.sample = 1;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        o.seed = seed;
        o.top_k = seed == 2 ? 40 : 0;
        cr_assert_eq(ecc_generate(&r, m, prompt, (int)n, &o), ECC_OK, "%s", ecc_last_error());
        for (int t = 0; t < r->T; t++)
            cr_assert_lt(r->ids[t], n_tok, "seed %llu: sampled the padding row %d", (unsigned long long)seed,
                         r->ids[t]);
        ecc_run_free(r);
    }
    free(prompt), free(want), free(want_lp), free(ranks);
    ecc_model_close(m);
}

Test(gpu_e2e, explanations_match_the_cpu, .timeout = 600)
{
    need_gpu();
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_model(k_models[k]);
        seq s = ref_seq(k_models[k]);
        ecc_run *c = run_explain(m, &s, ECC_DEVICE_CPU), *g = run_explain(m, &s, ECC_DEVICE_CUDA);
        int G = s.T - s.n_input;
        for (int i = 0; i < G; i++)
            cr_assert(fabsf(g->logprobs[i] - c->logprobs[i]) <= 1e-5f, "%s: forced logprob %d: %.8g vs %.8g",
                      k_models[k], i, g->logprobs[i], c->logprobs[i]);
        expect_rows_close(g, c, "attribution.grad_x_input", 1e-4, k_models[k]);
        expect_rows_close(g, c, "attribution.gradient", 1e-4, k_models[k]);
        expect_rows_close(g, c, "attribution.integrated_gradients", 1e-4, k_models[k]);
        expect_close(g, c, "activations", 1e-5, k_models[k]);
        expect_close(g, c, "hidden_states", 1e-5, k_models[k]);
        expect_close(g, c, "attention", 1e-5, k_models[k]);
        expect_close(g, c, "layer_top_probs", 1e-5, k_models[k]);
        expect_ints_nearly_equal(g, c, "rankings", 1, k_models[k]);
        expect_ints_nearly_equal(g, c, "watch_rankings", 1, k_models[k]);
        expect_ints_nearly_equal(g, c, "layer_top_ids", 0, k_models[k]);
        ecc_run_free(c), ecc_run_free(g);
        free(s.ids);
        ecc_model_close(m);
    }
}

Test(gpu_e2e, two_gpu_runs_give_the_same_bits, .timeout = 600)
{
    need_gpu();
    ecc_model *m = open_model("tiny-gpt2-f16");
    seq s = ref_seq("tiny-gpt2-f16");
    ecc_run *a = run_explain(m, &s, ECC_DEVICE_CUDA), *b = run_explain(m, &s, ECC_DEVICE_CUDA);
    cr_assert_eq(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const ecc_run_tensor *x = &a->tensors[i], *y = ecc_run_tensor_get(b, a->tensors[i].name);
        cr_assert(y, "%s missing from the second run", x->name);
        size_t bytes = numel(x) * ecc_dtype_size(x->dtype);
        cr_assert_eq(memcmp(x->data, y->data, bytes), 0, "%s differs between two GPU runs", x->name);
    }
    cr_assert_eq(memcmp(a->logprobs, b->logprobs, sizeof(float) * (size_t)(a->T - a->n_input)), 0);
    ecc_run_free(a), ecc_run_free(b);
    free(s.ids);
    ecc_model_close(m);
}

Test(gpu_e2e, nmf_error_matches_the_cpu, .timeout = 600)
{
    need_gpu();
    ecc_backend *c = cpu_backend(), *g = gpu_backend(ECC_PRECISION_FP32);
    for (int k = 0; k < N_MODELS; k++) {
        char rel[128];
        int64_t sh[4];
        snprintf(rel, sizeof rel, "%s/nmf_reference.safetensors", k_models[k]);
        float *X = fixture_tensor(rel, "X", ECC_F32, sh, NULL);
        int T = (int)sh[0], F = (int)sh[1];
        for (int solver = 0; solver < 2; solver++)
            for (int init = 0; init < 2; init++) {
                ecc_nmf_options o;
                ecc_nmf_options_default(&o);
                o.k = 5;
                o.solver = (ecc_nmf_solver)solver;
                o.init = init ? ECC_NMF_NNDSVDA : ECC_NMF_RANDOM;
                o.seed = 11;
                ecc_nmf_result rc, rg;
                cr_assert_eq(ecc_nmf(&rc, c, X, T, F, &o), ECC_OK, "%s", ecc_last_error());
                cr_assert_eq(ecc_nmf(&rg, g, X, T, F, &o), ECC_OK, "%s", ecc_last_error());
                cr_assert_eq(g->status(g), ECC_OK, "%s", ecc_last_error());
                cr_assert(isfinite(rg.rel_error) && fabs(rg.rel_error - rc.rel_error) <= 1e-4,
                          "%s %s %s: relative error %.7f on the GPU, %.7f on the CPU", k_models[k],
                          ecc_nmf_solver_name(o.solver), ecc_nmf_init_name(o.init), rg.rel_error, rc.rel_error);
                for (size_t i = 0; i < (size_t)T * o.k; i++)
                    cr_assert(rg.W[i] >= 0 && isfinite(rg.W[i]));
                ecc_nmf_result_free(&rc), ecc_nmf_result_free(&rg);
            }
        free(X);
    }
    c->destroy(c), g->destroy(g);
}
