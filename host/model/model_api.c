/* The model's sizes and token bytes through functions, so that bindings and
 * C programs do not depend on the layout of ecc_config (include/eccolo.h,
 * "In memory"). */
#include <stdlib.h>

#include "model/model.h"
#include "model/tokenizer.h"

void ecc_free(void *p) { free(p); }

int ecc_model_n_layer(const ecc_model *m) { return m->cfg.n_layer; }
int ecc_model_n_head(const ecc_model *m) { return m->cfg.n_head; }
int ecc_model_n_embd(const ecc_model *m) { return m->cfg.n_embd; }
int ecc_model_n_inner(const ecc_model *m) { return m->cfg.n_inner; }
int ecc_model_n_positions(const ecc_model *m) { return m->cfg.n_positions; }
int ecc_model_vocab_size(const ecc_model *m) { return m->cfg.vocab_size; }
int ecc_model_n_tokens(const ecc_model *m) { return ecc_tokenizer_n_vocab(m->tok); }
int32_t ecc_model_eos_token_id(const ecc_model *m) { return m->cfg.eos_token_id; }
const char *ecc_model_type(const ecc_model *m) { return m->cfg.model_type; }
const char *ecc_model_dtype(const ecc_model *m) { return m->dtype; }

const uint8_t *ecc_token_bytes(const ecc_model *m, int32_t id, size_t *len)
{
    return ecc_tokenizer_token_bytes(m->tok, id, len);
}
