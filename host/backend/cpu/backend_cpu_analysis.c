/* The CPU backend's analysis ops (host/analysis/): CKA's Gram matrix (OpenBLAS
 * ssyrk), and for CCA, SVCCA and PWCCA double precision products (dgemm) and LAPACK factorisations, the
 * routines numpy.linalg calls: dsyevd (eigh), dgesdd (svd), dgeqrf + dorgqr
 * (qr). Row-major operands are handed to column-major LAPACK as their
 * transposes, which is what each op's contract is written around, so no op
 * copies a matrix transposed. */
#include <cblas.h>
#include <lapacke.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "util.h"

static void cpu_dgemm(ecc_backend *be, double *out, const double *A, const double *B, int M, int N, int K,
                      int transA, int transB, double alpha, double beta)
{
    cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, transA ? M : K, B, transB ? K : N, beta, out, N);
}

/* A LAPACK info as a status: < 0 is a bad argument (a bug here), > 0 no convergence. */
static ecc_status lapack_status(lapack_int info, const char *routine)
{
    if (info == 0)
        return ECC_OK;
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory: LAPACK %s could not allocate its workspace", routine);
    if (info < 0)
        return ecc_fail(ECC_ERR_INPUT, "LAPACK %s rejected argument %d (an eccolo bug: please report it)", routine,
                        (int)-info);
    return ecc_fail(ECC_ERR_INPUT, "LAPACK %s did not converge (info %d): check the activations for NaN or Inf",
                    routine, (int)info);
}

static double *dup_doubles(const double *A, size_t n, const char *what)
{
    double *c = ecc_malloc(sizeof(double) * (n ? n : 1), what);
    if (c)
        memcpy(c, A, sizeof(double) * n);
    return c;
}

/* A symmetric: its column-major view is itself; dsyevd returns the
 * eigenvectors as columns of the column-major V, i.e. rows of the row-major V. */
static ecc_status cpu_eigh(ecc_backend *be, double *w, double *V, const double *A, int n)
{
    memcpy(V, A, sizeof(double) * (size_t)n * (size_t)n);
    return lapack_status(LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'L', n, V, n, w), "dsyevd");
}

/* The column-major view of the row-major A (m, n) is M = A^T (n x m) = V S U^T:
 * dgesdd's VT of M is (k x m) column-major, which is U (m, k) row-major. */
static ecc_status cpu_svd(ecc_backend *be, double *s, double *U, const double *A, int m, int n)
{
    const int k = ECC_MIN(m, n);
    double *M = dup_doubles(A, (size_t)m * (size_t)n, "an SVD's input copy");
    double *UM = U ? ecc_malloc(sizeof(double) * (size_t)n * (size_t)k, "an SVD's right vectors") : NULL;
    ecc_status st = ECC_ERR_NOMEM;
    if (M && (UM || !U))
        st = lapack_status(LAPACKE_dgesdd(LAPACK_COL_MAJOR, U ? 'S' : 'N', n, m, M, n, s, UM, n, U, k), "dgesdd");
    free(UM);
    free(M);
    return st;
}

/* The column-major view of the row-major A (n, m) is A^T (m x n): its
 * Householder QR (dgeqrf, dorgqr) gives Q (m x n) column-major = (n, m) row-major. */
static ecc_status cpu_orth_rows(ecc_backend *be, double *Q, const double *A, int n, int m)
{
    double *tau = ecc_malloc(sizeof(double) * (size_t)(n ? n : 1), "QR reflectors");
    if (!tau)
        return ECC_ERR_NOMEM;
    memcpy(Q, A, sizeof(double) * (size_t)n * (size_t)m);
    ecc_status st = lapack_status(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, Q, m, tau), "dgeqrf");
    if (st == ECC_OK)
        st = lapack_status(LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, n, n, Q, m, tau), "dorgqr");
    free(tau);
    return st;
}

/* ssyrk fills the upper triangle; the lower one is copied from it. */
static void cpu_gram(ecc_backend *be, float *K, const float *X, int T, int N)
{
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, T, N, 1.0f, X, N, 0.0f, K, T);
#pragma omp parallel for schedule(static)
    for (int i = 1; i < T; i++)
        for (int j = 0; j < i; j++)
            K[(int64_t)i * T + j] = K[(int64_t)j * T + i];
}

void ecc_cpu_register_analysis(ecc_backend *be)
{
    be->gram = cpu_gram;
    be->dgemm = cpu_dgemm;
    be->eigh = cpu_eigh;
    be->svd = cpu_svd;
    be->orth_rows = cpu_orth_rows;
}
