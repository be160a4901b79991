/* The data of the report page, and how it is kept small.
 *
 * The page embeds a JSON header (tokens, settings, small arrays) and one
 * binary blob, base64, which the JS views as little-endian typed arrays (each
 * 8-byte aligned). A gpt2-sized run (L = 12, NH = 12, F = 3072, T = 1024,
 * G ≈ 1000) holds far too much to embed raw (activations 150 MB, attention
 * 600 MB), so each view embeds what it shows, quantised:
 *
 *  - attribution.<method> F32 [G, T]: row g is non-zero only at the
 *    n_input + g positions before its token, so only that lower triangle is
 *    stored (packed, row after row) as uint16 scaled to the row's maximum,
 *    with the maxima as float32 [G]. The view shades by value / row max, as
 *    Ecco, and shows values to 1.5e-5 of the row max. gpt2-sized: 0.52 M
 *    entries, 1.05 MB per method. Negative or non-finite values count as 0.
 *  - token_logprobs F32 [G]: as is.
 *  - rankings I32 [L, G] and watch_rankings I32 [L, G, W]: as is (int32);
 *    layer_top_ids [L, G, k] as uint16 (int32 if an id exceeds 65535),
 *    layer_top_probs [L, G, k] as uint16 p·65535 (absolute error 7.6e-6).
 *    The texts of these ids come from the model's tokenizer (report.c).
 *  - activations F32 [L', T, F]: in each layer the N neurons with the largest
 *    maximum activation over the tokens, N = 1 M values / (L'·T) clamped to
 *    [16, F] (every neuron of a small model; 85 per layer gpt2-sized), plus up
 *    to 256 neurons of the tokens' top-10 lists not chosen so; each embedded
 *    neuron's T values as uint8 between its minimum and maximum (float32
 *    each, error ≤ 0.2 % of the range). Each token's 10 most active neurons
 *    over all captured layers are embedded exactly (float32), for the "top
 *    neurons of a token" list. gpt2-sized: ~1 MB.
 *  - attention F32 [L, NH, T, T]: for each query row the k largest entries,
 *    key index uint16 (int32 if T > 65536) and probability uint16 p·65535,
 *    with k = 1 M entries / (L·NH·T) clamped to [1, T]: every entry of a
 *    small run, the 7 largest of each row gpt2-sized (4.1 MB). Rows with
 *    fewer non-zero entries are padded with probability 0.
 *  - hidden_states: not shown (no view draws them).
 * With all of them a gpt2-sized page is about 13 MB (see the report test).
 */
#include "report/report_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define REP_MAX_BLOB ((size_t)1 << 30)
#define ACT_BUDGET (1u << 20)  /* activation values embedded (neurons × T) */
#define ACT_MIN_PER_LAYER 16
#define ACT_MAX_EXTRA 256      /* neurons added from the tokens' top lists */
#define ACT_TOKEN_TOP 10       /* each token's top neurons, exact */
#define ATT_BUDGET (1u << 20)  /* attention entries embedded */

static const char *const k_type_name[] = {"u8", "u16", "i32", "f32"};
static const size_t k_type_size[] = {1, 2, 4, 4};

void *rep_alloc(rep_ctx *c, cJSON *obj, const char *key, rep_type type, size_t count)
{
    size_t off = (c->blob_len + 7) & ~(size_t)7;
    uint64_t bytes;
    if (ecc_mul_overflow(count, k_type_size[type], &bytes) || off > REP_MAX_BLOB || bytes > REP_MAX_BLOB - off) {
        ecc_fail(ECC_ERR_NOMEM, "report: the data of '%s' would take the page past 1 GiB", key);
        return NULL;
    }
    size_t need = off + (size_t)bytes;
    if (need > c->blob_cap) {
        size_t cap = c->blob_cap ? c->blob_cap : (size_t)1 << 16;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(c->blob, cap);
        if (!p) {
            ecc_fail(ECC_ERR_NOMEM, "report: out of memory for %zu bytes of page data", cap);
            return NULL;
        }
        c->blob = p;
        c->blob_cap = cap;
    }
    memset(c->blob + c->blob_len, 0, need - c->blob_len);
    cJSON *d = cJSON_AddObjectToObject(obj, key);
    if (!d || !cJSON_AddStringToObject(d, "type", k_type_name[type]) || !cJSON_AddNumberToObject(d, "off", (double)off) ||
        !cJSON_AddNumberToObject(d, "n", (double)count)) {
        ecc_fail(ECC_ERR_NOMEM, "report: out of memory for the page header");
        return NULL;
    }
    c->blob_len = need;
    return c->blob + off;
}

ecc_status rep_need_id(rep_ctx *c, int32_t id)
{
    if (c->n_vocab == c->cap_vocab) {
        int cap = c->cap_vocab ? 2 * c->cap_vocab : 1024;
        int32_t *v = realloc(c->vocab, sizeof(int32_t) * (size_t)cap);
        if (!v)
            return ecc_fail(ECC_ERR_NOMEM, "report: out of memory for the token list");
        c->vocab = v;
        c->cap_vocab = cap;
    }
    c->vocab[c->n_vocab++] = id;
    return ECC_OK;
}

/* ---- reading tensors (the mapping may be unaligned: copy) -------------------- */

static void get_f32(float *dst, const ecc_st_tensor *t, uint64_t at, size_t n)
{
    memcpy(dst, t->data + at * sizeof(float), n * sizeof(float));
}

static void get_i32(int32_t *dst, const ecc_st_tensor *t, uint64_t at, size_t n)
{
    memcpy(dst, t->data + at * sizeof(int32_t), n * sizeof(int32_t));
}

/* The tensor NAME with this dtype and shape (-1: any size, at least 1), NULL
 * when absent; a mismatch is an error (*s set). */
static const ecc_st_tensor *get(const rep_ctx *c, const char *name, ecc_dtype dt, int ndim, const int64_t *shape,
                                ecc_status *s)
{
    const ecc_st_tensor *t = ecc_run_dir_tensor(c->run, name, dt, ndim, s);
    if (!t)
        return NULL;
    for (int i = 0; i < ndim; i++)
        if (shape[i] >= 0 ? t->shape[i] != shape[i] : t->shape[i] < 1) {
            char got[160], want[160] = "[";
            ecc_shape_str(got, sizeof got, t->ndim, t->shape);
            for (int j = 0; j < ndim; j++) {
                size_t n = strlen(want);
                if (shape[j] >= 0)
                    snprintf(want + n, sizeof want - n, "%s%lld", j ? ", " : "", (long long)shape[j]);
                else
                    snprintf(want + n, sizeof want - n, "%s>=1", j ? ", " : "");
            }
            strcat(want, "]");
            *s = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s for a run of %d tokens (%d generated); "
                          "regenerate the run with eccolo generate --out", c->run->dir, name, got, want, c->T, c->G);
            return NULL;
        }
    return t;
}

static uint16_t q16(float x) /* x in [0, 1] -> 0 … 65535 */
{
    if (!(x > 0))
        return 0;
    return x >= 1 ? 65535 : (uint16_t)lrintf(x * 65535.0f);
}

void rep_topk_push(float *val, int32_t *idx, int *m, int k, float x, int32_t j)
{
    if (!(x == x) || (*m == k && !(x > val[k - 1])))
        return;
    int p = *m < k ? (*m)++ : k - 1;
    while (p > 0 && val[p - 1] < x) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    val[p] = x;
    idx[p] = j;
}

typedef struct key_idx {
    float key;
    int32_t idx;
} key_idx;

static int by_key_desc(const void *a, const void *b)
{
    const key_idx *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* ---- saliency ------------------------------------------------------------- */

ecc_status rep_saliency(rep_ctx *c)
{
    ecc_status s = ECC_OK;
    const int T = c->T, G = c->G, n0 = c->n_input;
    const ecc_st_tensor *lp = get(c, "token_logprobs", ECC_F32, 1, (int64_t[]){G}, &s);
    if (s != ECC_OK)
        return s;
    if (lp && G > 0) {
        float *p = rep_alloc(c, c->meta, "logprobs", REP_F32, (size_t)G); /* [G] */
        if (!p)
            return ECC_ERR_NOMEM;
        get_f32(p, lp, 0, (size_t)G);
    }
    const ecc_st_file *st = c->run->st;
    cJSON *methods = NULL;
    float *row = NULL, *rowmax = NULL;
    for (int i = 0; s == ECC_OK && i < st->n; i++) {
        const char *name = st->tensors[i].name;
        if (strncmp(name, "attribution.", 12) != 0 || !name[12])
            continue;
        const ecc_st_tensor *t = get(c, name, ECC_F32, 2, (int64_t[]){G, T}, &s);
        if (!t || G == 0)
            continue;
        if (!methods) {
            cJSON *sec = cJSON_AddObjectToObject(c->meta, "saliency");
            methods = cJSON_AddArrayToObject(sec, "methods");
            row = ecc_malloc(sizeof(float) * (size_t)T, "a saliency row");
            rowmax = ecc_malloc(sizeof(float) * (size_t)G, "saliency row maxima");
            if (!methods || !row || !rowmax) {
                s = ECC_ERR_NOMEM;
                break;
            }
        }
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToArray(methods, m);
        cJSON_AddStringToObject(m, "name", name + 12);
        /* packed lower triangle: row g holds n0 + g values, starting at g·n0 + g(g-1)/2 */
        size_t packed = (size_t)G * (size_t)n0 + (size_t)G * ((size_t)G - 1) / 2;
        uint16_t *q = rep_alloc(c, m, "q", REP_U16, packed);
        if (!q) {
            s = ECC_ERR_NOMEM;
            break;
        }
        for (int g = 0; g < G; g++) {
            int n = n0 + g;
            get_f32(row, t, (uint64_t)g * (uint64_t)T, (size_t)n);
            float mx = 0;
            for (int j = 0; j < n; j++)
                if (row[j] > mx && isfinite(row[j]))
                    mx = row[j];
            rowmax[g] = mx;
            for (int j = 0; j < n; j++)
                *q++ = mx > 0 && isfinite(row[j]) ? q16(row[j] / mx) : 0;
        }
        float *mxs = rep_alloc(c, m, "rowmax", REP_F32, (size_t)G); /* [G] */
        if (!mxs) {
            s = ECC_ERR_NOMEM;
            break;
        }
        memcpy(mxs, rowmax, sizeof(float) * (size_t)G);
    }
    free(row);
    free(rowmax);
    return s;
}

/* ---- logit lens ------------------------------------------------------------ */

/* ids [n] into the blob as uint16 when they all fit, else int32; each noted
 * for the vocabulary. Negative ids are an error. */
static ecc_status put_ids(rep_ctx *c, cJSON *obj, const char *key, const ecc_st_tensor *t)
{
    size_t n = (size_t)t->numel;
    int32_t *ids = ecc_malloc(sizeof(int32_t) * (n ? n : 1), "token ids");
    if (!ids)
        return ECC_ERR_NOMEM;
    get_i32(ids, t, 0, n);
    int32_t mx = 0;
    ecc_status s = ECC_OK;
    for (size_t i = 0; i < n && s == ECC_OK; i++) {
        if (ids[i] < 0)
            s = ecc_fail(ECC_ERR_FORMAT, "%s: tensor '%s' holds the negative token id %d", c->run->dir, t->name, ids[i]);
        mx = ECC_MAX(mx, ids[i]);
        if (s == ECC_OK)
            s = rep_need_id(c, ids[i]);
    }
    if (s == ECC_OK) {
        void *p = rep_alloc(c, obj, key, mx <= 65535 ? REP_U16 : REP_I32, n);
        if (!p)
            s = ECC_ERR_NOMEM;
        else if (mx <= 65535)
            for (size_t i = 0; i < n; i++)
                ((uint16_t *)p)[i] = (uint16_t)ids[i];
        else
            memcpy(p, ids, sizeof(int32_t) * n);
    }
    free(ids);
    return s;
}

ecc_status rep_rankings(rep_ctx *c)
{
    ecc_status s = ECC_OK;
    const int G = c->G;
    const ecc_st_tensor *rk = get(c, "rankings", ECC_I32, 2, (int64_t[]){-1, G}, &s);
    if (!rk || G == 0)
        return s;
    const int64_t L = rk->shape[0];
    cJSON *sec = cJSON_AddObjectToObject(c->meta, "rankings");
    cJSON_AddNumberToObject(sec, "L", (double)L);
    int32_t *r = rep_alloc(c, sec, "ranks", REP_I32, (size_t)rk->numel); /* [L, G] */
    if (!r)
        return ECC_ERR_NOMEM;
    get_i32(r, rk, 0, (size_t)rk->numel);

    const ecc_st_tensor *ids = get(c, "layer_top_ids", ECC_I32, 3, (int64_t[]){L, G, -1}, &s);
    const ecc_st_tensor *pr = ids ? get(c, "layer_top_probs", ECC_F32, 3, (int64_t[]){L, G, ids->shape[2]}, &s) : NULL;
    if (s != ECC_OK)
        return s;
    if (ids && pr) {
        cJSON_AddNumberToObject(sec, "k", (double)ids->shape[2]);
        ECC_TRY(put_ids(c, sec, "top_ids", ids)); /* [L, G, k] */
        uint16_t *q = rep_alloc(c, sec, "top_probs", REP_U16, (size_t)pr->numel); /* [L, G, k], p·65535 */
        if (!q)
            return ECC_ERR_NOMEM;
        for (uint64_t i = 0; i < pr->numel; i++) {
            float p;
            get_f32(&p, pr, i, 1);
            q[i] = q16(p);
        }
    }

    const ecc_st_tensor *wid = get(c, "watch_ids", ECC_I32, 1, (int64_t[]){-1}, &s);
    const ecc_st_tensor *wr = wid ? get(c, "watch_rankings", ECC_I32, 3, (int64_t[]){L, G, wid->shape[0]}, &s) : NULL;
    if (s != ECC_OK)
        return s;
    if (wid && wr) {
        cJSON *w = cJSON_AddObjectToObject(sec, "watch");
        cJSON_AddNumberToObject(w, "W", (double)wid->shape[0]);
        ECC_TRY(put_ids(c, w, "ids", wid)); /* [W] */
        int32_t *wq = rep_alloc(c, w, "ranks", REP_I32, (size_t)wr->numel); /* [L, G, W] */
        if (!wq)
            return ECC_ERR_NOMEM;
        get_i32(wq, wr, 0, (size_t)wr->numel);
    }
    return ECC_OK;
}

/* ---- activations ----------------------------------------------------------- */

/* The captured layer range [from, from + Lp) from run.json, else [0, Lp). */
static ecc_status activation_layers(const rep_ctx *c, int Lp, int *from)
{
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(c->run->json, "explain");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(ex, "activation_layers");
    *from = 0;
    if (!al)
        return ECC_OK;
    const cJSON *a = cJSON_GetArrayItem(al, 0), *b = cJSON_GetArrayItem(al, 1);
    if (!cJSON_IsArray(al) || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valueint < 0 ||
        (int64_t)b->valueint - a->valueint != Lp) /* int64: b may be INT_MIN (fuzz/regressions/report) */
        return ecc_fail(ECC_ERR_FORMAT, "%s: run.json explain.activation_layers should be [from, to) with to - from = %d, "
                        "the layers of tensor 'activations'", c->run->dir, Lp);
    *from = a->valueint;
    return ECC_OK;
}

/* Working state of the activation section. Neurons are numbered l·F + n
 * with l relative to the first captured layer. */
typedef struct act_work {
    const ecc_st_tensor *a; /* activations [Lp, T, F] */
    int Lp, T, F, k, per;   /* k: top neurons listed per token; per: neurons embedded per layer */
    float *row;             /* [F] one (layer, token) row */
    float *lo, *hi;         /* [Lp·F] each neuron's minimum and maximum over the tokens */
    float *topv;            /* [T, k] each token's largest activations, decreasing … */
    int32_t *topi;          /* [T, k] … and their neurons */
    int *topm;              /* [T] entries filled */
    uint8_t *sel;           /* [Lp·F] 1 = embedded */
    key_idx *list;          /* [N] the embedded neurons, layer by layer, by decreasing maximum */
    int N;
    int32_t *slot;          /* [Lp·F] row of the embedded neuron in the page's q, or -1 */
} act_work;

static void act_free(act_work *w)
{
    free(w->row);
    free(w->lo);
    free(w->hi);
    free(w->topv);
    free(w->topi);
    free(w->topm);
    free(w->sel);
    free(w->list);
    free(w->slot);
}

static void act_row(const act_work *w, int l, int t)
{
    get_f32(w->row, w->a, ((uint64_t)l * w->T + t) * (uint64_t)w->F, (size_t)w->F);
    for (int n = 0; n < w->F; n++)
        if (!isfinite(w->row[n]))
            w->row[n] = 0;
}

/* Pass 1 over the tensor: each neuron's range, each token's top list. */
static void act_scan(act_work *w)
{
    const size_t LF = (size_t)w->Lp * w->F;
    for (size_t i = 0; i < LF; i++) {
        w->lo[i] = INFINITY;
        w->hi[i] = -INFINITY;
    }
    for (int l = 0; l < w->Lp; l++)
        for (int t = 0; t < w->T; t++) {
            act_row(w, l, t);
            float *lo = w->lo + (size_t)l * w->F, *hi = w->hi + (size_t)l * w->F;
            float *tv = w->topv + (size_t)t * w->k;
            int32_t *ti = w->topi + (size_t)t * w->k;
            for (int n = 0; n < w->F; n++) {
                float v = w->row[n];
                lo[n] = v < lo[n] ? v : lo[n];
                hi[n] = v > hi[n] ? v : hi[n];
                rep_topk_push(tv, ti, &w->topm[t], w->k, v, (int32_t)(l * w->F + n));
            }
        }
}

/* Choose the embedded neurons: in each layer the `per` of largest maximum,
 * then up to ACT_MAX_EXTRA more from the tokens' top lists; list them. */
static ecc_status act_choose(act_work *w)
{
    const int F = w->F;
    key_idx *ord = ecc_malloc(sizeof(key_idx) * (size_t)F, "neuron order");
    if (!ord)
        return ECC_ERR_NOMEM;
    for (int l = 0; l < w->Lp; l++) {
        for (int n = 0; n < F; n++)
            ord[n] = (key_idx){w->hi[(size_t)l * F + n], n};
        qsort(ord, (size_t)F, sizeof *ord, by_key_desc);
        for (int i = 0; i < w->per; i++)
            w->sel[(size_t)l * F + ord[i].idx] = 1;
    }
    free(ord);
    for (size_t i = 0, extra = 0; i < (size_t)w->T * w->k && extra < ACT_MAX_EXTRA; i++)
        if (!w->sel[w->topi[i]]) {
            w->sel[w->topi[i]] = 1;
            extra++;
        }
    const size_t LF = (size_t)w->Lp * F;
    w->N = 0;
    for (size_t i = 0; i < LF; i++)
        w->N += w->sel[i];
    if (!(w->list = ecc_malloc(sizeof(key_idx) * (size_t)w->N, "neuron list")))
        return ECC_ERR_NOMEM;
    int n_sel = 0;
    for (int l = 0; l < w->Lp; l++) {
        int first = n_sel;
        for (int n = 0; n < F; n++)
            if (w->sel[(size_t)l * F + n])
                w->list[n_sel++] = (key_idx){w->hi[(size_t)l * F + n], l * F + n};
        qsort(w->list + first, (size_t)(n_sel - first), sizeof(key_idx), by_key_desc);
    }
    for (size_t i = 0; i < LF; i++)
        w->slot[i] = -1;
    for (int i = 0; i < w->N; i++)
        w->slot[w->list[i].idx] = i;
    return ECC_OK;
}

/* The section: the embedded neurons (JSON), the tokens' top lists (exact),
 * and pass 2 over the tensor: each embedded neuron's values as uint8. */
static ecc_status act_embed(rep_ctx *c, const act_work *w, int from)
{
    const int T = w->T, F = w->F;
    cJSON *sec = cJSON_AddObjectToObject(c->meta, "activations");
    cJSON_AddNumberToObject(sec, "layer_from", from);
    cJSON_AddNumberToObject(sec, "layer_to", from + w->Lp);
    cJSON_AddNumberToObject(sec, "F", F);
    cJSON_AddNumberToObject(sec, "per_layer", w->per);
    cJSON_AddBoolToObject(sec, "all", w->per == F);
    cJSON *jl = cJSON_AddArrayToObject(sec, "layer"), *jn = cJSON_AddArrayToObject(sec, "neuron");
    cJSON *jlo = cJSON_AddArrayToObject(sec, "lo"), *jhi = cJSON_AddArrayToObject(sec, "hi");
    for (int i = 0; i < w->N; i++) {
        int32_t f = w->list[i].idx;
        cJSON_AddItemToArray(jl, cJSON_CreateNumber(from + f / F));
        cJSON_AddItemToArray(jn, cJSON_CreateNumber(f % F));
        cJSON_AddItemToArray(jlo, cJSON_CreateNumber(w->lo[f]));
        cJSON_AddItemToArray(jhi, cJSON_CreateNumber(w->hi[f]));
    }
    cJSON *jt = cJSON_AddObjectToObject(sec, "top");
    cJSON_AddNumberToObject(jt, "k", w->k);
    int32_t *ti = rep_alloc(c, jt, "flat", REP_I32, (size_t)T * w->k); /* [T, k] l·F + n */
    if (!ti)
        return ECC_ERR_NOMEM;
    memcpy(ti, w->topi, sizeof(int32_t) * (size_t)T * w->k);
    float *tv = rep_alloc(c, jt, "value", REP_F32, (size_t)T * w->k); /* [T, k] */
    if (!tv)
        return ECC_ERR_NOMEM;
    memcpy(tv, w->topv, sizeof(float) * (size_t)T * w->k);
    uint8_t *q = rep_alloc(c, sec, "q", REP_U8, (size_t)w->N * T); /* [N, T] */
    if (!q)
        return ECC_ERR_NOMEM;
    for (int l = 0; l < w->Lp; l++)
        for (int t = 0; t < T; t++) {
            act_row(w, l, t);
            for (int n = 0; n < F; n++) {
                size_t f = (size_t)l * F + n;
                if (w->slot[f] < 0)
                    continue;
                float range = w->hi[f] - w->lo[f];
                q[(size_t)w->slot[f] * T + t] = range > 0 ? (uint8_t)lrintf((w->row[n] - w->lo[f]) / range * 255.0f) : 0;
            }
        }
    return ECC_OK;
}

ecc_status rep_activations(rep_ctx *c)
{
    ecc_status s = ECC_OK;
    const ecc_st_tensor *a = get(c, "activations", ECC_F32, 3, (int64_t[]){-1, c->T, -1}, &s);
    if (!a)
        return s;
    act_work w = {.a = a, .Lp = (int)a->shape[0], .T = c->T, .F = (int)a->shape[2]};
    int from;
    ECC_TRY(activation_layers(c, w.Lp, &from));
    const size_t LF = (size_t)w.Lp * w.F;
    w.k = (int)ECC_MIN((size_t)ACT_TOKEN_TOP, LF);
    w.per = (int)ECC_MIN((size_t)w.F, ECC_MAX((size_t)ACT_MIN_PER_LAYER, ACT_BUDGET / ((size_t)w.Lp * w.T)));
    w.row = ecc_malloc(sizeof(float) * (size_t)w.F, "an activation row");
    w.lo = ecc_malloc(sizeof(float) * LF, "neuron minima");
    w.hi = ecc_malloc(sizeof(float) * LF, "neuron maxima");
    w.topv = ecc_malloc(sizeof(float) * (size_t)w.T * w.k, "top activations");
    w.topi = ecc_malloc(sizeof(int32_t) * (size_t)w.T * w.k, "top neurons");
    w.topm = ecc_calloc((size_t)w.T, sizeof(int), "top neuron counts");
    w.sel = ecc_calloc(LF, 1, "neuron choice");
    w.slot = ecc_malloc(sizeof(int32_t) * LF, "neuron slots");
    if (!w.row || !w.lo || !w.hi || !w.topv || !w.topi || !w.topm || !w.sel || !w.slot)
        s = ECC_ERR_NOMEM;
    if (s == ECC_OK) {
        act_scan(&w);
        s = act_choose(&w);
    }
    if (s == ECC_OK)
        s = act_embed(c, &w, from);
    act_free(&w);
    return s;
}

/* ---- attention ------------------------------------------------------------- */

ecc_status rep_attention(rep_ctx *c)
{
    ecc_status s = ECC_OK;
    const int T = c->T;
    const ecc_st_tensor *a = get(c, "attention", ECC_F32, 4, (int64_t[]){-1, -1, T, T}, &s);
    if (!a)
        return s;
    const int L = (int)a->shape[0], NH = (int)a->shape[1];
    const size_t rows = (size_t)L * NH * T;
    const int k = (int)ECC_MAX((size_t)1, ECC_MIN((size_t)T, ATT_BUDGET / rows));
    const int wide = T > 65536; /* key indices as int32 */
    cJSON *sec = cJSON_AddObjectToObject(c->meta, "attention");
    cJSON_AddNumberToObject(sec, "L", L);
    cJSON_AddNumberToObject(sec, "NH", NH);
    cJSON_AddNumberToObject(sec, "k", k);
    uint8_t *p_idx = rep_alloc(c, sec, "idx", wide ? REP_I32 : REP_U16, rows * k); /* [L, NH, T, k] */
    size_t off_idx = p_idx ? (size_t)(p_idx - c->blob) : 0;
    uint16_t *pq = p_idx ? rep_alloc(c, sec, "p", REP_U16, rows * k) : NULL; /* [L, NH, T, k], p·65535 */
    float *row = ecc_malloc(sizeof(float) * (size_t)T, "an attention row");
    float *val = ecc_malloc(sizeof(float) * (size_t)k, "attention top values");
    int32_t *idx = ecc_malloc(sizeof(int32_t) * (size_t)k, "attention top keys");
    key_idx *srt = k > 32 ? ecc_malloc(sizeof(key_idx) * (size_t)T, "an attention row") : NULL;
    if (!pq || !row || !val || !idx || (k > 32 && !srt))
        s = ECC_ERR_NOMEM;
    for (size_t r = 0; s == ECC_OK && r < rows; r++) {
        get_f32(row, a, (uint64_t)r * (uint64_t)T, (size_t)T);
        int m = 0;
        if (srt) { /* many kept: sort the row */
            for (int j = 0; j < T; j++)
                srt[j] = (key_idx){isfinite(row[j]) ? row[j] : 0, j};
            qsort(srt, (size_t)T, sizeof *srt, by_key_desc);
            for (; m < k; m++) {
                val[m] = srt[m].key;
                idx[m] = srt[m].idx;
            }
        } else
            for (int j = 0; j < T; j++)
                rep_topk_push(val, idx, &m, k, row[j], j);
        for (int i = 0; i < k; i++) {
            int keep = i < m && val[i] > 0;
            pq[r * k + i] = keep ? q16(val[i]) : 0;
            int32_t key = keep ? idx[i] : 0;
            if (wide)
                memcpy(c->blob + off_idx + (r * k + i) * 4, &key, 4);
            else
                ((uint16_t *)(c->blob + off_idx))[r * k + i] = (uint16_t)key;
        }
    }
    free(row);
    free(val);
    free(idx);
    free(srt);
    return s;
}
