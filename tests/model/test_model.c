/* The forward pass against transformers: logits at every position of the
 * fixture prompt (computed by tools/fixtures_models.py in float64), for the
 * three fixture checkpoints (F32 with "transformer." keys; F16 without the
 * prefix; BF16 sharded with a stored lm_head), and KV-cached decoding against
 * a full forward. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "engine/forward.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

static const char *k_models[] = {"tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-sharded"};
#define N_MODELS 3

/* A reference tensor from DIR/reference.safetensors (malloc'd); shape[0..1]. */
static void *ref_tensor(const char *model, const char *name, ecc_dtype dtype, int64_t *shape)
{
    char rel[256];
    int64_t s[4];
    snprintf(rel, sizeof rel, "%s/reference.safetensors", model);
    void *p = fixture_tensor(rel, name, dtype, s, NULL);
    shape[0] = s[0];
    shape[1] = s[1];
    return p;
}

typedef struct fixture_model {
    ecc_model *m;
    ecc_backend *be;
    ecc_dmodel dm;
} fixture_model;

static void open_model(fixture_model *fm, const char *name)
{
    char *dir = fixture_path(name);
    cr_assert_eq(ecc_model_open(&fm->m, dir), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_backend_cpu_create(&fm->be, 0), ECC_OK);
    cr_assert_eq(ecc_dmodel_init(&fm->dm, fm->be, fm->m), ECC_OK);
    free(dir);
}

static void close_model(fixture_model *fm)
{
    ecc_dmodel_free(&fm->dm);
    fm->be->destroy(fm->be);
    ecc_model_close(fm->m);
}

/* logits (T, V) at every position of ids (T), in one forward call */
static float *full_forward(fixture_model *fm, const int32_t *ids, int T)
{
    const ecc_config *c = &fm->m->cfg;
    ecc_kv kv;
    ecc_acts a;
    cr_assert_eq(ecc_kv_init(&kv, fm->be, c, T), ECC_OK);
    cr_assert_eq(ecc_acts_scratch(&a, fm->be, c, T, T), ECC_OK);
    ecc_forward(&fm->dm, &a, &kv, ids, 0, T, T);
    float *out = malloc(sizeof(float) * (size_t)T * (size_t)c->vocab_size);
    memcpy(out, a.logits, sizeof(float) * (size_t)T * (size_t)c->vocab_size);
    ecc_acts_free(&a, fm->be);
    ecc_kv_free(&kv, fm->be);
    return out;
}

Test(model, logits_match_transformers_at_every_position)
{
    for (int k = 0; k < N_MODELS; k++) {
        fixture_model fm;
        open_model(&fm, k_models[k]);
        int64_t ps[2], ls[2];
        int32_t *ids = ref_tensor(k_models[k], "prompt_ids", ECC_I32, ps);
        float *ref = ref_tensor(k_models[k], "logits", ECC_F32, ls);
        int T = (int)ps[0], V = fm.m->cfg.vocab_size;
        cr_assert_eq(ls[0], T);
        cr_assert_eq(ls[1], V);
        float *logits = full_forward(&fm, ids, T);
        double worst = 0;
        for (int t = 0; t < T; t++) {
            /* fp32 engine vs the float64 reference (stored rounded to fp32): 1e-4 norm-wise per position */
            double e = rel_err_f(logits + (size_t)t * V, ref + (size_t)t * V, (size_t)V);
            worst = fmax(worst, e);
            cr_assert(e <= 1e-4, "%s: position %d: relative error %.3g > 1e-4", k_models[k], t, e);
        }
        cr_log_info("%s: worst relative logit error over %d positions %.3g", k_models[k], T, worst);
        free(logits);
        free(ids);
        free(ref);
        close_model(&fm);
    }
}

Test(model, kv_cached_decoding_equals_full_forward)
{
    for (int k = 0; k < N_MODELS; k++) {
        fixture_model fm;
        open_model(&fm, k_models[k]);
        const ecc_config *c = &fm.m->cfg;
        int64_t fs[2], ps[2], rs[2];
        int32_t *ids = ref_tensor(k_models[k], "forced_ids", ECC_I32, fs);
        int32_t *prompt = ref_tensor(k_models[k], "prompt_ids", ECC_I32, ps);
        float *ref_forced = ref_tensor(k_models[k], "forced_logits", ECC_F32, rs);
        int T = (int)fs[0], T0 = (int)ps[0], V = c->vocab_size;
        free(prompt);
        float *full = full_forward(&fm, ids, T);

        /* the prompt in one call, then one token per call against the cache */
        ecc_kv kv;
        ecc_acts a;
        cr_assert_eq(ecc_kv_init(&kv, fm.be, c, T), ECC_OK);
        cr_assert_eq(ecc_acts_scratch(&a, fm.be, c, T0, 1), ECC_OK);
        for (int pos = T0 - 1; pos < T - 1; pos++) {
            if (pos == T0 - 1)
                ecc_forward(&fm.dm, &a, &kv, ids, 0, T0, 1);
            else
                ecc_forward(&fm.dm, &a, &kv, ids + pos, pos, 1, 1);
            /* sgemv against sgemm: the same sums in another order, 1e-5 */
            double e = rel_err_f(a.logits, full + (size_t)pos * V, (size_t)V);
            cr_assert(e <= 1e-5, "%s: cached step at position %d differs from the full forward by %.3g",
                      k_models[k], pos, e);
            /* and both against transformers' logits of the forced continuation */
            double r = rel_err_f(a.logits, ref_forced + (size_t)(pos - (T0 - 1)) * V, (size_t)V);
            cr_assert(r <= 1e-4, "%s: position %d: relative error %.3g against transformers", k_models[k], pos, r);
        }
        ecc_acts_free(&a, fm.be);
        ecc_kv_free(&kv, fm.be);
        free(full);
        free(ids);
        free(ref_forced);
        close_model(&fm);
    }
}

Test(model, prompt_tokenizes_as_transformers)
{
    cJSON *ref = fixture_json("tiny-gpt2/reference.json");
    const char *prompt = cJSON_GetObjectItem(ref, "prompt")->valuestring;
    for (int k = 0; k < N_MODELS; k++) {
        fixture_model fm;
        open_model(&fm, k_models[k]);
        int64_t ps[2];
        int32_t *want = ref_tensor(k_models[k], "prompt_ids", ECC_I32, ps), *got;
        int n;
        cr_assert_eq(ecc_tokenize(fm.m, prompt, strlen(prompt), &got, &n), ECC_OK, "%s", ecc_last_error());
        cr_assert_eq(n, ps[0], "%s: %d tokens, transformers has %lld", k_models[k], n, (long long)ps[0]);
        for (int i = 0; i < n; i++)
            cr_assert_eq(got[i], want[i], "%s: token %d is %d, transformers has %d", k_models[k], i, got[i], want[i]);
        free(got);
        free(want);
        close_model(&fm);
    }
    cJSON_Delete(ref);
}

Test(model, config_and_storage_are_read_as_written)
{
    cJSON *ref = fixture_json("tiny-gpt2-f16/reference.json");
    const cJSON *mc = cJSON_GetObjectItem(ref, "model");
    fixture_model fm;
    open_model(&fm, "tiny-gpt2-f16");
    const ecc_config *c = &fm.m->cfg;
    cr_assert_eq(c->n_layer, cJSON_GetObjectItem(mc, "n_layer")->valueint);
    cr_assert_eq(c->n_embd, cJSON_GetObjectItem(mc, "n_embd")->valueint);
    cr_assert_eq(c->n_inner, cJSON_GetObjectItem(mc, "n_inner")->valueint);
    cr_assert_float_eq(c->layer_norm_eps, (float)cJSON_GetObjectItem(mc, "layer_norm_epsilon")->valuedouble, 1e-12);
    cr_assert_str_eq(fm.m->dtype, "F16");
    close_model(&fm);
    open_model(&fm, "tiny-gpt2-sharded");
    cr_assert_str_eq(fm.m->dtype, "BF16");
    cr_assert_eq(fm.m->cfg.tied_lm_head, 0);
    cr_assert(fm.dm.w.p[ECC_P_LMHEAD] != fm.dm.w.p[ECC_P_WTE]);
    close_model(&fm);
    open_model(&fm, "tiny-gpt2");
    cr_assert_eq(fm.m->cfg.n_inner, 4 * fm.m->cfg.n_embd, "n_inner null means 4 * n_embd");
    close_model(&fm);
    cJSON_Delete(ref);
}
