/* The ids that end generation: config.json's eos_token_id (a number or, as
 * in Llama 3, a list) and generation_config.json's (which may add ids). */
#ifndef ECC_EOS_H
#define ECC_EOS_H

#include <stdint.h>

#include "eccolo.h"

/* Read DIR/config.json and DIR/generation_config.json (either may be
 * missing); *ids (malloc'd, also when *n = 0) gets their eos_token_id
 * values, config.json's first, without repeats. An id outside
 * [0, vocab_size) is ECC_ERR_FORMAT. */
ecc_status ecc_eos_ids_read(int32_t **ids, int *n, const char *dir, int vocab_size);

#endif
