/* Shared between the CPU backend's files (backend_cpu.c, backend_cpu_explain.c). */
#ifndef ECC_BACKEND_CPU_H
#define ECC_BACKEND_CPU_H

#include "backend.h"

/* The per-thread working memory reserved by be->reserve: threads x T_max x
 * T_max floats (one attention-gradient tile per thread). */
float *ecc_cpu_scratch(ecc_backend *be);
void ecc_cpu_register_explain(ecc_backend *be);
void ecc_cpu_register_nmf(ecc_backend *be);

#endif
