/* config.json (Hugging Face) -> ecc_config, validated. */
#ifndef ECC_CONFIG_H
#define ECC_CONFIG_H

#include "eccolo.h"

/* Parse and validate the JSON text of a config.json (path is for messages). */
ecc_status ecc_config_parse(ecc_config *cfg, const char *json, size_t len, const char *path);
ecc_status ecc_config_load(ecc_config *cfg, const char *path);

#endif
