// Explanation ops: gather_rows, scatter_rows, target_grad (the gradient at the logits),
// saliency (norms of the input gradients, normalised per target) and
// lens_stats (logit-lens ranks and top-k). See host/backend/backend.h for the packed
// target layout. No float atomics: every sum has a fixed shape.
#include "common.cuh"
#ifndef ECC_CUDA_EMU
#include <cub/block/block_scan.cuh>
#endif

// ---- gather_rows -----------------------------------------------------------------

// out (n, C) = src[rows[k]]: one thread per output element (coalesced row copies)
__global__ void gather_rows_kernel(float *__restrict__ out, const float *__restrict__ src,
                                   const int32_t *__restrict__ rows, int n, int C)
{
    const int64_t total = (int64_t)n * C;
    ECC_GRID_STRIDE(idx, total)
    {
        int64_t k = idx / C, i = idx - k * C;
        out[idx] = src[(int64_t)rows[k] * C + i];
    }
}

static void cu_gather_rows(ecc_backend *be, float *out, const float *src, const int32_t *rows, int n, int C)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0 || C <= 0)
        return;
    ECC_LAUNCH(gather_rows_kernel, cu_grid(ctx, (int64_t)n * C, 256), 256, 0, ctx->stream)(out, src, rows, n, C);
    CU_LAUNCHED(ctx, "gather_rows_kernel");
}

// out[rows[k]] = src (n, C)[k]: one thread per source element (rows are distinct)
__global__ void scatter_rows_kernel(float *__restrict__ out, const float *__restrict__ src,
                                    const int32_t *__restrict__ rows, int n, int C)
{
    const int64_t total = (int64_t)n * C;
    ECC_GRID_STRIDE(idx, total)
    {
        int64_t k = idx / C, i = idx - k * C;
        out[(int64_t)rows[k] * C + i] = src[idx];
    }
}

static void cu_scatter_rows(ecc_backend *be, float *out, const float *src, const int32_t *rows, int n, int C)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0 || C <= 0)
        return;
    ECC_LAUNCH(scatter_rows_kernel, cu_grid(ctx, (int64_t)n * C, 256), 256, 0, ctx->stream)(out, src, rows, n, C);
    CU_LAUNCHED(ctx, "scatter_rows_kernel");
}

// ---- target_grad ------------------------------------------------------------------

enum { ROW_BLOCK = 512 };

// In place on logits (J, V), one block per row (grid-stride over rows):
//   kind 0 prob: s p_x (onehot_x - p); kind 1 logit: s onehot_x; kind 2 logprob: s (onehot_x - p);
// logprob (J), when not NULL, first receives log p_x.
// max / sum exp by block reductions of fixed shape; the same float expressions as the CPU.
__global__ void __launch_bounds__(ROW_BLOCK)
    target_grad_kernel(float *logits, float *logprob, const int32_t *__restrict__ tokens,
                       const float *__restrict__ scale, int kind, int J, int V)
{
    __shared__ float redf[32];
    __shared__ double redd[32];
    for (int64_t j = blockIdx.x; j < J; j += gridDim.x) {
        float *z = logits + j * V;
        const int32_t x = tokens[j];
        const float s = scale ? scale[j] : 1.0f;
        float mx = 0.0f;
        double sum = 0.0;
        if (kind != 1 || logprob)
            row_logsumexp(z, V, &mx, &sum, redf, redd);
        if (logprob && threadIdx.x == 0)
            logprob[j] = (float)((double)z[x] - mx - log(sum));
        if (kind == 1) {
            __syncthreads(); // z[x] was read
            for (int i = threadIdx.x; i < V; i += blockDim.x)
                z[i] = i == x ? s : 0.0f;
            __syncthreads();
            continue;
        }
        const float inv = (float)(1.0 / sum);
        const float px = expf(z[x] - mx) * inv;
        const float f = kind == 0 ? s * px : s;
        __syncthreads(); // every thread has read z[x]
        for (int i = threadIdx.x; i < V; i += blockDim.x)
            z[i] = -f * expf(z[i] - mx) * inv;
        __syncthreads();
        if (threadIdx.x == 0)
            z[x] += f;
        __syncthreads();
    }
}

static void cu_target_grad(ecc_backend *be, float *logits, float *logprob, const int32_t *tokens, const float *scale,
                           int kind, int J, int V)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || J <= 0 || V <= 0)
        return;
    ECC_LAUNCH(target_grad_kernel, cu_grid_rows(ctx, J), ROW_BLOCK, 0, ctx->stream)(logits, logprob, tokens, scale,
                                                                                    kind, J, V);
    CU_LAUNCHED(ctx, "target_grad_kernel");
}

// ---- saliency ----------------------------------------------------------------------

// One warp per (target j, position i < ld): scores[j * ld + i] = ||v||_2 of the
// gradient row off_j + i (times mult[rowpos] when given), summed in double by
// a butterfly; zero for i >= n_j.
__global__ void saliency_norm_kernel(float *__restrict__ scores, int ld, const float *__restrict__ grad,
                                     const float *__restrict__ mult, const int32_t *__restrict__ rowpos,
                                     const int32_t *__restrict__ tg_n, const int64_t *__restrict__ tg_off, int J,
                                     int C)
{
    const int lane = threadIdx.x & 31, wpb = blockDim.x >> 5;
    const int64_t total = (int64_t)J * ld;
    for (int64_t w = (int64_t)blockIdx.x * wpb + (threadIdx.x >> 5); w < total; w += (int64_t)gridDim.x * wpb) {
        const int64_t j = w / ld, i = w - j * ld;
        if (i >= tg_n[j]) { // warp-uniform
            if (lane == 0)
                scores[w] = 0.0f;
            continue;
        }
        const int64_t r = tg_off[j] + i;
        const float *g = grad + r * C, *e = mult ? mult + (int64_t)rowpos[r] * C : NULL;
        double ss = 0;
        for (int c = lane; c < C; c += 32) {
            double v = e ? (double)g[c] * e[c] : (double)g[c];
            ss += v * v;
        }
        ss = warp_sum_d(ss);
        if (lane == 0)
            scores[w] = (float)sqrt(ss);
    }
}

// One block per target: scores[j, i < n_j] *= 1 / (their sum, double, fixed shape).
__global__ void saliency_normalize_kernel(float *__restrict__ scores, int ld, const int32_t *__restrict__ tg_n, int J)
{
    __shared__ double redd[32];
    for (int64_t j = blockIdx.x; j < J; j += gridDim.x) {
        float *s = scores + j * ld;
        const int n = min(tg_n[j], ld);
        double t = 0;
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            t += s[i];
        t = block_sum_d(t, redd);
        const float inv = t > 0 ? (float)(1.0 / t) : 0.0f;
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            s[i] *= inv;
    }
}

static void cu_saliency(ecc_backend *be, float *scores, int ld, const float *grad, const float *mult,
                        const int32_t *rowpos, const int32_t *tg_n, const int64_t *tg_off, int J, int C)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || J <= 0 || ld <= 0)
        return;
    ECC_LAUNCH(saliency_norm_kernel, cu_grid(ctx, (int64_t)J * ld * 32, 256), 256, 0, ctx->stream)(
        scores, ld, grad, mult, rowpos, tg_n, tg_off, J, C);
    if (!CU_LAUNCHED(ctx, "saliency_norm_kernel"))
        return;
    ECC_LAUNCH(saliency_normalize_kernel, cu_grid_rows(ctx, J), 256, 0, ctx->stream)(scores, ld, tg_n, J);
    CU_LAUNCHED(ctx, "saliency_normalize_kernel");
}

// ---- lens_stats ----------------------------------------------------------------------
//
// Top-k of a row of V logits (one block per row), deterministic and exact:
//   1. radix select on the order-preserving 32-bit keys (ecc_float_key): four
//      8-bit histogram passes find the key K of the k-th largest logit and how
//      many of the k are ties at K (integer atomics: order-free);
//   2. one pass in id order with a block scan collects the ids above K and the
//      lowest-id ties at K, exactly k candidates;
//   3. a bitonic sort of the candidates by (logit descending, id ascending),
//      in shared memory (k <= 4096) or in per-block global scratch;
//   4. probabilities from the row's max and sum of exp in double, over all V.
// Ranks (1 + count of strictly larger logits) of the target token and the
// watched ids: integer counts, a block per (row, group of 8 queried ids).
// Steps 1-2 and the ranks see only the first Vt ids (the tokenizer's): the
// rows past them are padding and never ranked or chosen.

enum { LENS_BLOCK = 512, LENS_SMEM_P = 4096, LENS_RANK_Q = 8, LENS_BIG_BLOCKS = 64 };

// grid: rows (grid-stride); candidates: dynamic shared memory (P entries) when
// gscratch is NULL, else gscratch + blockIdx.x * P. P = a power of two >= k.
__global__ void __launch_bounds__(LENS_BLOCK)
    lens_topk_kernel(int32_t *__restrict__ top_ids, float *__restrict__ top_probs, const float *__restrict__ logits,
                     int n, int V, int Vt, int k, int P, unsigned long long *__restrict__ gscratch)
{
    typedef cub::BlockScan<int, LENS_BLOCK> Scan;
    __shared__ typename Scan::TempStorage scan_tmp;
    __shared__ int hist[256];
    __shared__ int sel_s, krem_s;
    __shared__ float redf[32];
    __shared__ double redd[32];
    ECC_DYNAMIC_SHARED(unsigned long long, cand_s);
    unsigned long long *cand = gscratch ? gscratch + (int64_t)blockIdx.x * P : cand_s;
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        const float *z = logits + row * V;
        // 1. radix select
        uint32_t prefix = 0, mask = 0;
        int krem = k;
        for (int pass = 0; pass < 4; pass++) {
            const int shift = 24 - 8 * pass;
            for (int i = threadIdx.x; i < 256; i += blockDim.x)
                hist[i] = 0;
            __syncthreads();
            // warp-aggregated: one shared atomic per distinct digit in a warp
            // (logits share their top bits, so most lanes hit the same bin)
            for (int base = 0; base < Vt; base += blockDim.x) { // every lane runs every iteration
                const int v = base + (int)threadIdx.x;
                int bin = -1;
                if (v < Vt) {
                    const uint32_t u = ecc_float_key(z[v]);
                    if ((u & mask) == prefix)
                        bin = (int)((u >> shift) & 255u);
                }
                const unsigned peers = __match_any_sync(0xffffffffu, bin);
                if (bin >= 0 && (int)(threadIdx.x & 31) == __ffs(peers) - 1)
                    atomicAdd(&hist[bin], __popc(peers));
            }
            __syncthreads();
            if (threadIdx.x == 0) {
                int kr;
                sel_s = ecc_radix_digit(hist, krem, &kr);
                krem_s = kr;
            }
            __syncthreads();
            prefix |= (uint32_t)sel_s << shift;
            mask |= 255u << shift;
            krem = krem_s;
        }
        // 2. collect: ng ids above the threshold, then the krem lowest ids equal to it
        const int ng = k - krem;
        int offG = 0, offE = 0;
        for (int base = 0; base < Vt; base += blockDim.x) {
            const int v = base + (int)threadIdx.x;
            uint32_t u = 0;
            int fG = 0, fE = 0;
            if (v < Vt) {
                u = ecc_float_key(z[v]);
                fG = u > prefix;
                fE = u == prefix;
            }
            int ex, tot; // two counters of <= LENS_BLOCK packed in one int
            Scan(scan_tmp).ExclusiveSum(fG | (fE << 16), ex, tot);
            if (fG)
                cand[offG + (ex & 0xffff)] = ecc_rank_key(u, v);
            if (fE && offE + (ex >> 16) < krem)
                cand[ng + offE + (ex >> 16)] = ecc_rank_key(u, v);
            offG += tot & 0xffff;
            offE += tot >> 16;
            __syncthreads(); // scan_tmp is reused
        }
        for (int i = k + (int)threadIdx.x; i < P; i += blockDim.x)
            cand[i] = ~0ull; // sorts last
        __syncthreads();
        // 3. bitonic sort, ascending keys = logit descending, id ascending
        for (int size = 2; size <= P; size <<= 1)
            for (int stride = size >> 1; stride > 0; stride >>= 1) {
                for (int i = threadIdx.x; i < P / 2; i += blockDim.x) {
                    const int lo = (int)ecc_bitonic_lo(i, stride), hi = lo + stride;
                    const unsigned long long a = cand[lo], b = cand[hi];
                    const bool up = (lo & size) == 0;
                    if ((a > b) == up) {
                        cand[lo] = b;
                        cand[hi] = a;
                    }
                }
                __syncthreads();
            }
        // 4. probabilities against the max of the whole row (padding included)
        float mx;
        double s;
        row_logsumexp(z, V, &mx, &s, redf, redd);
        for (int q = threadIdx.x; q < k; q += blockDim.x) {
            const int32_t id = (int32_t)(uint32_t)(cand[q] & 0xffffffffull);
            top_ids[row * k + q] = id;
            if (top_probs)
                top_probs[row * k + q] = (float)(exp((double)z[id] - mx) / s);
        }
        __syncthreads(); // cand is reused by the next row
    }
}

// grid: (rows, groups of LENS_RANK_Q queries); query 0 is tokens[row], query q >= 1 is watch[q - 1].
__global__ void __launch_bounds__(LENS_BLOCK)
    lens_rank_kernel(int32_t *__restrict__ ranks, int32_t *__restrict__ watch_ranks, const float *__restrict__ logits,
                     const int32_t *__restrict__ tokens, const int32_t *__restrict__ watch, int n, int V, int Vt,
                     int W)
{
    __shared__ int redi[32];
    const int nq = 1 + (watch_ranks ? W : 0), q0 = (int)blockIdx.y * LENS_RANK_Q;
    for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {
        const float *z = logits + row * V;
        float thr[LENS_RANK_Q];
        int cnt[LENS_RANK_Q];
#pragma unroll
        for (int i = 0; i < LENS_RANK_Q; i++) {
            const int q = q0 + i;
            thr[i] = q < nq ? z[q == 0 ? tokens[row] : watch[q - 1]] : INFINITY;
            cnt[i] = 0;
        }
        for (int v = threadIdx.x; v < Vt; v += blockDim.x) {
            const float zv = z[v];
#pragma unroll
            for (int i = 0; i < LENS_RANK_Q; i++)
                cnt[i] += zv > thr[i];
        }
#pragma unroll
        for (int i = 0; i < LENS_RANK_Q; i++) {
            const int c = block_sum_i(cnt[i], redi), q = q0 + i;
            if (threadIdx.x == 0 && q < nq) {
                if (q == 0)
                    ranks[row] = c + 1;
                else
                    watch_ranks[row * W + (q - 1)] = c + 1;
            }
        }
    }
}

static void cu_lens_stats(ecc_backend *be, int32_t *ranks, int32_t *top_ids, float *top_probs, int32_t *watch_ranks,
                          const float *logits, const int32_t *tokens, const int32_t *watch, int n, int V, int Vt, int k,
                          int W)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || n <= 0 || V <= 0 || Vt <= 0 || Vt > V)
        return;
    const int nq = 1 + (watch_ranks && W > 0 ? W : 0);
    const unsigned groups = (unsigned)((nq + LENS_RANK_Q - 1) / LENS_RANK_Q);
    if (groups > 65535u) {
        cu_record(ctx, ECC_ERR_UNSUPPORTED, __FILE__, __LINE__, "lens_stats: %d watched ids is too many", W);
        return;
    }
    dim3 rgrid(cu_grid_rows(ctx, n), groups);
    ECC_LAUNCH(lens_rank_kernel, rgrid, LENS_BLOCK, 0, ctx->stream)(
        ranks, watch_ranks && W > 0 ? watch_ranks : NULL, logits, tokens, watch, n, V, Vt, W > 0 ? W : 0);
    if (!CU_LAUNCHED(ctx, "lens_rank_kernel") || !top_ids || k <= 0)
        return;
    if (k > Vt) {
        cu_record(ctx, ECC_ERR_INPUT, __FILE__, __LINE__, "lens_stats: top-%d of %d logits", k, Vt);
        return;
    }
    const int64_t P = ecc_pow2_at_least(k);
    if (P <= LENS_SMEM_P) {
        const size_t smem = (size_t)P * sizeof(unsigned long long);
        ECC_LAUNCH(lens_topk_kernel, cu_grid_rows(ctx, n), LENS_BLOCK, smem, ctx->stream)(top_ids, top_probs, logits, n,
                                                                                          V, Vt, k, (int)P, NULL);
    } else { // large k: candidates in global scratch, a bounded number of blocks
        const int64_t blocks = n < LENS_BIG_BLOCKS ? n : LENS_BIG_BLOCKS;
        size_t cap = ctx->lens_scratch_elems * sizeof(unsigned long long);
        if (!cu_device_reserve(ctx, (void **)&ctx->lens_scratch, &cap,
                               (size_t)(blocks * P) * sizeof(unsigned long long), "the logit-lens top-k scratch"))
            return;
        ctx->lens_scratch_elems = cap / sizeof(unsigned long long);
        ECC_LAUNCH(lens_topk_kernel, (unsigned)blocks, LENS_BLOCK, 0, ctx->stream)(
            top_ids, top_probs, logits, n, V, Vt, k, (int)P, ctx->lens_scratch);
    }
    CU_LAUNCHED(ctx, "lens_topk_kernel");
}

void ecc_cuda_register_explain(ecc_backend *be)
{
    be->gather_rows = cu_gather_rows;
    be->scatter_rows = cu_scatter_rows;
    be->target_grad = cu_target_grad;
    be->saliency = cu_saliency;
    be->lens_stats = cu_lens_stats;
}
