/* A safetensors file seen in memory: an ecc_st_file whose tensors point at
 * the buffers an ecc_st_writer holds (no copy, no header), so that code
 * written for files (the report, NMF of runs) reads results still in memory.
 * The view borrows the data: the buffers must outlive it. ecc_st_close frees
 * it; ecc_st_header_hash must not be called on it (there is no header). */
#ifndef ECC_ST_VIEW_H
#define ECC_ST_VIEW_H

#include "io/safetensors.h"

ecc_status ecc_st_view(ecc_st_file **out, const ecc_st_writer *w, const char *name);

#endif
