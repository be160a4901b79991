// Shared by every file of the CUDA backend: the backend context, the
// error state, checked calls, launch helpers and deterministic reductions.
//
// Error handling. Ops cannot return errors (host/backend/backend.h), so the context
// keeps the FIRST failure (status + "file:line: call: message"); every op
// starts with `if (!cu_ok(ctx)) return;`, so after a failure the rest of a
// phase is a string of no-ops, and be->status() reports the failure (the
// orchestration calls it after each phase). Memory calls (alloc, mirror,
// reserve) report directly, as the interface says. Every CUDA / cuBLAS call is
// wrapped in CUDA_CHECK / CUBLAS_CHECK, and every kernel launch is followed by
// CU_LAUNCHED (cudaGetLastError; with ECCOLO_CUDA_SYNC_CHECK=1 also a stream
// synchronisation, so an asynchronous fault is pinned to the op that caused it).
//
// Determinism. No float atomics anywhere: every reduction is either one
// thread's loop in a fixed order or a butterfly/tree of fixed shape (the
// warp/block helpers below), so the same input gives the same bits on every run.
#ifndef ECC_KERNELS_COMMON_CUH
#define ECC_KERNELS_COMMON_CUH

#ifdef ECC_CUDA_EMU
#include "emu/cuda_emu.h" // the kernels on the CPU, for testing without a GPU (see emu/cuda_emu.h)
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
#include "util.h"
}

// ---- the backend context --------------------------------------------------------

enum {
    ECC_CU_STAGE_SLOTS = 32,                 // small uploads: a ring of pinned slots
    ECC_CU_STAGE_SLOT = 256 << 10,           //   of 256 KiB each (8 MiB)
    ECC_CU_DL_HALF = 4 << 20,                // large downloads: two 4 MiB halves
    ECC_CU_SMALL_BYTES = 4096,               // pinned + device scratch for 8-byte results
    ECC_CU_DOT_CHUNKS = 256,                 // dot: fixed number of first-level chunks
};

typedef struct cuda_ctx {
    int device;
    int cc_major, cc_minor;
    int sm_count;
    int max_grid_x;
    int smem_optin;          // bytes of dynamic shared memory a block may opt in to
    cudaStream_t stream;     // every op runs on this one stream, in call order
    cublasHandle_t blas;
    void *blas_ws;           // cuBLAS workspace (fixed, so cuBLAS never allocates mid-run)
    size_t blas_ws_bytes;
    ecc_precision precision;
    cublasComputeType_t compute;
    int sync_check;          // ECCOLO_CUDA_SYNC_CHECK=1

    // the first failure
    ecc_status err;
    char err_msg[512];

    // pinned staging: STAGE_SLOTS x STAGE_SLOT for small uploads, then 2 x DL_HALF for downloads
    unsigned char *stage;
    cudaEvent_t stage_ev[ECC_CU_STAGE_SLOTS];
    int stage_used[ECC_CU_STAGE_SLOTS];
    int stage_next;
    cudaEvent_t dl_ev[2];
    // pinned + device scratch for small results (pick's 8 bytes, dot's parts)
    void *h_small;
    void *d_small;

    // attention backward: padded tiles (be->reserve) and the host copy of tg_n
    float *tiles;
    size_t tiles_floats;

    // pick (sampling): sort buffers, allocated on the first sampled token
    float *sort_keys, *sort_keys2;
    int32_t *sort_vals, *sort_vals2;
    void *sort_tmp;
    size_t sort_tmp_bytes;
    int sort_V;

    // lens_stats with k > the shared-memory limit: per-block candidate lists
    unsigned long long *lens_scratch;
    size_t lens_scratch_elems;

    // the analysis ops' cuSOLVER handle and buffers (analysis.cu), created on first use
    void *analysis;
} cuda_ctx;

static inline cuda_ctx *ctx_of(ecc_backend *be) { return (cuda_ctx *)be->ctx; }
static inline bool cu_ok(const cuda_ctx *ctx) { return ctx->err == ECC_OK; }

// Record a failure (only the first one is kept). Defined in memory.cu.
void cu_record(cuda_ctx *ctx, ecc_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
bool cu_check_cuda(cuda_ctx *ctx, cudaError_t e, const char *what, const char *file, int line);
bool cu_check_cublas(cuda_ctx *ctx, cublasStatus_t s, const char *what, const char *file, int line);
bool cu_after_launch(cuda_ctx *ctx, const char *kernel, const char *file, int line);

#define CUDA_CHECK(ctx, call) cu_check_cuda((ctx), (call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(ctx, call) cu_check_cublas((ctx), (call), #call, __FILE__, __LINE__)
#define CU_LAUNCHED(ctx, name) cu_after_launch((ctx), (name), __FILE__, __LINE__)

// Registration of each op family (one per file).
void ecc_cuda_register_memory(ecc_backend *be);    // memory.cu
void ecc_cuda_register_embed(ecc_backend *be);     // embed.cu
void ecc_cuda_register_layernorm(ecc_backend *be); // layernorm.cu
void ecc_cuda_register_matmul(ecc_backend *be);    // matmul.cu
void ecc_cuda_register_attention(ecc_backend *be); // attention.cu
void ecc_cuda_register_gelu(ecc_backend *be);      // gelu.cu
void ecc_cuda_register_sampling(ecc_backend *be);  // sampling.cu
void ecc_cuda_register_explain(ecc_backend *be);   // explain.cu
void ecc_cuda_register_nmf(ecc_backend *be);       // nmf.cu
void ecc_cuda_register_analysis(ecc_backend *be);  // analysis.cu
void ecc_cuda_free_analysis(cuda_ctx *ctx);        // analysis.cu: its handle and buffers
void ecc_cuda_free_resources(cuda_ctx *ctx);  // memory.cu: everything the context holds

// Row-major matrix product on the context's stream (matmul.cu):
//   C (M, N) = alpha op(A) op(B) + beta C, for `batch` products with strides sA, sB, sC
// (elements); op(A) is (M, K): A is (M, K) with row stride lda, or (K, M) when transA.
void cu_gemm_rm(cuda_ctx *ctx, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                long long sA, const float *B, int ldb, long long sB, float beta, float *C, int ldc, long long sC,
                int batch);

// Device memory that grows (op-private buffers; freed at destroy). cudaMalloc only when it grows.
bool cu_device_reserve(cuda_ctx *ctx, void **p, size_t *cap_bytes, size_t need_bytes, const char *what);

// ---- launch helpers ----------------------------------------------------------------

// Blocks for a grid-stride loop over n items, `block` threads each: enough
// to fill the GPU, never more than the x-dimension limit. Kernels loop with
// 64-bit indices, so any n is covered.
static inline unsigned cu_grid(const cuda_ctx *ctx, int64_t n, int block)
{
    int64_t g = (n + block - 1) / block;
    int64_t cap = (int64_t)ctx->sm_count * 32;
    if (cap > ctx->max_grid_x)
        cap = ctx->max_grid_x;
    if (g > cap)
        g = cap;
    return (unsigned)(g < 1 ? 1 : g);
}

// Blocks for "one block (or warp group) per row" kernels that also loop
// (grid-stride) over rows: rows themselves, capped.
static inline unsigned cu_grid_rows(const cuda_ctx *ctx, int64_t rows)
{
    int64_t cap = (int64_t)ctx->sm_count * 64;
    if (cap > ctx->max_grid_x)
        cap = ctx->max_grid_x;
    return (unsigned)(rows < 1 ? 1 : rows > cap ? cap : rows);
}

// kernel<<<grid, block, smem, stream>>>(args) — written as a macro so that
// the kernels also compile for the CPU emulation (ECC_CUDA_EMU)
#ifdef ECC_CUDA_EMU
#define ECC_LAUNCH(k, grid, block, smem, stream) ecc_emu::launch(#k, k, dim3(grid), dim3(block), (size_t)(smem))
#define ECC_DYNAMIC_SHARED(T, name) T *name = (T *)ecc_emu::dynamic_shared()
#else
#define ECC_LAUNCH(k, grid, block, smem, stream) k<<<(grid), (block), (smem), (stream)>>>
#define ECC_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#endif

#define ECC_GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// ---- deterministic reductions -----------------------------------------------------
// Butterfly (xor) reductions: every lane ends with the same bits, because
// each pairwise step adds the same two values (a + b == b + a exactly).

static __device__ __forceinline__ double warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_sum_f(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max_f(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ int warp_sum_i(int v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block-wide sum / max / min, result in every thread. blockDim.x must be a
// multiple of 32 (our kernels use 128 to 1024); `red` is 32 slots of shared
// memory. Fixed shape: a butterfly in each warp, then warp 0 combines the
// warp results (padded with the identity) by a butterfly, in warp order. The
// closing barrier lets the caller reuse `red` at once.
#define ECC_BLOCK_REDUCE(T, v, red, ident, OP)                        \
    do {                                                              \
        const int lane_ = threadIdx.x & 31, warp_ = threadIdx.x >> 5; \
        for (int o_ = 16; o_ > 0; o_ >>= 1)                           \
            v = OP(v, __shfl_xor_sync(0xffffffffu, v, o_));           \
        __syncthreads(); /* red may still be read by a previous call */ \
        if (lane_ == 0)                                               \
            red[warp_] = v;                                           \
        __syncthreads();                                              \
        if (warp_ == 0) {                                             \
            T t_ = lane_ < (int)(blockDim.x >> 5) ? red[lane_] : (ident); \
            for (int o_ = 16; o_ > 0; o_ >>= 1)                       \
                t_ = OP(t_, __shfl_xor_sync(0xffffffffu, t_, o_));    \
            if (lane_ == 0)                                           \
                red[0] = t_;                                          \
        }                                                             \
        __syncthreads();                                              \
        v = red[0];                                                   \
        __syncthreads();                                              \
    } while (0)

#define ECC_OP_ADD(a, b) ((a) + (b))
#define ECC_OP_FMAX(a, b) fmaxf((a), (b))
#define ECC_OP_MIN(a, b) min((a), (b))

static __device__ __forceinline__ double block_sum_d(double v, double *red)
{
    ECC_BLOCK_REDUCE(double, v, red, 0.0, ECC_OP_ADD);
    return v;
}

static __device__ __forceinline__ float block_max_f(float v, float *red)
{
    ECC_BLOCK_REDUCE(float, v, red, -INFINITY, ECC_OP_FMAX);
    return v;
}

static __device__ __forceinline__ int block_sum_i(int v, int *red)
{
    ECC_BLOCK_REDUCE(int, v, red, 0, ECC_OP_ADD);
    return v;
}

static __device__ __forceinline__ int block_min_i(int v, int *red)
{
    ECC_BLOCK_REDUCE(int, v, red, INT32_MAX, ECC_OP_MIN);
    return v;
}

// max and sum of exp(z - max) (double) over a row of V floats, in every
// thread of the block (the CPU's log-softmax statistics, in a fixed order)
static __device__ __forceinline__ void row_logsumexp(const float *__restrict__ z, int V, float *mx_out,
                                                     double *sum_out, float *redf, double *redd)
{
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        mx = fmaxf(mx, z[i]);
    mx = block_max_f(mx, redf);
    double s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        s += exp((double)z[i] - mx);
    *sum_out = block_sum_d(s, redd);
    *mx_out = mx;
}

// ---- index math shared by host planning and kernels (tested on the host) --------

// A float as an unsigned key with the same order (larger float, larger key);
// -0.0 is first made +0.0, so that the two zeros tie as the CPU's comparisons do.
static __host__ __device__ __forceinline__ uint32_t ecc_float_key(float f)
{
    uint32_t u;
    if (f == 0.0f)
        f = 0.0f;
#ifdef __CUDA_ARCH__
    u = __float_as_uint(f);
#else
    memcpy(&u, &f, sizeof u);
#endif
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Ranking key: ascending order of the 64-bit value = logit descending, then id ascending.
static __host__ __device__ __forceinline__ unsigned long long ecc_rank_key(uint32_t fkey, int32_t id)
{
    return ((unsigned long long)(~fkey) << 32) | (uint32_t)id;
}

// Bitonic sorting network, step (size, stride), comparison i in [0, P/2):
// the pair (lo, lo + stride) and whether that sub-sequence sorts ascending.
static __host__ __device__ __forceinline__ int64_t ecc_bitonic_lo(int64_t i, int64_t stride)
{
    return 2 * i - (i & (stride - 1));
}

// Radix select, one 8-bit digit: with hist[d] the count of candidates whose
// current digit is d, the digit of the krem-th largest candidate, scanning
// from the top; *krem_out = its rank among the candidates with that digit.
static __host__ __device__ __forceinline__ int ecc_radix_digit(const int *hist, int krem, int *krem_out)
{
    int d = 255;
    while (d > 0 && hist[d] < krem) {
        krem -= hist[d];
        d--;
    }
    *krem_out = krem;
    return d;
}

static __host__ __device__ __forceinline__ int64_t ecc_pow2_at_least(int64_t n)
{
    int64_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static __host__ __device__ __forceinline__ int64_t ecc_round4(int64_t n) { return (n + 3) & ~(int64_t)3; }

// Attention backward: floats of padded working memory per (target, head)
// pair with m padded rows and head width hd: S and P (m x round4(m)) and dO,
// Q, K, V (m x round4(hd)).
static __host__ __device__ __forceinline__ int64_t ecc_attn_pair_floats(int64_t m, int64_t hd)
{
    return 2 * m * ecc_round4(m) + 4 * m * ecc_round4(hd);
}

enum { ECC_ATTN_MAX_PAIRS = 65535 }; // pairs per sub-batch (cuBLAS batch count, grid sizes)

// Attention backward, host side: the next sub-batch of (target, head) pairs
// from pair g0 (pairs run target-major: g = j * NH + h; n[j] rows of target
// j). All pairs of a sub-batch are padded to m = the largest n among them, so
// that each product is one strided-batched cuBLAS call. A sub-batch grows
// target by target while (a) count * ecc_attn_pair_floats(m, hd) fits in
// cap_floats and (b) the padding adds at most a quarter of the real work
// (sum of n^2), or 2^21 elements when that is more (below that, the fixed
// cost of a launch dominates). A target too large for the working memory is
// split by heads. Returns the pair count (>= 1 while g0 < J * NH) and *m_out.
static inline int64_t ecc_attn_plan(const int32_t *n, int J, int NH, int hd, int64_t cap_floats, int64_t g0,
                                    int *m_out)
{
    const int64_t total = (int64_t)J * NH;
    int64_t count = 0, actual = 0, g = g0;
    int m = 0;
    while (g < total && count < ECC_ATTN_MAX_PAIRS) {
        const int j = (int)(g / NH);
        const int64_t nj = n[j] > 0 ? n[j] : 0;
        int64_t take = (int64_t)(j + 1) * NH - g; // the remaining heads of target j
        const int m2 = m > (int)nj ? m : (int)nj;
        const int64_t per = ecc_attn_pair_floats(m2, hd);
        if (count + take > ECC_ATTN_MAX_PAIRS)
            take = ECC_ATTN_MAX_PAIRS - count;
        if (count == 0) {
            int64_t fit = per > 0 ? cap_floats / per : take;
            if (fit < 1)
                fit = 1; // the caller makes one pair fit
            if (take > fit) { // split this target by heads
                *m_out = m2;
                return fit;
            }
        } else {
            const int64_t c2 = count + take, act2 = actual + take * nj * nj;
            const int64_t waste = c2 * (int64_t)m2 * m2 - act2, allow = act2 / 4 > (1 << 21) ? act2 / 4 : (1 << 21);
            if (c2 * per > cap_floats || waste > allow)
                break;
        }
        count += take;
        actual += take * nj * nj;
        m = m2;
        g += take;
    }
    *m_out = m;
    return count;
}



#endif
