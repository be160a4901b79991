#include "nmf/nmf_runs.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/run_reader.h"
#include "io/safetensors.h"
#include "util.h"

/* The captured layers [a, b) of a run (explain.activation_layers), and its activations [b - a, T, F]. */
static ecc_status run_activations(const ecc_run_dir *r, const ecc_st_tensor **act, int *a, int *b)
{
    ecc_status s = ECC_OK;
    *act = ecc_run_dir_tensor(r, "activations", ECC_F32, 3, &s);
    if (s != ECC_OK)
        return s;
    if (!*act)
        return ecc_fail(ECC_ERR_INPUT, "%s: the run has no activations: rerun eccolo generate with --activations",
                        r->dir);
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(r->json, "explain");
    const cJSON *lay = cJSON_GetObjectItemCaseSensitive(ex, "activation_layers");
    *a = 0;
    *b = (int)(*act)->shape[0];
    if (cJSON_IsArray(lay) && cJSON_GetArraySize(lay) == 2) {
        *a = cJSON_GetArrayItem(lay, 0)->valueint;
        *b = cJSON_GetArrayItem(lay, 1)->valueint;
    }
    /* int64: valueint saturates at INT_MIN / INT_MAX (fuzz/regressions/nmf) */
    if (*a < 0 || (int64_t)*b - *a != (*act)->shape[0] || (*act)->shape[1] != r->T || (*act)->shape[2] < 1)
        return ecc_fail(ECC_ERR_FORMAT, "%s: activations have shape [%lld, %lld, %lld] but run.json says layers %d:%d "
                        "and %d tokens", r->dir, (long long)(*act)->shape[0], (long long)(*act)->shape[1],
                        (long long)(*act)->shape[2], *a, *b, r->T);
    return ECC_OK;
}

/* X (T_total, (to - from) * F) = max(activations, 0), rows run after run. */
static ecc_status build_x(float **X, int *T_total, int *Fp, int32_t *offsets, ecc_run_dir *const *runs, int n,
                          int *from, int *to)
{
    const ecc_st_tensor *acts[n > 0 ? n : 1];
    int F = 0, lo = 0, hi = 1 << 30;
    int64_t T = 0;
    for (int i = 0; i < n; i++) {
        int a, b;
        ECC_TRY(run_activations(runs[i], &acts[i], &a, &b));
        if (i == 0)
            F = (int)acts[i]->shape[2];
        else if (acts[i]->shape[2] != F)
            return ecc_fail(ECC_ERR_INPUT, "%s has %lld neurons per layer but %s has %d: runs of different models "
                            "cannot share an NMF", runs[i]->dir, (long long)acts[i]->shape[2], runs[0]->dir, F);
        lo = ECC_MAX(lo, a);
        hi = ECC_MIN(hi, b);
        offsets[i] = (int32_t)T;
        T += runs[i]->T;
    }
    offsets[n] = (int32_t)T;
    if (*from < 0)
        *from = lo;
    if (*to < 0)
        *to = hi;
    if (*from < lo || *to > hi || *from >= *to)
        return ecc_fail(ECC_ERR_INPUT, "--from-layer %d --to-layer %d: the runs captured layers %d to %d (use "
                        "%d <= from < to <= %d)", *from, *to, lo, hi, lo, hi);
    int64_t cols = (int64_t)(*to - *from) * F;
    if (T > (1 << 30) || cols > (1 << 30))
        return ecc_fail(ECC_ERR_INPUT, "NMF of %lld positions x %lld columns is too large", (long long)T,
                        (long long)cols);
    float *x = ecc_malloc(sizeof(float) * (size_t)T * (size_t)cols, "the activation matrix");
    if (!x)
        return ECC_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int a = 0, b = 0;
        run_activations(runs[i], &acts[i], &a, &b);
        const uint8_t *src = acts[i]->data; /* [b - a, T_i, F], may be unaligned: memcpy per row */
        for (int l = *from; l < *to; l++)
            for (int t = 0; t < runs[i]->T; t++) {
                float *dst = x + ((int64_t)offsets[i] + t) * cols + (int64_t)(l - *from) * F;
                memcpy(dst, src + (((int64_t)(l - a) * runs[i]->T + t) * F) * 4, sizeof(float) * (size_t)F);
                for (int f = 0; f < F; f++) {
                    if (!isfinite(dst[f])) { /* max(NaN, 0) would hide it; inf makes NaN factors */
                        ecc_status s = ecc_fail(ECC_ERR_INPUT, "%s: tensor 'activations' holds %s at layer %d, "
                                                "position %d, neuron %d: NMF needs finite activations (the model "
                                                "overflowed on this run; leave the run out)", runs[i]->dir,
                                                isnan(dst[f]) ? "NaN" : "inf", l, t, f);
                        free(x);
                        return s;
                    }
                    dst[f] = dst[f] > 0 ? dst[f] : 0;
                }
            }
    }
    *X = x;
    *T_total = (int)T;
    *Fp = (int)cols;
    return ECC_OK;
}

/* factors (W^T), loadings (H), offsets and the settings, as nmf.safetensors holds them */
static ecc_status describe(ecc_nmf_output *o, const ecc_nmf_job *job, ecc_run_dir *const *runs, int n, int T,
                           int Fp, int from, int to)
{
    const ecc_nmf_result *res = &o->res;
    int K = job->nmf.k;
    o->factors = ecc_malloc(sizeof(float) * (size_t)K * T, "NMF factors"); /* W^T */
    if (!o->factors)
        return ECC_ERR_NOMEM;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++)
            o->factors[(size_t)j * T + t] = res->W[(size_t)t * K + j];
    ecc_st_writer *w = &o->w;
    char buf[64];
    cJSON *dirs = cJSON_CreateArray(), *ids = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(dirs, cJSON_CreateString(runs[i]->dir));
        cJSON_AddItemToArray(ids, cJSON_CreateString(runs[i]->run_id));
    }
    char *runs_s = cJSON_PrintUnformatted(dirs), *ids_s = cJSON_PrintUnformatted(ids);
    cJSON_Delete(dirs);
    cJSON_Delete(ids);
    ecc_status s = ecc_st_writer_add(w, "factors", ECC_F32, 2, (int64_t[]){K, T}, o->factors);
    if (s == ECC_OK)
        s = ecc_st_writer_add(w, "loadings", ECC_F32, 2, (int64_t[]){K, Fp}, res->H);
    if (s == ECC_OK)
        s = ecc_st_writer_add(w, "offsets", ECC_I32, 1, (int64_t[]){n + 1}, o->offsets);
#define META(key, fmt, val)                                  \
    if (s == ECC_OK) {                                       \
        snprintf(buf, sizeof buf, fmt, val);                 \
        s = ecc_st_writer_meta(w, key, buf);                 \
    }
    META("relative_error", "%.9g", res->rel_error);
    META("iterations", "%d", res->iterations);
    META("seconds", "%.6f", res->seconds);
    META("layer_from", "%d", from);
    META("layer_to", "%d", to);
    META("n_components", "%d", K);
    META("init", "%s", ecc_nmf_init_name(job->nmf.init));
    META("solver", "%s", ecc_nmf_solver_name(job->nmf.solver));
    META("tol", "%g", (double)job->nmf.tol);
    META("max_iter", "%d", job->nmf.max_iter);
    META("seed", "%llu", (unsigned long long)job->nmf.seed);
#undef META
    if (s == ECC_OK)
        s = runs_s && ids_s ? ecc_st_writer_meta(w, "runs", runs_s) : ecc_fail(ECC_ERR_NOMEM, "out of memory");
    if (s == ECC_OK) /* which runs the factors belong to: a report of a rerun refuses them */
        s = ecc_st_writer_meta(w, "run_ids", ids_s);
    free(runs_s);
    free(ids_s);
    return s;
}

ecc_status ecc_nmf_of_runs(ecc_nmf_output *o, ecc_run_dir *const *runs, int n, const ecc_nmf_job *job)
{
    memset(o, 0, sizeof *o);
    ecc_st_writer_init(&o->w);
    if (n < 1)
        return ecc_fail(ECC_ERR_INPUT, "nmf: give at least one run directory");
    o->offsets = ecc_calloc((size_t)n + 1, sizeof(int32_t), "run offsets");
    if (!o->offsets)
        return ECC_ERR_NOMEM;
    float *X = NULL;
    int T = 0, Fp = 0, from = job->layer_from, to = job->layer_to;
    ecc_status s = build_x(&X, &T, &Fp, o->offsets, runs, n, &from, &to);
    ecc_backend *be = NULL;
    const char *notice = NULL;
    if (s == ECC_OK)
        s = ecc_backend_create(&be, job->device, job->threads, ECC_PRECISION_FP32, &notice);
    if (s == ECC_OK)
        s = ecc_nmf(&o->res, be, X, T, Fp, &job->nmf);
    if (s == ECC_OK && notice) /* why --device auto chose the CPU, for the caller to show */
        snprintf(o->res.notice, sizeof o->res.notice, "%s", notice);
    if (s == ECC_OK)
        s = describe(o, job, runs, n, T, Fp, from, to);
    if (be)
        be->destroy(be);
    free(X);
    if (s != ECC_OK)
        ecc_nmf_output_free(o);
    return s;
}

void ecc_nmf_output_free(ecc_nmf_output *o)
{
    ecc_st_writer_free(&o->w);
    ecc_nmf_result_free(&o->res);
    free(o->factors);
    free(o->offsets);
    memset(o, 0, sizeof *o);
}

ecc_status ecc_nmf_runs(const ecc_nmf_job *job, ecc_nmf_result *res_out, char **out_path)
{
    if (job->n_dirs < 1)
        return ecc_fail(ECC_ERR_INPUT, "nmf: give at least one run directory");
    ecc_run_dir **runs = ecc_calloc((size_t)job->n_dirs, sizeof *runs, "run directories");
    ecc_status s = runs ? ECC_OK : ECC_ERR_NOMEM;
    for (int i = 0; s == ECC_OK && i < job->n_dirs; i++)
        s = ecc_run_dir_open(&runs[i], job->dirs[i]);
    ecc_nmf_output o;
    memset(&o, 0, sizeof o);
    if (s == ECC_OK)
        s = ecc_nmf_of_runs(&o, runs, job->n_dirs, job);
    char *path = NULL;
    if (s == ECC_OK) {
        path = job->out ? ecc_strdup(job->out) : ecc_path_join(job->dirs[0], "nmf.safetensors");
        s = path ? ecc_st_writer_write(&o.w, path) : ECC_ERR_NOMEM;
    }
    for (int i = 0; runs && i < job->n_dirs; i++)
        ecc_run_dir_close(runs[i]);
    free(runs);
    if (s == ECC_OK && res_out) { /* the result moves to the caller */
        *res_out = o.res;
        memset(&o.res, 0, sizeof o.res);
    }
    ecc_nmf_output_free(&o);
    if (s == ECC_OK && out_path)
        *out_path = path;
    else
        free(path);
    return s;
}
