/* A run in memory (include/eccolo.h, "a run's description, tensors and
 * tokens"): its description (run.json's content, run_writer.c builds it),
 * its tensors by name, merging explanations computed later, and saving and
 * loading run directories. The description lives in r->extra. */
#define _GNU_SOURCE
#include "engine/run_api.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/run_writer.h"
#include "io/st_view.h"
#include "model/model.h"
#include "util.h"

struct ecc_run_extra {
    cJSON *record;   /* the description (run.json without tensors_file and the tensors' index) */
    char *json_text; /* ecc_run_json's last text */
    char *source;    /* the directory it was loaded from, or NULL */
};

void ecc_run_extra_free(struct ecc_run_extra *x)
{
    if (!x)
        return;
    cJSON_Delete(x->record);
    free(x->json_text);
    free(x->source);
    free(x);
}

static ecc_status need_record(const ecc_run *r, const char *what)
{
    if (r && r->extra && r->extra->record)
        return ECC_OK;
    return ecc_fail(ECC_ERR_INPUT, "%s: the run is not described: call ecc_run_describe(run, model, prompt) after "
                    "ecc_generate", what);
}

/* Replace the run's description by RECORD (owned); the file keys go. */
static ecc_status set_record(ecc_run *r, cJSON *record, const char *source)
{
    if (!r->extra && !(r->extra = ecc_calloc(1, sizeof *r->extra, "a run's description"))) {
        cJSON_Delete(record);
        return ECC_ERR_NOMEM;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(record, "tensors_file");
    cJSON_DeleteItemFromObjectCaseSensitive(record, "tensors");
    cJSON_Delete(r->extra->record);
    r->extra->record = record;
    free(r->extra->source);
    r->extra->source = source ? ecc_strdup(source) : NULL;
    return source && !r->extra->source ? ECC_ERR_NOMEM : ECC_OK;
}

ecc_status ecc_run_describe(ecc_run *r, const ecc_model *m, const char *prompt_text)
{
    if (!r || !m)
        return ecc_fail(ECC_ERR_INPUT, "ecc_run_describe: run and model must not be NULL");
    char run_id[33];
    ECC_TRY(ecc_random_id(run_id));
    cJSON *record;
    ECC_TRY(ecc_run_record(&record, r, m, prompt_text, run_id));
    return set_record(r, record, NULL);
}

/* ---- tensors ------------------------------------------------------------------- */

int ecc_run_n_tensors(const ecc_run *r) { return 2 + r->n_tensors; }

ecc_status ecc_run_tensor_at(const ecc_run *r, int i, ecc_tensor_info *out)
{
    memset(out, 0, sizeof *out);
    if (i < 0 || i >= ecc_run_n_tensors(r))
        return ecc_fail(ECC_ERR_INPUT, "tensor %d: the run has %d tensors", i, ecc_run_n_tensors(r));
    if (i < 2) { /* as the tensors file holds them: token_ids I32 [T], token_logprobs F32 [G] */
        out->name = i ? "token_logprobs" : "token_ids";
        out->dtype = ecc_dtype_name(i ? ECC_F32 : ECC_I32);
        out->ndim = 1;
        out->shape[0] = i ? r->T - r->n_input : r->T;
        out->data = i ? (const void *)r->logprobs : (const void *)r->ids;
        out->nbytes = (size_t)out->shape[0] * 4;
        return ECC_OK;
    }
    const ecc_run_tensor *t = &r->tensors[i - 2];
    out->name = t->name;
    out->dtype = ecc_dtype_name(t->dtype);
    out->ndim = t->ndim;
    out->nbytes = ecc_dtype_size(t->dtype);
    for (int d = 0; d < t->ndim; d++) {
        out->shape[d] = t->shape[d];
        out->nbytes *= (size_t)t->shape[d];
    }
    out->data = t->data;
    return ECC_OK;
}

ecc_status ecc_run_find_tensor(const ecc_run *r, const char *name, ecc_tensor_info *out)
{
    char names[512] = "";
    size_t len = 0;
    for (int i = 0; i < ecc_run_n_tensors(r); i++) {
        ECC_TRY(ecc_run_tensor_at(r, i, out));
        if (!strcmp(out->name, name))
            return ECC_OK;
        if (len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "", out->name);
    }
    memset(out, 0, sizeof *out);
    return ecc_fail(ECC_ERR_INPUT, "the run has no tensor '%s' (it has %s)", name, names);
}

/* ---- the description --------------------------------------------------------------- */

/* The tensors' index, as run.json has it: {"name": {"dtype": "F32", "shape": [...]}} */
static cJSON *tensor_index(const ecc_run *r)
{
    cJSON *idx = cJSON_CreateObject();
    ecc_tensor_info t;
    for (int i = 0; idx && i < ecc_run_n_tensors(r); i++) {
        ecc_run_tensor_at(r, i, &t);
        cJSON *e = cJSON_AddObjectToObject(idx, t.name);
        cJSON_AddStringToObject(e, "dtype", t.dtype);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t.ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t.shape[d]));
    }
    return idx;
}

const char *ecc_run_json(const ecc_run *r)
{
    if (need_record(r, "ecc_run_json") != ECC_OK)
        return NULL;
    cJSON *j = cJSON_Duplicate(r->extra->record, 1);
    if (j)
        cJSON_AddItemToObject(j, "tensors", tensor_index(r));
    char *text = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) {
        ecc_fail(ECC_ERR_NOMEM, "out of memory printing a run's description");
        return NULL;
    }
    free(r->extra->json_text);
    r->extra->json_text = text;
    return text;
}

const char *ecc_run_token_text(const ecc_run *r, int i, int *partial)
{
    if (partial)
        *partial = 0;
    if (need_record(r, "ecc_run_token_text") != ECC_OK || i < 0 || i >= r->T)
        return NULL;
    const cJSON *rec = r->extra->record;
    const cJSON *p = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "partial"), i);
    if (partial)
        *partial = cJSON_IsTrue(p);
    return cJSON_GetStringValue(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(rec, "tokens"), i));
}

/* ---- the run as a run directory --------------------------------------------------------- */

ecc_status ecc_run_dir_of_run(ecc_run_dir **out, const ecc_run *r)
{
    *out = NULL;
    ECC_TRY(need_record(r, "the run"));
    ecc_run_dir *d = ecc_calloc(1, sizeof *d, "a run in memory");
    if (!d)
        return ECC_ERR_NOMEM;
    const char *run_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->extra->record, "run_id"));
    snprintf(d->run_id, sizeof d->run_id, "%s", run_id ? run_id : "");
    d->dir = ecc_strdup(r->extra->source ? r->extra->source : "(in memory)");
    d->json = cJSON_Duplicate(r->extra->record, 1);
    d->T = r->T;
    d->n_input = r->n_input;
    d->ids = r->ids;
    d->ids_copy = ecc_malloc(sizeof(int32_t) * (size_t)r->T, "token ids");
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    ecc_status s = d->dir && d->json && d->ids_copy ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "out of memory");
    if (s == ECC_OK) {
        memcpy(d->ids_copy, r->ids, sizeof(int32_t) * (size_t)r->T);
        s = ecc_run_collect_tensors(&w, r, d->run_id);
    }
    if (s == ECC_OK)
        s = ecc_st_view(&d->st, &w, "(in memory)/tensors.safetensors");
    ecc_st_writer_free(&w);
    if (s != ECC_OK) {
        ecc_run_dir_close(d);
        return s;
    }
    *out = d;
    return ECC_OK;
}

/* ---- merging explanations computed later ------------------------------------------------- */

/* DST's "explain" gains what SRC's says about the tensors added. */
static void merge_explain(cJSON *dst, const cJSON *src)
{
    cJSON *de = cJSON_GetObjectItemCaseSensitive(dst, "explain");
    const cJSON *se = cJSON_GetObjectItemCaseSensitive(src, "explain");
    if (!de || !se)
        return;
    cJSON *da = cJSON_GetObjectItemCaseSensitive(de, "attribution");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(se, "attribution"))
    {
        int have = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, da) have |= cJSON_IsString(x) && cJSON_IsString(e) && !strcmp(x->valuestring, e->valuestring);
        if (!have && da)
            cJSON_AddItemToArray(da, cJSON_Duplicate(e, 1));
    }
    cJSON_ArrayForEach(e, se)
    {
        cJSON *d = cJSON_GetObjectItemCaseSensitive(de, e->string);
        if (!d)
            cJSON_AddItemToObject(de, e->string, cJSON_Duplicate(e, 1));
        else if (cJSON_IsBool(d) && cJSON_IsTrue(e))
            cJSON_ReplaceItemInObjectCaseSensitive(de, e->string, cJSON_CreateTrue());
    }
}

ecc_status ecc_run_merge(ecc_run *dst, ecc_run *src)
{
    ECC_TRY(need_record(dst, "ecc_run_merge"));
    ECC_TRY(need_record(src, "ecc_run_merge"));
    if (dst->T != src->T || dst->n_input != src->n_input ||
        memcmp(dst->ids, src->ids, sizeof(int32_t) * (size_t)dst->T))
        return ecc_fail(ECC_ERR_INPUT, "ecc_run_merge: the runs hold different tokens (%d and %d, %d and %d of the prompt)",
                        dst->T, src->T, dst->n_input, src->n_input);
    const cJSON *dx = cJSON_GetObjectItemCaseSensitive(dst->extra->record, "explain");
    const cJSON *sx = cJSON_GetObjectItemCaseSensitive(src->extra->record, "explain");
    const char *dt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dx, "target"));
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sx, "target"));
    int d_attr = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(dx, "attribution")) > 0;
    int s_attr = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sx, "attribution")) > 0;
    if (d_attr && s_attr && dt && st && strcmp(dt, st))
        return ecc_fail(ECC_ERR_INPUT, "ecc_run_merge: the runs explain different targets (%s and %s)", dt, st);
    int moved = 0;
    for (int i = 0; i < src->n_tensors; i++) {
        ecc_run_tensor *t = &src->tensors[i];
        if (ecc_run_tensor_get(dst, t->name))
            continue;
        if (dst->n_tensors == ECC_RUN_MAX_TENSORS)
            return ecc_fail(ECC_ERR_NOMEM, "ecc_run_merge: a run holds at most %d tensors", ECC_RUN_MAX_TENSORS);
        dst->tensors[dst->n_tensors++] = *t;
        t->data = NULL; /* moved */
        moved++;
    }
    int k = 0; /* src keeps the rest */
    for (int i = 0; i < src->n_tensors; i++)
        if (src->tensors[i].data)
            src->tensors[k++] = src->tensors[i];
    src->n_tensors = k;
    if (moved)
        merge_explain(dst->extra->record, src->extra->record);
    return ECC_OK;
}

/* ---- saving and loading ------------------------------------------------------------------ */

ecc_status ecc_run_save(const ecc_run *r, const char *dir)
{
    ECC_TRY(need_record(r, dir));
    cJSON *rec = r->extra->record;
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(rec, "run_id"))) { /* loaded from before run ids */
        char run_id[33];
        ECC_TRY(ecc_random_id(run_id));
        cJSON_DeleteItemFromObjectCaseSensitive(rec, "run_id");
        cJSON_AddStringToObject(rec, "run_id", run_id);
    }
    return ecc_run_write_record(r, rec, dir);
}

/* The tensors of a run directory, copied into a run (aligned, owned). */
static ecc_status load_tensors(ecc_run *r, const ecc_run_dir *d)
{
    const ecc_st_file *f = d->st;
    for (int i = 0; i < f->n; i++) {
        const ecc_st_tensor *t = &f->tensors[i];
        if (!strcmp(t->name, "token_ids"))
            continue;
        if (!strcmp(t->name, "token_logprobs")) {
            if (t->dtype != ECC_F32 || t->ndim != 1 || t->shape[0] != r->T - r->n_input)
                return ecc_fail(ECC_ERR_FORMAT, "%s: token_logprobs should be F32 [%d]", d->dir, r->T - r->n_input);
            memcpy(r->logprobs, t->data, t->nbytes);
            continue;
        }
        if (strlen(t->name) >= sizeof r->tensors[0].name || t->ndim > 4)
            return ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%.80s' is not one eccolo writes (name of at most 63 bytes, "
                            "at most 4 dimensions)", d->dir, t->name);
        void *p = ecc_run_tensor_new(r, t->name, t->dtype, t->ndim, t->shape);
        if (!p)
            return ecc_fail_prefix(ECC_ERR_NOMEM, "%s: ", d->dir);
        memcpy(p, t->data, t->nbytes);
    }
    return ECC_OK;
}

ecc_status ecc_run_load(ecc_run **out, const char *dir)
{
    *out = NULL;
    ecc_run_dir *d;
    ECC_TRY(ecc_run_dir_open(&d, dir));
    ecc_run *r = ecc_calloc(1, sizeof *r, "a run");
    ecc_status s = r ? ECC_OK : ECC_ERR_NOMEM;
    if (s == ECC_OK) {
        ecc_options_default(&r->opt);
        r->T = r->T_cap = d->T;
        r->n_input = d->n_input;
        r->ids = ecc_malloc(sizeof(int32_t) * (size_t)d->T, "token ids");
        r->logprobs = ecc_calloc((size_t)(d->T - d->n_input) + 1, sizeof(float), "log-probabilities");
        s = r->ids && r->logprobs ? ECC_OK : ECC_ERR_NOMEM;
    }
    if (s == ECC_OK) {
        memcpy(r->ids, d->ids_copy, sizeof(int32_t) * (size_t)d->T);
        if (!ecc_st_find(d->st, "token_logprobs"))
            s = ecc_fail(ECC_ERR_FORMAT, "%s: tensors.safetensors has no token_logprobs", dir);
    }
    if (s == ECC_OK)
        s = load_tensors(r, d);
    if (s == ECC_OK) {
        const cJSON *j = d->json;
        r->stopped_at_eos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stopped_at_eos"));
        const char *dev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "device"));
        snprintf(r->device, sizeof r->device, "%s", dev ? dev : "");
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(j, "threads");
        r->threads = cJSON_IsNumber(th) ? th->valueint : 0;
        cJSON *rec = cJSON_Duplicate(d->json, 1);
        s = rec ? set_record(r, rec, dir) : ecc_fail(ECC_ERR_NOMEM, "out of memory reading %s", dir);
    }
    if (s == ECC_OK && !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r->extra->record, "tokens")))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: run.json has no 'tokens': regenerate the run with eccolo generate --out", dir);
    ecc_run_dir_close(d);
    if (s != ECC_OK) {
        ecc_run_free(r);
        return s;
    }
    *out = r;
    return ECC_OK;
}
