// Elementwise ops: GELU (tanh approximation) and its derivative, the GELU
// backward of packed rows, and addition. One thread per element, grid-stride
// with 64-bit indices; the same float expressions as the CPU backend.
#include "common.cuh"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

// out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); dgelu (n), when
// not NULL, = its derivative (dgelu may alias inp: each element is read, then
// written, by one thread)
__global__ void gelu_kernel(float *out, float *dgelu, const float *inp, int64_t n)
{
    ECC_GRID_STRIDE(i, n)
    {
        float x = inp[i], th = tanhf(GELU_SCALE * (x + 0.044715f * x * x * x));
        out[i] = 0.5f * x * (1.0f + th);
        if (dgelu)
            dgelu[i] = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    }
}

// dinp (R, F) = dout (R, F) * dgelu[rowpos[r]] (dinp may alias dout)
__global__ void gelu_backward_kernel(float *dinp, const float *dout, const float *__restrict__ dgelu,
                                     const int32_t *__restrict__ rowpos, int64_t R, int F)
{
    const int64_t total = R * F;
    ECC_GRID_STRIDE(idx, total)
    {
        int64_t r = idx / F, i = idx - r * F;
        dinp[idx] = dout[idx] * dgelu[(int64_t)rowpos[r] * F + i];
    }
}

// out (n) = a + b (out may alias a or b)
__global__ void add_kernel(float *out, const float *a, const float *b, int64_t n)
{
    ECC_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

static void cu_gelu(ecc_backend *be, float *out, float *dgelu, const float *inp, int64_t n)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0)
        return;
    ECC_LAUNCH(gelu_kernel, cu_grid(ctx, n, 256), 256, 0, ctx->stream)(out, dgelu, inp, n);
    CU_LAUNCHED(ctx, "gelu_kernel");
}

static void cu_gelu_backward(ecc_backend *be, float *dinp, const float *dout, const float *dgelu, const int32_t *rowpos,
                             int64_t R, int F)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || R <= 0 || F <= 0)
        return;
    ECC_LAUNCH(gelu_backward_kernel, cu_grid(ctx, R * F, 256), 256, 0, ctx->stream)(dinp, dout, dgelu, rowpos, R, F);
    CU_LAUNCHED(ctx, "gelu_backward_kernel");
}

static void cu_add(ecc_backend *be, float *out, const float *a, const float *b, int64_t n)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0)
        return;
    ECC_LAUNCH(add_kernel, cu_grid(ctx, n, 256), 256, 0, ctx->stream)(out, a, b, n);
    CU_LAUNCHED(ctx, "add_kernel");
}

void ecc_cuda_register_gelu(ecc_backend *be)
{
    be->gelu = cu_gelu;
    be->gelu_backward = cu_gelu_backward;
    be->add = cu_add;
}
