/* eccolo report: gathers a run's data (report_data.c) and the NMF factors
 * (here), and writes them into the embedded page template
 * (host/report/report.html, .css, .js):
 *
 *   {{CSS}}  the stylesheet           {{JS}}    the script
 *   {{META}} the JSON header          {{BLOB}}  the binary arrays, base64
 *
 * Every '<' of the JSON is written as \u003c, so no text of the run (token
 * strings are untrusted) can close the <script> element that holds it; the
 * script only ever puts token text into the page with textContent. */
#define _GNU_SOURCE
#include "report/report.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "io/hub.h"
#include "report/report_data.h"
#include "model/tokenizer.h"
#include "util.h"

#define NMF_TOP_NEURONS 10 /* neurons listed per factor */

/* ---- the run --------------------------------------------------------------- */

static cJSON *dup_item(const cJSON *obj, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return it ? cJSON_Duplicate(it, 1) : cJSON_CreateNull();
}

/* Tokens, flags and settings from run.json. */
static ecc_status add_run(rep_ctx *c)
{
    const char *run_dir = c->run->dir;
    const cJSON *j = c->run->json;
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    const cJSON *partial = cJSON_GetObjectItemCaseSensitive(j, "partial");
    if (!cJSON_IsArray(tokens) || cJSON_GetArraySize(tokens) != c->T)
        return ecc_fail(ECC_ERR_FORMAT, "%s: run.json 'tokens' should be an array of the %d token strings; regenerate the "
                        "run with eccolo generate --out", run_dir, c->T);
    const cJSON *e;
    cJSON_ArrayForEach(e, tokens)
    {
        if (!cJSON_IsString(e))
            return ecc_fail(ECC_ERR_FORMAT, "%s: run.json 'tokens' holds a non-string; regenerate the run", run_dir);
    }
    cJSON *m = c->meta;
    cJSON_AddNumberToObject(m, "format", 1);
    cJSON_AddStringToObject(m, "run_dir", run_dir);
    cJSON_AddNumberToObject(m, "T", c->T);
    cJSON_AddNumberToObject(m, "n_input", c->n_input);
    cJSON_AddItemToObject(m, "tokens", cJSON_Duplicate(tokens, 1));
    cJSON *p = cJSON_AddArrayToObject(m, "partial"), *ids = cJSON_AddArrayToObject(m, "ids");
    for (int i = 0; i < c->T; i++) {
        const cJSON *f = cJSON_IsArray(partial) ? cJSON_GetArrayItem(partial, i) : NULL;
        cJSON_AddItemToArray(p, cJSON_CreateNumber(cJSON_IsTrue(f)));
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(c->run->ids_copy[i]));
    }
    static const char *const keys[] = {"eccolo_version", "model", "prompt", "parameters", "explain", "stopped_at_eos",
                                       "device"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        cJSON_AddItemToObject(m, keys[i], dup_item(j, keys[i]));
    return ECC_OK;
}

/* ---- the texts of the token ids the views name --------------------------------- */

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The model's tokenizer, from run.json model.dir, else model.id in the hub
 * cache; NULL (no error) when neither loads. */
static ecc_tokenizer *open_tokenizer(const rep_ctx *c)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(c->run->json, "model");
    const char *dir = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(model, "dir"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(model, "id"));
    ecc_tokenizer *tok = NULL;
    if (dir && ecc_dir_exists(dir) && ecc_tokenizer_load_dir(&tok, dir) == ECC_OK)
        return tok;
    char *resolved = NULL;
    if (id && ecc_resolve_model(&resolved, id) == ECC_OK && ecc_tokenizer_load_dir(&tok, resolved) != ECC_OK)
        tok = NULL;
    free(resolved);
    ecc_clear_error();
    return tok;
}

/* "vocab": {"ids": [...], "text": [...]} for the ids noted by the views: the
 * tokenizer's text, else the run's own token text, else "#id". */
static ecc_status add_vocab(rep_ctx *c)
{
    if (!c->n_vocab)
        return ECC_OK;
    qsort(c->vocab, (size_t)c->n_vocab, sizeof(int32_t), cmp_i32);
    int n = 0;
    for (int i = 0; i < c->n_vocab; i++)
        if (!n || c->vocab[i] != c->vocab[n - 1])
            c->vocab[n++] = c->vocab[i];
    c->n_vocab = n;
    ecc_tokenizer *tok = open_tokenizer(c);
    char **disp = NULL;
    uint8_t *part = NULL;
    int n_known = n; /* ids below the tokenizer's size, a prefix of the sorted list */
    if (tok) {
        while (n_known > 0 && c->vocab[n_known - 1] >= ecc_tokenizer_n_vocab(tok))
            n_known--;
        if (ecc_tokenizer_display(tok, c->vocab, n_known, &disp, &part) != ECC_OK) {
            disp = NULL;
            ecc_clear_error();
        }
    }
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(c->run->json, "tokens");
    cJSON *v = cJSON_AddObjectToObject(c->meta, "vocab");
    cJSON_AddStringToObject(v, "source", disp ? "tokenizer" : "run");
    cJSON *jids = cJSON_AddArrayToObject(v, "ids"), *jtext = cJSON_AddArrayToObject(v, "text");
    for (int i = 0; i < n; i++) {
        int32_t id = c->vocab[i];
        const char *text = disp && i < n_known ? disp[i] : NULL;
        for (int t = 0; !text && t < c->T; t++)
            if (c->run->ids_copy[t] == id)
                text = cJSON_GetStringValue(cJSON_GetArrayItem(tokens, t));
        char buf[32];
        if (!text) {
            snprintf(buf, sizeof buf, "#%d", id);
            text = buf;
        }
        cJSON_AddItemToArray(jids, cJSON_CreateNumber(id));
        cJSON_AddItemToArray(jtext, cJSON_CreateString(text));
    }
    ecc_tokenizer_display_free(disp, n_known);
    free(part);
    ecc_tokenizer_free(tok);
    return ECC_OK;
}

/* ---- NMF ------------------------------------------------------------------- */

static int meta_int(const ecc_st_file *f, const char *key, int *out)
{
    const char *v = ecc_st_meta(f, key);
    char *end;
    if (!v)
        return 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < INT_MIN || x > INT_MAX)
        return 0;
    *out = (int)x;
    return 1;
}

/* Which of the NMF's runs is this run: the entry of metadata "run_ids" that
 * holds its run id, so that factors computed from another run (the previous
 * run of a directory that was generated again, a file passed with --nmf) are
 * refused even when the shapes agree. A run written before run ids is found
 * as before: the entry of "runs" naming the same directory, else the only
 * run. -1 (error set) when none. */
static int nmf_run_index(const ecc_st_file *f, const ecc_run_dir *run, int n_runs)
{
    const char *ids_s = ecc_st_meta(f, "run_ids");
    if (run->run_id[0]) {
        cJSON *ids = ids_s ? cJSON_Parse(ids_s) : NULL;
        int found = -1, i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids)
        {
            if (found < 0 && cJSON_IsString(e) && !strcmp(e->valuestring, run->run_id))
                found = i;
            i++;
        }
        cJSON_Delete(ids);
        if (found >= n_runs)
            found = -1;
        if (found < 0)
            ecc_fail(ECC_ERR_INPUT, "%s: these NMF factors were not computed from this run of %s (run id %s; "
                     "the directory was generated again since?): rerun eccolo nmf %s", f->path, run->dir,
                     run->run_id, run->dir);
        return found;
    }
    cJSON *runs = cJSON_Parse(ecc_st_meta(f, "runs") ? ecc_st_meta(f, "runs") : "[]");
    char *want = realpath(run->dir, NULL);
    int found = -1, i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, runs)
    {
        char *p = cJSON_IsString(e) ? realpath(e->valuestring, NULL) : NULL;
        if (found < 0 && p && want && !strcmp(p, want))
            found = i;
        free(p);
        i++;
    }
    cJSON_Delete(runs);
    free(want);
    if (found < 0 && n_runs == 1)
        found = 0;
    if (found < 0)
        ecc_fail(ECC_ERR_INPUT, "%s: the NMF covers %d runs and none of them is %s; run eccolo nmf with this run, or pass "
                 "its file with --nmf", f->path, n_runs, run->dir);
    return found;
}

/* An NMF file checked against the run: W factors [K, T_total], H loadings
 * [K, F'] with F' = (to - from)·F, and this run's first column `first`. */
typedef struct nmf_view {
    const ecc_st_tensor *W, *H;
    int K, from, to, F, n_runs, first;
} nmf_view;

static ecc_status nmf_check(nmf_view *v, const ecc_st_file *f, const rep_ctx *c)
{
    const char *path = f->path;
    const ecc_st_tensor *W = ecc_st_find(f, "factors"), *H = ecc_st_find(f, "loadings"), *O = ecc_st_find(f, "offsets");
    if (!W || !H || !O || W->dtype != ECC_F32 || H->dtype != ECC_F32 || O->dtype != ECC_I32 || W->ndim != 2 ||
        H->ndim != 2 || O->ndim != 1 || O->shape[0] < 2)
        return ecc_fail(ECC_ERR_FORMAT, "%s: an NMF file needs factors F32 [K, T], loadings F32 [K, F'] and offsets I32 "
                        "[runs + 1], as eccolo nmf writes them", path);
    if (W->shape[0] < 1 || H->shape[0] != W->shape[0] || H->shape[1] < 1)
        return ecc_fail(ECC_ERR_FORMAT, "%s: factors has %lld components and loadings %lld (with %lld columns): they "
                        "should agree and be at least 1", path, (long long)W->shape[0], (long long)H->shape[0],
                        (long long)H->shape[1]);
    v->W = W;
    v->H = H;
    v->K = (int)W->shape[0];
    if (!meta_int(f, "layer_from", &v->from) || !meta_int(f, "layer_to", &v->to) || v->from < 0 || v->to <= v->from ||
        H->shape[1] % (v->to - v->from))
        return ecc_fail(ECC_ERR_FORMAT, "%s: metadata layer_from/layer_to do not describe the %lld loading columns as "
                        "(layers × neurons)", path, (long long)H->shape[1]);
    v->F = (int)(H->shape[1] / (v->to - v->from));
    const cJSON *actF = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c->meta, "activations"), "F");
    if (actF && actF->valueint != v->F)
        return ecc_fail(ECC_ERR_FORMAT, "%s: the loadings have %d neurons per layer, the run's activations %d", path, v->F,
                        actF->valueint);
    /* offsets: rising from 0 to T_total; this run's share must be T */
    v->n_runs = (int)O->shape[0] - 1;
    int32_t *off = ecc_malloc(sizeof(int32_t) * (size_t)(v->n_runs + 1), "NMF offsets");
    if (!off)
        return ECC_ERR_NOMEM;
    memcpy(off, O->data, sizeof(int32_t) * (size_t)(v->n_runs + 1));
    int ok = off[0] == 0 && off[v->n_runs] == W->shape[1];
    for (int i = 0; ok && i < v->n_runs; i++)
        ok = off[i] <= off[i + 1];
    ecc_status s = ok ? ECC_OK
                      : ecc_fail(ECC_ERR_FORMAT, "%s: offsets should rise from 0 to %lld, the factors' tokens", path,
                                 (long long)W->shape[1]);
    int run = s == ECC_OK ? nmf_run_index(f, c->run, v->n_runs) : -1;
    if (s == ECC_OK && run < 0)
        s = ECC_ERR_INPUT;
    if (s == ECC_OK && off[run + 1] - off[run] != c->T)
        s = ecc_fail(ECC_ERR_FORMAT, "%s: the factors hold %d tokens for this run, which has %d; rerun eccolo nmf on it",
                     path, off[run + 1] - off[run], c->T);
    if (s == ECC_OK)
        v->first = off[run];
    free(off);
    return s;
}

/* "nmf": K, this run's factors [K, T] (exact), each factor's largest
 * loadings as [layer, neuron, weight], the file's settings. */
static ecc_status add_nmf(rep_ctx *c, const ecc_st_file *f)
{
    const char *path = f->path;
    nmf_view v;
    memset(&v, 0, sizeof v);
    ecc_status s = nmf_check(&v, f, c);
    const int64_t Fp = s == ECC_OK ? v.H->shape[1] : 0, Tt = s == ECC_OK ? v.W->shape[1] : 0;
    float *h = s == ECC_OK ? ecc_malloc(sizeof(float) * (size_t)Fp, "an NMF loading row") : NULL;
    if (s == ECC_OK && !h)
        s = ECC_ERR_NOMEM;
    if (s == ECC_OK) {
        cJSON *sec = cJSON_AddObjectToObject(c->meta, "nmf");
        cJSON_AddStringToObject(sec, "path", path);
        cJSON_AddNumberToObject(sec, "K", v.K);
        cJSON_AddNumberToObject(sec, "layer_from", v.from);
        cJSON_AddNumberToObject(sec, "layer_to", v.to);
        cJSON_AddNumberToObject(sec, "runs", v.n_runs);
        static const char *const keys[] = {"relative_error", "iterations", "init", "solver"};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            if (ecc_st_meta(f, keys[i]))
                cJSON_AddStringToObject(sec, keys[i], ecc_st_meta(f, keys[i]));
        cJSON *top = cJSON_AddArrayToObject(sec, "top");
        const int n = (int)ECC_MIN((int64_t)NMF_TOP_NEURONS, Fp);
        float val[NMF_TOP_NEURONS];
        int32_t idx[NMF_TOP_NEURONS];
        for (int k = 0; k < v.K; k++) {
            memcpy(h, v.H->data + (size_t)k * Fp * sizeof(float), sizeof(float) * (size_t)Fp);
            int m = 0;
            for (int64_t j = 0; j < Fp; j++)
                rep_topk_push(val, idx, &m, n, h[j], (int32_t)j);
            cJSON *list = cJSON_CreateArray();
            cJSON_AddItemToArray(top, list);
            for (int i = 0; i < m; i++) {
                cJSON *e = cJSON_CreateArray();
                cJSON_AddItemToArray(e, cJSON_CreateNumber(v.from + idx[i] / v.F));
                cJSON_AddItemToArray(e, cJSON_CreateNumber(idx[i] % v.F));
                cJSON_AddItemToArray(e, cJSON_CreateNumber(val[i]));
                cJSON_AddItemToArray(list, e);
            }
        }
        float *w = rep_alloc(c, sec, "factors", REP_F32, (size_t)v.K * c->T); /* [K, T] */
        if (!w)
            s = ECC_ERR_NOMEM;
        for (int k = 0; s == ECC_OK && k < v.K; k++)
            memcpy(w + (size_t)k * c->T, v.W->data + ((size_t)k * Tt + v.first) * sizeof(float),
                   sizeof(float) * (size_t)c->T);
    }
    free(h);
    return s;
}

/* ---- the page -------------------------------------------------------------- */

static int put(ecc_report_sink *out, const void *p, size_t n) { return out->write(out->ctx, p, n); }

/* The JSON with every '<' as \u003c ('<' only occurs inside JSON strings). */
static int put_json(ecc_report_sink *af, const char *json)
{
    for (const char *p = json; *p;) {
        size_t n = strcspn(p, "<");
        if (!put(af, p, n))
            return 0;
        p += n;
        if (*p == '<') {
            if (!put(af, "\\u003c", 6))
                return 0;
            p++;
        }
    }
    return 1;
}

static int put_base64(ecc_report_sink *af, const uint8_t *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char buf[4 * 4096];
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        buf[o++] = tab[v >> 18 & 63];
        buf[o++] = tab[v >> 12 & 63];
        buf[o++] = i + 1 < n ? tab[v >> 6 & 63] : '=';
        buf[o++] = i + 2 < n ? tab[v & 63] : '=';
        if (o == sizeof buf) {
            if (!put(af, buf, o))
                return 0;
            o = 0;
        }
    }
    return put(af, buf, o);
}

/* The template with its {{NAME}} placeholders filled. A failed write stops
 * the loop (put returns 0); the sink's owner reports it. */
static ecc_status write_page(const rep_ctx *c, ecc_report_sink *out)
{
    char *json = cJSON_PrintUnformatted(c->meta);
    if (!json)
        return ecc_fail(ECC_ERR_NOMEM, "report: out of memory printing the page header");
    ecc_status s = ECC_OK;
    const char *tpl = (const char *)ecc_report_html, *p = tpl;
    int ok = 1;
    while (ok && s == ECC_OK) {
        const char *open = strstr(p, "{{");
        if (!open) {
            ok = put(out, p, strlen(p));
            break;
        }
        ok = put(out, p, (size_t)(open - p));
        const char *name = open + 2;
        if (!strncmp(name, "CSS}}", 5))
            ok = ok && put(out, ecc_report_css, ecc_report_css_len);
        else if (!strncmp(name, "JS}}", 4))
            ok = ok && put(out, ecc_report_js, ecc_report_js_len);
        else if (!strncmp(name, "META}}", 6))
            ok = ok && put_json(out, json);
        else if (!strncmp(name, "BLOB}}", 6))
            ok = ok && put_base64(out, c->blob, c->blob_len);
        else
            s = ecc_fail(ECC_ERR_FORMAT, "report template: unknown placeholder at '%.20s' (a build problem)", open);
        p = strstr(name, "}}");
        p = p ? p + 2 : name;
    }
    free(json);
    return s;
}

ecc_status ecc_report_page(const ecc_run_dir *r, const ecc_st_file *nmf, const char *show, ecc_report_sink *out)
{
    rep_ctx c = {.run = r, .T = r->T, .n_input = r->n_input, .G = r->T - r->n_input};
    c.meta = cJSON_CreateObject();
    ecc_status s = c.meta ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "report: out of memory");
    if (s == ECC_OK)
        s = add_run(&c);
    if (s == ECC_OK)
        s = rep_saliency(&c);
    if (s == ECC_OK)
        s = rep_rankings(&c);
    if (s == ECC_OK)
        s = rep_activations(&c);
    if (s == ECC_OK)
        s = rep_attention(&c);
    if (s == ECC_OK && nmf)
        s = add_nmf(&c, nmf);
    if (s == ECC_OK)
        s = add_vocab(&c);
    if (s == ECC_OK && show) { /* what the page opens on (the in-memory views of bindings) */
        cJSON *sh = cJSON_Parse(show);
        if (!cJSON_IsObject(sh)) {
            cJSON_Delete(sh);
            s = ecc_fail(ECC_ERR_INPUT, "report: the view to show should be a JSON object such as "
                         "{\"view\": \"saliency\"} (got '%.60s')", show);
        } else
            cJSON_AddItemToObject(c.meta, "show", sh);
    }
    if (s == ECC_OK) {
        cJSON_AddNumberToObject(c.meta, "blob_bytes", (double)c.blob_len);
        s = write_page(&c, out);
    }
    cJSON_Delete(c.meta);
    free(c.blob);
    free(c.vocab);
    return s;
}

static int atomic_put(void *af, const void *p, size_t n) { return ecc_atomic_write(af, p, n); }

ecc_status ecc_report_write_ex(const char *run_dir, const char *nmf_path, const char *out_path, size_t *bytes_written)
{
    if (bytes_written)
        *bytes_written = 0;
    ecc_run_dir *r;
    ECC_TRY(ecc_run_dir_open(&r, run_dir));
    char *default_nmf = ecc_path_join(run_dir, "nmf.safetensors");
    char *default_out = ecc_path_join(run_dir, "report.html");
    ecc_status s = default_nmf && default_out ? ECC_OK : ecc_fail(ECC_ERR_NOMEM, "report: out of memory");
    if (s == ECC_OK && nmf_path && !ecc_file_exists(nmf_path))
        s = ecc_fail(ECC_ERR_INPUT, "%s: no such NMF file (write one with eccolo nmf RUN_DIR)", nmf_path);
    ecc_st_file *nmf = NULL;
    if (s == ECC_OK && (nmf_path || ecc_file_exists(default_nmf)))
        s = ecc_st_open(&nmf, nmf_path ? nmf_path : default_nmf);
    ecc_atomic_file af;
    memset(&af, 0, sizeof af);
    if (s == ECC_OK)
        s = ecc_atomic_open(&af, out_path ? out_path : default_out);
    if (s == ECC_OK) {
        ecc_report_sink sink = {atomic_put, &af};
        s = ecc_report_page(r, nmf, NULL, &sink);
        uint64_t size = af.bytes;
        if (s == ECC_OK)
            s = ecc_atomic_commit(&af);
        else
            ecc_atomic_abort(&af);
        if (bytes_written && s == ECC_OK)
            *bytes_written = (size_t)size;
    }
    ecc_st_close(nmf);
    free(default_nmf);
    free(default_out);
    ecc_run_dir_close(r);
    return s;
}

ecc_status ecc_report_write(const char *run_dir, const char *nmf_path, const char *out_path)
{
    return ecc_report_write_ex(run_dir, nmf_path, out_path, NULL);
}
