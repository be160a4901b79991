#include "io/run_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* run.json's "tensors_file" (size and header hash of the tensors file it was
 * written with) against the tensors.safetensors there: a process killed
 * between the two renames of ecc_run_write leaves a new tensors file beside
 * the old run.json. Runs written before eccolo recorded it are taken as they are. */
static ecc_status check_pair(const ecc_run_dir *r)
{
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(r->json, "tensors_file");
    if (!tf)
        return ECC_OK;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(tf, "bytes");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(tf, "header_fnv1a64");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ecc_st_header_hash(r->st));
    if (!cJSON_IsNumber(b) || !cJSON_IsString(h) || b->valuedouble != (double)r->st->map_len ||
        strcmp(h->valuestring, hex) != 0)
        return ecc_fail(ECC_ERR_FORMAT, "%s: run.json and tensors.safetensors are from different runs (interrupted "
                        "write?): rerun eccolo generate", r->dir);
    return ECC_OK;
}

ecc_status ecc_run_dir_open(ecc_run_dir **out, const char *dir)
{
    *out = NULL;
    ecc_run_dir *r = ecc_calloc(1, sizeof *r, "a run directory");
    if (!r)
        return ECC_ERR_NOMEM;
    r->dir = ecc_strdup(dir);
    char *jpath = ecc_path_join(dir, "run.json"), *tpath = ecc_path_join(dir, "tensors.safetensors");
    ecc_status s = r->dir && jpath && tpath ? ECC_OK : ECC_ERR_NOMEM;
    if (s == ECC_OK && !ecc_dir_exists(dir))
        s = ecc_fail(ECC_ERR_INPUT, "%s: no such run directory", dir);
    char *text = NULL;
    size_t len;
    if (s == ECC_OK && !ecc_file_exists(jpath))
        s = ecc_fail(ECC_ERR_INPUT, "%s: no run.json (is this a directory written by eccolo generate --out?)", dir);
    if (s == ECC_OK)
        s = ecc_read_file(jpath, 256u << 20, &text, &len);
    if (s == ECC_OK && !(r->json = cJSON_ParseWithLength(text, len)))
        s = ecc_fail(ECC_ERR_FORMAT, "%s: not valid JSON", jpath);
    free(text);
    if (s == ECC_OK)
        s = ecc_st_open(&r->st, tpath);
    if (s == ECC_OK)
        s = check_pair(r);
    if (s == ECC_OK) {
        const cJSON *nt = cJSON_GetObjectItemCaseSensitive(r->json, "n_tokens");
        const cJSON *ni = cJSON_GetObjectItemCaseSensitive(r->json, "n_input");
        const ecc_st_tensor *ids = ecc_run_dir_tensor(r, "token_ids", ECC_I32, 1, &s);
        if (s != ECC_OK) {
        } else if (!cJSON_IsNumber(nt) || !cJSON_IsNumber(ni) || !ids)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: run.json needs n_tokens and n_input, and tensors.safetensors "
                         "token_ids", dir);
        else if (ids->shape[0] != nt->valueint || ni->valueint < 1 || ni->valueint > nt->valueint)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: run.json says %d tokens (%d of them the prompt) but token_ids holds "
                         "%lld", dir, nt->valueint, ni->valueint, (long long)ids->shape[0]);
        else {
            r->T = nt->valueint;
            r->n_input = ni->valueint;
            r->ids = (const int32_t *)ids->data;
            if ((r->ids_copy = ecc_malloc(ids->nbytes, "token ids")))
                memcpy(r->ids_copy, ids->data, ids->nbytes);
            else
                s = ECC_ERR_NOMEM;
        }
    }
    free(jpath);
    free(tpath);
    if (s != ECC_OK) {
        ecc_run_dir_close(r);
        return s;
    }
    *out = r;
    return ECC_OK;
}

void ecc_run_dir_close(ecc_run_dir *r)
{
    if (!r)
        return;
    cJSON_Delete(r->json);
    ecc_st_close(r->st);
    free(r->ids_copy);
    free(r->dir);
    free(r);
}

const ecc_st_tensor *ecc_run_dir_tensor(const ecc_run_dir *r, const char *name, ecc_dtype dtype, int ndim,
                                        ecc_status *status)
{
    const ecc_st_tensor *t = ecc_st_find(r->st, name);
    if (t && (t->dtype != dtype || t->ndim != ndim)) {
        *status = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' is %s with %d dimensions, expected %s with %d", r->dir,
                           name, ecc_dtype_name(t->dtype), t->ndim, ecc_dtype_name(dtype), ndim);
        return NULL;
    }
    return t;
}

float *ecc_run_dir_floats(const ecc_st_tensor *t)
{
    float *p = ecc_malloc(t->nbytes, t->name);
    if (p)
        memcpy(p, t->data, t->nbytes);
    return p;
}
