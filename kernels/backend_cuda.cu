// The CUDA backend: device queries, creation (stream, cuBLAS handle,
// pinned staging, every op family registered), teardown, NVTX ranges for the
// host's phases, and a host-only self-test of the index math the kernels share
// with the host (run by tests/gpu/test_gpu_index.c, with or without a GPU).
//
// Files: memory.cu (memory calls, error state, reserve), embed.cu,
// layernorm.cu, matmul.cu (cuBLAS), attention.cu, gelu.cu (elementwise),
// sampling.cu (pick), explain.cu, nmf.cu; common.cuh holds the context.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#ifndef ECC_CUDA_EMU
#include <nvtx3/nvToolsExt.h>
#endif

extern "C" int ecc_cuda_device_count(char *why, size_t why_len, int *absent);
extern "C" void ecc_cuda_describe(int i, char *buf, size_t len);
extern "C" int ecc_cuda_selftest_host(char *msg, size_t len);

// *absent = 1 when there is simply no GPU (no device, or no driver: an old
// driver answers cudaErrorInsufficientDriver too); 0 when one may be there but
// cannot be used (any other error: devices busy or unavailable, a failed
// initialisation). The host then also looks for /dev/nvidia* nodes.
extern "C" int ecc_cuda_device_count(char *why, size_t why_len, int *absent)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    *absent = 0;
    if (e != cudaSuccess) {
        snprintf(why, why_len, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        *absent = e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver;
        (void)cudaGetLastError();
        return 0;
    }
    if (n == 0) {
        snprintf(why, why_len, "no CUDA device found");
        *absent = 1;
    }
    return n;
}

extern "C" void ecc_cuda_describe(int i, char *buf, size_t len)
{
    cudaDeviceProp p;
    int driver = 0;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
        (void)cudaGetLastError();
        snprintf(buf, len, "device %d: cannot query properties", i);
        return;
    }
    cudaDriverGetVersion(&driver);
    snprintf(buf, len, "%d: %s, %.1f GiB, compute capability %d.%d, %d SMs, driver %d.%d", i, p.name,
             (double)p.totalGlobalMem / (1 << 30), p.major, p.minor, p.multiProcessorCount, driver / 1000,
             (driver % 1000) / 10);
}

// ---- NVTX: named ranges for the host's phases (generate, forward, backward, nmf, copy)

#ifdef ECC_CUDA_EMU
extern "C" void ecc_nvtx_push(const char *name) { (void)name; }
extern "C" void ecc_nvtx_pop(void) {}
#else
extern "C" void ecc_nvtx_push(const char *name) { nvtxRangePushA(name); }
extern "C" void ecc_nvtx_pop(void) { nvtxRangePop(); }
#endif

// ---- creation -------------------------------------------------------------------------

// A kernel to ask whether this binary has code for the GPU at hand.
__global__ void probe_kernel(int *p)
{
    if (p)
        *p = 0;
}

static void cu_destroy(ecc_backend *be)
{
    if (!be)
        return;
    cuda_ctx *ctx = ctx_of(be);
    if (ctx) {
        ecc_cuda_free_resources(ctx);
        free(ctx);
    }
    free(be);
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static ecc_status create_fail(ecc_backend *be, cuda_ctx *ctx)
{
    ecc_status s = ctx->err != ECC_OK ? ctx->err : ECC_ERR_DEVICE;
    char msg[sizeof ctx->err_msg];
    snprintf(msg, sizeof msg, "%s", ctx->err_msg[0] ? ctx->err_msg : "unknown failure");
    cu_destroy(be);
    return ecc_fail(s, "the CUDA backend could not start: %s", msg);
}

extern "C" ecc_status ecc_backend_cuda_create(ecc_backend **out, int threads, ecc_precision precision)
{
    *out = NULL;
    char why[256] = "";
    int absent;
    if (ecc_cuda_device_count(why, sizeof why, &absent) == 0)
        return ecc_fail(ECC_ERR_DEVICE, "no usable GPU (%s)", why);
    ecc_backend *be = (ecc_backend *)calloc(1, sizeof *be);
    cuda_ctx *ctx = (cuda_ctx *)calloc(1, sizeof *ctx);
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return ecc_fail(ECC_ERR_NOMEM, "out of memory: the CUDA backend");
    }
    be->ctx = ctx;
    be->name = "cuda";
    be->threads = threads > 0 ? threads : 1; // host threads: the ops run on the GPU
    be->destroy = cu_destroy;
    ctx->precision = precision;
    ctx->compute = precision == ECC_PRECISION_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                   : precision == ECC_PRECISION_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                     : CUBLAS_COMPUTE_32F;
    ctx->sync_check = env_flag("ECCOLO_CUDA_SYNC_CHECK");
    ctx->device = 0; // CUDA_VISIBLE_DEVICES chooses which GPU that is

    int dev = ctx->device;
    if (!CUDA_CHECK(ctx, cudaSetDevice(dev)) ||
        !CUDA_CHECK(ctx, cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, dev)) ||
        !CUDA_CHECK(ctx, cudaDeviceGetAttribute(&ctx->max_grid_x, cudaDevAttrMaxGridDimX, dev)) ||
        !CUDA_CHECK(ctx, cudaDeviceGetAttribute(&ctx->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev)) ||
        !CUDA_CHECK(ctx, cudaDeviceGetAttribute(&ctx->cc_major, cudaDevAttrComputeCapabilityMajor, dev)) ||
        !CUDA_CHECK(ctx, cudaDeviceGetAttribute(&ctx->cc_minor, cudaDevAttrComputeCapabilityMinor, dev)))
        return create_fail(be, ctx);
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, probe_kernel);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        cu_record(ctx, ECC_ERR_DEVICE, __FILE__, __LINE__,
                  "this build has no code for the GPU (compute capability %d.%d; built for sm %s): reconfigure with "
                  "-DCMAKE_CUDA_ARCHITECTURES=%d%d (%s)",
                  ctx->cc_major, ctx->cc_minor, ECCOLO_CUDA_ARCHS, ctx->cc_major, ctx->cc_minor,
                  cudaGetErrorString(e));
        return create_fail(be, ctx);
    }
    if (!CUDA_CHECK(ctx, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking)) ||
        !CUBLAS_CHECK(ctx, cublasCreate(&ctx->blas)) || !CUBLAS_CHECK(ctx, cublasSetStream(ctx->blas, ctx->stream)) ||
        !CUBLAS_CHECK(ctx, cublasSetMathMode(ctx->blas, env_flag("ECCOLO_CUBLAS_PEDANTIC") ? CUBLAS_PEDANTIC_MATH
                                                                                             : CUBLAS_DEFAULT_MATH)))
        return create_fail(be, ctx);
    // a fixed cuBLAS workspace (32 MiB, NVIDIA's advice for Hopper): no allocation inside a product
    ctx->blas_ws_bytes = (size_t)32 << 20;
    if (!CUDA_CHECK(ctx, cudaMalloc(&ctx->blas_ws, ctx->blas_ws_bytes)) ||
        !CUBLAS_CHECK(ctx, cublasSetWorkspace(ctx->blas, ctx->blas_ws, ctx->blas_ws_bytes)))
        return create_fail(be, ctx);
    // pinned staging; without it, copies go straight from pageable memory
    void *stage = NULL;
    if (cudaMallocHost(&stage, (size_t)ECC_CU_STAGE_SLOTS * ECC_CU_STAGE_SLOT + 2 * (size_t)ECC_CU_DL_HALF) ==
        cudaSuccess)
        ctx->stage = (unsigned char *)stage;
    else
        (void)cudaGetLastError();
    for (int i = 0; i < ECC_CU_STAGE_SLOTS; i++)
        if (!CUDA_CHECK(ctx, cudaEventCreateWithFlags(&ctx->stage_ev[i], cudaEventDisableTiming)))
            return create_fail(be, ctx);
    for (int i = 0; i < 2; i++)
        if (!CUDA_CHECK(ctx, cudaEventCreateWithFlags(&ctx->dl_ev[i], cudaEventDisableTiming)))
            return create_fail(be, ctx);
    if (!CUDA_CHECK(ctx, cudaMallocHost(&ctx->h_small, ECC_CU_SMALL_BYTES)) ||
        !CUDA_CHECK(ctx, cudaMalloc(&ctx->d_small, ECC_CU_SMALL_BYTES)))
        return create_fail(be, ctx);

    ecc_cuda_register_memory(be);
    ecc_cuda_register_embed(be);
    ecc_cuda_register_layernorm(be);
    ecc_cuda_register_matmul(be);
    ecc_cuda_register_attention(be);
    ecc_cuda_register_gelu(be);
    ecc_cuda_register_sampling(be);
    ecc_cuda_register_explain(be);
    ecc_cuda_register_nmf(be);
    ecc_cuda_register_analysis(be);
    if (!cu_ok(ctx))
        return create_fail(be, ctx);
    *out = be;
    return ECC_OK;
}

// ---- host self-test of the shared index math --------------------------------------------

static uint64_t st_rng = 0x243F6A8885A308D3ull;
static uint64_t st_next(void)
{
    st_rng ^= st_rng << 13;
    st_rng ^= st_rng >> 7;
    st_rng ^= st_rng << 17;
    return st_rng;
}

#define ST_FAIL(...)                          \
    do {                                      \
        snprintf(msg, len, __VA_ARGS__);      \
        return 0;                             \
    } while (0)

// the CPU's order: higher logit first, lower id on ties
static int st_before(float za, int32_t a, float zb, int32_t b) { return za > zb || (za == zb && a < b); }

// Host emulation of lens_topk_kernel's algorithm (radix select on
// ecc_float_key, collection in id order, bitonic sort of ecc_rank_key)
// against the CPU backend's insertion into a sorted list.
static int st_topk(const float *z, int V, int k, char *msg, size_t len)
{
    uint32_t prefix = 0, mask = 0;
    int krem = k;
    for (int pass = 0; pass < 4; pass++) {
        int shift = 24 - 8 * pass, hist[256] = {0};
        for (int v = 0; v < V; v++) {
            uint32_t u = ecc_float_key(z[v]);
            if ((u & mask) == prefix)
                hist[(u >> shift) & 255u]++;
        }
        int kr;
        int d = ecc_radix_digit(hist, krem, &kr);
        prefix |= (uint32_t)d << shift;
        mask |= 255u << shift;
        krem = kr;
    }
    int64_t P = ecc_pow2_at_least(k);
    unsigned long long *cand = (unsigned long long *)malloc(sizeof *cand * (size_t)P);
    int32_t *ref = (int32_t *)malloc(sizeof *ref * (size_t)k);
    int ng = k - krem, offG = 0, offE = 0;
    for (int v = 0; v < V; v++) {
        uint32_t u = ecc_float_key(z[v]);
        if (u > prefix)
            cand[offG++] = ecc_rank_key(u, v);
        else if (u == prefix && offE < krem)
            cand[ng + offE++] = ecc_rank_key(u, v);
    }
    int ok = offG == ng && offE == krem;
    for (int64_t i = k; i < P; i++)
        cand[i] = ~0ull;
    for (int64_t size = 2; size <= P; size <<= 1)
        for (int64_t stride = size >> 1; stride > 0; stride >>= 1)
            for (int64_t i = 0; i < P / 2; i++) {
                int64_t lo = ecc_bitonic_lo(i, stride), hi = lo + stride;
                bool up = (lo & size) == 0;
                if ((cand[lo] > cand[hi]) == up) {
                    unsigned long long t = cand[lo];
                    cand[lo] = cand[hi];
                    cand[hi] = t;
                }
            }
    int m = 0; // the CPU backend's algorithm
    for (int v = 0; v < V; v++) {
        if (m == k && !st_before(z[v], v, z[ref[k - 1]], ref[k - 1]))
            continue;
        int p = m < k ? m++ : k - 1;
        while (p > 0 && st_before(z[v], v, z[ref[p - 1]], ref[p - 1])) {
            ref[p] = ref[p - 1];
            p--;
        }
        ref[p] = v;
    }
    for (int q = 0; ok && q < k; q++)
        ok = (int32_t)(cand[q] & 0xffffffffull) == ref[q];
    free(cand);
    free(ref);
    if (!ok)
        ST_FAIL("top-%d of %d: the emulated device selection differs from the CPU's", k, V);
    return 1;
}

extern "C" int ecc_cuda_selftest_host(char *msg, size_t len)
{
    // ecc_float_key orders like the floats, and the two zeros tie
    const float f[] = {-INFINITY, -3.0e38f, -2.0f, -1.0f, -1e-30f, -1e-45f, 0.0f, 1e-45f, 1e-30f, 1.0f, 2.0f,
                       3.0e38f, INFINITY};
    for (size_t i = 0; i + 1 < sizeof f / sizeof f[0]; i++)
        if (!(ecc_float_key(f[i]) < ecc_float_key(f[i + 1])))
            ST_FAIL("ecc_float_key(%g) >= ecc_float_key(%g)", (double)f[i], (double)f[i + 1]);
    if (ecc_float_key(-0.0f) != ecc_float_key(0.0f))
        ST_FAIL("ecc_float_key(-0) != ecc_float_key(+0)");
    if (!(ecc_rank_key(ecc_float_key(2.0f), 7) < ecc_rank_key(ecc_float_key(1.0f), 3)) ||
        !(ecc_rank_key(ecc_float_key(1.0f), 3) < ecc_rank_key(ecc_float_key(1.0f), 4)))
        ST_FAIL("ecc_rank_key does not order by logit descending, then id ascending");
    // the bitonic pairs cover each index exactly once per step
    for (int64_t P = 2; P <= 1024; P <<= 1)
        for (int64_t stride = P >> 1; stride > 0; stride >>= 1) {
            char *seen = (char *)calloc((size_t)P, 1);
            for (int64_t i = 0; i < P / 2; i++) {
                int64_t lo = ecc_bitonic_lo(i, stride), hi = lo + stride;
                if (lo < 0 || hi >= P || (lo & stride) || seen[lo]++ || seen[hi]++) {
                    free(seen);
                    ST_FAIL("bitonic pair %lld of P = %lld, stride %lld is wrong", (long long)i, (long long)P,
                            (long long)stride);
                }
            }
            free(seen);
        }
    if (ecc_pow2_at_least(1) != 1 || ecc_pow2_at_least(5) != 8 || ecc_pow2_at_least(4096) != 4096 ||
        ecc_pow2_at_least(50257) != 65536)
        ST_FAIL("ecc_pow2_at_least");
    // top-k selection on rows with many ties, negative values and both zeros
    enum { V = 3001 };
    float *z = (float *)malloc(sizeof(float) * V);
    const int ks[] = {1, 2, 10, 100, 1000, 2999, 3001};
    for (int trial = 0; trial < 6; trial++) {
        for (int v = 0; v < V; v++) {
            uint64_t r = st_next();
            switch (trial % 3) {
            case 0: z[v] = (float)((double)(r >> 11) / 9007199254740992.0 * 20 - 10); break;
            case 1: z[v] = (float)((int)(r % 7) - 3); break;            // heavy ties
            default: z[v] = (r & 1) ? -0.0f : (r & 2) ? 0.0f : -1.0f; // zeros of both signs
            }
        }
        for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
            if (!st_topk(z, V, ks[i], msg, len)) {
                free(z);
                return 0;
            }
    }
    free(z);
    // the attention-backward plan: every pair exactly once, in order, within
    // the working memory, padded to at least each target's rows
    for (int trial = 0; trial < 400; trial++) {
        int J = 1 + (int)(st_next() % 300), NH = 1 + (int)(st_next() % 16), hd = 1 + (int)(st_next() % 128);
        int32_t *n = (int32_t *)malloc(sizeof(int32_t) * (size_t)J);
        int nmax = 0;
        for (int j = 0; j < J; j++) {
            n[j] = trial % 4 == 0 ? (int)(st_next() % 1100) : 5 + j + (int)(st_next() % 3); // random or rising
            nmax = n[j] > nmax ? n[j] : nmax;
        }
        int64_t cap = ecc_attn_pair_floats(nmax, hd) * (int64_t)(1 + st_next() % 64);
        int64_t g = 0, total = (int64_t)J * NH;
        while (g < total) {
            int m = -1;
            int64_t np = ecc_attn_plan(n, J, NH, hd, cap, g, &m);
            if (np < 1 || g + np > total || np > ECC_ATTN_MAX_PAIRS) {
                free(n);
                ST_FAIL("attention plan: %lld pairs from pair %lld of %lld", (long long)np, (long long)g,
                        (long long)total);
            }
            if (np * ecc_attn_pair_floats(m, hd) > cap) {
                free(n);
                ST_FAIL("attention plan: %lld pairs of %d rows exceed %lld floats", (long long)np, m, (long long)cap);
            }
            for (int64_t p = g; p < g + np; p++)
                if (n[p / NH] > m) {
                    const int rows = n[p / NH];
                    free(n);
                    ST_FAIL("attention plan: target %lld has %d rows, padded to %d", (long long)(p / NH), rows, m);
                }
            g += np;
        }
        free(n);
    }
    snprintf(msg, len, "ok");
    return 1;
}
