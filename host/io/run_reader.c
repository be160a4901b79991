#include "io/run_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Does run.json belong with the tensors.safetensors beside it? Both carry the
 * random run id of the write that made them (run_writer.c): a process killed
 * between the two renames leaves new tensors beside the old run.json, and a
 * tensors file copied from another run has that run's id, even when the
 * shapes (and so the size and header) are the same. run.json's "tensors_file"
 * (the size and header hash of its tensors file) is checked too. Runs written
 * before eccolo recorded run ids (neither file has one) are checked by size
 * and header only. */
static ecc_status check_pair(ecc_run_dir *r)
{
    const char *tid = ecc_st_meta(r->st, "run_id");
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(r->json, "run_id");
    int ids_ok = !tid && !jid; /* neither: written before run ids */
    if (tid && cJSON_IsString(jid) && !strcmp(tid, jid->valuestring) && strlen(tid) < sizeof r->run_id) {
        ids_ok = 1;
        snprintf(r->run_id, sizeof r->run_id, "%s", tid);
    }
    const cJSON *tf = cJSON_GetObjectItemCaseSensitive(r->json, "tensors_file");
    int file_ok = 1;
    if (tf) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(tf, "bytes");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(tf, "header_fnv1a64");
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ecc_st_header_hash(r->st));
        file_ok = cJSON_IsNumber(b) && cJSON_IsString(h) && b->valuedouble == (double)r->st->map_len &&
                  !strcmp(h->valuestring, hex);
    }
    if (!ids_ok || !file_ok)
        return ecc_fail(ECC_ERR_FORMAT, "%s: run.json and tensors.safetensors are from different runs (an interrupted "
                        "write, or a file copied from another run): rerun eccolo generate --out %s", r->dir, r->dir);
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
