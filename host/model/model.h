/* A loaded model: config, tokenizer, and fp32 weights in one host allocation.
 *
 * Parameter tensors, in canonical layout (y = x @ W + b, W (C_in, C_out)),
 * carved out of one buffer in this order; ecc_param_sizes gives their sizes
 * and is shared by the CPU backend, the CUDA backend and the tests. */
#ifndef ECC_MODEL_H
#define ECC_MODEL_H

#include <stddef.h>

#include "eccolo.h"
#include "model/tokenizer.h"
#include <stdint.h>

enum {
    ECC_P_WTE,       /* (V, C)        token embeddings */
    ECC_P_WPE,       /* (maxT, C)     position embeddings */
    ECC_P_LN1W,      /* (L, C) */
    ECC_P_LN1B,      /* (L, C) */
    ECC_P_QKVW,      /* (L, C, 3C)    attn.c_attn */
    ECC_P_QKVB,      /* (L, 3C) */
    ECC_P_ATTPROJW,  /* (L, C, C)     attn.c_proj */
    ECC_P_ATTPROJB,  /* (L, C) */
    ECC_P_LN2W,      /* (L, C) */
    ECC_P_LN2B,      /* (L, C) */
    ECC_P_FCW,       /* (L, C, F)     mlp.c_fc */
    ECC_P_FCB,       /* (L, F) */
    ECC_P_FCPROJW,   /* (L, F, C)     mlp.c_proj */
    ECC_P_FCPROJB,   /* (L, C) */
    ECC_P_LNFW,      /* (C) */
    ECC_P_LNFB,      /* (C) */
    ECC_P_LMHEAD,    /* (V, C) when not tied to wte, else 0 elements */
    ECC_N_PARAMS
};

typedef struct ecc_weights {
    float *p[ECC_N_PARAMS]; /* pointers into one buffer, in enum order */
} ecc_weights;

/* Element counts of each parameter tensor; returns the total. */
size_t ecc_param_sizes(size_t sizes[ECC_N_PARAMS], const ecc_config *c);
/* Point w->p[i] into mem (a buffer of ecc_param_sizes' total floats). */
void ecc_weights_carve(ecc_weights *w, float *mem, const ecc_config *c);
/* The output matrix (V, C): lm_head, or wte when tied. */
static inline float *ecc_weights_lm_head(const ecc_weights *w, const ecc_config *c)
{
    return c->tied_lm_head ? w->p[ECC_P_WTE] : w->p[ECC_P_LMHEAD];
}

struct ecc_model {
    ecc_config cfg;
    char *id;   /* what the user gave */
    char *dir;  /* where it was read from */
    char dtype[8]; /* storage dtype of the checkpoint ("F32", "F16", "BF16", "mixed") */
    ecc_tokenizer *tok;
    int32_t *eos_ids; /* [n_eos] ids that end generation (config.json, generation_config.json) */
    int n_eos;
    float *params; /* one allocation, n_params floats */
    size_t n_params;
    ecc_weights w;
};

/* Load a model directory (config.json, model.safetensors or sharded
 * model.safetensors.index.json, tokenizer files). */
ecc_status ecc_model_load_dir(ecc_model **out, const char *dir, const char *id);
/* A model's config.json and its tokenizer's size (cfg->n_tokens), without
 * reading the weights: for eccolo info. *dir gets the resolved directory. */
ecc_status ecc_model_peek(ecc_config *cfg, char **dir, const char *path_or_id);

#endif
