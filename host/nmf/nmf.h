/* Non-negative matrix factorisation of activations, X ≈ W H, as Ecco
 * groups neurons: X (T, F') = max(activations, 0) with rows = positions and
 * columns = (layer, neuron); W (T, k) >= 0 the per-token factors, H (k, F')
 * >= 0 the loadings. Runs on a backend through its gemm / mu_update /
 * hals_update / dot ops; H is kept transposed (Ht (F', k)) so that both
 * updates are the same call:
 *   W  <- update(W,  X Ht,   Ht^T Ht)
 *   Ht <- update(Ht, X^T W,  W^T W)
 * X^T is stored beside X, so that X^T W is a plain product too (measured
 * on 63 x 36864 with OpenBLAS: 0.69 ms against 0.92 for the transposed call).
 * Stopping as scikit-learn's 'mu' solver: every 10 iterations, stop when
 * (previous error - error) / initial error < tol. */
#ifndef ECC_NMF_H
#define ECC_NMF_H

#include <stdint.h>

#include "backend/backend.h"

typedef enum ecc_nmf_init { ECC_NMF_RANDOM = 0, ECC_NMF_NNDSVD = 1, ECC_NMF_NNDSVDA = 2 } ecc_nmf_init;
typedef enum ecc_nmf_solver { ECC_NMF_MU = 0, ECC_NMF_HALS = 1 } ecc_nmf_solver;

typedef struct ecc_nmf_options {
    int k;                 /* components */
    ecc_nmf_init init;     /* default random (Ecco's call) */
    ecc_nmf_solver solver; /* default mu */
    int max_iter;          /* default 500 */
    float tol;             /* default 1e-4 */
    uint64_t seed;         /* random init */
} ecc_nmf_options;

typedef struct ecc_nmf_result {
    float *W;         /* (T, k) host, malloc'd */
    float *H;         /* (k, F) host, malloc'd */
    double rel_error; /* ||X - W H||_F / ||X||_F */
    int iterations;
    double seconds;   /* factorisation only */
    char notice[256]; /* ecc_nmf_runs: why --device auto chose the CPU (a GPU present but unusable), or "" */
} ecc_nmf_result;

void ecc_nmf_options_default(ecc_nmf_options *o);
const char *ecc_nmf_init_name(ecc_nmf_init i);
const char *ecc_nmf_solver_name(ecc_nmf_solver s);

/* Factorise X (T, F) host memory (non-negative). */
ecc_status ecc_nmf(ecc_nmf_result *res, ecc_backend *be, const float *X, int T, int F, const ecc_nmf_options *o);
void ecc_nmf_result_free(ecc_nmf_result *res);

/* Initial factors on the host, as scikit-learn's _initialize_nmf:
 *   random:  |N(0, 1)| * sqrt(mean(X) / k)  (our own seeded generator)
 *   nndsvd:  Boutsidis & Gallopoulos from a truncated SVD (LAPACK sgesdd)
 *   nndsvda: nndsvd with zeros replaced by mean(X)
 * W (T, k), H (k, F). */
ecc_status ecc_nmf_initialise(float *W, float *H, const float *X, int T, int F, const ecc_nmf_options *o);

#endif
