/* What one generate call produced: tokens, per-token log-probabilities,
 * timings, and every captured or computed tensor, ready to be written. */
#ifndef ECC_RUN_H
#define ECC_RUN_H

#include <stdint.h>

#include "eccolo.h"
#include "io/safetensors.h"

#define ECC_RUN_MAX_TENSORS 32
#define ECC_RUN_MAX_TIMINGS 16

typedef struct ecc_run_tensor {
    char name[64];
    ecc_dtype dtype;
    int ndim;
    int64_t shape[4];
    void *data; /* host memory owned by the run */
} ecc_run_tensor;

struct ecc_run {
    ecc_options opt;     /* continuation_ids points into cont (owned) */
    int32_t *cont;
    int32_t *ids;        /* [T] prompt then generated/forced tokens */
    int T, n_input, T_cap;
    float *logprobs;     /* [T - n_input] */
    int logprobs_pending; /* a forced run whose log-probabilities come from the explanation's forward */
    int stopped_at_eos;
    int added_front, added_back; /* prompt tokens the tokenizer's template added (ecc_run_mark_added) */
    char device[16];
    char notice[512];    /* e.g. why --device auto fell back to the CPU */
    int threads;
    int n_timings;
    struct {
        char name[24];
        double seconds;
    } timings[ECC_RUN_MAX_TIMINGS];
    int n_tensors;
    ecc_run_tensor tensors[ECC_RUN_MAX_TENSORS];
    struct ecc_run_extra *extra; /* its description, when described or loaded (run_api.c) */
};

/* Add (or accumulate into) a named timing. */
void ecc_run_time(ecc_run *r, const char *name, double seconds);
double ecc_run_timing(const ecc_run *r, const char *name);
/* Allocate a zeroed tensor owned by the run; NULL on failure (error set). */
void *ecc_run_tensor_new(ecc_run *r, const char *name, ecc_dtype dtype, int ndim, const int64_t *shape);
const ecc_run_tensor *ecc_run_tensor_get(const ecc_run *r, const char *name);

#endif
