// Choosing the next token on the device: the steps of host/engine/sampling.c, so
// that a seed gives the CPU's tokens, with only the 8-byte result (token,
// log-probability) copied back.
//
// Only the first Vt ids (the tokenizer's; p->n_tokens) are chosen from: the
// rest are padding rows. The log-probability is over all V.
// Greedy / forced: one block finds the arg-max (lowest id on ties) and the
// log-softmax at the token.
// Sampling:
//   1. z = logits / temperature, ids 0 .. Vt-1 (sample_prep_kernel)
//   2. order by z descending, ids ascending on ties: CUB's radix sort is
//      stable, and the ids go in ascending
//   3. one block (sample_select_kernel): e_i = (float)exp(z_i - z_0) over the
//      kept n = top_k (or V) ids; the cumulative sums of e come from a block
//      scan in double (each thread a contiguous segment, summed in order,
//      then a fixed-shape scan over the segments), which gives the top-p cut
//      (the shortest prefix whose share of the total reaches top_p), then
//      u = ecc_uniform(seed, step) * (kept total) and the first id whose
//      cumulative e exceeds u.
// The CPU sums the same e_i one after another in double; the block scan
// groups them differently, so a cumulative sum can differ in its last bits
// (~1e-16 relative) and a token differs only when u falls that close to a
// boundary (probability ~1e-13 per step): the same tokens in practice, and
// the same bits on every run of the GPU.
#include "common.cuh"
#ifndef ECC_CUDA_EMU
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>
#endif

enum { PICK_BLOCK = 1024 };

typedef struct pick_result {
    int32_t token;
    float logprob;
} pick_result;

// Arg-max candidate order: higher value, then lower id; id < 0 = none yet.
static __device__ __forceinline__ bool pick_better(float v, int32_t i, float bv, int32_t bi)
{
    return bi < 0 || (i >= 0 && (v > bv || (v == bv && i < bi)));
}

// One block of PICK_BLOCK threads. res = (token, log_softmax(logits)[token]);
// token = forced when >= 0, else the arg-max of the first Vt (lowest id on ties).
__global__ void __launch_bounds__(PICK_BLOCK)
    pick_argmax_kernel(pick_result *res, const float *__restrict__ logits, int V, int Vt, int32_t forced)
{
    __shared__ float redf[32];
    __shared__ double redd[32];
    __shared__ float bv_s[32];
    __shared__ int32_t bi_s[32];
    __shared__ int32_t tok_s;
    float bv = -INFINITY;
    int32_t bi = -1;
    for (int i = threadIdx.x; i < Vt; i += blockDim.x) // ascending i: a later equal value never wins
        if (pick_better(logits[i], i, bv, bi)) {
            bv = logits[i];
            bi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        float v = __shfl_xor_sync(0xffffffffu, bv, o);
        int32_t i = __shfl_xor_sync(0xffffffffu, bi, o);
        if (pick_better(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        bv_s[warp] = bv;
        bi_s[warp] = bi;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = bv_s[0];
        int32_t b = bi_s[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++)
            if (pick_better(bv_s[w], bi_s[w], v, b)) {
                v = bv_s[w];
                b = bi_s[w];
            }
        tok_s = forced >= 0 ? forced : (b < 0 ? 0 : b);
    }
    __syncthreads();
    float mx;
    double sum;
    row_logsumexp(logits, V, &mx, &sum, redf, redd);
    if (threadIdx.x == 0) {
        const int32_t t = tok_s;
        res->token = t;
        res->logprob = (float)((double)logits[t] - mx - log(sum));
    }
}

// keys (Vt) = logits / temperature (-0 made +0), vals = 0 .. Vt-1
__global__ void sample_prep_kernel(float *__restrict__ keys, int32_t *__restrict__ vals,
                                   const float *__restrict__ logits, int V, float temperature)
{
    ECC_GRID_STRIDE(i, (int64_t)V)
    {
        float z = logits[i] / temperature;
        keys[i] = z == 0.0f ? 0.0f : z;
        vals[i] = (int32_t)i;
    }
}

// One block of PICK_BLOCK threads over the sorted keys zs / ids (see the top).
__global__ void __launch_bounds__(PICK_BLOCK)
    sample_select_kernel(pick_result *res, const float *__restrict__ logits, const float *__restrict__ zs,
                         const int32_t *__restrict__ ids, int V, int n_keep, float top_p, uint64_t seed, uint64_t step)
{
    typedef cub::BlockScan<double, PICK_BLOCK> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ float redf[32];
    __shared__ double redd[32];
    __shared__ int redi[32];
    __shared__ double total2_s;
    const double best = zs[0];
    const int seg = (n_keep + PICK_BLOCK - 1) / PICK_BLOCK;
    const int lo = min((int)threadIdx.x * seg, n_keep), hi = min(lo + seg, n_keep);
    double local = 0;
    for (int i = lo; i < hi; i++)
        local += (double)(float)exp((double)zs[i] - best);
    double excl, total;
    Scan(scan_tmp).ExclusiveSum(local, excl, total);

    // top-p: the first i whose cumulative share reaches top_p keeps 0 .. i
    int n2 = n_keep;
    double total2 = total;
    if (top_p < 1.0f) {
        int first = INT32_MAX;
        double c = excl, at = 0;
        for (int i = lo; i < hi; i++) {
            c += (double)(float)exp((double)zs[i] - best);
            if (c / total >= (double)top_p) {
                first = i;
                at = c;
                break;
            }
        }
        const int f = block_min_i(first, redi);
        if (f != INT32_MAX) {
            if (first == f)
                total2_s = at; // exactly one thread holds index f
            __syncthreads();
            n2 = f + 1;
            total2 = total2_s;
        }
    }
    // the sample: the first kept i whose cumulative e exceeds u
    const double u = (double)ecc_uniform(seed, step) * total2;
    int first = INT32_MAX;
    {
        double c = excl;
        const int h2 = min(hi, n2);
        for (int i = lo; i < h2; i++) {
            c += (double)(float)exp((double)zs[i] - best);
            if (c > u) {
                first = i;
                break;
            }
        }
    }
    const int f = block_min_i(first, redi);
    const int32_t tok = ids[f != INT32_MAX ? f : n2 - 1];
    float mx;
    double sum;
    row_logsumexp(logits, V, &mx, &sum, redf, redd);
    if (threadIdx.x == 0) {
        res->token = tok;
        res->logprob = (float)((double)logits[tok] - mx - log(sum));
    }
}

// Sort buffers for V logits, allocated on the first sampled token.
static bool sort_buffers(cuda_ctx *ctx, int V)
{
    if (ctx->sort_keys && ctx->sort_V >= V)
        return true;
    void **bufs[] = {(void **)&ctx->sort_keys, (void **)&ctx->sort_keys2, (void **)&ctx->sort_vals,
                     (void **)&ctx->sort_vals2, &ctx->sort_tmp};
    if (ctx->sort_keys && !CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)))
        return false;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (*bufs[i]) {
            cudaFree(*bufs[i]);
            *bufs[i] = NULL;
        }
    ctx->sort_V = 0;
    size_t tmp = 0;
    if (!CUDA_CHECK(ctx, cub::DeviceRadixSort::SortPairsDescending(NULL, tmp, (const float *)NULL, (float *)NULL,
                                                                   (const int32_t *)NULL, (int32_t *)NULL, V, 0,
                                                                   (int)(8 * sizeof(float)), ctx->stream)))
        return false;
    size_t b4 = (size_t)V * 4;
    size_t bytes[] = {b4, b4, b4, b4, tmp ? tmp : 256};
    size_t cap;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        cap = 0;
        if (!cu_device_reserve(ctx, bufs[i], &cap, bytes[i], "the sampling buffers"))
            return false;
    }
    ctx->sort_tmp_bytes = tmp ? tmp : 256;
    ctx->sort_V = V;
    return true;
}

static void cu_pick(ecc_backend *be, int32_t *token, float *logprob, const float *logits, int V, int32_t forced,
                    const ecc_pick_params *p, uint64_t step)
{
    cuda_ctx *ctx = ctx_of(be);
    // after a failure: a harmless answer (status() reports the failure)
    *token = forced >= 0 ? forced : 0;
    *logprob = NAN;
    if (!cu_ok(ctx) || V <= 0)
        return;
    const int Vt = p->n_tokens > 0 && p->n_tokens < V ? p->n_tokens : V; // the rest: padding rows
    pick_result *d_res = (pick_result *)ctx->d_small, *h_res = (pick_result *)ctx->h_small;
    if (forced >= 0 || p->greedy) {
        ECC_LAUNCH(pick_argmax_kernel, 1, PICK_BLOCK, 0, ctx->stream)(d_res, logits, V, Vt, forced);
        if (!CU_LAUNCHED(ctx, "pick_argmax_kernel"))
            return;
    } else {
        if (!sort_buffers(ctx, Vt))
            return;
        ECC_LAUNCH(sample_prep_kernel, cu_grid(ctx, Vt, 256), 256, 0, ctx->stream)(
            ctx->sort_keys, ctx->sort_vals, logits, Vt, p->temperature);
        if (!CU_LAUNCHED(ctx, "sample_prep_kernel"))
            return;
        size_t tmp = ctx->sort_tmp_bytes;
        if (!CUDA_CHECK(ctx, cub::DeviceRadixSort::SortPairsDescending(
                                 ctx->sort_tmp, tmp, ctx->sort_keys, ctx->sort_keys2, ctx->sort_vals,
                                 ctx->sort_vals2, Vt, 0, (int)(8 * sizeof(float)), ctx->stream)) ||
            !CU_LAUNCHED(ctx, "cub::DeviceRadixSort::SortPairsDescending"))
            return;
        const int n_keep = (p->top_k > 0 && p->top_k < Vt) ? p->top_k : Vt;
        ECC_LAUNCH(sample_select_kernel, 1, PICK_BLOCK, 0, ctx->stream)(
            d_res, logits, ctx->sort_keys2, ctx->sort_vals2, V, n_keep, p->top_p, p->seed, step);
        if (!CU_LAUNCHED(ctx, "sample_select_kernel"))
            return;
    }
    if (!CUDA_CHECK(ctx, cudaMemcpyAsync(h_res, d_res, sizeof *h_res, cudaMemcpyDeviceToHost, ctx->stream)) ||
        !CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)))
        return;
    *token = h_res->token;
    *logprob = h_res->logprob;
}

void ecc_cuda_register_sampling(ecc_backend *be) { be->pick = cu_pick; }
