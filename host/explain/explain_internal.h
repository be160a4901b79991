/* Internals of the explanation phase shared by explain.c and
 * explain_backward.c: backend buffer sets, the saved forward pass, and the
 * batched backward pass to the token embeddings. */
#ifndef ECC_EXPLAIN_INTERNAL_H
#define ECC_EXPLAIN_INTERNAL_H

#include "engine/forward.h"

/* ---- backend buffers, allocated together and freed together ---- */

#define MAX_BUFS 40
typedef struct bufset {
    ecc_backend *be;
    int n;
    void *p[MAX_BUFS];
    size_t bytes;
} bufset;

void *balloc(bufset *b, size_t bytes, const char *what);
void bfree(bufset *b);

/* ---- the forward that keeps what the backward pass needs ---- */

/* A sequences of T tokens (rows a * T + i, N = A * T): the sequences of a
 * batch (right-padded to the longest: causality keeps the padding out of
 * every real position), or the alpha steps of integrated gradients. */
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
    float *dgelu;               /* (L, N, F) gelu' of the MLP pre-activations */
    float *act;                 /* (A, layer_to - layer_from, T, F) captured activations, or NULL */
    int layer_from, layer_to;
    float *ln, *atty, *proj;    /* (T, C) scratch */
    float *fcg;                 /* (T, F) scratch for layers not captured */
    ecc_kv kv;                  /* (L, T, C) keys and values of the sequence being run */
    bufset mem;
} saves;

size_t saves_bytes(const ecc_config *c, int T, int A, int n_act_layers);
ecc_status saves_alloc(saves *s, ecc_backend *be, const ecc_config *c, int T, int A, int layer_from, int layer_to);
void saves_free(saves *s);
/* Forward sequence a (T token ids in backend memory; token embeddings scaled by tok_scale) into the saves. */
ecc_status saves_forward(saves *s, const ecc_dmodel *dm, const int32_t *ids, int a, float tok_scale);

/* ---- the batched backward pass ---- */

/* Buffers for a chunk of up to J targets with up to R packed gradient rows. */
typedef struct bwd {
    int J;
    int64_t R;
    float *dres, *dbig, *dsmall; /* (R, C), (R, max(3C, F)), (R, C) */
    float *h, *logits;           /* (J, C), (J, V) */
    float *top, *top2;           /* (J, C) the last block's rows */
    int32_t *tg_seq, *tg_n, *tokens, *lnf_rows, *lnf_out, *rowpos;
    int64_t *tg_off;
    float *scale;
    /* host copies of the tables */
    int32_t *h_seq, *h_n, *h_tok, *h_lnf_rows, *h_lnf_out, *h_rowpos;
    int64_t *h_off;
    float *h_scale;
    bufset mem;
} bwd;

size_t bwd_row_bytes(const ecc_config *c);
size_t bwd_target_bytes(const ecc_config *c);
ecc_status bwd_alloc(bwd *b, ecc_backend *be, const ecc_config *c, int J, int64_t R);
void bwd_free(bwd *b);
/* Lay out J targets (saved sequence seq[j], position pos[j], weight scale[j];
 * its token ids[seq[j] * ids_stride + pos[j]], host memory) and upload the
 * tables; returns the number of packed rows. */
int64_t bwd_tables(bwd *b, ecc_backend *be, const int32_t *ids, int ids_stride, int T, int J, const int32_t *seq,
                   const int32_t *pos, const float *scale);
/* d s_j / d (token embedding rows) for the J targets of the tables, into b->dres (R, C). */
void bwd_run(bwd *b, const ecc_dmodel *dm, const saves *s, int J, int64_t R, ecc_target kind, float *logprob);

#endif
