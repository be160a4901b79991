// Token + position embeddings.
#include "common.cuh"

// out (n, C) = tok_scale * wte[ids[t]] + wpe[p_t], p_t = pos[t] or pos0 + t.
// One thread per output element (grid-stride, 64-bit index): consecutive
// threads read consecutive floats of one embedding row (coalesced).
__global__ void embed_kernel(float *__restrict__ out, const int32_t *__restrict__ ids, const int32_t *__restrict__ pos,
                             int pos0, const float *__restrict__ wte, const float *__restrict__ wpe, float tok_scale,
                             int n, int C)
{
    const int64_t total = (int64_t)n * C;
    ECC_GRID_STRIDE(idx, total)
    {
        int64_t t = idx / C, i = idx - t * C;
        int64_t p = pos ? pos[t] : (int64_t)pos0 + t;
        out[idx] = tok_scale * wte[(int64_t)ids[t] * C + i] + wpe[p * C + i];
    }
}

static void cu_embed(ecc_backend *be, float *out, const int32_t *ids, const int32_t *pos, int pos0, const float *wte,
                     const float *wpe, float tok_scale, int n, int C)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0 || C <= 0)
        return;
    ECC_LAUNCH(embed_kernel, cu_grid(ctx, (int64_t)n * C, 256), 256, 0, ctx->stream)(
        out, ids, pos, pos0, wte, wpe, tok_scale, n, C);
    CU_LAUNCHED(ctx, "embed_kernel");
}

void ecc_cuda_register_embed(ecc_backend *be) { be->embed = cu_embed; }
