/* The CPU backend's NMF ops: a general sgemm, the fused multiplicative
 * update, the HALS column sweep, and a deterministic dot product. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "backend.h"
#include "backend_cpu.h"

static void cpu_gemm(ecc_backend *be, float *out, const float *A, const float *B, int M, int N, int K, int transA,
                     int transB, float alpha, float beta)
{
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, transA ? M : K, B, transB ? K : N, beta, out, N);
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

enum { HALS_ROWS = 8 }; /* rows swept together: independent sums keep the FPU busy */

/* Each row on its own, in blocks of HALS_ROWS rows whose k-term sums run side
 * by side; every row's sum runs over l = 0 .. k-1 in order, as one row alone
 * would, so blocking changes no bit. */
static void cpu_hals_update(ecc_backend *be, float *M, const float *P, const float *Q, int n, int k)
{
#pragma omp parallel for schedule(static)
    for (int i0 = 0; i0 < n; i0 += HALS_ROWS) {
        const int nr = n - i0 < HALS_ROWS ? n - i0 : HALS_ROWS;
        float *m = M + (int64_t)i0 * k;
        const float *p = P + (int64_t)i0 * k;
        for (int j = 0; j < k; j++) {
            float qjj = Q[(int64_t)j * k + j];
            if (!(qjj > 0))
                continue;
            float s[HALS_ROWS] = {0}; /* row r: m_r . Q[:, j], the columns before j already updated */
            for (int l = 0; l < k; l++) {
                float q = Q[(int64_t)l * k + j];
                for (int r = 0; r < nr; r++)
                    s[r] += m[(int64_t)r * k + l] * q;
            }
            for (int r = 0; r < nr; r++)
                m[(int64_t)r * k + j] = positive_part(m[(int64_t)r * k + j] + (p[(int64_t)r * k + j] - s[r]) / qjj);
        }
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
