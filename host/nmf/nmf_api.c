/* NMF in memory (include/eccolo.h, "NMF of activations, in memory"): the
 * factorisation eccolo nmf computes (nmf_runs.c), over described runs seen as
 * run directories, kept as the tensors and metadata nmf.safetensors holds. */
#include <stdlib.h>
#include <string.h>

#include "engine/run_api.h"
#include "io/st_view.h"
#include "nmf/nmf_runs.h"
#include "util.h"

struct ecc_factors {
    ecc_nmf_output o; /* o.w: factors, loadings, offsets (borrowing o's buffers) and metadata */
    char *path;       /* the file it was loaded from, or NULL */
};

ecc_status ecc_nmf_parse_init(const char *s, ecc_nmf_init *i)
{
    if (!strcmp(s, "random"))
        *i = ECC_NMF_RANDOM;
    else if (!strcmp(s, "nndsvd"))
        *i = ECC_NMF_NNDSVD;
    else if (!strcmp(s, "nndsvda"))
        *i = ECC_NMF_NNDSVDA;
    else
        return ecc_fail(ECC_ERR_INPUT, "--init must be random, nndsvd or nndsvda (got '%s')", s);
    return ECC_OK;
}

ecc_status ecc_nmf_parse_solver(const char *s, ecc_nmf_solver *v)
{
    if (strcmp(s, "mu") && strcmp(s, "hals"))
        return ecc_fail(ECC_ERR_INPUT, "--solver must be mu or hals (got '%s')", s);
    *v = strcmp(s, "mu") ? ECC_NMF_HALS : ECC_NMF_MU;
    return ECC_OK;
}

void ecc_nmf_request_default(ecc_nmf_request *q)
{
    memset(q, 0, sizeof *q);
    ecc_nmf_options nmf;
    ecc_nmf_options_default(&nmf);
    q->n_components = nmf.k;
    q->layer_from = q->layer_to = -1;
    q->init = ecc_nmf_init_name(nmf.init);
    q->solver = ecc_nmf_solver_name(nmf.solver);
    q->max_iter = nmf.max_iter;
    q->tol = nmf.tol;
    q->seed = nmf.seed;
    q->device = ECC_DEVICE_AUTO;
}

/* The request as eccolo nmf's job, checked as its options are. */
static ecc_status job_of(ecc_nmf_job *job, const ecc_nmf_request *q)
{
    memset(job, 0, sizeof *job);
    ecc_nmf_options_default(&job->nmf);
    if (q->n_components < 1 || q->n_components > (1 << 20))
        return ecc_fail(ECC_ERR_INPUT, "n_components must be from 1 to %d (got %d)", 1 << 20, q->n_components);
    if (q->max_iter < 1 || q->max_iter > 1000000)
        return ecc_fail(ECC_ERR_INPUT, "max_iter must be from 1 to 1000000 (got %d)", q->max_iter);
    if (!(q->tol >= 0 && q->tol <= 1))
        return ecc_fail(ECC_ERR_INPUT, "tol must be from 0 to 1 (got %g)", q->tol);
    if (q->layer_from < -1 || q->layer_to < -1 || q->threads < 0 || q->threads > 1024)
        return ecc_fail(ECC_ERR_INPUT, "layer_from and layer_to must be >= 0 (or -1: the captured range), threads "
                        "from 0 to 1024 (got %d, %d, %d)", q->layer_from, q->layer_to, q->threads);
    ECC_TRY(ecc_nmf_parse_init(q->init ? q->init : "random", &job->nmf.init));
    ECC_TRY(ecc_nmf_parse_solver(q->solver ? q->solver : "mu", &job->nmf.solver));
    job->nmf.k = q->n_components;
    job->nmf.max_iter = q->max_iter;
    job->nmf.tol = (float)q->tol;
    job->nmf.seed = q->seed;
    job->layer_from = q->layer_from;
    job->layer_to = q->layer_to;
    job->device = q->device;
    job->threads = q->threads;
    return ECC_OK;
}

ecc_status ecc_nmf_compute(ecc_factors **out, const ecc_run *const *runs, int n_runs, const ecc_nmf_request *q)
{
    *out = NULL;
    if (!runs || n_runs < 1 || !q)
        return ecc_fail(ECC_ERR_INPUT, "ecc_nmf_compute: give at least one run and a request");
    ecc_nmf_job job;
    ECC_TRY(job_of(&job, q));
    ecc_run_dir **dirs = ecc_calloc((size_t)n_runs, sizeof *dirs, "runs");
    ecc_factors *f = ecc_calloc(1, sizeof *f, "NMF factors");
    ecc_status s = dirs && f ? ECC_OK : ECC_ERR_NOMEM;
    for (int i = 0; s == ECC_OK && i < n_runs; i++)
        s = runs[i] ? ecc_run_dir_of_run(&dirs[i], runs[i])
                    : ecc_fail(ECC_ERR_INPUT, "ecc_nmf_compute: run %d is NULL", i);
    if (s == ECC_OK)
        s = ecc_nmf_of_runs(&f->o, dirs, n_runs, &job);
    for (int i = 0; dirs && i < n_runs; i++)
        ecc_run_dir_close(dirs[i]);
    free(dirs);
    if (s != ECC_OK) {
        free(f);
        return s;
    }
    *out = f;
    return ECC_OK;
}

ecc_status ecc_factors_tensor(const ecc_factors *f, const char *name, ecc_tensor_info *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < f->o.w.n; i++) {
        const struct ecc_st_wentry *e = &f->o.w.e[i];
        if (strcmp(e->name, name))
            continue;
        out->name = e->name;
        out->dtype = ecc_dtype_name(e->dtype);
        out->ndim = e->ndim;
        out->nbytes = ecc_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            out->shape[d] = e->shape[d];
            out->nbytes *= (size_t)e->shape[d];
        }
        out->data = e->data;
        return ECC_OK;
    }
    return ecc_fail(ECC_ERR_INPUT, "NMF factors have no tensor '%s' (they have factors, loadings, offsets)", name);
}

const char *ecc_factors_meta(const ecc_factors *f, const char *key)
{
    for (int i = 0; i < f->o.w.n_meta; i++)
        if (!strcmp(f->o.w.meta_keys[i], key))
            return f->o.w.meta_values[i];
    return NULL;
}

ecc_status ecc_factors_save(const ecc_factors *f, const char *path)
{
    return ecc_st_writer_write((ecc_st_writer *)&f->o.w, path);
}

/* A copy of a tensor of nmf.safetensors, which must be DTYPE with 2 or 1 dimensions. */
static void *copy_tensor(const ecc_st_file *st, const char *name, ecc_dtype dtype, int ndim, ecc_status *s)
{
    const ecc_st_tensor *t = *s == ECC_OK ? ecc_st_find(st, name) : NULL;
    if (*s != ECC_OK)
        return NULL;
    if (!t || t->dtype != dtype || t->ndim != ndim) {
        *s = ecc_fail(ECC_ERR_FORMAT, "%s: an NMF file needs factors F32 [K, T], loadings F32 [K, F'] and offsets I32 "
                      "[runs + 1], as eccolo nmf writes them", st->path);
        return NULL;
    }
    void *p = ecc_malloc(t->nbytes, name);
    if (!p)
        *s = ECC_ERR_NOMEM;
    else
        memcpy(p, t->data, t->nbytes);
    return p;
}

ecc_status ecc_factors_load(ecc_factors **out, const char *path)
{
    *out = NULL;
    ecc_st_file *st;
    ECC_TRY(ecc_st_open(&st, path));
    ecc_factors *f = ecc_calloc(1, sizeof *f, "NMF factors");
    ecc_status s = f ? ECC_OK : ECC_ERR_NOMEM;
    if (f) {
        ecc_st_writer_init(&f->o.w);
        f->o.factors = copy_tensor(st, "factors", ECC_F32, 2, &s);
        f->o.res.H = copy_tensor(st, "loadings", ECC_F32, 2, &s);
        f->o.offsets = copy_tensor(st, "offsets", ECC_I32, 1, &s);
    }
    static const char *const names[3] = {"factors", "loadings", "offsets"};
    for (int i = 0; s == ECC_OK && i < 3; i++) {
        const ecc_st_tensor *t = ecc_st_find(st, names[i]);
        const void *data = i == 0 ? (void *)f->o.factors : i == 1 ? (void *)f->o.res.H : (void *)f->o.offsets;
        s = ecc_st_writer_add(&f->o.w, names[i], t->dtype, t->ndim, t->shape, data);
    }
    for (int i = 0; s == ECC_OK && i < st->n_meta; i++)
        s = ecc_st_writer_meta(&f->o.w, st->meta_keys[i], st->meta_values[i]);
    ecc_st_close(st);
    if (s == ECC_OK && !(f->path = ecc_strdup(path)))
        s = ECC_ERR_NOMEM;
    if (s != ECC_OK) {
        ecc_factors_free(f);
        return s;
    }
    *out = f;
    return ECC_OK;
}

void ecc_factors_free(ecc_factors *f)
{
    if (!f)
        return;
    ecc_nmf_output_free(&f->o);
    free(f->path);
    free(f);
}

/* For the report (report_api.c): the factors seen as an nmf.safetensors file
 * (named as the file they were loaded from, as eccolo report names it). */
ecc_status ecc_factors_view(ecc_st_file **out, const ecc_factors *f)
{
    return ecc_st_view(out, &f->o.w, f->path ? f->path : "(in memory)/nmf.safetensors");
}
