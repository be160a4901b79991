// The CUDA backend's memory calls and its error state: alloc (cudaMalloc,
// zeroed on the stream), free, mirror (weights uploaded once), upload /
// download through pinned staging, zero, synchronize, available, status, and
// reserve (the attention-backward working memory).
//
// Ordering: everything runs on the context's one stream, so an upload is
// ordered after the kernels queued before it and before those queued after.
// An upload returns once the host buffer has been copied (to a pinned slot,
// or to the device), so the caller may reuse its buffer at once; a download
// returns once the data is on the host.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

// ---- the error state ------------------------------------------------------------

static const char *base_name(const char *file)
{
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

void cu_record(cuda_ctx *ctx, ecc_status code, const char *file, int line, const char *fmt, ...)
{
    if (ctx->err != ECC_OK)
        return; // the first failure is the one that explains the rest
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(ctx->err_msg, sizeof ctx->err_msg, "CUDA backend: %s:%d: %s", base_name(file), line, msg);
    ctx->err = code;
    ecc_fail(code, "%s", ctx->err_msg);
}

bool cu_check_cuda(cuda_ctx *ctx, cudaError_t e, const char *what, const char *file, int line)
{
    if (e == cudaSuccess)
        return true;
    (void)cudaGetLastError(); // clear a non-sticky error so that later queries are meaningful
    cu_record(ctx, e == cudaErrorMemoryAllocation ? ECC_ERR_NOMEM : ECC_ERR_DEVICE, file, line, "%s: %s (%s)", what,
              cudaGetErrorName(e), cudaGetErrorString(e));
    return false;
}

bool cu_check_cublas(cuda_ctx *ctx, cublasStatus_t s, const char *what, const char *file, int line)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return true;
    cu_record(ctx, s == CUBLAS_STATUS_ALLOC_FAILED ? ECC_ERR_NOMEM : ECC_ERR_DEVICE, file, line, "%s: %s (%s)", what,
              cublasGetStatusName(s), cublasGetStatusString(s));
    return false;
}

bool cu_after_launch(cuda_ctx *ctx, const char *kernel, const char *file, int line)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        cu_record(ctx, ECC_ERR_DEVICE, file, line, "launching %s: %s (%s)", kernel, cudaGetErrorName(e),
                  cudaGetErrorString(e));
        return false;
    }
    if (ctx->sync_check) {
        e = cudaStreamSynchronize(ctx->stream);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            cu_record(ctx, ECC_ERR_DEVICE, file, line, "%s failed while running: %s (%s)", kernel,
                      cudaGetErrorName(e), cudaGetErrorString(e));
            return false;
        }
    }
    return true;
}

static ecc_status cu_status(ecc_backend *be)
{
    cuda_ctx *ctx = ctx_of(be);
    if (cu_ok(ctx))
        return ECC_OK;
    return ecc_fail(ctx->err, "%s", ctx->err_msg);
}

// ---- growing buffers -------------------------------------------------------------

bool cu_device_reserve(cuda_ctx *ctx, void **p, size_t *cap_bytes, size_t need_bytes, const char *what)
{
    if (*p && *cap_bytes >= need_bytes)
        return true;
    if (*p) {
        if (!CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)))
            return false;
        CUDA_CHECK(ctx, cudaFree(*p));
        *p = NULL;
        *cap_bytes = 0;
    }
    size_t n = need_bytes < 256 ? 256 : need_bytes;
    cudaError_t e = cudaMalloc(p, n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        cu_record(ctx, ECC_ERR_NOMEM, __FILE__, __LINE__,
                  "out of GPU memory: %s needs %.1f MiB, %.1f MiB free of %.1f MiB", what, (double)n / (1 << 20),
                  (double)fr / (1 << 20), (double)tot / (1 << 20));
        *p = NULL;
        return false;
    }
    *cap_bytes = n;
    return true;
}

// ---- alloc / free / mirror --------------------------------------------------------

static void *raw_alloc(cuda_ctx *ctx, size_t bytes, const char *what, int zero)
{
    if (!cu_ok(ctx)) {
        ecc_fail(ctx->err, "%s: cannot allocate after an earlier failure: %s", what, ctx->err_msg);
        return NULL;
    }
    void *p = NULL;
    size_t n = bytes ? bytes : 256;
    cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); // not sticky: the backend stays usable, the caller reports NOMEM
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        ecc_fail(ECC_ERR_NOMEM,
                 "out of GPU memory: %s needs %.1f MiB, %.1f MiB free of %.1f MiB (lower --mem-budget, use fewer "
                 "tokens, or --device cpu)",
                 what, (double)n / (1 << 20), (double)fr / (1 << 20), (double)tot / (1 << 20));
        return NULL;
    }
    if (!CUDA_CHECK(ctx, e))
        return NULL;
    if (zero && !CUDA_CHECK(ctx, cudaMemsetAsync(p, 0, n, ctx->stream))) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void *cu_alloc(ecc_backend *be, size_t bytes, const char *what) { return raw_alloc(ctx_of(be), bytes, what, 1); }

static void cu_free(ecc_backend *be, void *p)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!p)
        return;
    if (cu_ok(ctx))
        CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream)); // queued kernels may still use p
    cudaError_t e = cudaFree(p);
    if (cu_ok(ctx))
        CUDA_CHECK(ctx, e);
    else
        (void)cudaGetLastError();
}

static void cu_upload(ecc_backend *be, void *dst, const void *src, size_t bytes);

static void *cu_mirror(ecc_backend *be, const void *host, size_t bytes, const char *what)
{
    cuda_ctx *ctx = ctx_of(be);
    void *p = raw_alloc(ctx, bytes, what, 0);
    if (!p)
        return NULL;
    cu_upload(be, p, host, bytes);
    if (!cu_ok(ctx) || !CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream))) {
        cudaFree(p);
        ecc_fail(ctx->err, "%s: %s", what, ctx->err_msg);
        return NULL;
    }
    return p;
}

static void cu_unmirror(ecc_backend *be, void *p) { cu_free(be, p); }

// ---- copies ------------------------------------------------------------------------

static void cu_upload(ecc_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || bytes == 0)
        return;
    if (ctx->stage && bytes <= ECC_CU_STAGE_SLOT) {
        // a pinned slot of the ring: the copy is queued and the call returns
        // without waiting for the kernels before it (tables uploaded per chunk)
        int s = ctx->stage_next;
        ctx->stage_next = (s + 1) % ECC_CU_STAGE_SLOTS;
        if (ctx->stage_used[s] && !CUDA_CHECK(ctx, cudaEventSynchronize(ctx->stage_ev[s])))
            return;
        unsigned char *buf = ctx->stage + (size_t)s * ECC_CU_STAGE_SLOT;
        memcpy(buf, src, bytes);
        if (!CUDA_CHECK(ctx, cudaMemcpyAsync(dst, buf, bytes, cudaMemcpyHostToDevice, ctx->stream)) ||
            !CUDA_CHECK(ctx, cudaEventRecord(ctx->stage_ev[s], ctx->stream)))
            return;
        ctx->stage_used[s] = 1;
        if (ctx->sync_check)
            CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
        return;
    }
    // large (weights, whole sequences): the driver stages pageable memory itself
    if (CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream)))
        CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
}

static void cu_download(ecc_backend *be, void *dst, const void *src, size_t bytes)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || bytes == 0)
        return;
    if (!ctx->stage || bytes <= (64u << 10)) {
        if (CUDA_CHECK(ctx, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream)))
            CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
        return;
    }
    // Large: through two pinned halves, the device-to-host copy of chunk c+1
    // overlapping the host copy of chunk c.
    unsigned char *half[2] = {ctx->stage + (size_t)ECC_CU_STAGE_SLOTS * ECC_CU_STAGE_SLOT,
                              ctx->stage + (size_t)ECC_CU_STAGE_SLOTS * ECC_CU_STAGE_SLOT + ECC_CU_DL_HALF};
    const unsigned char *s = (const unsigned char *)src;
    unsigned char *d = (unsigned char *)dst;
    const size_t H = ECC_CU_DL_HALF, nchunks = (bytes + H - 1) / H;
    for (size_t c = 0; c <= nchunks; c++) {
        if (c < nchunks) { // queue chunk c into half c & 1 (consumed by the host at step c - 1)
            size_t len = bytes - c * H < H ? bytes - c * H : H;
            if (!CUDA_CHECK(ctx, cudaMemcpyAsync(half[c & 1], s + c * H, len, cudaMemcpyDeviceToHost, ctx->stream)) ||
                !CUDA_CHECK(ctx, cudaEventRecord(ctx->dl_ev[c & 1], ctx->stream)))
                return;
        }
        if (c > 0) { // take chunk c - 1
            size_t p = c - 1, len = bytes - p * H < H ? bytes - p * H : H;
            if (!CUDA_CHECK(ctx, cudaEventSynchronize(ctx->dl_ev[p & 1])))
                return;
            memcpy(d + p * H, half[p & 1], len);
        }
    }
}

// rows x width bytes from src (row pitch src_pitch) to host_dst (row pitch
// dst_pitch): one 2-D copy, complete on return
static void cu_download2d(ecc_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                          size_t width, size_t rows)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || width == 0 || rows == 0)
        return;
    if (CUDA_CHECK(ctx, cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows, cudaMemcpyDeviceToHost,
                                          ctx->stream)))
        CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
}

static void cu_zero(ecc_backend *be, void *p, size_t bytes)
{
    cuda_ctx *ctx = ctx_of(be);
    if (!cu_ok(ctx) || bytes == 0)
        return;
    CUDA_CHECK(ctx, cudaMemsetAsync(p, 0, bytes, ctx->stream));
}

static size_t cu_available(ecc_backend *be)
{
    cuda_ctx *ctx = ctx_of(be);
    size_t fr = 0, tot = 0;
    if (!cu_ok(ctx) || !CUDA_CHECK(ctx, cudaMemGetInfo(&fr, &tot)))
        return 0;
    return fr;
}

static void cu_synchronize(ecc_backend *be)
{
    cuda_ctx *ctx = ctx_of(be);
    if (cu_ok(ctx))
        CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
}

// ---- reserve: the attention-backward tiles ------------------------------------------
//
// attention_backward works on sub-batches of (target, head) pairs laid out in
// padded tiles (see attention.cu): per pair 2 m x m + 4 m x hd floats for
// m <= T_max rows. Reserve up to 256 MiB (never more than a quarter of what
// is free, never less than one pair of width 256), which holds e.g. 28 pairs
// of T = 1024 or 1024 pairs of T = 128 (hd = 64): enough to keep the GPU busy.
static ecc_status cu_reserve(ecc_backend *be, int T_max, size_t *bytes)
{
    cuda_ctx *ctx = ctx_of(be);
    *bytes = 0;
    if (!cu_ok(ctx))
        return ecc_fail(ctx->err, "%s", ctx->err_msg);
    int64_t T = T_max > 1 ? T_max : 1;
    size_t fr = 0, tot = 0;
    if (!CUDA_CHECK(ctx, cudaMemGetInfo(&fr, &tot)))
        return ecc_fail(ctx->err, "%s", ctx->err_msg);
    size_t min_floats = (size_t)ecc_attn_pair_floats(T, 256);
    size_t want = (size_t)4096 * (size_t)ecc_attn_pair_floats(T, 64);
    size_t cap = ((size_t)256 << 20) / sizeof(float);
    if (cap > fr / 4 / sizeof(float))
        cap = fr / 4 / sizeof(float);
    if (want > cap)
        want = cap;
    if (want < min_floats)
        want = min_floats;
    if (ctx->tiles_floats < want) {
        if (ctx->tiles) {
            CUDA_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
            cudaFree(ctx->tiles);
            ctx->tiles = NULL;
            ctx->tiles_floats = 0;
        }
        void *p = NULL;
        cudaError_t e = cudaMalloc(&p, want * sizeof(float));
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            cudaMemGetInfo(&fr, &tot);
            return ecc_fail(ECC_ERR_NOMEM,
                            "out of GPU memory: the attention-gradient tiles for %d tokens need %.1f MiB, %.1f MiB "
                            "free of %.1f MiB",
                            T_max, (double)want * 4 / (1 << 20), (double)fr / (1 << 20), (double)tot / (1 << 20));
        }
        ctx->tiles = (float *)p;
        ctx->tiles_floats = want;
    }
    *bytes = ctx->tiles_floats * sizeof(float);
    return ECC_OK;
}

// ---- teardown ----------------------------------------------------------------------

void ecc_cuda_free_resources(cuda_ctx *ctx)
{
    if (ctx->stream)
        (void)cudaStreamSynchronize(ctx->stream);
    ecc_cuda_free_analysis(ctx);
    void *dev[] = {ctx->tiles, ctx->sort_keys, ctx->sort_keys2, ctx->sort_vals, ctx->sort_vals2, ctx->sort_tmp,
                   ctx->lens_scratch, ctx->d_small, ctx->blas_ws};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i])
            (void)cudaFree(dev[i]);
    if (ctx->stage)
        (void)cudaFreeHost(ctx->stage);
    if (ctx->h_small)
        (void)cudaFreeHost(ctx->h_small);
    for (int i = 0; i < ECC_CU_STAGE_SLOTS; i++)
        if (ctx->stage_ev[i])
            (void)cudaEventDestroy(ctx->stage_ev[i]);
    for (int i = 0; i < 2; i++)
        if (ctx->dl_ev[i])
            (void)cudaEventDestroy(ctx->dl_ev[i]);
    if (ctx->blas)
        (void)cublasDestroy(ctx->blas);
    if (ctx->stream)
        (void)cudaStreamDestroy(ctx->stream);
    (void)cudaGetLastError();
}

void ecc_cuda_register_memory(ecc_backend *be)
{
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->mirror = cu_mirror;
    be->unmirror = cu_unmirror;
    be->upload = cu_upload;
    be->download = cu_download;
    be->download2d = cu_download2d;
    be->zero = cu_zero;
    be->available = cu_available;
    be->synchronize = cu_synchronize;
    be->reserve = cu_reserve;
    be->status = cu_status;
}
