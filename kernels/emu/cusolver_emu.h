// A CPU emulation of the cuBLAS calls beyond cuda_emu.h's (Dgemm, Ssyrk) and
// the cuSOLVER (dense) calls that kernels/analysis.cu makes, for the GPU tests without a GPU (see
// cuda_emu.h, which this extends). Each call checks its arguments as the CUDA
// library documents them -- including cuSOLVER's own limits, such as gesvd's
// m >= n and workspaces at least the size its _bufferSize returned -- and then
// runs the LAPACK routine of the same algorithm family (QR-iteration SVD for
// gesvd, divide and conquer for syevd, Householder QR), so the signs of the
// vectors can differ from the CPU backend's (gesdd), as on a real GPU.
// devInfo, like every "device" pointer here, is host memory.
#ifndef ECC_CUSOLVER_EMU_H
#define ECC_CUSOLVER_EMU_H

#include <lapacke.h>

#include "cuda_emu.h"

// ---- cuBLAS, double ----------------------------------------------------------------

inline cublasStatus_t cublasDgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const double *alpha, const double *A, int lda, const double *B, int ldb,
                                  const double *beta, double *C, int ldc)
{
    const int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (!h || m < 0 || n < 0 || k < 0 || lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m)) {
        fprintf(stderr, "cusolver_emu: cublasDgemm: invalid arguments m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", m, n, k,
                lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0)
        return CUBLAS_STATUS_SUCCESS;
    if (*beta == 0) // cuBLAS does not read C when beta = 0 (BLAS would: NaN * 0)
        for (int col = 0; col < n; col++)
            memset(C + (int64_t)col * ldc, 0, sizeof(double) * (size_t)m);
    if (k == 0) {
        for (int col = 0; col < n; col++)
            for (int r = 0; r < m; r++)
                C[(int64_t)col * ldc + r] *= *beta;
        return CUBLAS_STATUS_SUCCESS;
    }
    cblas_dgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

typedef enum { CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1 } cublasFillMode_t;

inline cublasStatus_t cublasSsyrk(cublasHandle_t h, cublasFillMode_t uplo, cublasOperation_t trans, int n, int k,
                                  const float *alpha, const float *A, int lda, const float *beta, float *C, int ldc)
{
    const int arows = trans == CUBLAS_OP_N ? n : k;
    if (!h || n < 0 || k < 0 || lda < std::max(1, arows) || ldc < std::max(1, n)) {
        fprintf(stderr, "cusolver_emu: cublasSsyrk: invalid arguments n=%d k=%d lda=%d ldc=%d\n", n, k, lda, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (*beta == 0) // not read when beta = 0; only the triangle is written, as cuBLAS
        for (int col = 0; col < n; col++)
            for (int r = uplo == CUBLAS_FILL_MODE_LOWER ? col : 0; r < (uplo == CUBLAS_FILL_MODE_LOWER ? n : col + 1); r++)
                C[(int64_t)col * ldc + r] = 0.0f;
    if (n > 0 && k > 0)
        cblas_ssyrk(CblasColMajor, uplo == CUBLAS_FILL_MODE_LOWER ? CblasLower : CblasUpper,
                    trans == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, n, k, *alpha, A, lda, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuSOLVER (dense) ----------------------------------------------------------------

typedef enum {
    CUSOLVER_STATUS_SUCCESS = 0,
    CUSOLVER_STATUS_NOT_INITIALIZED = 1,
    CUSOLVER_STATUS_ALLOC_FAILED = 2,
    CUSOLVER_STATUS_INVALID_VALUE = 3,
    CUSOLVER_STATUS_INTERNAL_ERROR = 7,
} cusolverStatus_t;
typedef struct ecc_emu_solver *cusolverDnHandle_t;
typedef enum { CUSOLVER_EIG_MODE_NOVECTOR = 0, CUSOLVER_EIG_MODE_VECTOR = 1 } cusolverEigMode_t;

inline cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t *h)
{
    *h = (cusolverDnHandle_t)malloc(1);
    return *h ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_ALLOC_FAILED;
}
inline cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t h)
{
    free(h);
    return CUSOLVER_STATUS_SUCCESS;
}
inline cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t h, cudaStream_t)
{
    return h ? CUSOLVER_STATUS_SUCCESS : CUSOLVER_STATUS_NOT_INITIALIZED;
}

namespace ecc_emu {
// The workspace sizes the emulation asks for (in doubles): LAPACK's own
// minimums, so a caller that allocates less than _bufferSize said fails here.
inline int syevd_lwork(int n) { return 1 + 6 * n + 2 * n * n; }
inline int gesvd_lwork(int m, int n) { return std::max(1, std::max(3 * std::min(m, n) + std::max(m, n), 5 * std::min(m, n))); }
inline int qr_lwork(int n) { return std::max(1, n); }
inline cusolverStatus_t solver_bad(const char *call, const char *why)
{
    fprintf(stderr, "cusolver_emu: %s: invalid arguments (%s)\n", call, why);
    return CUSOLVER_STATUS_INVALID_VALUE;
}
// LAPACK's info into devInfo; its own argument errors (< 0) are cuSOLVER's too.
inline cusolverStatus_t solver_done(lapack_int info, int *devInfo)
{
    if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR)
        return CUSOLVER_STATUS_ALLOC_FAILED;
    *devInfo = (int)info;
    return CUSOLVER_STATUS_SUCCESS;
}
} // namespace ecc_emu

inline cusolverStatus_t cusolverDnDsyevd_bufferSize(cusolverDnHandle_t h, cusolverEigMode_t, cublasFillMode_t, int n,
                                                    const double *, int lda, const double *, int *lwork)
{
    if (!h || n < 0 || lda < std::max(1, n))
        return ecc_emu::solver_bad("cusolverDnDsyevd_bufferSize", "n or lda");
    *lwork = ecc_emu::syevd_lwork(n);
    return CUSOLVER_STATUS_SUCCESS;
}
inline cusolverStatus_t cusolverDnDsyevd(cusolverDnHandle_t h, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,
                                         double *A, int lda, double *W, double *work, int lwork, int *devInfo)
{
    if (!h || n < 0 || lda < std::max(1, n) || !work || !devInfo || lwork < ecc_emu::syevd_lwork(n))
        return ecc_emu::solver_bad("cusolverDnDsyevd", "n, lda, workspace or devInfo");
    return ecc_emu::solver_done(LAPACKE_dsyevd(LAPACK_COL_MAJOR, jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N',
                                               uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U', n, A, lda, W),
                                devInfo);
}

inline cusolverStatus_t cusolverDnDgesvd_bufferSize(cusolverDnHandle_t h, int m, int n, int *lwork)
{
    if (!h || m < n || n < 0)
        return ecc_emu::solver_bad("cusolverDnDgesvd_bufferSize", "gesvd needs m >= n");
    *lwork = ecc_emu::gesvd_lwork(m, n);
    return CUSOLVER_STATUS_SUCCESS;
}
inline cusolverStatus_t cusolverDnDgesvd(cusolverDnHandle_t h, signed char jobu, signed char jobvt, int m, int n,
                                         double *A, int lda, double *S, double *U, int ldu, double *VT, int ldvt,
                                         double *work, int lwork, double *rwork, int *devInfo)
{
    const int k = std::min(m, n);
    const bool ju = jobu == 'A' || jobu == 'S', jv = jobvt == 'A' || jobvt == 'S';
    if (!h || m < n || n < 0)
        return ecc_emu::solver_bad("cusolverDnDgesvd", "gesvd needs m >= n");
    if ((jobu != 'N' && !ju) || (jobvt != 'N' && !jv) || lda < std::max(1, m) || (ju && (!U || ldu < std::max(1, m))) ||
        (jv && (!VT || ldvt < std::max(1, jobvt == 'A' ? n : k))) || !work || !devInfo ||
        lwork < ecc_emu::gesvd_lwork(m, n))
        return ecc_emu::solver_bad("cusolverDnDgesvd", "job, leading dimension, output or workspace");
    std::vector<double> superb((size_t)std::max(1, k));
    double dummy = 0;
    lapack_int info = LAPACKE_dgesvd(LAPACK_COL_MAJOR, (char)jobu, (char)jobvt, m, n, A, lda, S, ju ? U : &dummy,
                                     ju ? ldu : 1, jv ? VT : &dummy, jv ? ldvt : 1, superb.data());
    if (rwork)
        memcpy(rwork, superb.data(), sizeof(double) * (size_t)std::max(0, k - 1));
    return ecc_emu::solver_done(info, devInfo);
}

inline cusolverStatus_t cusolverDnDgeqrf_bufferSize(cusolverDnHandle_t h, int m, int n, double *, int lda, int *lwork)
{
    if (!h || m < 0 || n < 0 || lda < std::max(1, m))
        return ecc_emu::solver_bad("cusolverDnDgeqrf_bufferSize", "m, n or lda");
    *lwork = ecc_emu::qr_lwork(n);
    return CUSOLVER_STATUS_SUCCESS;
}
inline cusolverStatus_t cusolverDnDgeqrf(cusolverDnHandle_t h, int m, int n, double *A, int lda, double *tau,
                                         double *work, int lwork, int *devInfo)
{
    if (!h || m < 0 || n < 0 || lda < std::max(1, m) || !tau || !work || !devInfo || lwork < ecc_emu::qr_lwork(n))
        return ecc_emu::solver_bad("cusolverDnDgeqrf", "m, n, lda, tau, workspace or devInfo");
    return ecc_emu::solver_done(LAPACKE_dgeqrf(LAPACK_COL_MAJOR, m, n, A, lda, tau), devInfo);
}
inline cusolverStatus_t cusolverDnDorgqr_bufferSize(cusolverDnHandle_t h, int m, int n, int k, const double *, int lda,
                                                    const double *, int *lwork)
{
    if (!h || m < n || n < k || k < 0 || lda < std::max(1, m))
        return ecc_emu::solver_bad("cusolverDnDorgqr_bufferSize", "m >= n >= k >= 0 and lda >= m");
    *lwork = ecc_emu::qr_lwork(n);
    return CUSOLVER_STATUS_SUCCESS;
}
inline cusolverStatus_t cusolverDnDorgqr(cusolverDnHandle_t h, int m, int n, int k, double *A, int lda,
                                         const double *tau, double *work, int lwork, int *devInfo)
{
    if (!h || m < n || n < k || k < 0 || lda < std::max(1, m) || !tau || !work || !devInfo ||
        lwork < ecc_emu::qr_lwork(n))
        return ecc_emu::solver_bad("cusolverDnDorgqr", "sizes, lda, tau, workspace or devInfo");
    return ecc_emu::solver_done(LAPACKE_dorgqr(LAPACK_COL_MAJOR, m, n, k, A, lda, tau), devInfo);
}

#endif
