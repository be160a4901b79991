/* The GPT-2 forward pass, written once against the backend op interface.
 *
 * Activations are described by pointer tables (ecc_acts): during generation
 * every layer points at the same scratch rows; when a caller captures
 * activations or keeps what a backward pass needs, the pointers go to
 * per-layer buffers (or straight into capture tensors at the right position),
 * and the same forward code fills them. */
#ifndef ECC_FORWARD_H
#define ECC_FORWARD_H

#include "backend/backend.h"
#include "model/model.h"

/* The model's weights on a backend. */
typedef struct ecc_dmodel {
    const ecc_config *cfg;
    ecc_backend *be;
    float *params; /* backend memory (the host buffer itself on the CPU) */
    ecc_weights w;
} ecc_dmodel;

ecc_status ecc_dmodel_init(ecc_dmodel *dm, ecc_backend *be, const ecc_model *m);
void ecc_dmodel_free(ecc_dmodel *dm);

/* KV cache: keys and values of every position seen so far. */
typedef struct ecc_kv {
    float *k; /* (L, n_ctx, C) */
    float *v; /* (L, n_ctx, C) */
    int n_ctx;
} ecc_kv;

ecc_status ecc_kv_init(ecc_kv *kv, ecc_backend *be, const ecc_config *c, int n_ctx);
void ecc_kv_free(ecc_kv *kv, ecc_backend *be);

/* One block's activations for the T rows of a forward call. */
typedef struct ecc_layer_acts {
    float *ln1;                 /* (T, C) */
    float *ln1_mean, *ln1_rstd; /* (T), or NULL when not kept */
    float *qkv;                 /* (T, 3C) */
    float *att;                 /* softmax probabilities or NULL; head h, row t at */
    int64_t att_head_stride;    /*   att + h * att_head_stride + t * att_row_stride */
    int att_row_stride;
    float *atty;                /* (T, C) attention output before c_proj */
    float *attproj;             /* (T, C) */
    float *res_mid;             /* (T, C) residual stream after attention */
    float *ln2;                 /* (T, C) */
    float *ln2_mean, *ln2_rstd; /* (T), or NULL */
    float *fch;                 /* (T, F) before GELU */
    float *fch_gelu;            /* (T, F) after GELU: Ecco's "activations" */
    float *fch_dgelu;           /* (T, F) GELU's derivative at fch, or NULL (may be fch) */
    float *fcproj;              /* (T, C) */
    float *res_out;             /* (T, C) the block's output */
} ecc_layer_acts;

typedef struct ecc_acts {
    int L;
    float *emb;             /* (T, C) token + position embeddings, block 0's input */
    ecc_layer_acts *layer;  /* [L] */
    float *lnf;             /* (T, C) after the final layer norm */
    float *lnf_mean, *lnf_rstd;
    float *logits;          /* (n_logits, V) */
    float *lnf_rows;        /* (n_logits, C) rows gathered for the logits */
    int T_max, n_logits_max;
    /* buffers this table owns (freed by ecc_acts_free) */
    int n_owned;
    void *owned[24];
} ecc_acts;

/* Scratch activations for forward calls of up to T_max rows and up to
 * n_logits_max logits rows: every layer shares the same buffers. */
ecc_status ecc_acts_scratch(ecc_acts *a, ecc_backend *be, const ecc_config *c, int T_max, int n_logits_max);
void ecc_acts_free(ecc_acts *a, ecc_backend *be);

/* One sequence's rows in a packed forward call: rows row .. row+n-1 of the
 * input are its tokens at positions pos0 .. pos0+n-1; k, v its KV cache. */
typedef struct ecc_seq {
    int row, n, pos0;
    float *k, *v; /* (L, n_ctx, C) */
    int n_ctx;
} ecc_seq;

/* Forward R packed rows of n_seq sequences (several prompts, or one new
 * token of each sequence in a decode step): layer norms, matrix products and
 * the MLP run over all R rows at once, attention per sequence against its own
 * cache. ids (R) and pos (R, or NULL: positions seqs[0].pos0 + r for a
 * single sequence) are backend memory. Attention probabilities are written
 * only for a single sequence. Leaves the final layer norm's output in
 * a->lnf (R, C). */
void ecc_forward_batch(const ecc_dmodel *dm, const ecc_acts *a, const ecc_seq *seqs, int n_seq, const int32_t *ids,
                       const int32_t *pos, int R, float tok_scale);
/* a->logits (n, V) from the rows rows[i] of a->lnf (backend memory), or from
 * rows first .. first+n-1 when rows is NULL; n <= n_logits_max. */
void ecc_logits(const ecc_dmodel *dm, const ecc_acts *a, const int32_t *rows, int first, int n);

/* Forward T tokens ids (backend memory) at positions pos0 .. pos0+T-1,
 * extending the KV cache, and write the logits of the last n_logits rows
 * (0 <= n_logits <= T) to a->logits. */
void ecc_forward(const ecc_dmodel *dm, const ecc_acts *a, ecc_kv *kv, const int32_t *ids, int pos0, int T,
                 int n_logits);
/* The same with the token embeddings scaled by tok_scale (integrated gradients). */
void ecc_forward_scaled(const ecc_dmodel *dm, const ecc_acts *a, ecc_kv *kv, const int32_t *ids, float tok_scale,
                        int pos0, int T, int n_logits);

#endif
