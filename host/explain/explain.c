#define _GNU_SOURCE
#include "explain/explain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain/explain_internal.h"
#include "model/config.h"
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
        if (o->top_k_layers < 1 || o->top_k_layers > c->n_tokens)
            return ecc_fail(ECC_ERR_INPUT, "--top-k-layers must be from 1 to %d (got %d)", c->n_tokens,
                            o->top_k_layers);
        if (o->n_watch < 0 || o->n_watch > 4096)
            return ecc_fail(ECC_ERR_INPUT, "at most 4096 watched tokens (got %d)", o->n_watch);
        for (int i = 0; i < o->n_watch; i++)
            if (o->watch_ids[i] < 0 || o->watch_ids[i] >= c->n_tokens)
                return ecc_fail(ECC_ERR_INPUT, "watched token id %d is outside the vocabulary [0, %d)%s",
                                o->watch_ids[i], c->n_tokens, ecc_padding_note(c, o->watch_ids[i]));
    }
    if (o->lens != ECC_LENS_STANDARD && o->lens != ECC_LENS_RAW)
        return ecc_fail(ECC_ERR_INPUT, "unknown lens %d", (int)o->lens);
    return ECC_OK;
}

/* ---- targets and chunks ------------------------------------------------------------------- */

/* The targets of a batch, in order: sequence seq[j] (its row in the saves)
 * and position pos[j] of the token explained. */
typedef struct tlist {
    int n;
    int32_t *seq, *pos;
} tlist;

/* How many targets from j0 on fit in `bytes`, each counted `mult` times (IG
 * alpha steps per group); at least one. *rows gets their packed rows. */
static int chunk_targets(const ecc_config *c, const tlist *tl, int j0, int mult, size_t bytes, int max_targets,
                         int64_t *rows)
{
    int J = 0;
    int64_t R = 0;
    size_t used = 0;
    while (j0 + J < tl->n && (max_targets <= 0 || J < max_targets)) {
        int64_t t = tl->pos[j0 + J];
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

/* The largest chunk of a whole target list: sizes the buffers once. */
static int largest_chunk(const ecc_config *c, const tlist *tl, int mult, size_t bytes, int max_targets,
                         int64_t *rows)
{
    int J = 0;
    int64_t R, Rmax = 0;
    for (int j0 = 0; j0 < tl->n;) {
        int j = chunk_targets(c, tl, j0, mult, bytes, max_targets, &R);
        Rmax = ECC_MAX(Rmax, R);
        J = ECC_MAX(J, j);
        j0 += j;
    }
    *rows = Rmax;
    return J;
}

static double mib(size_t b) { return (double)b / (1 << 20); }

static void report(const ecc_run *r, const char *phase, int done, int total)
{
    if (r->opt.progress)
        r->opt.progress(r->opt.progress_user, phase, done, total);
}

/* ---- captures and the logit lens ------------------------------------------------------- */

/* Run a's captures: slices of the saved forward for its T_a rows. */
static ecc_status capture(ecc_run *r, const ecc_dmodel *dm, const saves *s, int a)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const ecc_options *o = &r->opt;
    const int64_t L = c->n_layer, T = r->T, C = c->n_embd, F = c->n_inner, NH = c->n_head, S = s->T;
    const int64_t off = (int64_t)a * S; /* the run's first row in the saves */
    if (o->hidden_states) {
        float *hs = ecc_run_tensor_new(r, "hidden_states", ECC_F32, 3, (int64_t[]){L + 1, T, C});
        if (!hs)
            return ECC_ERR_NOMEM;
        for (int64_t l = 0; l < L; l++) /* the embeddings, then blocks 0 .. L-2 */
            be->download(be, hs + l * T * C, s->res + (l * s->N + off) * C, (size_t)(T * C) * sizeof(float));
        be->download(be, hs + L * T * C, s->lnf + off * C, (size_t)(T * C) * sizeof(float)); /* with ln_f, as HF */
    }
    if (o->attention) {
        float *att = ecc_run_tensor_new(r, "attention", ECC_F32, 4, (int64_t[]){L, NH, T, T});
        if (!att)
            return ECC_ERR_NOMEM;
        for (int64_t l = 0; l < L; l++) /* (NH, T, T) out of the saves' (NH, S, S) planes */
            for (int64_t h = 0; h < NH; h++)
                be->download2d(be, att + (l * NH + h) * T * T, (size_t)T * sizeof(float),
                               s->att + (((l * s->A + a) * NH + h) * S * S), (size_t)S * sizeof(float),
                               (size_t)T * sizeof(float), (size_t)T);
    }
    if (o->activations) {
        int64_t n = s->layer_to - s->layer_from;
        float *act = ecc_run_tensor_new(r, "activations", ECC_F32, 3, (int64_t[]){n, T, F});
        if (!act)
            return ECC_ERR_NOMEM;
        for (int64_t l = 0; l < n; l++)
            be->download(be, act + l * T * F, s->act + ((int64_t)a * n + l) * S * F, (size_t)(T * F) * sizeof(float));
    }
    return ECC_OK;
}

static ecc_status lens(ecc_run *r, const ecc_dmodel *dm, const saves *s, int a, size_t budget)
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
    for (int g = 0; g < G; g++) /* the hidden state that predicts token n_input + g */
        rows[g] = a * s->T + r->n_input + g - 1;
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
                           W ? d_wr + (int64_t)g0 * W : NULL, logits, d_tok + g0, d_watch, n, V, c->n_tokens, k, W);
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

/* A forced run's log-probabilities from the saved forward (generation
 * skipped its prefill: the explanation's forward covers the same tokens). */
static ecc_status forced_logprobs(ecc_run *r, const ecc_dmodel *dm, const saves *s, int a)
{
    enum { CHUNK = 64 };
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const int C = c->n_embd, V = c->vocab_size, G = r->T - r->n_input;
    bufset m = {.be = be};
    int32_t *d_rows = balloc(&m, CHUNK * sizeof(int32_t), "rows"), rows[CHUNK], tok;
    float *h = balloc(&m, (size_t)CHUNK * C * 4, "hidden states"), *logits = balloc(&m, (size_t)CHUNK * V * 4, "logits");
    ecc_pick_params pp = {.greedy = 1, .n_tokens = c->n_tokens};
    if (!d_rows || !h || !logits) {
        bfree(&m);
        return ECC_ERR_NOMEM;
    }
    for (int s0 = 0; s0 < G; s0 += CHUNK) {
        int n = ECC_MIN(CHUNK, G - s0);
        for (int i = 0; i < n; i++) /* token n_input + s0 + i is predicted by the row before it */
            rows[i] = a * s->T + r->n_input + s0 + i - 1;
        be->upload(be, d_rows, rows, sizeof(int32_t) * (size_t)n);
        be->gather_rows(be, h, s->lnf, d_rows, n, C);
        be->matmul_wt(be, logits, h, ecc_weights_lm_head(&dm->w, c), n, C, V);
        for (int i = 0; i < n; i++)
            be->pick(be, &tok, &r->logprobs[s0 + i], logits + (int64_t)i * V, V, r->ids[r->n_input + s0 + i], &pp,
                     (uint64_t)(s0 + i));
    }
    bfree(&m);
    r->logprobs_pending = 0;
    return ECC_OK;
}

/* ---- input saliency ---------------------------------------------------------------------- */

/* grad_x_input and gradient share one backward pass per chunk of targets;
 * the targets of several runs share chunks. Scores go to d_gxi / d_grad
 * (n targets, ld) rows in target order; d_lp, when not NULL, receives each
 * target token's log-probability (n targets). */
static ecc_status saliency_plain(const ecc_run *r0, const tlist *tl, const int32_t *ids, const ecc_dmodel *dm,
                                 const saves *s, const float *d_emb, float *d_gxi, float *d_grad, float *d_lp, int ld,
                                 size_t budget)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    int64_t R, Rmax;
    int J = largest_chunk(c, tl, 1, budget, r0->opt.max_chunk_targets, &Rmax);
    bwd b;
    ECC_TRY(bwd_alloc(&b, be, c, J, Rmax));
    float *one = ecc_malloc((size_t)J * 4, "targets");
    if (!one) {
        bwd_free(&b);
        return ECC_ERR_NOMEM;
    }
    for (int j = 0; j < J; j++)
        one[j] = 1.0f;
    for (int j0 = 0; j0 < tl->n;) {
        int n = chunk_targets(c, tl, j0, 1, budget, r0->opt.max_chunk_targets, &R);
        R = bwd_tables(&b, be, ids, s->T, s->T, n, tl->seq + j0, tl->pos + j0, one);
        bwd_run(&b, dm, s, n, R, r0->opt.target, d_lp ? d_lp + j0 : NULL);
        if (d_gxi)
            be->saliency(be, d_gxi + (int64_t)j0 * ld, ld, b.dres, d_emb, b.rowpos, b.tg_n, b.tg_off, n, c->n_embd);
        if (d_grad)
            be->saliency(be, d_grad + (int64_t)j0 * ld, ld, b.dres, NULL, b.rowpos, b.tg_n, b.tg_off, n, c->n_embd);
        j0 += n;
        report(r0, "saliency", j0, tl->n);
    }
    free(one);
    bwd_free(&b);
    return ECC_OK;
}

/* Integrated gradients of one run: for each chunk of its targets, the alpha
 * steps in groups of A sequences; the gradients of every (alpha, target) pair
 * in one backward, weighted by w_k at the logits and summed over alpha in a
 * fixed order. */
static ecc_status saliency_ig(ecc_run *r, const ecc_dmodel *dm, const int32_t *d_ids, const float *d_emb,
                              float *d_ig, size_t budget)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const int G = r->T - r->n_input, T = r->T, C = c->n_embd, K = r->opt.ig_steps;
    double *alpha = ecc_malloc(sizeof(double) * (size_t)K, "IG steps"), *w = ecc_malloc(sizeof(double) * (size_t)K,
                                                                                      "IG steps");
    int32_t *t_seq = ecc_calloc((size_t)(G ? G : 1), 4, "targets"), *t_pos = ecc_malloc((size_t)(G ? G : 1) * 4,
                                                                                     "targets");
    if (!alpha || !w || !t_seq || !t_pos) {
        free(alpha), free(w), free(t_seq), free(t_pos);
        return ECC_ERR_NOMEM;
    }
    ecc_gauss_legendre01(alpha, w, K);
    for (int g = 0; g < G; g++)
        t_pos[g] = r->n_input + g;
    tlist tl = {.n = G, .seq = t_seq, .pos = t_pos};
    /* alpha steps per group: as many as leave room for one full-length target each */
    int A = K;
    size_t one_target = (size_t)(T - 1) * (bwd_row_bytes(c) + (size_t)C * 4) + bwd_target_bytes(c);
    while (A > 1 && saves_bytes(c, T, A, 0) + (size_t)A * one_target > budget)
        A--;
    size_t left = budget > saves_bytes(c, T, A, 0) ? budget - saves_bytes(c, T, A, 0) : 0;
    int64_t R, Rmax;
    int J = largest_chunk(c, &tl, A, left, r->opt.max_chunk_targets, &Rmax);
    saves s;
    bwd b;
    memset(&s, 0, sizeof s);
    memset(&b, 0, sizeof b);
    ecc_status st = saves_alloc(&s, be, c, T, A, 0, 0);
    if (st == ECC_OK)
        st = bwd_alloc(&b, be, c, A * J, A * Rmax);
    bufset m = {.be = be};
    float *acc = NULL, *sc = NULL;
    int32_t *seq = NULL, *pos = NULL, *t_rowpos = NULL, *t_n = NULL;
    int64_t *t_off = NULL;
    if (st == ECC_OK) {
        acc = balloc(&m, (size_t)Rmax * C * 4, "integrated gradients");
        t_rowpos = balloc(&m, (size_t)Rmax * 4, "targets");
        t_n = balloc(&m, (size_t)J * 4, "targets");
        t_off = balloc(&m, (size_t)J * 8, "targets");
        seq = ecc_malloc((size_t)A * J * 4, "targets");
        pos = ecc_malloc((size_t)A * J * 4, "targets");
        sc = ecc_malloc((size_t)A * J * 4, "targets");
        if (!acc || !t_rowpos || !t_n || !t_off || !seq || !pos || !sc)
            st = ECC_ERR_NOMEM;
    }
    for (int g0 = 0; st == ECC_OK && g0 < G;) {
        int n = chunk_targets(c, &tl, g0, A, left, r->opt.max_chunk_targets, &R);
        int64_t Rt = R;
        /* the alpha-free layout of this chunk, for the sum and the final norms */
        for (int j = 0; j < n; j++)
            sc[j] = 1.0f;
        bwd_tables(&b, be, r->ids, 0, T, n, t_seq + g0, t_pos + g0, sc);
        be->upload(be, t_rowpos, b.h_rowpos, (size_t)Rt * 4);
        be->upload(be, t_n, b.h_n, (size_t)n * 4);
        be->upload(be, t_off, b.h_off, (size_t)n * 8);
        be->zero(be, acc, (size_t)Rt * C * 4);
        for (int k0 = 0; k0 < K && st == ECC_OK; k0 += A) {
            int a_n = ECC_MIN(A, K - k0);
            for (int a = 0; a < a_n && st == ECC_OK; a++)
                st = saves_forward(&s, dm, d_ids, a, (float)alpha[k0 + a]);
            for (int a = 0; a < a_n; a++)
                for (int j = 0; j < n; j++) {
                    seq[a * n + j] = a;
                    pos[a * n + j] = t_pos[g0 + j];
                    sc[a * n + j] = (float)w[k0 + a];
                }
            int64_t Rall = bwd_tables(&b, be, r->ids, 0, T, a_n * n, seq, pos, sc);
            bwd_run(&b, dm, &s, a_n * n, Rall, r->opt.target, NULL);
            for (int a = 0; a < a_n; a++) /* alpha by alpha: a fixed order of summation */
                be->add(be, acc, acc, b.dres + (int64_t)a * Rt * C, Rt * C);
            report(r, "integrated gradients", g0 + (int)((int64_t)n * (k0 + a_n) / K), G);
        }
        be->saliency(be, d_ig + (int64_t)g0 * T, T, acc, d_emb, t_rowpos, t_n, t_off, n, C);
        g0 += n;
    }
    bfree(&m);
    free(seq), free(pos), free(sc), free(alpha), free(w), free(t_seq), free(t_pos);
    bwd_free(&b);
    saves_free(&s);
    return st;
}

/* ---- the whole explanation phase --------------------------------------------------------- */

int ecc_explain_wanted(const ecc_options *o)
{
    return o->attribution || o->activations || o->hidden_states || o->attention || o->rankings;
}

/* The attribution tensors of run r: [G, T] each, zeros to start with. */
static ecc_status attribution_outputs(ecc_run *r, float *out[3])
{
    const int64_t G = r->T - r->n_input, T = r->T;
    for (int i = 0; i < 3; i++) {
        unsigned bit = 1u << i;
        out[i] = NULL;
        if (!(r->opt.attribution & bit))
            continue;
        char name[64];
        snprintf(name, sizeof name, "attribution.%s", ecc_attr_name(bit));
        if (!(out[i] = ecc_run_tensor_new(r, name, ECC_F32, 2, (int64_t[]){G, T})))
            return ECC_ERR_NOMEM;
    }
    return ECC_OK;
}

/* Runs runs[0..A) explained together: one saved forward per run (right-
 * padded to the longest), captures and lens per run, and the gradient
 * methods with every run's targets sharing the backward chunks. */
static ecc_status explain_group(ecc_run **runs, int A, const ecc_dmodel *dm, size_t budget, size_t fixed, int from,
                                int to)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const ecc_options *o = &runs[0]->opt;
    int T = 0, n_targets = 0;
    for (int a = 0; a < A; a++) {
        T = ECC_MAX(T, runs[a]->T);
        n_targets += runs[a]->T - runs[a]->n_input;
    }
    const int C = c->n_embd;
    int32_t *ids = ecc_malloc(sizeof(int32_t) * (size_t)A * T, "token ids");
    tlist tl = {.n = n_targets, .seq = ecc_malloc(sizeof(int32_t) * (size_t)(n_targets + 1), "targets"),
                .pos = ecc_malloc(sizeof(int32_t) * (size_t)(n_targets + 1), "targets")};
    bufset m = {.be = be};
    int32_t *d_ids = balloc(&m, (size_t)A * T * 4, "token ids");
    float *d_emb = balloc(&m, (size_t)A * T * C * 4, "token embeddings");
    float *d_scores[2] = {NULL, NULL}; /* grad_x_input, gradient: (targets, T) */
    float *d_lp = NULL; /* (targets) log-probabilities of forced tokens, from the backward's logits */
    saves s;
    memset(&s, 0, sizeof s);
    ecc_status st = ids && tl.seq && tl.pos && d_ids && d_emb ? ECC_OK : ECC_ERR_NOMEM;
    for (int i = 0; i < 2 && st == ECC_OK; i++)
        if ((o->attribution & (1u << i)) && !(d_scores[i] = balloc(&m, (size_t)(n_targets + 1) * T * 4, "scores")))
            st = ECC_ERR_NOMEM;
    const int plain = n_targets > 0 && (d_scores[0] || d_scores[1]);
    int pending = 0;
    for (int a = 0; a < A; a++)
        pending |= runs[a]->logprobs_pending;
    if (st == ECC_OK && plain && pending && !(d_lp = balloc(&m, (size_t)n_targets * 4, "log-probabilities")))
        st = ECC_ERR_NOMEM;
    if (st == ECC_OK) {
        int j = 0;
        for (int a = 0; a < A; a++) {
            const ecc_run *r = runs[a];
            for (int t = 0; t < T; t++) /* padding repeats the last token: any id will do */
                ids[(int64_t)a * T + t] = r->ids[ECC_MIN(t, r->T - 1)];
            for (int t = r->n_input; t < r->T; t++, j++) {
                tl.seq[j] = a;
                tl.pos[j] = t;
            }
        }
        be->upload(be, d_ids, ids, sizeof(int32_t) * (size_t)A * T);
        be->gather_rows(be, d_emb, dm->w.p[ECC_P_WTE], d_ids, A * T, C); /* e_i = wte[x_i] */
        st = saves_alloc(&s, be, c, T, A, from, to);
    }
    double t0 = ecc_now();
    for (int a = 0; a < A && st == ECC_OK; a++)
        st = saves_forward(&s, dm, d_ids + (int64_t)a * T, a, 1.0f);
    be->synchronize(be);
    double t1 = ecc_now();
    ecc_nvtx_push("copy");
    for (int a = 0; a < A && st == ECC_OK; a++) {
        ecc_run_time(runs[a], "explain_forward", t1 - t0);
        st = capture(runs[a], dm, &s, a);
        if (st == ECC_OK && runs[a]->logprobs_pending && !d_lp) /* else the backward gives them */
            st = forced_logprobs(runs[a], dm, &s, a);
    }
    ecc_nvtx_pop();
    for (int a = 0; a < A && st == ECC_OK && o->rankings; a++) {
        double t2 = ecc_now();
        st = lens(runs[a], dm, &s, a, budget - fixed);
        ecc_run_time(runs[a], "rankings", ecc_now() - t2);
    }
    if (st == ECC_OK && plain) {
        double t2 = ecc_now();
        st = saliency_plain(runs[0], &tl, ids, dm, &s, d_emb, d_scores[0], d_scores[1], d_lp, T, budget - fixed);
        be->synchronize(be);
        double dt = ecc_now() - t2;
        for (int a = 0, j0 = 0; a < A && st == ECC_OK; a++) {
            ecc_run *r = runs[a];
            int G = r->T - r->n_input;
            ecc_run_time(r, "backward", dt);
            for (int i = 0; i < 2; i++) {
                char name[64];
                snprintf(name, sizeof name, "attribution.%s", ecc_attr_name(1u << i));
                const ecc_run_tensor *out = ecc_run_tensor_get(r, name);
                if (out && G > 0) /* rows of this run, its T columns out of the padded T */
                    be->download2d(be, out->data, (size_t)r->T * 4, d_scores[i] + (int64_t)j0 * T, (size_t)T * 4,
                                   (size_t)r->T * 4, (size_t)G);
            }
            if (r->logprobs_pending && G > 0) {
                be->download(be, r->logprobs, d_lp + j0, (size_t)G * 4);
                r->logprobs_pending = 0;
            }
            j0 += G;
        }
    }
    if (st == ECC_OK)
        st = be->status(be);
    saves_free(&s);
    bfree(&m);
    free(ids), free(tl.seq), free(tl.pos);
    return st;
}

ecc_status ecc_explain_batch(ecc_run **runs, int n, const ecc_dmodel *dm)
{
    if (n == 0 || !ecc_explain_wanted(&runs[0]->opt))
        return ECC_OK;
    const ecc_options *o = &runs[0]->opt;
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const int C = c->n_embd;
    /* the default: 4 GiB, or 80 % of what the backend can still allocate when that is less */
    size_t avail = be->available(be) / 10 * 8;
    const size_t budget = o->mem_budget ? o->mem_budget : ECC_MIN(ECC_DEFAULT_MEM_BUDGET, avail);
    int from = o->activations ? o->layer_from : 0;
    int to = o->activations ? (o->layer_to ? o->layer_to : c->n_layer) : 0;
    int T_max = 0;
    for (int i = 0; i < n; i++) {
        float *outs[3];
        ECC_TRY(attribution_outputs(runs[i], outs));
        T_max = ECC_MAX(T_max, runs[i]->T);
    }
    size_t tiles = 0;
    if (o->attribution)
        ECC_TRY(be->reserve(be, T_max, &tiles));
    /* Groups of runs whose saved forward fits the budget beside one full-length
     * target; a single run that does not fit is an error that says what would. */
    for (int i = 0; i < n;) {
        int A = 0, T = 0;
        size_t fixed = 0, need = 0;
        while (i + A < n) {
            int T2 = ECC_MAX(T, runs[i + A]->T);
            size_t f2 = saves_bytes(c, T2, A + 1, to - from) + tiles + (size_t)(A + 1) * T2 * C * 4 * 2 +
                        (size_t)(A + 1) * T2 * T2 * 4 * 2;
            size_t n2 = f2 + (o->attribution ? (size_t)(T2 - 1) * bwd_row_bytes(c) + bwd_target_bytes(c) : 0);
            if (A > 0 && n2 > budget / 2)
                break;
            A++, T = T2, fixed = f2, need = n2;
            if (need > budget)
                break;
        }
        if (need > budget)
            return ecc_fail(ECC_ERR_NOMEM, "--mem-budget %.0f MiB is too small for this run: %d tokens need at least "
                            "%.0f MiB (%.0f MiB for the saved forward pass)", mib(budget), T, ceil(mib(need)),
                            mib(fixed));
        ECC_TRY(explain_group(runs + i, A, dm, budget, fixed, from, to));
        i += A;
    }
    if (!(o->attribution & ECC_ATTR_INTEGRATED_GRADIENTS))
        return ECC_OK;
    for (int i = 0; i < n; i++) { /* integrated gradients: run by run, the alpha steps batched */
        ecc_run *r = runs[i];
        const int T = r->T, G = r->T - r->n_input;
        if (G == 0)
            continue;
        double t0 = ecc_now();
        bufset m = {.be = be};
        int32_t *d_ids = balloc(&m, (size_t)T * 4, "token ids");
        float *d_emb = balloc(&m, (size_t)T * C * 4, "token embeddings"), *d_ig = balloc(&m, (size_t)G * T * 4, "IG");
        ecc_status st = d_ids && d_emb && d_ig ? ECC_OK : ECC_ERR_NOMEM;
        if (st == ECC_OK) {
            be->upload(be, d_ids, r->ids, (size_t)T * 4);
            be->gather_rows(be, d_emb, dm->w.p[ECC_P_WTE], d_ids, T, C);
            st = saliency_ig(r, dm, d_ids, d_emb, d_ig, budget - m.bytes - tiles);
        }
        if (st == ECC_OK)
            be->download(be, (float *)ecc_run_tensor_get(r, "attribution.integrated_gradients")->data, d_ig,
                         (size_t)G * T * 4);
        be->synchronize(be);
        bfree(&m);
        ECC_TRY(st);
        ECC_TRY(be->status(be));
        ecc_run_time(r, "integrated_gradients", ecc_now() - t0);
    }
    return ECC_OK;
}

ecc_status ecc_explain(ecc_run *r, const ecc_dmodel *dm) { return ecc_explain_batch(&r, 1, dm); }
