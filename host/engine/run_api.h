/* A run's description and its view as a run directory (run_api.c), for the
 * in-memory API of include/eccolo.h: the report and NMF read a run in memory
 * through the code that reads run directories. */
#ifndef ECC_RUN_API_H
#define ECC_RUN_API_H

#include "engine/run.h"
#include "io/run_reader.h"

struct ecc_run_extra;
void ecc_run_extra_free(struct ecc_run_extra *x);

/* The run as a run directory: its description as run.json and its tensors as
 * tensors.safetensors, without copying them (borrowed: close the view before
 * the run is freed or merged into). ECC_ERR_INPUT when not described. */
ecc_status ecc_run_dir_of_run(ecc_run_dir **out, const ecc_run *r);

#endif
