#include "engine/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- weights on the backend ---------------------------------------------- */

ecc_status ecc_dmodel_init(ecc_dmodel *dm, ecc_backend *be, const ecc_model *m)
{
    memset(dm, 0, sizeof *dm);
    dm->cfg = &m->cfg;
    dm->be = be;
    dm->params = be->mirror(be, m->params, m->n_params * sizeof(float), "the model weights");
    if (!dm->params)
        return ECC_ERR_NOMEM;
    ecc_weights_carve(&dm->w, dm->params, &m->cfg);
    return ECC_OK;
}

void ecc_dmodel_free(ecc_dmodel *dm)
{
    if (dm->params)
        dm->be->unmirror(dm->be, dm->params);
    dm->params = NULL;
}

ecc_status ecc_kv_init(ecc_kv *kv, ecc_backend *be, const ecc_config *c, int n_ctx)
{
    size_t n = (size_t)c->n_layer * (size_t)n_ctx * (size_t)c->n_embd * sizeof(float);
    kv->n_ctx = n_ctx;
    kv->k = be->alloc(be, n, "the key cache");
    kv->v = kv->k ? be->alloc(be, n, "the value cache") : NULL;
    if (!kv->v) {
        ecc_kv_free(kv, be);
        return ECC_ERR_NOMEM;
    }
    return ECC_OK;
}

void ecc_kv_free(ecc_kv *kv, ecc_backend *be)
{
    if (kv->k)
        be->free(be, kv->k);
    if (kv->v)
        be->free(be, kv->v);
    kv->k = kv->v = NULL;
}

/* ---- activation tables ----------------------------------------------------- */

static float *own(ecc_acts *a, ecc_backend *be, size_t n_floats, const char *what)
{
    if (a->n_owned == (int)(sizeof a->owned / sizeof a->owned[0])) {
        ecc_fail(ECC_ERR_NOMEM, "internal: too many activation buffers");
        return NULL;
    }
    float *p = be->alloc(be, n_floats * sizeof(float), what);
    if (p)
        a->owned[a->n_owned++] = p;
    return p;
}

ecc_status ecc_acts_scratch(ecc_acts *a, ecc_backend *be, const ecc_config *c, int T_max, int n_logits_max)
{
    memset(a, 0, sizeof *a);
    size_t T = (size_t)T_max, C = (size_t)c->n_embd, F = (size_t)c->n_inner;
    a->L = c->n_layer;
    a->T_max = T_max;
    a->n_logits_max = n_logits_max;
    a->layer = ecc_calloc((size_t)c->n_layer, sizeof(ecc_layer_acts), "the activation table");
    float *x = own(a, be, T * C, "the residual stream");      /* (T, C), updated in place */
    float *ln = own(a, be, T * C, "layer-norm outputs");      /* (T, C) */
    float *qkv = own(a, be, T * 3 * C, "q, k, v");            /* (T, 3C) */
    float *atty = own(a, be, T * C, "attention outputs");     /* (T, C) */
    float *proj = own(a, be, T * C, "projections");           /* (T, C) */
    float *fch = own(a, be, T * F, "MLP pre-activations");    /* (T, F) */
    float *fcg = own(a, be, T * F, "MLP activations");        /* (T, F) */
    a->lnf = own(a, be, T * C, "final layer-norm outputs");
    a->logits = own(a, be, (size_t)n_logits_max * (size_t)c->vocab_size, "logits");
    a->lnf_rows = own(a, be, (size_t)n_logits_max * C, "final hidden states");
    if (!a->layer || !x || !ln || !qkv || !atty || !proj || !fch || !fcg || !a->lnf || !a->logits || !a->lnf_rows) {
        ecc_acts_free(a, be);
        return ECC_ERR_NOMEM;
    }
    a->emb = x;
    for (int l = 0; l < c->n_layer; l++) {
        a->layer[l] = (ecc_layer_acts){
            .ln1 = ln, .qkv = qkv, .atty = atty, .attproj = proj, .res_mid = x,
            .ln2 = ln, .fch = fch, .fch_gelu = fcg, .fcproj = proj, .res_out = x,
        };
    }
    return ECC_OK;
}

void ecc_acts_free(ecc_acts *a, ecc_backend *be)
{
    for (int i = 0; i < a->n_owned; i++)
        be->free(be, a->owned[i]);
    free(a->layer);
    memset(a, 0, sizeof *a);
}

/* ---- the forward pass ------------------------------------------------------- */

void ecc_forward(const ecc_dmodel *dm, const ecc_acts *a, ecc_kv *kv, const int32_t *ids, int pos0, int T,
                 int n_logits)
{
    ecc_forward_scaled(dm, a, kv, ids, 1.0f, pos0, T, n_logits);
}

void ecc_forward_scaled(const ecc_dmodel *dm, const ecc_acts *a, ecc_kv *kv, const int32_t *ids, float tok_scale,
                        int pos0, int T, int n_logits)
{
    ecc_seq s = {.row = 0, .n = T, .pos0 = pos0, .k = kv->k, .v = kv->v, .n_ctx = kv->n_ctx};
    ecc_forward_batch(dm, a, &s, 1, ids, NULL, T, tok_scale);
    if (n_logits > 0)
        ecc_logits(dm, a, NULL, T - n_logits, n_logits);
}

void ecc_forward_batch(const ecc_dmodel *dm, const ecc_acts *a, const ecc_seq *seqs, int n_seq, const int32_t *ids,
                       const int32_t *pos, int R, float tok_scale)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    float *const *p = dm->w.p;
    const int C = c->n_embd, F = c->n_inner, NH = c->n_head;
    const int64_t RC = (int64_t)R * C, RF = (int64_t)R * F;
    const float eps = c->layer_norm_eps;
    const size_t lc = (size_t)C, lc3 = 3 * lc, lcc = lc * lc, lcf = lc * (size_t)F;

    ecc_nvtx_push("forward");
    be->embed(be, a->emb, ids, pos, pos ? 0 : seqs[0].pos0, p[ECC_P_WTE], p[ECC_P_WPE], tok_scale, R, C);
    const float *x = a->emb; /* (R, C) input of the current block */
    for (int l = 0; l < c->n_layer; l++) {
        const ecc_layer_acts *la = &a->layer[l];
        const size_t L = (size_t)l;
        float scale = 1.0f / sqrtf((float)(C / NH));
        if (c->scale_attn_by_inverse_layer_idx)
            scale /= (float)(l + 1);

        be->layernorm(be, la->ln1, la->ln1_mean, la->ln1_rstd, x, p[ECC_P_LN1W] + L * lc, p[ECC_P_LN1B] + L * lc, R,
                      C, eps);
        be->matmul(be, la->qkv, la->ln1, p[ECC_P_QKVW] + L * lc * lc3, p[ECC_P_QKVB] + L * lc3, R, C, 3 * C);
        for (int s = 0; s < n_seq; s++) { /* attention: each sequence against its own cache */
            const ecc_seq *q = &seqs[s];
            size_t lkv = L * (size_t)q->n_ctx * lc;
            be->attention(be, la->atty + (int64_t)q->row * C, n_seq == 1 ? la->att : NULL, la->att_head_stride,
                          la->att_row_stride, la->qkv + (int64_t)q->row * 3 * C, q->k + lkv, q->v + lkv, q->pos0,
                          q->n, C, NH, scale);
        }
        be->matmul(be, la->attproj, la->atty, p[ECC_P_ATTPROJW] + L * lcc, p[ECC_P_ATTPROJB] + L * lc, R, C, C);
        be->add(be, la->res_mid, x, la->attproj, RC);

        be->layernorm(be, la->ln2, la->ln2_mean, la->ln2_rstd, la->res_mid, p[ECC_P_LN2W] + L * lc,
                      p[ECC_P_LN2B] + L * lc, R, C, eps);
        be->matmul(be, la->fch, la->ln2, p[ECC_P_FCW] + L * lcf, p[ECC_P_FCB] + L * (size_t)F, R, C, F);
        be->gelu(be, la->fch_gelu, la->fch_dgelu, la->fch, RF);
        be->matmul(be, la->fcproj, la->fch_gelu, p[ECC_P_FCPROJW] + L * lcf, p[ECC_P_FCPROJB] + L * lc, R, F, C);
        be->add(be, la->res_out, la->res_mid, la->fcproj, RC);
        x = la->res_out;
    }
    be->layernorm(be, a->lnf, a->lnf_mean, a->lnf_rstd, x, p[ECC_P_LNFW], p[ECC_P_LNFB], R, C, eps);
    ecc_nvtx_pop();
}

void ecc_logits(const ecc_dmodel *dm, const ecc_acts *a, const int32_t *rows, int first, int n)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    const float *h = a->lnf + (int64_t)first * c->n_embd;
    if (rows) {
        be->gather_rows(be, a->lnf_rows, a->lnf, rows, n, c->n_embd);
        h = a->lnf_rows;
    }
    be->matmul_wt(be, a->logits, h, ecc_weights_lm_head(&dm->w, c), n, c->n_embd, c->vocab_size);
}
