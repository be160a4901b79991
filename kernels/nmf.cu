// NMF ops: the fused multiplicative update, the HALS sweep and the dot
// product (the general gemm is in matmul.cu).
#include "common.cuh"

// x (n) = x * (num / den'), den' = den > 0 ? den : eps: one thread per element;
// the CPU's expression, so the same bits.
__global__ void mu_update_kernel(float *__restrict__ x, const float *__restrict__ num, const float *__restrict__ den,
                                 int64_t n, float eps)
{
    ECC_GRID_STRIDE(i, n)
    {
        const float d = den[i] > 0 ? den[i] : eps;
        x[i] = x[i] * (num[i] / d);
    }
}

// One thread per row of M (n, k): the k columns in order, each from the row
// as already updated (the sweep is sequential within a row, rows are
// independent). m . Q[:, j] is summed in the CPU's order with explicitly
// rounded multiply and add (no fused multiply-add), so the result has the
// CPU's bits. Q (k, k) is read by every thread at once (a broadcast).
__global__ void hals_update_kernel(float *__restrict__ M, const float *__restrict__ P, const float *__restrict__ Q,
                                   int n, int k)
{
    ECC_GRID_STRIDE(i, (int64_t)n)
    {
        float *m = M + i * k;
        const float *p = P + i * k;
        for (int j = 0; j < k; j++) {
            const float qjj = Q[(int64_t)j * k + j];
            if (!(qjj > 0))
                continue;
            float s = 0;
            for (int l = 0; l < k; l++)
                s = __fadd_rn(s, __fmul_rn(m[l], Q[(int64_t)l * k + j]));
            const float v = __fadd_rn(m[j], __fdiv_rn(__fsub_rn(p[j], s), qjj));
            m[j] = v > 0 ? v : 0;
        }
    }
}

// dot, first level: block c sums chunk c of ECC_CU_DOT_CHUNKS equal chunks
// (the CPU's chunking) in double, thread-strided then a fixed block tree.
__global__ void dot_chunks_kernel(double *__restrict__ parts, const float *__restrict__ a, const float *__restrict__ b,
                                  int64_t n, int64_t step)
{
    __shared__ double redd[32];
    const int64_t lo = (int64_t)blockIdx.x * step, hi = lo + step < n ? lo + step : n;
    double s = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
        s += (double)a[i] * b[i];
    s = block_sum_d(s, redd);
    if (threadIdx.x == 0)
        parts[blockIdx.x] = s;
}

// dot, second level: the chunk sums in order, one thread.
__global__ void dot_total_kernel(double *__restrict__ out, const double *__restrict__ parts, int nparts)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        double t = 0;
        for (int c = 0; c < nparts; c++)
            t += parts[c];
        *out = t;
    }
}

static void cu_mu_update(ecc_backend *be, float *x, const float *num, const float *den, int64_t n, float eps)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0)
        return;
    ECC_LAUNCH(mu_update_kernel, cu_grid(ctx, n, 256), 256, 0, ctx->stream)(x, num, den, n, eps);
    CU_LAUNCHED(ctx, "mu_update_kernel");
}

static void cu_hals_update(ecc_backend *be, float *M, const float *P, const float *Q, int n, int k)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0 || k <= 0)
        return;
    ECC_LAUNCH(hals_update_kernel, cu_grid(ctx, n, 128), 128, 0, ctx->stream)(M, P, Q, n, k);
    CU_LAUNCHED(ctx, "hals_update_kernel");
}

static double cu_dot(ecc_backend *be, const float *a, const float *b, int64_t n)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx))
        return NAN;
    if (n <= 0)
        return 0.0;
    double *parts = (double *)ctx->d_small, *d_out = parts + ECC_CU_DOT_CHUNKS, *h_out = (double *)ctx->h_small;
    const int64_t step = (n + ECC_CU_DOT_CHUNKS - 1) / ECC_CU_DOT_CHUNKS;
    ECC_LAUNCH(dot_chunks_kernel, ECC_CU_DOT_CHUNKS, 256, 0, ctx->stream)(parts, a, b, n, step);
    if (!CU_LAUNCHED(ctx, "dot_chunks_kernel"))
        return NAN;
    ECC_LAUNCH(dot_total_kernel, 1, 32, 0, ctx->stream)(d_out, parts, ECC_CU_DOT_CHUNKS);
    if (!CU_LAUNCHED(ctx, "dot_total_kernel") ||
        !CUDA_CHECK(ctx, cudaMemcpyAsync(h_out, d_out, sizeof(double), cudaMemcpyDeviceToHost, ctx->stream)) ||
        !CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)))
        return NAN;
    return *h_out;
}

void ecc_cuda_register_nmf(ecc_backend *be)
{
    be->mu_update = cu_mu_update;
    be->hals_update = cu_hals_update;
    be->dot = cu_dot;
}
