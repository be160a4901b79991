/* Reading a run directory back (run.json + tensors.safetensors), for
 * `eccolo nmf` and `eccolo report`. Everything read is validated: a corrupt
 * or foreign file gives a one-line error naming it. */
#ifndef ECC_RUN_READER_H
#define ECC_RUN_READER_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "eccolo.h"
#include "io/safetensors.h"

typedef struct ecc_run_dir {
    char *dir;
    cJSON *json;        /* run.json */
    ecc_st_file *st;    /* tensors.safetensors */
    int T, n_input;     /* n_tokens and n_input, consistent with token_ids */
    const int32_t *ids; /* token_ids (inside the mapping, may be unaligned: copy to use) */
    int32_t *ids_copy;  /* [T] aligned copy of the ids */
    char run_id[33];    /* the random id both files carry; "" for runs written before run ids */
} ecc_run_dir;

ecc_status ecc_run_dir_open(ecc_run_dir **out, const char *dir);
void ecc_run_dir_close(ecc_run_dir *r);

/* The tensor NAME, which must have this dtype and ndim; NULL (no error) when
 * absent. A tensor of the wrong dtype or rank is an error (*status set). */
const ecc_st_tensor *ecc_run_dir_tensor(const ecc_run_dir *r, const char *name, ecc_dtype dtype, int ndim,
                                        ecc_status *status);
/* A copy of a float tensor into a malloc'd aligned buffer. */
float *ecc_run_dir_floats(const ecc_st_tensor *t);

#endif
