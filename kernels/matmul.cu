// Matrix products on cuBLAS, row-major: matmul (with bias), matmul_wt
// (against the transposed output matrix), and the general gemm (NMF).
//
// Precision (ecc_precision, fixed per backend): every product keeps fp32
// storage for A, B and C (CUDA_R_32F) and accumulates in fp32; what changes
// is the multiply:
//   fp32: CUBLAS_COMPUTE_32F            plain fp32 FMA (no TF32: the default math
//                                       mode never down-converts a 32F compute type)
//   tf32: CUBLAS_COMPUTE_32F_FAST_TF32  tensor cores, inputs rounded to TF32 (10-bit mantissa)
//   bf16: CUBLAS_COMPUTE_32F_FAST_16BF  tensor cores, inputs rounded to bfloat16
// Row-major C = op(A) op(B) is the column-major product C^T = op(B)^T op(A)^T,
// so every call swaps the operands and passes the row strides as leading
// dimensions; no copy or transpose kernel is needed.
#include "common.cuh"

void cu_gemm_rm(cuda_ctx *ctx, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                long long sA, const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC,
                int batch)
{
    if (!cu_ok(ctx) || M <= 0 || N <= 0 || batch <= 0)
        return;
    // column-major view: C^T (N x M) = op(B)^T (N x K) . op(A)^T (K x M)
    const cublasOperation_t opB = transB ? CUBLAS_OP_T : CUBLAS_OP_N, opA = transA ? CUBLAS_OP_T : CUBLAS_OP_N;
    // leading dimensions must be >= 1 even when K == 0
    lda = lda < 1 ? 1 : lda;
    ldb = ldb < 1 ? 1 : ldb;
    ldc = ldc < 1 ? 1 : ldc;
    if (batch == 1)
        CUBLAS_CHECK(ctx, cublasGemmEx(ctx->blas, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda,
                                       &beta, C, CUDA_R_32F, ldc, ctx->compute, CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(ctx, cublasGemmStridedBatchedEx(ctx->blas, opB, opA, N, M, K, &alpha, B, CUDA_R_32F, ldb, sB, A,
                                                     CUDA_R_32F, lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
                                                     ctx->compute, CUBLAS_GEMM_DEFAULT));
    if (ctx->sync_check && cu_ok(ctx))
        CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
}

// out (T, OC) = bias broadcast to every row, before a product with beta = 1
// (so that, as on the CPU, the product is added to the bias).
__global__ void bias_rows_kernel(float *__restrict__ out, const float *__restrict__ bias, int T, int OC)
{
    const int64_t total = (int64_t)T * OC;
    ECC_GRID_STRIDE(idx, total) out[idx] = bias[idx % OC];
}

// out (T, OC) = inp (T, C) @ w (C, OC) + bias (OC, may be NULL)
static void cu_matmul(ecc_backend *be, float *out, const float *inp, const float *w, const float *bias, int T, int C,
                      int OC)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || T <= 0 || OC <= 0)
        return;
    float beta = 0.0f;
    if (bias) {
        ECC_LAUNCH(bias_rows_kernel, cu_grid(ctx, (int64_t)T * OC, 256), 256, 0, ctx->stream)(out, bias, T, OC);
        if (!CU_LAUNCHED(ctx, "bias_rows_kernel"))
            return;
        beta = 1.0f;
    }
    cu_gemm_rm(ctx, 0, 0, T, OC, C, 1.0f, inp, C, 0, w, OC, 0, beta, out, OC, 0, 1);
}

// out (T, OC) = inp (T, C) @ wt (OC, C)^T
static void cu_matmul_wt(ecc_backend *be, float *out, const float *inp, const float *wt, int T, int C, int OC)
{
    cuda_ctx *ctx = ctx_of(be);
    cu_gemm_rm(ctx, 0, 1, T, OC, C, 1.0f, inp, C, 0, wt, C, 0, 0.0f, out, OC, 0, 1);
}

// out (M, N) = alpha op(A) op(B) + beta out
static void cu_gemm(ecc_backend *be, float *out, const float *A, const float *B, int M, int N, int K, int transA,
                    int transB, float alpha, float beta)
{
    cuda_ctx *ctx = ctx_of(be);
    cu_gemm_rm(ctx, transA, transB, M, N, K, alpha, A, transA ? M : K, 0, B, transB ? K : N, 0, beta, out, N, 0, 1);
}

void ecc_cuda_register_matmul(ecc_backend *be)
{
    be->matmul = cu_matmul;
    be->matmul_wt = cu_matmul_wt;
    be->gemm = cu_gemm;
}
