/* The explanation phase's machinery: the saved forward pass over A
 * sequences and the batched backward pass to the token embeddings. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain/explain_internal.h"
#include "util.h"

/* ---- backend buffers, allocated together and freed together ------------------ */


void *balloc(bufset *b, size_t bytes, const char *what)
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

void bfree(bufset *b)
{
    for (int i = 0; i < b->n; i++)
        b->be->free(b->be, b->p[i]);
    b->n = 0;
    b->bytes = 0;
}

/* ---- the forward that keeps what the backward pass needs ------------------------ */


size_t saves_bytes(const ecc_config *c, int T, int A, int n_act_layers)
{
    size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, F = (size_t)c->n_inner, NH = (size_t)c->n_head;
    size_t N = (size_t)A * (size_t)T, t = (size_t)T;
    size_t floats = (L + 1) * N * C + L * N * C + 4 * L * N + 2 * N + N * C + L * N * 3 * C + L * N * NH * t +
                    L * N * F + (size_t)A * n_act_layers * t * F + 3 * t * C + t * F + 2 * L * t * C;
    return floats * sizeof(float);
}

ecc_status saves_alloc(saves *s, ecc_backend *be, const ecc_config *c, int T, int A, int layer_from,
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
             (s->dgelu = balloc(m, L * N * F * f, "saved GELU derivatives")) &&
             (s->ln = balloc(m, t * C * f, "scratch")) && (s->atty = balloc(m, t * C * f, "scratch")) &&
             (s->proj = balloc(m, t * C * f, "scratch")) && (s->fcg = balloc(m, t * F * f, "scratch"));
    if (ok && layer_to > layer_from)
        ok = (s->act = balloc(m, (size_t)A * (size_t)(layer_to - layer_from) * t * F * f, "captured activations")) !=
             NULL;
    if (ok)
        ok = ecc_kv_init(&s->kv, be, c, T) == ECC_OK;
    if (!ok) {
        ecc_kv_free(&s->kv, be);
        bfree(m);
        return ECC_ERR_NOMEM;
    }
    return ECC_OK;
}

void saves_free(saves *s)
{
    if (s->mem.be)
        ecc_kv_free(&s->kv, s->mem.be);
    bfree(&s->mem);
}

ecc_status saves_forward(saves *s, const ecc_dmodel *dm, const int32_t *ids, int a, float tok_scale)
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
            .fch = s->dgelu + (l * N + off) * F, /* overwritten by gelu' */
            .fch_dgelu = s->dgelu + (l * N + off) * F,
            .fch_gelu = captured ? s->act + ((int64_t)a * (s->layer_to - s->layer_from) + l - s->layer_from) * T * F
                                 : s->fcg,
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


size_t bwd_row_bytes(const ecc_config *c)
{
    size_t C = (size_t)c->n_embd, F = (size_t)c->n_inner;
    return (2 * C + ECC_MAX(3 * C, F)) * sizeof(float) + sizeof(int32_t);
}

size_t bwd_target_bytes(const ecc_config *c)
{
    return (3 * (size_t)c->n_embd + (size_t)c->vocab_size) * sizeof(float) + 6 * sizeof(int32_t) + sizeof(int64_t) +
           sizeof(float);
}

void bwd_free(bwd *b)
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

ecc_status bwd_alloc(bwd *b, ecc_backend *be, const ecc_config *c, int J, int64_t R)
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
             (b->top = balloc(m, j * C * 4, "targets")) && (b->top2 = balloc(m, j * C * 4, "targets")) &&
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

int64_t bwd_tables(bwd *b, ecc_backend *be, const int32_t *ids, int ids_stride, int T, int J, const int32_t *seq,
                   const int32_t *pos, const float *scale)
{
    int64_t off = 0;
    for (int j = 0; j < J; j++) {
        int t = pos[j];
        b->h_seq[j] = seq[j];
        b->h_n[j] = t;
        b->h_tok[j] = ids[(int64_t)seq[j] * ids_stride + t];
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

void bwd_run(bwd *b, const ecc_dmodel *dm, const saves *s, int J, int64_t R, ecc_target kind, float *logprob)
{
    const ecc_config *c = dm->cfg;
    ecc_backend *be = dm->be;
    float *const *p = dm->w.p;
    const int C = c->n_embd, F = c->n_inner, V = c->vocab_size, NH = c->n_head, L = c->n_layer;
    const int64_t N = s->N;
    const size_t lc = (size_t)C, lcf = lc * (size_t)F;
    const float *lm_head = ecc_weights_lm_head(&dm->w, c);

    ecc_nvtx_push("backward");
    /* at the logits, then back through the final layer norm at each target's row */
    be->gather_rows(be, b->h, s->lnf, b->lnf_rows, J, C);
    be->matmul_wt(be, b->logits, b->h, lm_head, J, C, V);
    be->target_grad(be, b->logits, logprob, b->tokens, b->scale, (int)kind, J, V);
    be->matmul(be, b->h, b->logits, lm_head, NULL, J, V, C); /* (J, V) @ (V, C) */

    /* The last block, row-sparse: above its attention, the only row with a
     * gradient is each target's position t - 1, so the MLP, ln_2 and c_proj
     * run on J rows (b->top, b->top2: (J, C)), and only then are the rows
     * placed into the packed layout for the attention, which spreads the
     * gradient to every position before t. */
    const int lt = L - 1;
    const size_t Lt = (size_t)lt;
    be->zero(be, b->top, (size_t)J * lc * sizeof(float));
    be->layernorm_backward(be, b->top, b->h, s->res + (int64_t)L * N * C, s->meanf, s->rstdf, p[ECC_P_LNFW],
                           b->lnf_rows, NULL, J, C);
    be->matmul_wt(be, b->dbig, b->top, p[ECC_P_FCPROJW] + Lt * lcf, J, C, F);
    be->gelu_backward(be, b->dbig, b->dbig, s->dgelu + Lt * N * F, b->lnf_rows, J, F);
    be->matmul_wt(be, b->top2, b->dbig, p[ECC_P_FCW] + Lt * lcf, J, F, C);
    be->layernorm_backward(be, b->top, b->top2, s->res_mid + Lt * N * C, s->mean2 + Lt * N, s->rstd2 + Lt * N,
                           p[ECC_P_LN2W] + Lt * lc, b->lnf_rows, NULL, J, C);
    be->matmul_wt(be, b->top2, b->top, p[ECC_P_ATTPROJW] + Lt * lc * lc, J, C, C);
    be->zero(be, b->dres, (size_t)R * lc * sizeof(float));
    be->zero(be, b->dsmall, (size_t)R * lc * sizeof(float));
    be->scatter_rows(be, b->dres, b->top, b->lnf_out, J, C);   /* d res_mid of the last block */
    be->scatter_rows(be, b->dsmall, b->top2, b->lnf_out, J, C); /* d of its attention output */

    for (int l = lt; l >= 0; l--) {
        const size_t Ls = (size_t)l;
        float scale = 1.0f / sqrtf((float)(C / NH));
        if (c->scale_attn_by_inverse_layer_idx)
            scale /= (float)(l + 1);
        if (l < lt) {
            /* MLP: res_out = res_mid + c_proj(gelu(c_fc(ln_2(res_mid)))) */
            be->matmul_wt(be, b->dbig, b->dres, p[ECC_P_FCPROJW] + Ls * lcf, (int)R, C, F);
            be->gelu_backward(be, b->dbig, b->dbig, s->dgelu + Ls * N * F, b->rowpos, R, F);
            be->matmul_wt(be, b->dsmall, b->dbig, p[ECC_P_FCW] + Ls * lcf, (int)R, F, C);
            be->layernorm_backward(be, b->dres, b->dsmall, s->res_mid + Ls * N * C, s->mean2 + Ls * N,
                                   s->rstd2 + Ls * N, p[ECC_P_LN2W] + Ls * lc, b->rowpos, NULL, (int)R, C);
            /* attention: res_mid = res + c_proj(attention(c_attn(ln_1(res)))) */
            be->matmul_wt(be, b->dsmall, b->dres, p[ECC_P_ATTPROJW] + Ls * lc * lc, (int)R, C, C);
        }
        be->attention_backward(be, b->dbig, b->dsmall, s->qkv + Ls * N * 3 * C, s->att + Ls * s->A * NH * s->T * s->T,
                               b->tg_seq, b->tg_n, b->h_n, b->tg_off, J, s->T, C, NH, scale);
        be->matmul_wt(be, b->dsmall, b->dbig, p[ECC_P_QKVW] + Ls * lc * 3 * lc, (int)R, 3 * C, C);
        be->layernorm_backward(be, b->dres, b->dsmall, s->res + Ls * N * C, s->mean1 + Ls * N, s->rstd1 + Ls * N,
                               p[ECC_P_LN1W] + Ls * lc, b->rowpos, NULL, (int)R, C);
    }
    ecc_nvtx_pop();
}

