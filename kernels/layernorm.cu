// Layer norm forward and backward: one warp per row.
//
// Rows are independent, so a warp per row needs no inter-warp
// communication; each lane walks the row with stride 32 (coalesced), and the
// row statistics are summed in double (as the CPU does) with a butterfly, so
// the same row gives the same bits on every run. C up to a few thousand
// floats stays in L1 between the passes.
#include "common.cuh"

enum { LN_BLOCK = 256, LN_ROWS_PER_BLOCK = LN_BLOCK / 32 };

// out (T, C) = (inp - mean) * rstd * w + b; mean, rstd (T) optional.
// grid: row groups of 8 (grid-stride), block: 8 warps, warp w -> one row.
__global__ void layernorm_kernel(float *__restrict__ out, float *__restrict__ mean, float *__restrict__ rstd,
                                 const float *__restrict__ inp, const float *__restrict__ w,
                                 const float *__restrict__ b, int T, int C, float eps)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t row = (int64_t)blockIdx.x * LN_ROWS_PER_BLOCK + warp; row < T;
         row += (int64_t)gridDim.x * LN_ROWS_PER_BLOCK) {
        const float *x = inp + row * C;
        double s = 0;
        for (int i = lane; i < C; i += 32)
            s += x[i];
        s = warp_sum_d(s);
        const float m = (float)(s / C);
        double v = 0;
        for (int i = lane; i < C; i += 32) {
            double d = (double)x[i] - m;
            v += d * d;
        }
        v = warp_sum_d(v);
        const float r = (float)(1.0 / sqrt(v / C + (double)eps));
        float *o = out + row * C;
        for (int i = lane; i < C; i += 32)
            o[i] = (x[i] - m) * r * w[i] + b[i];
        if (lane == 0) {
            if (mean)
                mean[row] = m;
            if (rstd)
                rstd[row] = r;
        }
    }
}

// dinp[out_rows[k]] += r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
// dxhat = dout[k] * w, xhat = (inp[in_rows[k]] - mean) * rstd; k < n rows of C.
// grid/block as above; out rows are distinct (one writer per row, no atomics).
__global__ void layernorm_backward_kernel(float *__restrict__ dinp, const float *__restrict__ dout,
                                          const float *__restrict__ inp, const float *__restrict__ mean,
                                          const float *__restrict__ rstd, const float *__restrict__ w,
                                          const int32_t *__restrict__ in_rows, const int32_t *__restrict__ out_rows,
                                          int n, int C)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int64_t k = (int64_t)blockIdx.x * LN_ROWS_PER_BLOCK + warp; k < n;
         k += (int64_t)gridDim.x * LN_ROWS_PER_BLOCK) {
        const int64_t ri = in_rows ? (int64_t)in_rows[k] : k, ro = out_rows ? (int64_t)out_rows[k] : k;
        const float *x = inp + ri * C, *dy = dout + k * C;
        const float m = mean[ri], r = rstd[ri];
        double a = 0, bsum = 0;
        for (int i = lane; i < C; i += 32) {
            float dxhat = dy[i] * w[i], xhat = (x[i] - m) * r;
            float prod = dxhat * xhat; // rounded to float first, as the CPU's float product
            a += dxhat;
            bsum += prod;
        }
        a = warp_sum_d(a);
        bsum = warp_sum_d(bsum);
        const float ma = (float)(a / C), mb = (float)(bsum / C);
        float *dx = dinp + ro * C;
        for (int i = lane; i < C; i += 32) {
            float dxhat = dy[i] * w[i], xhat = (x[i] - m) * r;
            dx[i] += r * (dxhat - ma - xhat * mb);
        }
    }
}

static void cu_layernorm(ecc_backend *be, float *out, float *mean, float *rstd, const float *inp, const float *w,
                         const float *b, int T, int C, float eps)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || T <= 0 || C <= 0)
        return;
    unsigned grid = cu_grid_rows(ctx, ((int64_t)T + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK);
    ECC_LAUNCH(layernorm_kernel, grid, LN_BLOCK, 0, ctx->stream)(out, mean, rstd, inp, w, b, T, C, eps);
    CU_LAUNCHED(ctx, "layernorm_kernel");
}

static void cu_layernorm_backward(ecc_backend *be, float *dinp, const float *dout, const float *inp, const float *mean,
                                  const float *rstd, const float *w, const int32_t *in_rows, const int32_t *out_rows,
                                  int n, int C)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0 || C <= 0)
        return;
    unsigned grid = cu_grid_rows(ctx, ((int64_t)n + LN_ROWS_PER_BLOCK - 1) / LN_ROWS_PER_BLOCK);
    ECC_LAUNCH(layernorm_backward_kernel, grid, LN_BLOCK, 0, ctx->stream)(
        dinp, dout, inp, mean, rstd, w, in_rows, out_rows, n, C);
    CU_LAUNCHED(ctx, "layernorm_backward_kernel");
}

void ecc_cuda_register_layernorm(ecc_backend *be)
{
    be->layernorm = cu_layernorm;
    be->layernorm_backward = cu_layernorm_backward;
}
