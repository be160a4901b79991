// The analysis ops (host/analysis/) on the GPU: CKA's Gram matrix (cublasSsyrk),
// and for CCA, SVCCA and PWCCA double precision cuBLAS products and cuSOLVER
// factorisations, with the CPU backend's row-major contracts (host/backend/backend.h):
//   gram       cublasSsyrk on the column-major view, then the other triangle copied
//   dgemm      cublasDgemm on the column-major views (C^T = op(B)^T op(A)^T)
//   eigh       cusolverDnDsyevd (eigenvectors as columns = rows of the row-major V)
//   svd        cusolverDnDgesvd, which needs rows >= columns: the row-major
//              A (m, n) is the column-major A^T (n x m), used as is when n >= m
//              (its VT is the row-major U); otherwise transposed first
//   orth_rows  cusolverDnDgeqrf + cusolverDnDorgqr on the column-major A^T
// Every call is checked; the factorisations also read back devInfo (one
// synchronisation each: these ops run a few times per layer or pair). A
// failure is recorded like any other op's and returned as the status.
#include "common.cuh"

#ifdef ECC_CUDA_EMU
#include "emu/cusolver_emu.h"
#else
#include <cusolverDn.h>
#endif

// The analysis ops' own state (ctx->analysis), created on first use.
struct cu_analysis {
    cusolverDnHandle_t solver;
    void *work;        // cuSOLVER workspace, grown as needed
    size_t work_bytes;
    void *buf;         // device scratch: W / S / tau, a transposed copy
    size_t buf_bytes;
    int *d_info;       // devInfo
};

static bool cu_check_solver(cuda_ctx *ctx, cusolverStatus_t s, const char *what, const char *file, int line)
{
    if (s == CUSOLVER_STATUS_SUCCESS)
        return true;
    cu_record(ctx, s == CUSOLVER_STATUS_ALLOC_FAILED ? ECC_ERR_NOMEM : ECC_ERR_DEVICE, file, line,
              "%s: cuSOLVER status %d", what, (int)s);
    return false;
}
#define CUSOLVER_CHECK(ctx, call) cu_check_solver((ctx), (call), #call, __FILE__, __LINE__)

void ecc_cuda_free_analysis(cuda_ctx *ctx)
{
    cu_analysis *an = (cu_analysis *)ctx->analysis;
    if (!an)
        return;
    if (an->work)
        (void)cudaFree(an->work);
    if (an->buf)
        (void)cudaFree(an->buf);
    if (an->d_info)
        (void)cudaFree(an->d_info);
    if (an->solver)
        (void)cusolverDnDestroy(an->solver);
    free(an);
    ctx->analysis = NULL;
}

static cu_analysis *analysis_of(cuda_ctx *ctx)
{
    if (!cu_ok(ctx))
        return NULL;
    if (ctx->analysis)
        return (cu_analysis *)ctx->analysis;
    cu_analysis *an = (cu_analysis *)calloc(1, sizeof(cu_analysis));
    if (!an) {
        cu_record(ctx, ECC_ERR_NOMEM, __FILE__, __LINE__, "out of memory for the cuSOLVER state");
        return NULL;
    }
    ctx->analysis = an;
    if (!CUSOLVER_CHECK(ctx, cusolverDnCreate(&an->solver)) ||
        !CUSOLVER_CHECK(ctx, cusolverDnSetStream(an->solver, ctx->stream)) ||
        !CUDA_CHECK(ctx, cudaMalloc((void **)&an->d_info, sizeof(int))))
        return NULL;
    return an;
}

// Workspace of lwork doubles, and scratch of `scratch` doubles.
static bool analysis_reserve(cuda_ctx *ctx, cu_analysis *an, int lwork, size_t scratch)
{
    return cu_device_reserve(ctx, &an->work, &an->work_bytes, sizeof(double) * (size_t)(lwork > 1 ? lwork : 1),
                             "the cuSOLVER workspace") &&
           cu_device_reserve(ctx, &an->buf, &an->buf_bytes, sizeof(double) * (scratch > 1 ? scratch : 1),
                             "cuSOLVER scratch");
}

// devInfo after a factorisation: 0, or a recorded failure.
static bool solver_info(cuda_ctx *ctx, cu_analysis *an, const char *routine)
{
    int info = 0;
    if (!CUDA_CHECK(ctx, cudaMemcpyAsync(&info, an->d_info, sizeof(int), cudaMemcpyDeviceToHost, ctx->stream)) ||
        !CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)))
        return false;
    if (info < 0)
        cu_record(ctx, ECC_ERR_DEVICE, __FILE__, __LINE__, "cuSOLVER %s rejected argument %d (an eccolo bug)", routine,
                  -info);
    else if (info > 0)
        cu_record(ctx, ECC_ERR_INPUT, __FILE__, __LINE__,
                  "cuSOLVER %s did not converge (info %d): check the activations for NaN or Inf", routine, info);
    return info == 0;
}

static ecc_status status_of(ecc_backend *be) { return be->status(be); }

// out (cols, rows) = in (rows, cols)^T, row-major
__global__ void transpose_d_kernel(double *__restrict__ out, const double *__restrict__ in, int rows, int cols)
{
    const int64_t total = (int64_t)rows * cols;
    ECC_GRID_STRIDE(idx, total)
    {
        const int64_t r = idx / cols, c = idx % cols;
        out[c * rows + r] = in[idx];
    }
}

static bool transpose_d(cuda_ctx *ctx, double *out, const double *in, int rows, int cols)
{
    ECC_LAUNCH(transpose_d_kernel, cu_grid(ctx, (int64_t)rows * cols, 256), 256, 0, ctx->stream)(out, in, rows, cols);
    return CU_LAUNCHED(ctx, "transpose_d_kernel");
}

static void cu_dgemm(ecc_backend *be, double *out, const double *A, const double *B, int M, int N, int K, int transA,
                     int transB, double alpha, double beta)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || M <= 0 || N <= 0)
        return;
    const int lda = transA ? M : K, ldb = transB ? K : N;
    CUBLAS_CHECK(ctx, cublasDgemm(ctx->blas, transB ? CUBLAS_OP_T : CUBLAS_OP_N, transA ? CUBLAS_OP_T : CUBLAS_OP_N, N, M,
                                  K, &alpha, B, ldb > 1 ? ldb : 1, A, lda > 1 ? lda : 1, &beta, out, N));
    if (ctx->sync_check && cu_ok(ctx))
        CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
}

static ecc_status cu_eigh(ecc_backend *be, double *w, double *V, const double *A, int n)
{
    cuda_ctx *ctx = ctx_of(be);
    cu_analysis *an = analysis_of(ctx);
    int lwork = 0;
    if (an && n > 0 &&
        CUDA_CHECK(ctx, cudaMemcpyAsync(V, A, sizeof(double) * (size_t)n * n, cudaMemcpyDeviceToDevice, ctx->stream)) &&
        analysis_reserve(ctx, an, 1, (size_t)n) && // W first: the size query takes its pointer
        CUSOLVER_CHECK(ctx, cusolverDnDsyevd_bufferSize(an->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                                                        V, n, (const double *)an->buf, &lwork)) &&
        analysis_reserve(ctx, an, lwork, (size_t)n) &&
        CUSOLVER_CHECK(ctx, cusolverDnDsyevd(an->solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n, V, n,
                                             (double *)an->buf, (double *)an->work, lwork, an->d_info)) &&
        solver_info(ctx, an, "syevd"))
        be->download(be, w, an->buf, sizeof(double) * (size_t)n);
    return status_of(be);
}

static ecc_status cu_svd(ecc_backend *be, double *s, double *U, const double *A, int m, int n)
{
    cuda_ctx *ctx = ctx_of(be);
    cu_analysis *an = analysis_of(ctx);
    if (!an || m <= 0 || n <= 0)
        return status_of(be);
    const int k = m < n ? m : n;
    // column-major M (rows x cols), rows >= cols: A^T (n x m) when n >= m, else A (m x n) by transposition;
    // the scratch holds S (k), then M (its copy: gesvd overwrites it), then U's column-major form (m x k)
    const bool wide = n >= m;
    const int rows = wide ? n : m, cols = wide ? m : n;
    const size_t off_M = (size_t)k, off_U = off_M + (size_t)m * n;
    // the workspace: lwork doubles for cuSOLVER, then rwork (k - 1 doubles, the unconverged superdiagonal)
    int lwork = 0;
    if (!CUSOLVER_CHECK(ctx, cusolverDnDgesvd_bufferSize(an->solver, rows, cols, &lwork)) ||
        !analysis_reserve(ctx, an, lwork + k, off_U + (wide || !U ? 0 : (size_t)m * k)))
        return status_of(be);
    double *S = (double *)an->buf, *M = S + off_M, *Ucm = S + off_U, *rwork = (double *)an->work + lwork;
    bool ok = wide ? CUDA_CHECK(ctx, cudaMemcpyAsync(M, A, sizeof(double) * (size_t)m * n, cudaMemcpyDeviceToDevice,
                                                     ctx->stream))
                   : transpose_d(ctx, M, A, m, n);
    if (ok) {
        if (wide) // A^T = V S U^T: VT (k x m) column-major, ld k, is U (m, k) row-major
            ok = CUSOLVER_CHECK(ctx, cusolverDnDgesvd(an->solver, 'N', U ? 'S' : 'N', rows, cols, M, rows, S, NULL,
                                                      rows, U, k, (double *)an->work, lwork, rwork, an->d_info));
        else // A = U S V^T: U (m x k) column-major, then transposed into the row-major U
            ok = CUSOLVER_CHECK(ctx, cusolverDnDgesvd(an->solver, U ? 'S' : 'N', 'N', rows, cols, M, rows, S,
                                                      U ? Ucm : NULL, rows, NULL, cols, (double *)an->work, lwork,
                                                      rwork, an->d_info));
    }
    if (ok)
        ok = solver_info(ctx, an, "gesvd");
    if (ok && U && !wide)
        ok = transpose_d(ctx, U, Ucm, k, m); // (k, m) row-major view of the column-major (m x k) -> (m, k)
    if (ok)
        be->download(be, s, S, sizeof(double) * (size_t)k);
    return status_of(be);
}

static ecc_status cu_orth_rows(ecc_backend *be, double *Q, const double *A, int n, int m)
{
    cuda_ctx *ctx = ctx_of(be);
    cu_analysis *an = analysis_of(ctx);
    int lw1 = 0, lw2 = 0;
    if (an && n > 0 && m >= n &&
        CUDA_CHECK(ctx, cudaMemcpyAsync(Q, A, sizeof(double) * (size_t)n * m, cudaMemcpyDeviceToDevice, ctx->stream)) &&
        CUSOLVER_CHECK(ctx, cusolverDnDgeqrf_bufferSize(an->solver, m, n, Q, m, &lw1)) &&
        analysis_reserve(ctx, an, 1, (size_t)n) && // tau first: orgqr's size query reads it
        CUSOLVER_CHECK(ctx, cusolverDnDorgqr_bufferSize(an->solver, m, n, n, Q, m, (const double *)an->buf, &lw2)) &&
        analysis_reserve(ctx, an, lw1 > lw2 ? lw1 : lw2, (size_t)n) &&
        CUSOLVER_CHECK(ctx, cusolverDnDgeqrf(an->solver, m, n, Q, m, (double *)an->buf, (double *)an->work, lw1,
                                             an->d_info)) &&
        solver_info(ctx, an, "geqrf") &&
        CUSOLVER_CHECK(ctx, cusolverDnDorgqr(an->solver, m, n, n, Q, m, (const double *)an->buf, (double *)an->work,
                                             lw2, an->d_info)))
        solver_info(ctx, an, "orgqr");
    return status_of(be);
}

// K (T, T) row-major, upper triangle from cuBLAS (the column-major lower): copy it to the lower
__global__ void mirror_upper_kernel(float *__restrict__ K, int T)
{
    const int64_t total = (int64_t)T * T;
    ECC_GRID_STRIDE(idx, total)
    {
        const int64_t r = idx / T, c = idx % T;
        if (r > c)
            K[idx] = K[c * T + r];
    }
}

// K (T, T) = X X^T: the column-major view of X (T, N) is X^T (N x T), so K = (X^T)^T X^T, a
// transposed rank-N update; cuBLAS writes the column-major lower triangle, the row-major upper one.
static void cu_gram(ecc_backend *be, float *K, const float *X, int T, int N)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || T <= 0)
        return;
    const float one = 1.0f, zero = 0.0f;
    if (!CUBLAS_CHECK(ctx, cublasSsyrk(ctx->blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, T, N, &one, X, N > 1 ? N : 1,
                                       &zero, K, T)))
        return;
    ECC_LAUNCH(mirror_upper_kernel, cu_grid(ctx, (int64_t)T * T, 256), 256, 0, ctx->stream)(K, T);
    CU_LAUNCHED(ctx, "mirror_upper_kernel");
}

void ecc_cuda_register_analysis(ecc_backend *be)
{
    be->gram = cu_gram;
    be->dgemm = cu_dgemm;
    be->eigh = cu_eigh;
    be->svd = cu_svd;
    be->orth_rows = cu_orth_rows;
}
