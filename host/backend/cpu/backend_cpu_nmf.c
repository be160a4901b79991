/* The CPU backend's NMF ops: a general sgemm, the fused multiplicative
 * update, the HALS column sweep, and a deterministic dot product. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "util.h"

/* out (M, N) = alpha op(A) op(B) + beta out, row-major, as cblas_sgemm. */
static void sgemm(float *out, const float *A, const float *B, int M, int N, int K, int transA, int transB, int lda,
                  int ldb, float alpha, float beta)
{
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, out, N);
}

/* NMF's products have k (few) columns against a long side of X (36864 for
 * gpt2), and OpenBLAS runs such shapes no faster on 2 threads than on one
 * (the k x k Gram matrix slower: measured 0.48 ms against 0.26). So the long
 * side is cut into fixed slices of GEMM_SLICE, one single-threaded sgemm per
 * slice (BLAS runs serially inside a parallel region), in parallel:
 *   - many rows M: row slices, each independent;
 *   - a long reduction K: a partial product per slice, added in slice order.
 * The slices do not depend on the thread count, so neither do the bits. */
enum { GEMM_SLICE = 1024, GEMM_SKINNY = 16 };

static void cpu_gemm(ecc_backend *be, float *out, const float *A, const float *B, int M, int N, int K, int transA,
                     int transB, float alpha, float beta)
{
    const int lda = transA ? M : K, ldb = transB ? K : N;
    if (N <= GEMM_SKINNY && M >= 2 * GEMM_SLICE) {
#pragma omp parallel for schedule(static)
        for (int m0 = 0; m0 < M; m0 += GEMM_SLICE) {
            const float *a = transA ? A + m0 : A + (int64_t)m0 * K; /* rows m0.. of op(A) */
            sgemm(out + (int64_t)m0 * N, a, B, ECC_MIN(GEMM_SLICE, M - m0), N, K, transA, transB, lda, ldb, alpha,
                  beta);
        }
        return;
    }
    const int ns = (K + GEMM_SLICE - 1) / GEMM_SLICE;
    float *part = N <= GEMM_SKINNY && M <= GEMM_SLICE && K >= 2 * GEMM_SLICE
                      ? malloc(sizeof(float) * (size_t)ns * (size_t)M * (size_t)N)
                      : NULL;
    if (!part) { /* any other shape, or no memory for the partial products */
        sgemm(out, A, B, M, N, K, transA, transB, lda, ldb, alpha, beta);
        return;
    }
    const int64_t mn = (int64_t)M * N;
#pragma omp parallel for schedule(static)
    for (int s = 0; s < ns; s++) {
        const int64_t k0 = (int64_t)s * GEMM_SLICE;
        const float *a = transA ? A + k0 * M : A + k0, *b = transB ? B + k0 : B + k0 * N; /* columns k0.. of op(A) */
        sgemm(part + s * mn, a, b, M, N, (int)ECC_MIN(GEMM_SLICE, K - k0), transA, transB, lda, ldb, 1.0f, 0.0f);
    }
    for (int64_t i = 0; i < mn; i++) {
        float sum = 0;
        for (int s = 0; s < ns; s++)
            sum += part[s * mn + i];
        out[i] = beta == 0 ? alpha * sum : alpha * sum + beta * out[i];
    }
    free(part);
}

static void cpu_mu_update(ecc_backend *be, float *x, const float *num, const float *den, int64_t n, float eps)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        x[i] *= num[i] / (den[i] > 0 ? den[i] : eps);
}

/* v > 0 ? v : +0 (NaN -> +0) as a mask on the bits: compilers turn the
 * conditional into a branch, which the sign of v makes unpredictable */
static inline float positive_part(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u &= -(uint32_t)(v > 0.0f);
    memcpy(&v, &u, sizeof v);
    return v;
}

enum { HALS_ROWS = 64, HALS_K = 128 }; /* a block: HALS_ROWS rows, transposed; for k <= HALS_K */

/* HALS_ROWS rows of m (n, k), p (n, k) (nr of them real, the rest computed on
 * stale scratch and dropped), transposed into mt (k, HALS_ROWS) so that every
 * step runs along the rows. Each row as in hals_row; the fixed block width
 * lets the compiler vectorise the steps. */
ECC_SIMD_CLONES static void hals_block(float *m, const float *p, const float *Q, int nr, int k,
                                       float mt[HALS_K][HALS_ROWS])
{
    for (int r = 0; r < nr; r++)
        for (int l = 0; l < k; l++)
            mt[l][r] = m[(int64_t)r * k + l];
    float s[HALS_ROWS], pj[HALS_ROWS] = {0};
    for (int j = 0; j < k; j++) {
        const float qjj = Q[(int64_t)j * k + j];
        if (!(qjj > 0))
            continue;
        for (int r = 0; r < nr; r++)
            pj[r] = p[(int64_t)r * k + j];
        for (int r = 0; r < HALS_ROWS; r++)
            s[r] = 0;
        for (int l = 0; l < k; l++) {
            const float q = Q[(int64_t)l * k + j];
            for (int r = 0; r < HALS_ROWS; r++)
                s[r] += mt[l][r] * q;
        }
        for (int r = 0; r < HALS_ROWS; r++)
            mt[j][r] = positive_part(mt[j][r] + (pj[r] - s[r]) / qjj);
    }
    for (int r = 0; r < nr; r++)
        for (int l = 0; l < k; l++)
            m[(int64_t)r * k + l] = mt[l][r];
}

/* One row m (k) with p (k): for each column j in order,
 *   m[j] = max(0, m[j] + (p[j] - m . Q[:, j]) / Q[j, j]),
 * the dot product summed over l = 0 .. k-1 in order, from the row as updated so far. */
static void hals_row(float *m, const float *p, const float *Q, int k)
{
    for (int j = 0; j < k; j++) {
        const float qjj = Q[(int64_t)j * k + j];
        if (!(qjj > 0))
            continue;
        float s = 0;
        for (int l = 0; l < k; l++)
            s += m[l] * Q[(int64_t)l * k + j];
        m[j] = positive_part(m[j] + (p[j] - s) / qjj);
    }
}

/* Each row of M (n, k) on its own: rows are independent. */
static void cpu_hals_update(ecc_backend *be, float *M, const float *P, const float *Q, int n, int k)
{
    if (k > HALS_K) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++)
            hals_row(M + (int64_t)i * k, P + (int64_t)i * k, Q, k);
        return;
    }
#pragma omp parallel
    {
        float mt[HALS_K][HALS_ROWS] = {{0}};
#pragma omp for schedule(static)
        for (int i0 = 0; i0 < n; i0 += HALS_ROWS)
            hals_block(M + (int64_t)i0 * k, P + (int64_t)i0 * k, Q, ECC_MIN(HALS_ROWS, n - i0), k, mt);
    }
}

/* 256 fixed chunks summed in double, then the chunk sums in order: the same
 * result for any thread count. */
static double cpu_dot(ecc_backend *be, const float *a, const float *b, int64_t n)
{
    enum { NCHUNK = 256 };
    double part[NCHUNK], total = 0;
    const int64_t step = (n + NCHUNK - 1) / NCHUNK;
#pragma omp parallel for
    for (int k = 0; k < NCHUNK; k++) {
        double s = 0;
        for (int64_t i = k * step; i < n && i < (k + 1) * step; i++)
            s += (double)a[i] * b[i];
        part[k] = s;
    }
    for (int k = 0; k < NCHUNK; k++)
        total += part[k];
    return total;
}

void ecc_cpu_register_nmf(ecc_backend *be)
{
    be->gemm = cpu_gemm;
    be->mu_update = cpu_mu_update;
    be->hals_update = cpu_hals_update;
    be->dot = cpu_dot;
}
