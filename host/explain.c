#define _GNU_SOURCE
#include "explain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

const char *ecc_attr_name(unsigned b)
{
    switch (b) {
    case ECC_ATTR_GRAD_X_INPUT: return "grad_x_input";
    case ECC_ATTR_GRADIENT: return "gradient";
    case ECC_ATTR_INTEGRATED_GRADIENTS: return "integrated_gradients";
    default: return NULL;
    }
}

void ecc_gauss_legendre01(double *alpha, double *w, int n)
{
    /* Newton's method on the Legendre polynomial P_n from the usual first
     * guesses; nodes are symmetric, so half of them suffice. */
    for (int i = 0; i < (n + 1) / 2; i++) {
        double z = cos(M_PI * (i + 0.75) / (n + 0.5)), z1, pp;
        do {
            double p1 = 1, p2 = 0;
            for (int j = 1; j <= n; j++) {
                double p3 = p2;
                p2 = p1;
                p1 = ((2.0 * j - 1) * z * p2 - (j - 1.0) * p3) / j;
            }
            pp = n * (z * p1 - p2) / (z * z - 1);
            z1 = z;
            z = z1 - p1 / pp;
        } while (fabs(z - z1) > 1e-15);
        double wi = 2 / ((1 - z * z) * pp * pp);
        alpha[i] = 0.5 * (1 - z); /* node -z on [-1, 1] */
        alpha[n - 1 - i] = 0.5 * (1 + z);
        w[i] = w[n - 1 - i] = 0.5 * wi;
    }
}

ecc_status ecc_explain_check(const ecc_config *c, const ecc_options *o)
{
    const unsigned all = ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT | ECC_ATTR_INTEGRATED_GRADIENTS;
    if (o->attribution & ~all)
        return ecc_fail(ECC_ERR_INPUT, "unknown attribution method bits 0x%x", o->attribution & ~all);
    if (o->target < ECC_TARGET_PROB || o->target > ECC_TARGET_LOGPROB)
        return ecc_fail(ECC_ERR_INPUT, "unknown attribution target %d", (int)o->target);
    if ((o->attribution & ECC_ATTR_INTEGRATED_GRADIENTS) && (o->ig_steps < 1 || o->ig_steps > 1000))
        return ecc_fail(ECC_ERR_INPUT, "--ig-steps must be from 1 to 1000 (got %d)", o->ig_steps);
    if (o->activations) {
        int to = o->layer_to ? o->layer_to : c->n_layer;
        if (o->layer_from < 0 || o->layer_from >= to || to > c->n_layer)
            return ecc_fail(ECC_ERR_INPUT, "--layers %d:%d is outside the model's %d layers (use a:b with "
                            "0 <= a < b <= %d)", o->layer_from, to, c->n_layer, c->n_layer);
    }
    if (o->rankings) {
        if (o->top_k_layers < 1 || o->top_k_layers > c->vocab_size)
            return ecc_fail(ECC_ERR_INPUT, "--top-k-layers must be from 1 to %d (got %d)", c->vocab_size,
                            o->top_k_layers);
        if (o->n_watch < 0 || o->n_watch > 4096)
            return ecc_fail(ECC_ERR_INPUT, "at most 4096 watched tokens (got %d)", o->n_watch);
        for (int i = 0; i < o->n_watch; i++)
            if (o->watch_ids[i] < 0 || o->watch_ids[i] >= c->vocab_size)
                return ecc_fail(ECC_ERR_INPUT, "watched token id %d is outside the vocabulary [0, %d)",
                                o->watch_ids[i], c->vocab_size);
    }
    if (o->lens != ECC_LENS_STANDARD && o->lens != ECC_LENS_RAW)
        return ecc_fail(ECC_ERR_INPUT, "unknown lens %d", (int)o->lens);
    return ECC_OK;
}

/* ---- backend buffers, allocated together and freed together ------------------ */

#define MAX_BUFS 40
typedef struct bufset {
    ecc_backend *be;
    int n;
    void *p[MAX_BUFS];
    size_t bytes;
} bufset;

static void *balloc(bufset *b, size_t bytes, const char *what)
{
    if (b->n == MAX_BUFS) {
        ecc_fail(ECC_ERR_NOMEM, "internal: too many explanation buffers");
        return NULL;
    }
    void *p = b->be->alloc(b->be, bytes, what);
    if (p) {
        b->p[b->n++] = p;
        b->bytes += bytes;
    }
    return p;
}

static void bfree(bufset *b)
{
    for (int i = 0; i < b->n; i++)
        b->be->free(b->be, b->p[i]);
    b->n = 0;
    b->bytes = 0;
}

/* ---- the forward that keeps what the backward pass needs ------------------------ */

/* A sequences of T tokens (rows a * T + i, N = A * T). */
typedef struct saves {
    int A, T;
    int64_t N;
    float *res;                 /* (L + 1, N, C): res[l] is block l's input, res[L] the last output */
    float *res_mid;             /* (L, N, C) after attention */
    float *mean1, *rstd1;       /* (L, N) */
    float *mean2, *rstd2;       /* (L, N) */
    float *meanf, *rstdf;       /* (N) */
    float *lnf;                 /* (N, C) after the final layer norm: the last hidden state */
    float *qkv;                 /* (L, N, 3C) */
    float *att;                 /* (L, A, NH, T, T) */
    float *fch;                 /* (L, N, F) before GELU */
    float *act;                 /* (layer_to - layer_from, T, F) captured activations, or NULL */
    int layer_from, layer_to;
    float *ln, *atty, *proj;    /* (T, C) scratch */
    float *fcg;                 /* (T, F) scratch for layers not captured */
    ecc_kv kv;                  /* (L, T, C) keys and values of the sequence being run */
    bufset mem;
} saves;

static size_t saves_bytes(const ecc_config *c, int T, int A, int n_act_layers)
{
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_inner, NH = (size_t)c->n_head;
    size_t N = (size_t)A * (size_t)T, t = (size_t)T;
    size_t floats = (L + 1) * N * C + L * N * C + 4 * L * N + 2 * N + N * C + L * N * 3 * C + L * N * NH * t +
                    L * N * F + (size_t)n_act_layers * t * F + 3 * t * C + t * F + 2 * L * t * C;
    return floats * sizeof(float);
}

static ecc_status saves_alloc(saves *s, ecc_backend *be, const ecc_config *c, int T, int A, int layer_from,
                              int layer_to)
{
    memset(s, 0, sizeof *s);
    s->mem.be = be;
    s->A = A;
    s->T = T;
    s->N = (int64_t)A * T;
    s->layer_from = layer_from;
    s->layer_to = layer_to;
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_inner, NH = (size_t)c->n_head;
    size_t N = (size_t)s->N, t = (size_t)T, f = sizeof(float);
    bufset *m = &s->mem;
    int ok = (s->res = balloc(m, (L + 1) * N * C * f, "saved residual streams")) &&
             (s->res_mid = balloc(m, L * N * C * f, "saved residual streams")) &&
             (s->mean1 = balloc(m, L * N * f, "layer-norm statistics")) &&
             (s->rstd1 = balloc(m, L * N * f, "layer-norm statistics")) &&
             (s->mean2 = balloc(m, L * N * f, "layer-norm statistics")) &&
             (s->rstd2 = balloc(m, L * N * f, "layer-norm statistics")) &&
             (s->meanf = balloc(m, N * f, "layer-norm statistics")) &&
             (s->rstdf = balloc(m, N * f, "layer-norm statistics")) &&
             (s->lnf = balloc(m, N * C * f, "the last hidden states")) &&
             (s->qkv = balloc(m, L * N * 3 * C * f, "saved queries, keys and values")) &&
             (s->att = balloc(m, L * N * NH * t * f, "saved attention probabilities")) &&
             (s->fch = balloc(m, L * N * F * f, "saved MLP pre-activations")) &&
             (s->ln = balloc(m, t * C * f, "scratch")) && (s->atty = balloc(m, t * C * f, "scratch")) &&
             (s->proj = balloc(m, t * C * f, "scratch")) && (s->fcg = balloc(m, t * F * f, "scratch"));
    if (ok && layer_to > layer_from)
        ok = (s->act = balloc(m, (size_t)(layer_to - layer_from) * t * F * f, "captured activations")) != NULL;
    if (ok)
        ok = ecc_kv_init(&s->kv, be, c, T) == ECC_OK;
    if (!ok) {
        ecc_kv_free(&s->kv, be);
        bfree(m);
        return ECC_ERR_NOMEM;
    }
    return ECC_OK;
}

static void saves_free(saves *s)
{
    if (s->mem.be)
        ecc_kv_free(&s->kv, s->mem.be);
    bfree(&s->mem);
}

/* Forward sequence a (token embeddings scaled by tok_scale) into the saves. */
static ecc_status saves_forward(saves *s, const ecc_dmodel *dm, const int32_t *ids, int a, float tok_scale)
{
    const ecc_config *c = dm->cfg;
    const int64_t C = c->n_embd, F = c->n_inner, NH = c->n_head, T = s->T, N = s->N, off = (int64_t)a * T;
    ecc_acts acts;
    memset(&acts, 0, sizeof acts);
    acts.L = c->n_layer;
    acts.layer = ecc_calloc((size_t)c->n_layer, sizeof(ecc_layer_acts), "the activation table");
    if (!acts.layer)
        return ECC_ERR_NOMEM;
    acts.emb = s->res + off * C;
    for (int l = 0; l < c->n_layer; l++) {
        int captured = s->act && l >= s->layer_from && l < s->layer_to;
        acts.layer[l] = (ecc_layer_acts){
            .ln1 = s->ln,
            .ln1_mean = s->mean1 + l * N + off,
            .ln1_rstd = s->rstd1 + l * N + off,
            .qkv = s->qkv + (l * N + off) * 3 * C,
            .att = s->att + ((int64_t)l * s->A + a) * NH * T * T,
            .att_head_stride = T * T,
            .att_row_stride = (int)T,
            .atty = s->atty,
            .attproj = s->proj,
            .res_mid = s->res_mid + (l * N + off) * C,
            .ln2 = s->ln,
            .ln2_mean = s->mean2 + l * N + off,
            .ln2_rstd = s->rstd2 + l * N + off,
            .fch = s->fch + (l * N + off) * F,
            .fch_gelu = captured ? s->act + (int64_t)(l - s->layer_from) * T * F : s->fcg,
            .fcproj = s->proj,
            .res_out = s->res + ((l + 1) * N + off) * C,
        };
    }
    acts.lnf = s->lnf + off * C;
    acts.lnf_mean = s->meanf + off;
    acts.lnf_rstd = s->rstdf + off;
    ecc_forward_scaled(dm, &acts, &s->kv, ids, tok_scale, 0, (int)T, 0);
    free(acts.layer);
    return ECC_OK;
}

/* ---- the batched backward pass ------------------------------------------------------- */

/* Buffers for a chunk of up to J targets with up to R packed gradient rows,
 * plus (IG) the alpha-free layout of up to Jt targets / Rt rows. */
typedef struct bwd {
    int J;
    int64_t R;
    float *dres, *dbig, *dsmall; /* (R, C), (R, max(3C, F)), (R, C) */
    float *h, *logits;           /* (J, C), (J, V) */
    int32_t *tg_seq, *tg_n, *tokens, *lnf_rows, *lnf_out, *rowpos;
    int64_t *tg_off;
    float *scale;
    /* host copies of the tables */
    int32_t *h_seq, *h_n, *h_tok, *h_lnf_rows, *h_lnf_out, *h_rowpos;
    int64_t *h_off;
    float *h_scale;
    bufset mem;
} bwd;

static size_t bwd_row_bytes(const ecc_config *c)
{
    size_t C = (size_t)c->n_embd, F = (size_t)c->n_inner;
    return (2 * C + ECC_MAX(3 * C, F)) * sizeof(float) + sizeof(int32_t);
}

static size_t bwd_target_bytes(const ecc_config *c)
{
    return ((size_t)c->n_embd + (size_t)c->vocab_size) * sizeof(float) + 6 * sizeof(int32_t) + sizeof(int64_t) +
           sizeof(float);
}

static void bwd_free(bwd *b)
{
    bfree(&b->mem);
    free(b->h_seq);
    free(b->h_n);
    free(b->h_tok);
    free(b->h_lnf_rows);
    free(b->h_lnf_out);
    free(b->h_rowpos);
    free(b->h_off);
    free(b->h_scale);
}

static ecc_status bwd_alloc(bwd *b, ecc_backend *be, const ecc_config *c, int J, int64_t R)
{
    memset(b, 0, sizeof *b);
    b->mem.be = be;
    b->J = J;
    b->R = R;
    size_t C = (size_t)c->n_embd, F = (size_t)c->n_inner, V = (size_t)c->vocab_size, r = (size_t)R, j = (size_t)J;
    bufset *m = &b->mem;
    int ok = (b->dres = balloc(m, r * C * 4, "input gradients")) &&
             (b->dbig = balloc(m, r * ECC_MAX(3 * C, F) * 4, "input gradients")) &&
             (b->dsmall = balloc(m, r * C * 4, "input gradients")) && (b->h = balloc(m, j * C * 4, "targets")) &&
             (b->logits = balloc(m, j * V * 4, "target logits")) && (b->tg_seq = balloc(m, j * 4, "targets")) &&
             (b->tg_n = balloc(m, j * 4, "targets")) && (b->tokens = balloc(m, j * 4, "targets")) &&
             (b->lnf_rows = balloc(m, j * 4, "targets")) && (b->lnf_out = balloc(m, j * 4, "targets")) &&
             (b->rowpos = balloc(m, r * 4, "targets")) && (b->tg_off = balloc(m, j * 8, "targets")) &&
             (b->scale = balloc(m, j * 4, "targets"));
    ok = ok && (b->h_seq = ecc_malloc(j * 4, "targets")) && (b->h_n = ecc_malloc(j * 4, "targets")) &&
         (b->h_tok = ecc_malloc(j * 4, "targets")) && (b->h_lnf_rows = ecc_malloc(j * 4, "targets")) &&
         (b->h_lnf_out = ecc_malloc(j * 4, "targets")) && (b->h_rowpos = ecc_malloc(r * 4, "targets")) &&
         (b->h_off = ecc_malloc(j * 8, "targets")) && (b->h_scale = ecc_malloc(j * 4, "targets"));
    if (!ok) {
        bwd_free(b);
        return ECC_ERR_NOMEM;
    }
    return ECC_OK;
}

/* Lay out J targets (sequence seq[j], position pos[j], weight scale[j]) and
 * upload the tables; returns the number of packed rows. */
static int64_t bwd_tables(bwd *b, ecc_backend *be, const int32_t *ids, int T, int J, const int32_t *seq,
                          const int32_t *pos, const float *scale)
{
    int64_t off = 0;
    for (int j = 0; j < J; j++) {
        int t = pos[j];
        b->h_seq[j] = seq[j];
        b->h_n[j] = t;
        b->h_tok[j] = ids[t];
        b->h_off[j] = off;
        b->h_scale[j] = scale[j];
        b->h_lnf_rows[j] = seq[j] * T + t - 1;
        b->h_lnf_out[j] = (int32_t)(off + t - 1);
        for (int i = 0; i < t; i++)
            b->h_rowpos[off + i] = seq[j] * T + i;
        off += t;
    }
    size_t j4 = (size_t)J * 4;
    be->upload(be, b->tg_seq, b->h_seq, j4);
    be->upload(be, b->tg_n, b->h_n, j4);
    be->upload(be, b->tokens, b->h_tok, j4);
    be->upload(be, b->tg_off, b->h_off, (size_t)J * 8);
    be->upload(be, b->scale, b->h_scale, j4);
    be->upload(be, b->lnf_rows, b->h_lnf_rows, j4);
    be->upload(be, b->lnf_out, b->h_lnf_out, j4);
    be->upload(be, b->rowpos, b->h_rowpos, (size_t)off * 4);
    return off;
}

/* d s_j / d (token embedding rows) for the J targets of the tables, into b->dres (R, C). */
static void bwd_run(bwd *b, const ecc_dmodel *dm, const saves *s, int J, int64_t R, ecc_target kind)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    float *const *p = dm->w.p;
    const int C = c->n_embd, F = c->n_inner, V = c->vocab_size, NH = c->n_head, L = c->n_layer;
    const int64_t N = s->N;
    const size_t lc = (size_t)C, lcf = lc * (size_t)F;
    const float *lm_head = ecc_weights_lm_head(&dm->w, c);

    /* at the logits, then back through the final layer norm at each target's row */
    be->gather_rows(be, b->h, s->lnf, b->lnf_rows, J, C);
    be->matmul_wt(be, b->logits, b->h, lm_head, J, C, V);
    be->target_grad(be, b->logits, b->tokens, b->scale, (int)kind, J, V);
    be->matmul(be, b->h, b->logits, lm_head, NULL, J, V, C); /* (J, V) @ (V, C) */
    be->zero(be, b->dres, (size_t)R * lc * sizeof(float));
    be->layernorm_backward(be, b->dres, b->h, s->res + (int64_t)L * N * C, s->meanf, s->rstdf, p[ECC_P_LNFW],
                           b->lnf_rows, b->lnf_out, J, C);
    for (int l = L - 1; l >= 0; l--) {
        const size_t Ls = (size_t)l;
        float scale = 1.0f / sqrtf((float)(C / NH));
        if (c->scale_attn_by_inverse_layer_idx)
            scale /= (float)(l + 1);
        /* MLP: res_out = res_mid + c_proj(gelu(c_fc(ln_2(res_mid)))) */
        be->matmul_wt(be, b->dbig, b->dres, p[ECC_P_FCPROJW] + Ls * lcf, (int)R, C, F);
        be->gelu_backward(be, b->dbig, b->dbig, s->fch + Ls * N * F, b->rowpos, R, F);
        be->matmul_wt(be, b->dsmall, b->dbig, p[ECC_P_FCW] + Ls * lcf, (int)R, F, C);
        be->layernorm_backward(be, b->dres, b->dsmall, s->res_mid + Ls * N * C, s->mean2 + Ls * N, s->rstd2 + Ls * N,
                               p[ECC_P_LN2W] + Ls * lc, b->rowpos, NULL, (int)R, C);
        /* attention: res_mid = res + c_proj(attention(c_attn(ln_1(res)))) */
        be->matmul_wt(be, b->dsmall, b->dres, p[ECC_P_ATTPROJW] + Ls * lc * lc, (int)R, C, C);
        be->attention_backward(be, b->dbig, b->dsmall, s->qkv + Ls * N * 3 * C, s->att + Ls * s->A * NH * s->T * s->T,
                               b->tg_seq, b->tg_n, b->tg_off, J, s->T, C, NH, scale);
        be->matmul_wt(be, b->dsmall, b->dbig, p[ECC_P_QKVW] + Ls * lc * 3 * lc, (int)R, 3 * C, C);
        be->layernorm_backward(be, b->dres, b->dsmall, s->res + Ls * N * C, s->mean1 + Ls * N, s->rstd1 + Ls * N,
                               p[ECC_P_LN1W] + Ls * lc, b->rowpos, NULL, (int)R, C);
    }
}

/* ---- planning chunks against the memory budget ---------------------------------------- */

/* How many targets (from g0 on, positions n_input + g) fit in `bytes`, each
 * counted `mult` times (IG alpha steps per chunk); at least one. */
static int chunk_targets(const ecc_config *c, const ecc_run *r, int g0, int mult, size_t bytes, int max_targets,
                         int64_t *rows)
{
    int G = r->T - r->n_input, J = 0;
    int64_t R = 0;
    size_t used = 0;
    while (g0 + J < G && (max_targets <= 0 || J < max_targets)) {
        int64_t t = r->n_input + g0 + J;
        size_t add = (size_t)mult * ((size_t)t * bwd_row_bytes(c) + bwd_target_bytes(c));
        if (J > 0 && used + add > bytes)
            break;
        used += add;
        R += t;
        J++;
    }
    *rows = R;
    return J;
}

static double mib(size_t b) { return (double)b / (1 << 20); }

/* ---- captures and the logit lens ------------------------------------------------------- */

static ecc_status capture(ecc_run *r, const ecc_dmodel *dm, const saves *s)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const ecc_options *o = &r->opt;
    int64_t L = c->n_layer, T = r->T, C = c->n_embd, F = c->n_inner, NH = c->n_head;
    if (o->hidden_states) {
        float *hs = ecc_run_tensor_new(r, "hidden_states", ECC_F32, 3, (int64_t[]){L + 1, T, C});
        if (!hs)
            return ECC_ERR_NOMEM;
        be->download(be, hs, s->res, (size_t)(L * T * C) * sizeof(float)); /* embeddings, blocks 0 .. L-2 */
        be->download(be, hs + L * T * C, s->lnf, (size_t)(T * C) * sizeof(float)); /* with ln_f, as HF */
    }
    if (o->attention) {
        float *att = ecc_run_tensor_new(r, "attention", ECC_F32, 4, (int64_t[]){L, NH, T, T});
        if (!att)
            return ECC_ERR_NOMEM;
        be->download(be, att, s->att, (size_t)(L * NH * T * T) * sizeof(float));
    }
    if (o->activations) {
        int64_t n = s->layer_to - s->layer_from;
        float *act = ecc_run_tensor_new(r, "activations", ECC_F32, 3, (int64_t[]){n, T, F});
        if (!act)
            return ECC_ERR_NOMEM;
        be->download(be, act, s->act, (size_t)(n * T * F) * sizeof(float));
    }
    return ECC_OK;
}

static ecc_status lens(ecc_run *r, const ecc_dmodel *dm, const saves *s, size_t budget)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const ecc_options *o = &r->opt;
    const int L = c->n_layer, C = c->n_embd, V = c->vocab_size, k = o->top_k_layers, W = o->n_watch;
    const int G = r->T - r->n_input;
    int32_t *ranks = ecc_run_tensor_new(r, "rankings", ECC_I32, 2, (int64_t[]){L, G});
    int32_t *top_ids = ecc_run_tensor_new(r, "layer_top_ids", ECC_I32, 3, (int64_t[]){L, G, k});
    float *top_probs = ecc_run_tensor_new(r, "layer_top_probs", ECC_F32, 3, (int64_t[]){L, G, k});
    int32_t *watch = NULL;
    if (!ranks || !top_ids || !top_probs)
        return ECC_ERR_NOMEM;
    if (W > 0) {
        int32_t *ids = ecc_run_tensor_new(r, "watch_ids", ECC_I32, 1, (int64_t[]){W});
        if (!ids || !(watch = ecc_run_tensor_new(r, "watch_rankings", ECC_I32, 3, (int64_t[]){L, G, W})))
            return ECC_ERR_NOMEM;
        memcpy(ids, o->watch_ids, sizeof(int32_t) * (size_t)W);
    }
    if (G == 0)
        return ECC_OK;
    /* logits rows per chunk from the budget */
    size_t per_row = ((size_t)V + 2 * (size_t)C + 2 * (size_t)k + (size_t)W + 3) * 4;
    int Gc = (int)ECC_MAX(1, ECC_MIN((size_t)G, budget / per_row));
    bufset m = {.be = be};
    float *H = balloc(&m, (size_t)G * C * 4, "logit lens"), *Hn = balloc(&m, (size_t)G * C * 4, "logit lens");
    float *logits = balloc(&m, (size_t)Gc * V * 4, "logit lens");
    int32_t *d_rows = balloc(&m, (size_t)G * 4, "logit lens"), *d_tok = balloc(&m, (size_t)G * 4, "logit lens");
    int32_t *d_watch = W ? balloc(&m, (size_t)W * 4, "logit lens") : NULL;
    int32_t *d_rank = balloc(&m, (size_t)G * 4, "logit lens"), *d_ids = balloc(&m, (size_t)G * k * 4, "logit lens");
    float *d_probs = balloc(&m, (size_t)G * k * 4, "logit lens");
    int32_t *d_wr = W ? balloc(&m, (size_t)G * W * 4, "logit lens") : NULL;
    int32_t *rows = ecc_malloc((size_t)G * 4, "logit lens");
    if (!H || !Hn || !logits || !d_rows || !d_tok || (W && (!d_watch || !d_wr)) || !d_rank || !d_ids || !d_probs ||
        !rows) {
        free(rows);
        bfree(&m);
        return ECC_ERR_NOMEM;
    }
    for (int g = 0; g < G; g++)
        rows[g] = r->n_input + g - 1; /* the hidden state that predicts token n_input + g */
    be->upload(be, d_rows, rows, (size_t)G * 4);
    be->upload(be, d_tok, r->ids + r->n_input, (size_t)G * 4);
    if (W)
        be->upload(be, d_watch, o->watch_ids, (size_t)W * 4);
    const float *lm_head = ecc_weights_lm_head(&dm->w, c);
    for (int l = 1; l <= L; l++) {
        const float *src = l < L ? s->res + (int64_t)l * s->N * C : s->lnf;
        be->gather_rows(be, H, src, d_rows, G, C);
        const float *X = H;
        if (l < L && o->lens == ECC_LENS_STANDARD) {
            be->layernorm(be, Hn, NULL, NULL, H, dm->w.p[ECC_P_LNFW], dm->w.p[ECC_P_LNFB], G, C, c->layer_norm_eps);
            X = Hn;
        }
        for (int g0 = 0; g0 < G; g0 += Gc) {
            int n = ECC_MIN(Gc, G - g0);
            be->matmul_wt(be, logits, X + (int64_t)g0 * C, lm_head, n, C, V);
            be->lens_stats(be, d_rank + g0, d_ids + (int64_t)g0 * k, d_probs + (int64_t)g0 * k,
                           W ? d_wr + (int64_t)g0 * W : NULL, logits, d_tok + g0, d_watch, n, V, k, W);
        }
        size_t lo = (size_t)(l - 1);
        be->download(be, ranks + lo * G, d_rank, (size_t)G * 4);
        be->download(be, top_ids + lo * G * k, d_ids, (size_t)G * k * 4);
        be->download(be, top_probs + lo * G * k, d_probs, (size_t)G * k * 4);
        if (W)
            be->download(be, watch + lo * G * W, d_wr, (size_t)G * W * 4);
    }
    free(rows);
    bfree(&m);
    return ECC_OK;
}

/* ---- input saliency ---------------------------------------------------------------------- */

static void report(const ecc_run *r, const char *phase, int done, int total)
{
    if (r->opt.progress)
        r->opt.progress(r->opt.progress_user, phase, done, total);
}

/* grad_x_input and gradient share one backward pass per chunk of targets. */
static ecc_status saliency_plain(ecc_run *r, const ecc_dmodel *dm, const saves *s, const float *d_emb,
                                 float *d_gxi, float *d_grad, size_t budget)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const int G = r->T - r->n_input, T = r->T, C = c->n_embd;
    /* the largest chunk decides the buffers */
    int64_t R;
    int J = chunk_targets(c, r, 0, 1, budget, r->opt.max_chunk_targets, &R);
    int64_t Rmax = R;
    for (int g0 = J; g0 < G;) {
        int j = chunk_targets(c, r, g0, 1, budget, r->opt.max_chunk_targets, &R);
        Rmax = ECC_MAX(Rmax, R);
        J = ECC_MAX(J, j);
        g0 += j;
    }
    bwd b;
    ECC_TRY(bwd_alloc(&b, be, c, J, Rmax));
    int32_t *seq = ecc_calloc((size_t)J, 4, "targets"), *pos = ecc_malloc((size_t)J * 4, "targets");
    float *one = ecc_malloc((size_t)J * 4, "targets");
    if (!seq || !pos || !one) {
        free(seq), free(pos), free(one), bwd_free(&b);
        return ECC_ERR_NOMEM;
    }
    for (int g0 = 0; g0 < G;) {
        int n = chunk_targets(c, r, g0, 1, budget, r->opt.max_chunk_targets, &R);
        for (int j = 0; j < n; j++) {
            pos[j] = r->n_input + g0 + j;
            one[j] = 1.0f;
        }
        R = bwd_tables(&b, be, r->ids, T, n, seq, pos, one);
        bwd_run(&b, dm, s, n, R, r->opt.target);
        if (d_gxi)
            be->saliency(be, d_gxi + (int64_t)g0 * T, T, b.dres, d_emb, b.rowpos, b.tg_n, b.tg_off, n, C);
        if (d_grad)
            be->saliency(be, d_grad + (int64_t)g0 * T, T, b.dres, NULL, b.rowpos, b.tg_n, b.tg_off, n, C);
        g0 += n;
        report(r, "saliency", g0, G);
    }
    free(seq), free(pos), free(one), bwd_free(&b);
    return ECC_OK;
}

/* Integrated gradients: for each chunk of targets, the alpha steps in groups
 * of A sequences; gradients of every (alpha, target) pair in one backward,
 * weighted by w_k at the logits and summed over alpha in a fixed order. */
static ecc_status saliency_ig(ecc_run *r, const ecc_dmodel *dm, const int32_t *d_ids, const float *d_emb,
                              float *d_ig, size_t budget)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const int G = r->T - r->n_input, T = r->T, C = c->n_embd, K = r->opt.ig_steps;
    double *alpha = ecc_malloc(sizeof(double) * (size_t)K, "IG steps"), *w = ecc_malloc(sizeof(double) * (size_t)K,
                                                                                      "IG steps");
    if (!alpha || !w) {
        free(alpha), free(w);
        return ECC_ERR_NOMEM;
    }
    ecc_gauss_legendre01(alpha, w, K);
    /* alpha steps per group: as many as leave room for one full-length target each */
    int A = K;
    size_t one_target = (size_t)(T - 1) * (bwd_row_bytes(c) + (size_t)C * 4) + bwd_target_bytes(c);
    while (A > 1 && saves_bytes(c, T, A, 0) + (size_t)A * one_target > budget)
        A--;
    size_t left = budget > saves_bytes(c, T, A, 0) ? budget - saves_bytes(c, T, A, 0) : 0;
    int64_t R;
    int J = 0;
    int64_t Rmax = 0;
    for (int g0 = 0; g0 < G;) {
        int j = chunk_targets(c, r, g0, A, left, r->opt.max_chunk_targets, &R);
        Rmax = ECC_MAX(Rmax, R);
        J = ECC_MAX(J, j);
        g0 += j;
    }
    saves s;
    bwd b;
    memset(&s, 0, sizeof s);
    memset(&b, 0, sizeof b);
    ecc_status st = saves_alloc(&s, be, c, T, A, 0, 0);
    if (st == ECC_OK)
        st = bwd_alloc(&b, be, c, A * J, A * Rmax);
    float *acc = NULL;
    int32_t *seq = NULL, *pos = NULL, *t_rowpos = NULL, *t_n = NULL;
    int64_t *t_off = NULL;
    float *sc = NULL;
    if (st == ECC_OK) {
        acc = be->alloc(be, (size_t)Rmax * C * 4, "integrated gradients");
        t_rowpos = be->alloc(be, (size_t)Rmax * 4, "targets");
        t_n = be->alloc(be, (size_t)J * 4, "targets");
        t_off = be->alloc(be, (size_t)J * 8, "targets");
        seq = ecc_malloc((size_t)A * J * 4, "targets");
        pos = ecc_malloc((size_t)A * J * 4, "targets");
        sc = ecc_malloc((size_t)A * J * 4, "targets");
        if (!acc || !t_rowpos || !t_n || !t_off || !seq || !pos || !sc)
            st = ECC_ERR_NOMEM;
    }
    for (int g0 = 0; st == ECC_OK && g0 < G;) {
        int n = chunk_targets(c, r, g0, A, left, r->opt.max_chunk_targets, &R);
        int64_t Rt = R;
        /* the alpha-free layout of this chunk, for the sum and the final norms */
        for (int j = 0; j < n; j++) {
            seq[j] = 0;
            pos[j] = r->n_input + g0 + j;
            sc[j] = 1.0f;
        }
        bwd_tables(&b, be, r->ids, T, n, seq, pos, sc);
        be->upload(be, t_rowpos, b.h_rowpos, (size_t)Rt * 4);
        be->upload(be, t_n, b.h_n, (size_t)n * 4);
        be->upload(be, t_off, b.h_off, (size_t)n * 8);
        be->zero(be, acc, (size_t)Rt * C * 4);
        for (int k0 = 0; k0 < K; k0 += A) {
            int a_n = ECC_MIN(A, K - k0);
            for (int a = 0; a < a_n && st == ECC_OK; a++)
                st = saves_forward(&s, dm, d_ids, a, (float)alpha[k0 + a]);
            for (int a = 0; a < a_n; a++)
                for (int j = 0; j < n; j++) {
                    seq[a * n + j] = a;
                    pos[a * n + j] = r->n_input + g0 + j;
                    sc[a * n + j] = (float)w[k0 + a];
                }
            int64_t Rall = bwd_tables(&b, be, r->ids, T, a_n * n, seq, pos, sc);
            bwd_run(&b, dm, &s, a_n * n, Rall, r->opt.target);
            for (int a = 0; a < a_n; a++) /* alpha by alpha: a fixed order of summation */
                be->add(be, acc, acc, b.dres + (int64_t)a * Rt * C, Rt * C);
            report(r, "integrated gradients", g0 + (int)((int64_t)n * (k0 + a_n) / K), G);
        }
        be->saliency(be, d_ig + (int64_t)g0 * T, T, acc, d_emb, t_rowpos, t_n, t_off, n, C);
        g0 += n;
    }
    if (acc)
        be->free(be, acc);
    if (t_rowpos)
        be->free(be, t_rowpos);
    if (t_n)
        be->free(be, t_n);
    if (t_off)
        be->free(be, t_off);
    free(seq), free(pos), free(sc), free(alpha), free(w);
    bwd_free(&b);
    saves_free(&s);
    return st;
}

/* ---- the whole explanation phase --------------------------------------------------------- */

ecc_status ecc_explain(ecc_run *r, const ecc_dmodel *dm)
{
    const ecc_options *o = &r->opt;
    if (!o->attribution && !o->activations && !o->hidden_states && !o->attention && !o->rankings)
        return ECC_OK;
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const int T = r->T, G = r->T - r->n_input, C = c->n_embd;
    const size_t budget = o->mem_budget ? o->mem_budget : ECC_DEFAULT_MEM_BUDGET;
    int from = o->activations ? o->layer_from : 0;
    int to = o->activations ? (o->layer_to ? o->layer_to : c->n_layer) : 0;

    /* memory: the saved forward, the attention-gradient tiles, and at least one full-length target */
    size_t tiles = 0;
    if (o->attribution)
        ECC_TRY(be->reserve(be, T, &tiles));
    size_t fixed = saves_bytes(c, T, 1, to - from) + tiles + (size_t)T * C * 4 * 3;
    size_t need = fixed + (o->attribution ? (size_t)(T - 1) * bwd_row_bytes(c) + bwd_target_bytes(c) : 0);
    if (need > budget)
        return ecc_fail(ECC_ERR_NOMEM, "--mem-budget %.0f MiB is too small for this run: %d tokens need at least "
                        "%.0f MiB (%.0f MiB for the saved forward pass)", mib(budget), T, ceil(mib(need)),
                        mib(fixed));

    double t0 = ecc_now();
    bufset m = {.be = be};
    int32_t *d_ids = balloc(&m, (size_t)T * 4, "token ids");
    float *d_emb = balloc(&m, (size_t)T * C * 4, "token embeddings");
    saves s;
    memset(&s, 0, sizeof s);
    ecc_status st = d_ids && d_emb ? saves_alloc(&s, be, c, T, 1, from, to) : ECC_ERR_NOMEM;
    if (st == ECC_OK) {
        be->upload(be, d_ids, r->ids, (size_t)T * 4);
        be->gather_rows(be, d_emb, dm->w.p[ECC_P_WTE], d_ids, T, C); /* e_i = wte[x_i] */
        st = saves_forward(&s, dm, d_ids, 0, 1.0f);
        be->synchronize(be);
        ecc_run_time(r, "explain_forward", ecc_now() - t0);
    }
    if (st == ECC_OK)
        st = capture(r, dm, &s);
    if (st == ECC_OK && o->rankings) {
        double t1 = ecc_now();
        st = lens(r, dm, &s, budget - fixed);
        ecc_run_time(r, "rankings", ecc_now() - t1);
    }
    float *scores[3] = {NULL, NULL, NULL}; /* host outputs per method bit 1, 2, 4 */
    float *d_scores[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3 && st == ECC_OK; i++) {
        unsigned bit = 1u << i;
        if (!(o->attribution & bit))
            continue;
        char name[64];
        snprintf(name, sizeof name, "attribution.%s", ecc_attr_name(bit));
        scores[i] = ecc_run_tensor_new(r, name, ECC_F32, 2, (int64_t[]){G, T});
        d_scores[i] = balloc(&m, (size_t)ECC_MAX(G, 1) * T * 4, "attribution scores");
        if (!scores[i] || !d_scores[i])
            st = ECC_ERR_NOMEM;
    }
    if (st == ECC_OK && G > 0 && (o->attribution & (ECC_ATTR_GRAD_X_INPUT | ECC_ATTR_GRADIENT))) {
        double t1 = ecc_now();
        st = saliency_plain(r, dm, &s, d_emb, d_scores[0], d_scores[1], budget - fixed);
        be->synchronize(be);
        ecc_run_time(r, "backward", ecc_now() - t1);
    }
    saves_free(&s); /* integrated gradients keeps its own */
    if (st == ECC_OK && G > 0 && (o->attribution & ECC_ATTR_INTEGRATED_GRADIENTS)) {
        double t1 = ecc_now();
        st = saliency_ig(r, dm, d_ids, d_emb, d_scores[2], budget - (size_t)T * C * 4 * 3 - tiles);
        be->synchronize(be);
        ecc_run_time(r, "integrated_gradients", ecc_now() - t1);
    }
    for (int i = 0; i < 3 && st == ECC_OK; i++)
        if (scores[i] && G > 0)
            be->download(be, scores[i], d_scores[i], (size_t)G * T * 4);
    bfree(&m);
    return st;
}
