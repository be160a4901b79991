/* Explanations against the real peers (tools/fixtures_ecco.py): Ecco 0.1.2's
 * primary attributions, activations and rankings, and float64 PyTorch
 * autograd for every target, the standard lens, hidden states and attention,
 * on three fixture models (2 layers; 3 layers with F16 weights; 12 layers,
 * where Ecco sorts layer names as strings). Plus: batching does not change
 * the results, --layers slices, and bad options are one-line errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain/explain.h"
#include "model/model.h"
#include "engine/run.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

static const char *k_models[] = {"tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep"};
#define N_MODELS 3

typedef struct ref {
    char file[128];
    cJSON *json;
    int n_input, G, T;
    int32_t *ids;
} ref;

static void ref_open(ref *r, const char *model)
{
    snprintf(r->file, sizeof r->file, "%s/explain_reference.safetensors", model);
    char rel[128];
    snprintf(rel, sizeof rel, "%s/explain_reference.json", model);
    r->json = fixture_json(rel);
    r->n_input = cJSON_GetObjectItem(r->json, "n_input")->valueint;
    r->G = cJSON_GetObjectItem(r->json, "G")->valueint;
    r->T = cJSON_GetObjectItem(r->json, "T")->valueint;
    size_t n;
    r->ids = fixture_tensor(r->file, "ecco_ids", ECC_I32, NULL, &n);
    cr_assert_eq((int)n, r->T);
}

static void ref_close(ref *r)
{
    cJSON_Delete(r->json);
    free(r->ids);
}

static void *ref_get(const ref *r, const char *name, ecc_dtype dt, size_t *n)
{
    return fixture_tensor(r->file, name, dt, NULL, n);
}

/* The fixture's sequence forced as a continuation, with every explanation on. */
static ecc_run *explain(ecc_model *m, const ref *rf, unsigned methods, ecc_target target, ecc_lens lens,
                        int chunk, size_t budget)
{
    static const int32_t watch[3] = {11, 500, 1024};
    ecc_options o;
    ecc_options_default(&o);
    o.device = ECC_DEVICE_CPU;
    o.continuation_ids = rf->ids + rf->n_input;
    o.n_continuation = rf->G;
    o.attribution = methods;
    o.target = target;
    o.activations = o.hidden_states = o.attention = o.rankings = 1;
    o.lens = lens;
    o.watch_ids = watch;
    o.n_watch = 3;
    o.max_chunk_targets = chunk;
    o.mem_budget = budget;
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, rf->ids, rf->n_input, &o), ECC_OK, "%s", ecc_last_error());
    return r;
}

static ecc_model *open_model(const char *name)
{
    char *dir = fixture_path(name);
    ecc_model *m;
    cr_assert_eq(ecc_model_open(&m, dir), ECC_OK, "%s", ecc_last_error());
    free(dir);
    return m;
}

static const float *out(const ecc_run *r, const char *name, size_t n)
{
    const ecc_run_tensor *t = ecc_run_tensor_get(r, name);
    cr_assert(t, "the run has no tensor %s", name);
    size_t numel = 1;
    for (int i = 0; i < t->ndim; i++)
        numel *= (size_t)t->shape[i];
    cr_assert_eq(numel, n, "%s has %zu elements, the reference %zu", name, numel, n);
    return t->data;
}

/* Attribution rows: norm-wise relative error per row <= tol. */
static void check_rows(const char *model, const char *what, const float *got, const float *want, int G, int T,
                       double tol)
{
    for (int g = 0; g < G; g++) {
        double e = rel_err_f(got + (size_t)g * T, want + (size_t)g * T, (size_t)T);
        cr_assert(e <= tol, "%s: %s row %d: relative error %.3g > %.0e", model, what, g, e, tol);
    }
}

Test(explain, attributions_match_ecco_and_float64_autograd, .timeout = 120)
{
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_model(k_models[k]);
        ref rf;
        ref_open(&rf, k_models[k]);
        const unsigned all = ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT | ECC_ATTR_INTEGRATED_GRADIENTS;
        ecc_run *r = explain(m, &rf, all, ECC_TARGET_PROB, ECC_LENS_STANDARD, 0, 0);
        cr_assert_eq(memcmp(r->ids, rf.ids, sizeof(int32_t) * (size_t)rf.T), 0);
        size_t n = (size_t)rf.G * rf.T, nr;
        static const char *methods[3] = {"grad_x_input", "gradient", "integrated_gradients"};
        for (int i = 0; i < 3; i++) {
            char name[64], refname[64], ecconame[64];
            snprintf(name, sizeof name, "attribution.%s", methods[i]);
            snprintf(refname, sizeof refname, "ref_%s_prob", methods[i]);
            snprintf(ecconame, sizeof ecconame, "ecco_%s", methods[i]);
            const float *got = out(r, name, n);
            float *want = ref_get(&rf, refname, ECC_F32, &nr), *ecco = ref_get(&rf, ecconame, ECC_F32, &nr);
            /* fp32 against float64: 1e-4 per row; against Ecco (fp32 too): 1e-4, IG 1e-3 */
            check_rows(k_models[k], refname, got, want, rf.G, rf.T, 1e-4);
            check_rows(k_models[k], ecconame, got, ecco, rf.G, rf.T, i == 2 ? 1e-3 : 1e-4);
            for (int g = 0; g < rf.G; g++) { /* rows sum to 1 over the positions before the token, zeros after */
                double s = 0;
                for (int t = 0; t < rf.T; t++) {
                    s += got[g * rf.T + t];
                    if (t >= rf.n_input + g)
                        cr_assert_eq(got[g * rf.T + t], 0.0f);
                }
                cr_assert(fabs(s - 1) < 1e-5, "%s row %d sums to %.7f", name, g, s);
            }
            free(want);
            free(ecco);
        }
        ecc_run_free(r);
        ref_close(&rf);
        ecc_model_close(m);
    }
}

Test(explain, logit_and_logprob_targets_match_float64_autograd)
{
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_model(k_models[k]);
        ref rf;
        ref_open(&rf, k_models[k]);
        for (int target = ECC_TARGET_LOGIT; target <= ECC_TARGET_LOGPROB; target++) {
            ecc_run *r = explain(m, &rf, ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT, (ecc_target)target,
                                 ECC_LENS_STANDARD, 0, 0);
            const char *tn = target == ECC_TARGET_LOGIT ? "logit" : "logprob";
            for (int i = 0; i < 2; i++) {
                const char *meth = i ? "gradient" : "grad_x_input";
                char name[64], refname[64];
                snprintf(name, sizeof name, "attribution.%s", meth);
                snprintf(refname, sizeof refname, "ref_%s_%s", meth, tn);
                size_t nr;
                float *want = ref_get(&rf, refname, ECC_F32, &nr);
                check_rows(k_models[k], refname, out(r, name, nr), want, rf.G, rf.T, 1e-4);
                free(want);
            }
            ecc_run_free(r);
        }
        ref_close(&rf);
        ecc_model_close(m);
    }
}

Test(explain, captures_match_float64_and_ecco)
{
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_model(k_models[k]);
        const ecc_config *c = &m->cfg;
        ref rf;
        ref_open(&rf, k_models[k]);
        ecc_run *r = explain(m, &rf, 0, ECC_TARGET_PROB, ECC_LENS_STANDARD, 0, 0);
        size_t n;
        const int L = c->n_layer, T = rf.T, F = c->n_inner;
        float *act = ref_get(&rf, "ref_activations", ECC_F32, &n);
        const float *got = out(r, "activations", n);
        for (int l = 0; l < L; l++) {
            double e = rel_err_f(got + (size_t)l * T * F, act + (size_t)l * T * F, (size_t)T * F);
            cr_assert(e <= 1e-4, "%s: activations of layer %d: relative error %.3g", k_models[k], l, e);
        }
        /* Ecco: (layer, neuron, position), layers in its string order, the last token missing */
        float *ecco = ref_get(&rf, "ecco_activations", ECC_F32, &n);
        const cJSON *order = cJSON_GetObjectItem(rf.json, "ecco_activations_layers");
        int P = cJSON_GetObjectItem(rf.json, "ecco_activations_positions")->valueint;
        cr_assert_eq(P, T - 1);
        cr_assert_eq(n, (size_t)L * F * P);
        for (int row = 0; row < L; row++) {
            int l = cJSON_GetArrayItem(order, row)->valueint;
            double num = 0, den = 0;
            for (int f = 0; f < F; f++)
                for (int t = 0; t < P; t++) {
                    double a = got[((size_t)l * T + t) * F + f], b = ecco[((size_t)row * F + f) * P + t];
                    num += (a - b) * (a - b);
                    den += b * b;
                }
            cr_assert(sqrt(num / den) <= 1e-4, "%s: activations of layer %d vs Ecco (row %d): %.3g", k_models[k], l,
                      row, sqrt(num / den));
        }
        float *hs = ref_get(&rf, "ref_hidden_states", ECC_F32, &n);
        const float *ghs = out(r, "hidden_states", n);
        for (int l = 0; l <= L; l++) {
            size_t s = (size_t)T * c->n_embd;
            double e = rel_err_f(ghs + l * s, hs + l * s, s);
            cr_assert(e <= 1e-4, "%s: hidden state %d: relative error %.3g", k_models[k], l, e);
        }
        float *att = ref_get(&rf, "ref_attention", ECC_F32, &n);
        double e = rel_err_f(out(r, "attention", n), att, n);
        cr_assert(e <= 1e-4, "%s: attention: relative error %.3g", k_models[k], e);
        free(act), free(ecco), free(hs), free(att);
        ecc_run_free(r);
        ref_close(&rf);
        ecc_model_close(m);
    }
}

static void check_ints(const char *model, const char *what, const int32_t *got, const int32_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s: %s[%zu] is %d, the reference %d", model, what, i, got[i], want[i]);
}

Test(explain, rankings_match_both_lenses_and_ecco)
{
    for (int k = 0; k < N_MODELS; k++) {
        ecc_model *m = open_model(k_models[k]);
        ref rf;
        ref_open(&rf, k_models[k]);
        for (int lens = 0; lens < 2; lens++) {
            ecc_run *r = explain(m, &rf, 0, ECC_TARGET_PROB, (ecc_lens)lens, 0, 0);
            const char *sfx = lens == ECC_LENS_RAW ? "_raw" : "";
            char name[64];
            size_t n;
            snprintf(name, sizeof name, "ref_rankings%s", sfx);
            int32_t *want = ref_get(&rf, name, ECC_I32, &n);
            const int32_t *got = (const int32_t *)out(r, "rankings", n);
            check_ints(k_models[k], name, got, want, n);
            if (lens == ECC_LENS_RAW) { /* Ecco's own numbers */
                int32_t *ecco = ref_get(&rf, "ecco_rankings", ECC_I32, &n);
                check_ints(k_models[k], "ecco_rankings", got, ecco, n);
                free(ecco);
            }
            snprintf(name, sizeof name, "ref_layer_top_ids%s", sfx);
            int32_t *ids = ref_get(&rf, name, ECC_I32, &n);
            check_ints(k_models[k], name, (const int32_t *)out(r, "layer_top_ids", n), ids, n);
            snprintf(name, sizeof name, "ref_layer_top_probs%s", sfx);
            float *probs = ref_get(&rf, name, ECC_F32, &n);
            const float *gp = out(r, "layer_top_probs", n);
            for (size_t i = 0; i < n; i++)
                cr_assert(fabs(gp[i] - probs[i]) <= 1e-5 + 1e-4 * probs[i], "%s: %s[%zu] %.7f vs %.7f", k_models[k],
                          name, i, (double)gp[i], (double)probs[i]);
            snprintf(name, sizeof name, "ref_watch_rankings%s", sfx);
            int32_t *watch = ref_get(&rf, name, ECC_I32, &n);
            check_ints(k_models[k], name, (const int32_t *)out(r, "watch_rankings", n), watch, n);
            free(want), free(ids), free(probs), free(watch);
            ecc_run_free(r);
        }
        ref_close(&rf);
        ecc_model_close(m);
    }
}

/* One target per backward chunk against all targets in one chunk, and
 * integrated gradients with few alpha steps per group (a small budget). */
Test(explain, batching_does_not_change_the_results)
{
    ecc_model *m = open_model("tiny-gpt2");
    ref rf;
    ref_open(&rf, "tiny-gpt2");
    const unsigned all = ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT | ECC_ATTR_INTEGRATED_GRADIENTS;
    ecc_run *batched = explain(m, &rf, all, ECC_TARGET_PROB, ECC_LENS_STANDARD, 0, 0);
    ecc_run *single = explain(m, &rf, all, ECC_TARGET_PROB, ECC_LENS_STANDARD, 1, 0);
    ecc_run *tight = explain(m, &rf, all, ECC_TARGET_PROB, ECC_LENS_STANDARD, 0, (size_t)6 << 20);
    size_t n = (size_t)rf.G * rf.T;
    static const char *names[3] = {"attribution.grad_x_input", "attribution.gradient",
                                   "attribution.integrated_gradients"};
    for (int i = 0; i < 3; i++) {
        const float *a = out(batched, names[i], n), *b = out(single, names[i], n), *c = out(tight, names[i], n);
        /* the same sums; only BLAS blocking may differ with the batch shape */
        check_rows("tiny-gpt2", names[i], b, a, rf.G, rf.T, 1e-6);
        check_rows("tiny-gpt2", names[i], c, a, rf.G, rf.T, 1e-6);
    }
    ecc_run_free(batched);
    ecc_run_free(single);
    ecc_run_free(tight);
    ref_close(&rf);
    ecc_model_close(m);
}

Test(explain, layers_option_slices_the_activations)
{
    ecc_model *m = open_model("tiny-gpt2-deep");
    ref rf;
    ref_open(&rf, "tiny-gpt2-deep");
    ecc_options o;
    ecc_options_default(&o);
    o.device = ECC_DEVICE_CPU;
    o.max_new_tokens = 3;
    o.activations = 1;
    o.layer_from = 3;
    o.layer_to = 7;
    ecc_run *r;
    cr_assert_eq(ecc_generate(&r, m, rf.ids, rf.n_input, &o), ECC_OK, "%s", ecc_last_error());
    const ecc_run_tensor *t = ecc_run_tensor_get(r, "activations");
    cr_assert(t && t->ndim == 3 && t->shape[0] == 4 && t->shape[1] == rf.n_input + 3 && t->shape[2] == m->cfg.n_inner);
    size_t n;
    float *act = ref_get(&rf, "ref_activations", ECC_F32, &n);
    int T = rf.T, F = m->cfg.n_inner;
    for (int l = 3; l < 7; l++) /* the fixture's first n_input + 3 positions of layers 3..6 */
        for (int p = 0; p < (int)t->shape[1]; p++) {
            double e = rel_err_f((float *)t->data + ((size_t)(l - 3) * t->shape[1] + p) * F,
                                 act + ((size_t)l * T + p) * F, (size_t)F);
            cr_assert(e <= 1e-4, "layer %d position %d: %.3g", l, p, e);
        }
    free(act);
    ecc_run_free(r);
    ref_close(&rf);
    ecc_model_close(m);
}

Test(explain, gauss_legendre_nodes_integrate_polynomials_exactly)
{
    double a[50], w[50];
    ecc_gauss_legendre01(a, w, 50);
    for (int p = 0; p < 99; p += 7) { /* exact up to degree 2n - 1 */
        double s = 0;
        for (int k = 0; k < 50; k++)
            s += w[k] * pow(a[k], p);
        cr_assert(fabs(s - 1.0 / (p + 1)) < 1e-13, "x^%d integrates to %.16f", p, s);
    }
    for (int k = 1; k < 50; k++)
        cr_assert(a[k] > a[k - 1] && a[k] > 0 && a[k] < 1);
}

/* ---- the command line ---- */

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *const *args, const char *want)
{
    char *o, *e;
    int rc = run_cli(&o, &e, args);
    cr_assert_eq(rc, 2, "exit code %d, stderr: %s", rc, e);
    cr_assert(strncmp(e, "eccolo: error: ", 15) == 0 && strchr(e, '\n') == e + strlen(e) - 1,
              "not one error line: %s", e);
    cr_assert(strstr(e, want), "'%s' not in: %s", want, e);
    free(o);
    free(e);
}

Test(explain, bad_options_are_one_line_errors)
{
    char *m = fixture_path("tiny-gpt2");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--attribution", "lime"), "unknown method 'lime'");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--attribution", "ig", "--target", "loss"),
                 "--target must be prob, logit or logprob");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--activations", "--layers", "1:5"),
                 "outside the model's 2 layers");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--activations", "--layers", "2:1"), "a < b");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--layers", "0:1"), "add --activations");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--attribution", "ig", "--ig-steps", "0"),
                 "--ig-steps");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--attribution", "grad_x_input", "--mem-budget",
                      "10K"),
                 "too small");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--mem-budget", "lots"), "512M");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--rankings", "--watch", "Hello world"),
                 "single tokens");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--watch-ids", "3"), "add --rankings");
    free(m);
}

Test(explain, the_issue_command_writes_every_tensor, .timeout = 120)
{
    char *m = fixture_path("tiny-gpt2"), *dir = test_tmpdir("explain");
    char *o, *e;
    int rc = run_cli(&o, &e,
                     ARGS("generate", "--model", m, "--prompt",
                          "Frameworks for Machine Learning include: 1. TensorFlow\\n2. PyTorch\\n3.Scikit-learn\\n4.",
                          "--max-new-tokens", "35", "--attribution", "grad_x_input,ig", "--activations",
                          "--hidden-states", "--attention", "--rankings", "--out", dir, "--quiet"));
    cr_assert_eq(rc, 0, "%s", e);
    char *json_path = ecc_path_join(dir, "run.json"), *text;
    size_t len;
    cr_assert_eq(ecc_read_file(json_path, 64 << 20, &text, &len), ECC_OK);
    cJSON *j = cJSON_Parse(text);
    int T = cJSON_GetObjectItem(j, "n_tokens")->valueint, n0 = cJSON_GetObjectItem(j, "n_input")->valueint;
    cr_assert_eq(T - n0, 35);
    const cJSON *tensors = cJSON_GetObjectItem(j, "tensors");
    static const char *want[] = {"token_ids", "token_logprobs", "attribution.grad_x_input",
                                 "attribution.integrated_gradients", "activations", "hidden_states", "attention",
                                 "rankings", "layer_top_ids", "layer_top_probs"};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_assert(cJSON_GetObjectItem(tensors, want[i]), "run.json lists no tensor %s", want[i]);
    const cJSON *sh = cJSON_GetObjectItem(cJSON_GetObjectItem(tensors, "attribution.grad_x_input"), "shape");
    cr_assert_eq(cJSON_GetArrayItem(sh, 0)->valueint, 35);
    cr_assert_eq(cJSON_GetArrayItem(sh, 1)->valueint, T);
    const cJSON *ex = cJSON_GetObjectItem(j, "explain");
    cr_assert(ex, "run.json has no explain section");
    cr_assert_str_eq(cJSON_GetObjectItem(ex, "target")->valuestring, "prob");
    cJSON_Delete(j);
    free(text), free(json_path), free(o), free(e), free(m), free(dir);
}
