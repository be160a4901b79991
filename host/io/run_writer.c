/* Writing a run: DIR/tensors.safetensors and DIR/run.json (the index a
 * reader opens first), each written whole to a temporary name and synced,
 * then renamed: tensors first, then run.json. Both carry the same random run
 * id, which the reader (run_reader.c) compares: a kill between the renames, or
 * a tensors file copied from another run, is refused. A failed write of either
 * leaves the previous pair whole. */
#define _GNU_SOURCE /* kill, nanosleep, dirent */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "explain/explain.h"
#include "model/model.h"
#include "engine/run.h"
#include "io/run_writer.h"
#include "io/safetensors.h"
#include "util.h"

static cJSON *config_json(const ecc_model *m)
{
    const ecc_config *c = &m->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model_type", c->model_type);
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(j, "n_inner", c->n_inner);
    cJSON_AddNumberToObject(j, "n_positions", c->n_positions);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    char eps[32]; /* the float as config.json spelled it, not its binary expansion */
    snprintf(eps, sizeof eps, "%g", (double)c->layer_norm_eps);
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", strtod(eps, NULL));
    cJSON_AddStringToObject(j, "activation_function", c->activation);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_lm_head);
    cJSON_AddNumberToObject(j, "eos_token_id", c->eos_token_id);
    cJSON *eos = cJSON_AddArrayToObject(j, "eos_token_ids"); /* every id that ends generation */
    for (int i = 0; i < m->n_eos; i++)
        cJSON_AddItemToArray(eos, cJSON_CreateNumber(m->eos_ids[i]));
    return j;
}

static cJSON *params_json(const ecc_run *r)
{
    const ecc_options *o = &r->opt;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", o->continuation_ids ? "forced" : o->sample ? "sample" : "greedy");
    cJSON_AddNumberToObject(j, "max_new_tokens", o->continuation_ids ? o->n_continuation : o->max_new_tokens);
    if (o->sample && !o->continuation_ids) {
        cJSON_AddNumberToObject(j, "temperature", o->temperature);
        cJSON_AddNumberToObject(j, "top_k", o->top_k);
        cJSON_AddNumberToObject(j, "top_p", o->top_p);
        /* a JSON integer written digit for digit: as a double, seeds above 2^53 (and some above 2^52,
         * which cJSON prints with 15 digits) would lose their last digits and not reproduce the text */
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
        cJSON_AddRawToObject(j, "seed", seed);
    }
    cJSON_AddBoolToObject(j, "stop_at_eos", o->stop_at_eos && !o->continuation_ids);
    return j;
}

static cJSON *explain_json(const ecc_run *r, const ecc_model *m)
{
    const ecc_options *o = &r->opt;
    cJSON *j = cJSON_CreateObject();
    cJSON *meth = cJSON_AddArrayToObject(j, "attribution");
    for (unsigned b = 1; b <= ECC_ATTR_INTEGRATED_GRADIENTS; b <<= 1)
        if (o->attribution & b)
            cJSON_AddItemToArray(meth, cJSON_CreateString(ecc_attr_name(b)));
    static const char *targets[] = {"prob", "logit", "logprob"};
    cJSON_AddStringToObject(j, "target", targets[o->target]);
    if (o->attribution & ECC_ATTR_INTEGRATED_GRADIENTS) {
        cJSON_AddNumberToObject(j, "ig_steps", o->ig_steps);
        cJSON_AddStringToObject(j, "ig_quadrature", "gauss-legendre on [0, 1], zero baseline, token embeddings only");
    }
    if (o->activations) {
        cJSON *lay = cJSON_AddArrayToObject(j, "activation_layers");
        cJSON_AddItemToArray(lay, cJSON_CreateNumber(o->layer_from));
        cJSON_AddItemToArray(lay, cJSON_CreateNumber(o->layer_to ? o->layer_to : m->cfg.n_layer));
    }
    cJSON_AddBoolToObject(j, "hidden_states", o->hidden_states);
    cJSON_AddBoolToObject(j, "attention", o->attention);
    if (o->rankings) {
        cJSON_AddStringToObject(j, "lens", o->lens == ECC_LENS_RAW ? "raw" : "standard");
        cJSON_AddNumberToObject(j, "top_k_layers", o->top_k_layers);
    }
    cJSON_AddNumberToObject(j, "mem_budget", (double)(o->mem_budget ? o->mem_budget : ECC_DEFAULT_MEM_BUDGET));
    return j;
}

static ecc_status tokens_json(cJSON *root, const ecc_run *r, const ecc_model *m)
{
    char **disp;
    uint8_t *partial;
    ECC_TRY(ecc_tokenizer_display(m->tok, r->ids, r->T, &disp, &partial));
    cJSON *ids = cJSON_AddArrayToObject(root, "token_ids");
    cJSON *toks = cJSON_AddArrayToObject(root, "tokens");
    cJSON *part = cJSON_AddArrayToObject(root, "partial");
    for (int i = 0; i < r->T; i++) {
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(r->ids[i]));
        cJSON_AddItemToArray(toks, cJSON_CreateString(disp[i]));
        cJSON_AddItemToArray(part, cJSON_CreateBool(partial[i]));
    }
    ecc_tokenizer_display_free(disp, r->T);
    free(partial);
    /* the prompt tokens the tokenizer's template added (a BOS): explained like any input, but not typed */
    cJSON *added = cJSON_AddObjectToObject(root, "added_tokens");
    cJSON *pos = cJSON_AddArrayToObject(added, "positions");
    for (int i = 0; i < r->added_front; i++)
        cJSON_AddItemToArray(pos, cJSON_CreateNumber(i));
    for (int i = r->n_input - r->added_back; i < r->n_input; i++)
        cJSON_AddItemToArray(pos, cJSON_CreateNumber(i));
    cJSON_AddStringToObject(added, "by", r->added_front + r->added_back ? ecc_tokenizer_template_source(m->tok) : "none");
    char *gen, *all;
    size_t len;
    ECC_TRY(ecc_tokenizer_decode(m->tok, r->ids + r->n_input, r->T - r->n_input, &gen, &len));
    /* the text: what the user typed and what followed, without the tokens the template put first */
    ecc_status s = ecc_tokenizer_decode(m->tok, r->ids + r->added_front, r->T - r->added_front, &all, &len);
    if (s == ECC_OK) {
        cJSON_AddStringToObject(root, "generated_text", gen);
        cJSON_AddStringToObject(root, "text", all);
        free(all);
    }
    free(gen);
    return s;
}

ecc_status ecc_run_collect_tensors(ecc_st_writer *w, const ecc_run *r, const char *run_id)
{
    int64_t T = r->T, G = r->T - r->n_input;
    ECC_TRY(ecc_st_writer_add(w, "token_ids", ECC_I32, 1, &T, r->ids));
    ECC_TRY(ecc_st_writer_add(w, "token_logprobs", ECC_F32, 1, &G, r->logprobs));
    for (int i = 0; i < r->n_tensors; i++) {
        const ecc_run_tensor *t = &r->tensors[i];
        ECC_TRY(ecc_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
    }
    char n[32];
    snprintf(n, sizeof n, "%d", r->n_input);
    ECC_TRY(ecc_st_writer_meta(w, "n_input", n));
    ECC_TRY(ecc_st_writer_meta(w, "format", "eccolo"));
    ECC_TRY(ecc_st_writer_meta(w, "run_id", run_id));
    return ECC_OK;
}

static void tensor_index(cJSON *root, const ecc_st_writer *w)
{
    cJSON *idx = cJSON_AddObjectToObject(root, "tensors");
    for (int i = 0; i < w->n; i++) {
        cJSON *t = cJSON_AddObjectToObject(idx, w->e[i].name);
        cJSON_AddStringToObject(t, "dtype", ecc_dtype_name(w->e[i].dtype));
        cJSON *sh = cJSON_AddArrayToObject(t, "shape");
        for (int d = 0; d < w->e[i].ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)w->e[i].shape[d]));
    }
}

/* NAME.tmp.<pid> files of processes that no longer exist (killed while
 * writing: ecc_atomic_open's temporaries) are removed, so that a run
 * directory does not collect them. */
static void remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *t = strstr(e->d_name, ".tmp."), *p = t ? t + 5 : NULL;
        char *end;
        long pid = p && *p ? strtol(p, &end, 10) : 0;
        if (pid <= 0 || *end || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        char *path = ecc_path_join(dir, e->d_name);
        if (path)
            remove(path);
        free(path);
    }
    if (d)
        closedir(d);
}

/* What run.json records of its tensors.safetensors: the file's size and the
 * FNV-1a 64 of its header, read back from the file written (its temporary,
 * finished but not yet renamed). */
static ecc_status tensors_file_json(cJSON *root, const char *tmp)
{
    ecc_st_file *f;
    ECC_TRY(ecc_st_open(&f, tmp));
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)ecc_st_header_hash(f));
    cJSON *tf = cJSON_AddObjectToObject(root, "tensors_file");
    cJSON_AddNumberToObject(tf, "bytes", (double)f->map_len);
    cJSON_AddStringToObject(tf, "header_fnv1a64", hex);
    ecc_st_close(f);
    return ECC_OK;
}

/* After a new pair is in place: files of DIR computed from the previous run
 * (nmf.safetensors, report.html) no longer match it, and are removed. */
static ecc_status remove_derived(const char *dir)
{
    static const char *const names[] = {"nmf.safetensors", "report.html"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char *p = ecc_path_join(dir, names[i]);
        if (!p)
            return ECC_ERR_NOMEM;
        ecc_status s = unlink(p) == 0 || errno == ENOENT
                           ? ECC_OK
                           : ecc_fail(ECC_ERR_IO, "%s: cannot remove this file of the previous run (%s): remove it "
                                      "by hand", p, strerror(errno));
        free(p);
        ECC_TRY(s);
    }
    return ECC_OK;
}

/* ECCOLO_TEST_SLOW_WRITE=MS (tests only: tests/io/test_atomic.c): sleep MS
 * milliseconds between the two renames, so that a test can kill a run there. */
static void test_slow_write(void)
{
    const char *v = getenv("ECCOLO_TEST_SLOW_WRITE");
    long ms = v ? strtol(v, NULL, 10) : 0;
    if (ms > 0 && ms <= 60000) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

ecc_status ecc_run_record(cJSON **out, const ecc_run *r, const ecc_model *m, const char *prompt_text,
                          const char *run_id)
{
    *out = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory describing a run");
    cJSON_AddStringToObject(root, "eccolo_version", ECCOLO_VERSION);
    cJSON_AddStringToObject(root, "run_id", run_id);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "id", m->id);
    cJSON_AddStringToObject(model, "dir", m->dir);
    cJSON_AddStringToObject(model, "dtype", m->dtype);
    cJSON_AddItemToObject(model, "config", config_json(m));
    if (prompt_text)
        cJSON_AddStringToObject(root, "prompt", prompt_text);
    else
        cJSON_AddNullToObject(root, "prompt");
    cJSON_AddNumberToObject(root, "n_input", r->n_input);
    cJSON_AddNumberToObject(root, "n_tokens", r->T);
    ecc_status s = tokens_json(root, r, m);
    if (s != ECC_OK) {
        cJSON_Delete(root);
        return s;
    }
    cJSON_AddBoolToObject(root, "stopped_at_eos", r->stopped_at_eos);
    cJSON_AddItemToObject(root, "parameters", params_json(r));
    cJSON_AddItemToObject(root, "explain", explain_json(r, m));
    cJSON_AddStringToObject(root, "device", r->device);
    static const char *prec[] = {"fp32", "tf32", "bf16"};
    cJSON_AddStringToObject(root, "precision", prec[r->opt.precision]);
    cJSON_AddNumberToObject(root, "threads", r->threads);
    cJSON *tm = cJSON_AddObjectToObject(root, "timings");
    for (int i = 0; i < r->n_timings; i++)
        cJSON_AddNumberToObject(tm, r->timings[i].name, r->timings[i].seconds);
    double gen_s = ecc_run_timing(r, "prefill") + ecc_run_timing(r, "decode");
    cJSON_AddNumberToObject(root, "tokens_per_second", gen_s > 0 ? (r->T - r->n_input) / gen_s : 0);
    *out = root;
    return ECC_OK;
}

/* run.json: the record's items in order, with "tensors_file" after
 * "run_id" and the tensors' index last (a loaded record's own are replaced). */
static cJSON *file_json(const cJSON *record, const char *tmp_tensors, const ecc_st_writer *w, ecc_status *s)
{
    cJSON *root = cJSON_CreateObject();
    *s = root ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "out of memory writing run.json");
    const cJSON *it;
    cJSON_ArrayForEach(it, record)
    {
        if (*s != ECC_OK)
            break;
        if (!strcmp(it->string, "tensors_file") || !strcmp(it->string, "tensors"))
            continue;
        cJSON *d = cJSON_Duplicate(it, 1);
        if (!d) {
            *s = ecc_fail(ECC_ERR_NOMEM, "out of memory writing run.json");
            break;
        }
        cJSON_AddItemToObject(root, it->string, d);
        if (!strcmp(it->string, "run_id"))
            *s = tensors_file_json(root, tmp_tensors);
    }
    if (*s == ECC_OK)
        tensor_index(root, w);
    return root;
}

ecc_status ecc_run_write_record(const ecc_run *r, const cJSON *record, const char *dir)
{
    const char *run_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(record, "run_id"));
    if (!run_id || strlen(run_id) != 32)
        return ecc_fail(ECC_ERR_INPUT, "%s: the run's description has no run id of 32 hex digits", dir);
    ECC_TRY(ecc_mkdirs(dir));
    remove_stale_tmp(dir);
    int had_run = ecc_file_exists_in(dir, "run.json") || ecc_file_exists_in(dir, "tensors.safetensors");
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    ecc_atomic_file ta, ja; /* tensors, run.json */
    memset(&ta, 0, sizeof ta);
    memset(&ja, 0, sizeof ja);
    char *tpath = ecc_path_join(dir, "tensors.safetensors"), *jpath = ecc_path_join(dir, "run.json");
    cJSON *root = NULL;
    ecc_status s = tpath && jpath ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", dir);
    if (s == ECC_OK)
        s = ecc_run_collect_tensors(&w, r, run_id);
    if (s == ECC_OK)
        s = ecc_atomic_open(&ta, tpath);
    if (s == ECC_OK)
        s = ecc_st_writer_write_to(&w, &ta);
    if (s == ECC_OK)
        s = ecc_atomic_finish(&ta);
    if (s == ECC_OK)
        root = file_json(record, ta.tmp, &w, &s);
    if (s == ECC_OK) {
        char *json = cJSON_Print(root);
        s = json ? ecc_atomic_open(&ja, jpath) : ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", jpath);
        if (s == ECC_OK) {
            ecc_atomic_write(&ja, json, strlen(json));
            s = ecc_atomic_finish(&ja);
        }
        free(json);
    }
    /* both files are whole on disk: rename the tensors, then run.json */
    if (s == ECC_OK)
        s = ecc_atomic_rename(&ta);
    if (s == ECC_OK) {
        test_slow_write();
        s = ecc_atomic_rename(&ja);
    }
    ecc_atomic_abort(&ta); /* the temporaries of a failed write (no-ops after the renames) */
    ecc_atomic_abort(&ja);
    if (s == ECC_OK && had_run)
        s = remove_derived(dir);
    cJSON_Delete(root);
    ecc_st_writer_free(&w);
    free(tpath);
    free(jpath);
    return s;
}

ecc_status ecc_run_write(const ecc_run *r, const ecc_model *m, const char *prompt_text, const char *dir)
{
    char run_id[33];
    ECC_TRY(ecc_random_id(run_id));
    cJSON *record;
    ECC_TRY(ecc_run_record(&record, r, m, prompt_text, run_id));
    ecc_status s = ecc_run_write_record(r, record, dir);
    cJSON_Delete(record);
    return s;
}
