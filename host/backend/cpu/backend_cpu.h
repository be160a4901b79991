/* Shared between the CPU backend's files (backend_cpu.c, backend_cpu_explain.c). */
#ifndef ECC_BACKEND_CPU_H
#define ECC_BACKEND_CPU_H

#include "backend/backend.h"

/* Hot element-wise loops are compiled for AVX-512 and AVX2 as well as the
 * baseline, the version picked at load time (GCC/Clang target_clones; these
 * files are compiled with -O3 so that the loops vectorise). Without FMA
 * contraction (ISO C) and without reassociation, every version gives the
 * same bits. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define ECC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ECC_SIMD_CLONES
#endif

/* The per-thread working memory reserved by be->reserve: threads x T_max x
 * T_max floats (one attention-gradient tile per thread). */
float *ecc_cpu_scratch(ecc_backend *be);
void ecc_cpu_register_explain(ecc_backend *be);
void ecc_cpu_register_nmf(ecc_backend *be);
void ecc_cpu_register_analysis(ecc_backend *be); /* backend_cpu_analysis.c */

#endif
