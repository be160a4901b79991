/* Finding a model: a directory, or a hub id in the local Hugging Face cache
 * (as transformers resolves it, without the network). */
#ifndef ECC_HUB_H
#define ECC_HUB_H

#include "eccolo.h"

/* *dir (malloc'd) is path_or_id itself when it is a directory; otherwise the
 * snapshot directory of the hub id in the cache:
 *   $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
 *   else ~/.cache/huggingface/hub
 *   / models--ORG--NAME / snapshots / <contents of refs/main> /
 * Ids without an organisation also try the organisations the Hub moved the
 * original checkpoints to (openai-community/gpt2, distilbert/distilgpt2). */
ecc_status ecc_resolve_model(char **dir, const char *path_or_id);

#endif
