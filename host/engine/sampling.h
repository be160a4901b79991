/* Choosing the next token: arg-max, or a seeded sample with temperature,
 * top-k and top-p. Plain C shared by the CPU backend and the tests; the CUDA
 * backend follows the same steps so a seed gives the same tokens. */
#ifndef ECC_SAMPLING_H
#define ECC_SAMPLING_H

#include <stdint.h>

#include "backend/backend.h"

/* See ecc_backend.pick. The ids chosen from are 0 .. Vt-1, Vt = p->n_tokens
 * (V when 0): the rest are padding rows. Steps for a sample:
 *   1. z = logits / temperature
 *   2. order ids by z descending (lower id first on ties); keep the first
 *      top_k (all when 0)
 *   3. p = softmax over the kept ids; keep the shortest prefix whose
 *      cumulative probability reaches top_p (at least one id)
 *   4. u = ecc_uniform(seed, step) * (sum of kept p); the first id whose
 *      cumulative p exceeds u. */
void ecc_pick(int32_t *token, float *logprob, const float *logits, int V, int32_t forced, const ecc_pick_params *p,
              uint64_t step);

/* log_softmax(logits)[id] over V values (double accumulation), padding
 * rows included, as transformers computes it. */
float ecc_log_softmax_at(const float *logits, int V, int32_t id);

#endif
