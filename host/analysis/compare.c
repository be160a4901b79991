/* eccolo compare: reading the two sides (a run, or a batch's finished runs),
 * checking that they hold the same tokens, and the table and JSON outputs. */
#include "analysis/compare.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/run_reader.h"
#include "jobs/batch.h"
#include "util.h"

const char *ecc_compare_what_name(ecc_compare_what w)
{
    return w == ECC_COMPARE_HIDDEN_STATES ? "hidden_states" : "activations";
}

/* One side: its runs, the layers they all hold, their width, their tokens. */
typedef struct side {
    const char *dir;
    ecc_run_dir **runs;
    int n_runs;
    const ecc_st_tensor **t; /* per run: activations [hi - lo, T_i, N] or hidden_states [L + 1, T_i, N] */
    int *lo;                 /* per run: the first layer its tensor holds */
    int from, to;            /* the layers every run holds, [from, to) */
    int N;
    int64_t T;
    int32_t *ids;            /* (T): the runs' tokens one after another */
} side;

static void side_close(side *s)
{
    for (int i = 0; i < s->n_runs; i++)
        ecc_run_dir_close(s->runs[i]);
    free(s->runs);
    free(s->t);
    free(s->lo);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

/* The tensor compared in run r, and the layers it holds [*lo, *hi). */
static ecc_status run_layers(const ecc_run_dir *r, ecc_compare_what what, const ecc_st_tensor **t, int *lo, int *hi)
{
    ecc_status s = ECC_OK;
    const char *name = ecc_compare_what_name(what);
    *t = ecc_run_dir_tensor(r, name, ECC_F32, 3, &s);
    if (s != ECC_OK)
        return s;
    if (!*t)
        return ecc_fail(ECC_ERR_INPUT, "%s: the run has no %s: rerun eccolo generate with --%s", r->dir,
                        name, what == ECC_COMPARE_HIDDEN_STATES ? "hidden-states" : "activations");
    *lo = 0;
    *hi = (int)(*t)->shape[0];
    const cJSON *lay = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r->json, "explain"),
                                                        "activation_layers");
    if (what == ECC_COMPARE_ACTIVATIONS && cJSON_IsArray(lay) && cJSON_GetArraySize(lay) == 2) {
        *lo = cJSON_GetArrayItem(lay, 0)->valueint;
        *hi = cJSON_GetArrayItem(lay, 1)->valueint;
    }
    if (*lo < 0 || (int64_t)*hi - *lo != (*t)->shape[0] || (*t)->shape[1] != r->T || (*t)->shape[2] < 1 ||
        (*t)->shape[2] > (1 << 24))
        return ecc_fail(ECC_ERR_FORMAT, "%s: %s have shape [%lld, %lld, %lld] but run.json says layers %d:%d and %d "
                        "tokens", r->dir, name, (long long)(*t)->shape[0], (long long)(*t)->shape[1],
                        (long long)(*t)->shape[2], *lo, *hi, r->T);
    return ECC_OK;
}

/* The run directories DIR stands for: itself, or a batch's finished runs in manifest order. */
static ecc_status side_dirs(char ***dirs, int *n, const char *dir)
{
    *dirs = NULL;
    *n = 0;
    if (ecc_file_exists_in(dir, "run.json") || !ecc_file_exists_in(dir, "manifest.jsonl")) {
        if (!ecc_dir_exists(dir))
            return ecc_fail(ECC_ERR_INPUT, "%s: no such directory (give a run written by eccolo generate --out, or a "
                            "batch written by eccolo batch --out)", dir);
        if (!ecc_file_exists_in(dir, "run.json"))
            return ecc_fail(ECC_ERR_INPUT, "%s is neither a run (no run.json) nor a batch (no manifest.jsonl)", dir);
        *dirs = ecc_calloc(1, sizeof(char *), "run directories");
        if (!*dirs || !((*dirs)[0] = ecc_strdup(dir)))
            return ECC_ERR_NOMEM;
        *n = 1;
        return ECC_OK;
    }
    char **ids;
    int n_ids;
    ECC_TRY(ecc_batch_done_ids(&ids, &n_ids, dir));
    char *runs = ecc_path_join(dir, "runs");
    ecc_status s = runs ? ECC_OK : ECC_ERR_NOMEM;
    if (s == ECC_OK && n_ids == 0)
        s = ecc_fail(ECC_ERR_INPUT, "%s is a batch directory without finished runs (see its manifest.jsonl)", dir);
    if (s == ECC_OK && !(*dirs = ecc_calloc((size_t)n_ids, sizeof(char *), "run directories")))
        s = ECC_ERR_NOMEM;
    for (int i = 0; s == ECC_OK && i < n_ids; i++) {
        if (!((*dirs)[i] = ecc_path_join(runs, ids[i])))
            s = ECC_ERR_NOMEM;
        *n = i + 1;
    }
    for (int i = 0; i < n_ids; i++)
        free(ids[i]);
    free(ids);
    free(runs);
    return s;
}

static ecc_status side_open(side *s, const char *dir, ecc_compare_what what)
{
    memset(s, 0, sizeof *s);
    s->dir = dir;
    char **dirs = NULL;
    int n = 0;
    ecc_status st = side_dirs(&dirs, &n, dir);
    if (st == ECC_OK) {
        s->runs = ecc_calloc((size_t)n, sizeof *s->runs, "runs");
        s->t = ecc_calloc((size_t)n, sizeof *s->t, "runs");
        s->lo = ecc_calloc((size_t)n, sizeof *s->lo, "runs");
        st = s->runs && s->t && s->lo ? ECC_OK : ECC_ERR_NOMEM;
    }
    s->from = 0;
    s->to = 1 << 30;
    for (int i = 0; st == ECC_OK && i < n; i++) {
        st = ecc_run_dir_open(&s->runs[i], dirs[i]);
        if (st != ECC_OK)
            break;
        s->n_runs = i + 1;
        int hi = 0;
        st = run_layers(s->runs[i], what, &s->t[i], &s->lo[i], &hi);
        if (st != ECC_OK)
            break;
        const int N = (int)s->t[i]->shape[2];
        if (i > 0 && N != s->N)
            st = ecc_fail(ECC_ERR_INPUT, "%s: its runs differ in width (%d and %d neurons per layer): runs of different "
                          "models cannot be one side", dir, s->N, N);
        s->N = N;
        s->from = ECC_MAX(s->from, s->lo[i]);
        s->to = ECC_MIN(s->to, hi);
        s->T += s->runs[i]->T;
    }
    if (st == ECC_OK && s->from >= s->to)
        st = ecc_fail(ECC_ERR_INPUT, "%s: its runs hold no layer in common (captured with different --layers)", dir);
    if (st == ECC_OK && s->T > (1 << 30))
        st = ecc_fail(ECC_ERR_INPUT, "%s holds %lld tokens: too many to compare at once", dir, (long long)s->T);
    if (st == ECC_OK && !(s->ids = ecc_malloc(sizeof(int32_t) * (size_t)(s->T ? s->T : 1), "token ids")))
        st = ECC_ERR_NOMEM;
    for (int64_t i = 0, off = 0; st == ECC_OK && i < s->n_runs; off += s->runs[i]->T, i++)
        memcpy(s->ids + off, s->runs[i]->ids_copy, sizeof(int32_t) * (size_t)s->runs[i]->T);
    for (int i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
    if (st != ECC_OK)
        side_close(s);
    return st;
}

/* X (to - from, T, N): layers [from, to) of the side, its first T tokens (runs one after another). */
static ecc_status side_matrix(float **X, const side *s, int from, int to, int T)
{
    const int N = s->N;
    *X = ecc_malloc(sizeof(float) * (size_t)(to - from) * (size_t)T * (size_t)N, "the layers compared");
    if (!*X)
        return ECC_ERR_NOMEM;
    for (int l = from; l < to; l++) {
        int64_t t0 = 0;
        for (int i = 0; i < s->n_runs && t0 < T; i++) {
            const int Ti = s->runs[i]->T, n = (int)ECC_MIN((int64_t)Ti, T - t0);
            const uint8_t *src = s->t[i]->data + ((int64_t)(l - s->lo[i]) * Ti) * N * 4; /* may be unaligned */
            memcpy(*X + ((int64_t)(l - from) * T + t0) * N, src, sizeof(float) * (size_t)n * N);
            t0 += Ti;
        }
    }
    return ECC_OK;
}

/* [from, to) from the request (-1: every layer), inside what the side holds. */
static ecc_status pick_layers(int *from, int *to, int want_from, int want_to, const side *s, const char *which,
                              ecc_compare_what what)
{
    *from = want_from < 0 ? s->from : want_from;
    *to = want_to < 0 ? s->to : want_to;
    if (*from < s->from || *to > s->to || *from >= *to)
        return ecc_fail(ECC_ERR_INPUT, "--layers-%s %d:%d: %s holds %s of layers %d to %d; use a:b with %d <= a < b <= %d",
                        which, *from, *to, s->dir, ecc_compare_what_name(what), s->from, s->to, s->from, s->to);
    return ECC_OK;
}

ecc_status ecc_compare_dirs(ecc_compare_result *res, const ecc_compare_job *job)
{
    memset(res, 0, sizeof *res);
    const int same_dir = !job->b || !strcmp(job->b, job->a);
    side A, B;
    memset(&B, 0, sizeof B);
    ECC_TRY(side_open(&A, job->a, job->what));
    ecc_status st = same_dir ? ECC_OK : side_open(&B, job->b, job->what);
    const side *b = same_dir ? &A : &B;
    float *XA = NULL, *XB = NULL;
    int af = 0, at = 0, bf = 0, bt = 0;
    const int64_t T = ECC_MIN(A.T, b->T);
    if (st == ECC_OK)
        for (int64_t t = 0; t < T; t++)
            if (A.ids[t] != b->ids[t]) {
                st = ecc_fail(ECC_ERR_INPUT, "%s and %s hold different tokens: token %lld is id %d in one and %d in the "
                              "other; compare needs the same text on both sides (same prompts, tokenizer and "
                              "continuations)", job->a, b->dir, (long long)t, A.ids[t], b->ids[t]);
                break;
            }
    if (st == ECC_OK)
        st = pick_layers(&af, &at, job->a_from, job->a_to, &A, "a", job->what);
    if (st == ECC_OK)
        st = pick_layers(&bf, &bt, job->b_from, job->b_to, b, "b", job->what);
    if (st == ECC_OK)
        st = side_matrix(&XA, &A, af, at, (int)T);
    const int shared = st == ECC_OK && same_dir && af == bf && at == bt; /* one matrix: each layer prepared once */
    if (st == ECC_OK && !shared)
        st = side_matrix(&XB, b, bf, bt, (int)T);
    if (st == ECC_OK) {
        res->method = job->opt.method;
        res->what = job->what;
        res->dims = job->opt.dims;
        res->a_from = af;
        res->La = at - af;
        res->b_from = bf;
        res->Lb = bt - bf;
        res->Na = A.N;
        res->Nb = b->N;
        res->T = (int)T;
        res->Ta = (int)A.T;
        res->Tb = (int)b->T;
        res->runs_a = A.n_runs;
        res->runs_b = b->n_runs;
        res->a = ecc_strdup(job->a);
        res->b = ecc_strdup(b->dir);
        res->values = ecc_malloc(sizeof(double) * (size_t)res->La * (size_t)res->Lb, "the comparison's values");
        st = res->a && res->b && res->values ? ECC_OK : ECC_ERR_NOMEM;
    }
    if (st == ECC_OK) {
        const double t0 = ecc_now();
        st = ecc_compare_layers(res->values, XA, shared ? XA : XB, res->La, res->Lb, res->Na, res->Nb, res->T,
                                &job->opt);
        res->seconds = ecc_now() - t0;
    }
    free(XA);
    free(XB);
    side_close(&A);
    if (!same_dir)
        side_close(&B);
    if (st != ECC_OK)
        ecc_compare_result_free(res);
    return st;
}

void ecc_compare_result_free(ecc_compare_result *r)
{
    free(r->values);
    free(r->a);
    free(r->b);
    memset(r, 0, sizeof *r);
}

static cJSON *layer_list(int from, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(from + i));
    return a;
}

cJSON *ecc_compare_json(const ecc_compare_result *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "method", ecc_compare_method_name(r->method));
    cJSON_AddStringToObject(j, "what", ecc_compare_what_name(r->what));
    cJSON_AddNumberToObject(j, "tokens", r->T);
    if (r->method == ECC_COMPARE_SVCCA)
        cJSON_AddNumberToObject(j, "dims", r->dims);
    cJSON_AddStringToObject(j, "a", r->a);
    cJSON_AddStringToObject(j, "b", r->b);
    cJSON_AddItemToObject(j, "layers_a", layer_list(r->a_from, r->La));
    cJSON_AddItemToObject(j, "layers_b", layer_list(r->b_from, r->Lb));
    cJSON *vals = cJSON_AddArrayToObject(j, "values");
    for (int i = 0; i < r->La; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int k = 0; k < r->Lb; k++) {
            const double v = r->values[(int64_t)i * r->Lb + k];
            cJSON_AddItemToArray(row, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
        }
        cJSON_AddItemToArray(vals, row);
    }
    return j;
}

ecc_status ecc_compare_write_json(const ecc_compare_result *r, const char *path)
{
    cJSON *j = ecc_compare_json(r);
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text)
        return ecc_fail(ECC_ERR_NOMEM, "compare: out of memory printing the JSON");
    ecc_status s = ecc_write_file_atomic(path, text, strlen(text));
    free(text);
    return s;
}

void ecc_compare_print(FILE *f, const ecc_compare_result *r)
{
    const char *lab = r->what == ECC_COMPARE_HIDDEN_STATES ? "H" : "L";
    fprintf(f, "%s of %s over %d tokens: rows = layers of A (%s), columns = layers of B (%s)\n",
            ecc_compare_method_name(r->method), ecc_compare_what_name(r->what), r->T, r->a, r->b);
    char name[32];
    fprintf(f, "%-7s", "A \\ B");
    for (int k = 0; k < r->Lb; k++) {
        snprintf(name, sizeof name, "%s%d", lab, r->b_from + k);
        fprintf(f, " %7s", name);
    }
    fputc('\n', f);
    for (int i = 0; i < r->La; i++) {
        snprintf(name, sizeof name, "%s%d", lab, r->a_from + i);
        fprintf(f, "%-7s", name);
        for (int k = 0; k < r->Lb; k++)
            fprintf(f, " %7.4f", r->values[(int64_t)i * r->Lb + k]);
        fputc('\n', f);
    }
}
