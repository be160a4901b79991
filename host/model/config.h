/* config.json (Hugging Face) -> ecc_config, validated. */
#ifndef ECC_CONFIG_H
#define ECC_CONFIG_H

#include <stdint.h>

#include "eccolo.h"

/* Parse and validate the JSON text of a config.json (path is for messages). */
ecc_status ecc_config_parse(ecc_config *cfg, const char *json, size_t len, const char *path);
ecc_status ecc_config_load(ecc_config *cfg, const char *path);
/* For a message about token id ID: " (ids N..V-1 are padding rows of the
 * embedding, not tokens)" when ID is one of them, else "". */
const char *ecc_padding_note(const ecc_config *c, int32_t id);

#endif
