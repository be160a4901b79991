/* The CPU backend: the readable reference for every op. OpenBLAS for matrix
 * products (sgemv for one row: on this class of machine 3x faster than sgemm
 * with M = 1), OpenMP for the rest. Reductions run in a fixed order, so the
 * same input gives the same bits whatever the thread count. */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "engine/sampling.h"
#include "util.h"

typedef struct cpu_ctx {
    float *scratch; /* (threads, T_max, T_max) */
    size_t scratch_floats;
} cpu_ctx;

/* ---- memory --------------------------------------------------------------- */

static void *cpu_alloc(ecc_backend *be, size_t bytes, const char *what)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        ecc_fail(ECC_ERR_NOMEM, "out of memory: %s needs %.1f MiB of host memory", what,
                 (double)bytes / (1 << 20));
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

static void cpu_free(ecc_backend *be, void *p) { free(p); }
static void *cpu_mirror(ecc_backend *be, const void *host, size_t bytes, const char *what) { return (void *)host; }
static void cpu_unmirror(ecc_backend *be, void *p) {}
static void cpu_copy(ecc_backend *be, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(ecc_backend *be, void *p, size_t bytes) { memset(p, 0, bytes); }

static void cpu_copy2d(ecc_backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch, size_t width,
                       size_t rows)
{
    for (size_t r = 0; r < rows; r++)
        memcpy((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, width);
}

/* MemAvailable from /proc/meminfo (or SIZE_MAX when it cannot be read) */
static size_t cpu_available(ecc_backend *be) { return ecc_mem_available(); }
static void cpu_synchronize(ecc_backend *be) {}
static ecc_status cpu_status(ecc_backend *be) { return ECC_OK; }

static void cpu_destroy(ecc_backend *be)
{
    cpu_ctx *ctx = be->ctx;
    free(ctx->scratch);
    free(ctx);
    free(be);
}

static ecc_status cpu_reserve(ecc_backend *be, int T_max, size_t *bytes)
{
    cpu_ctx *ctx = be->ctx;
    size_t need = (size_t)be->threads * (size_t)T_max * (size_t)T_max;
    if (need > ctx->scratch_floats) {
        free(ctx->scratch);
        ctx->scratch_floats = 0;
        ctx->scratch = ecc_malloc(need * sizeof(float), "attention-gradient tiles");
        if (!ctx->scratch)
            return ECC_ERR_NOMEM;
        ctx->scratch_floats = need;
    }
    *bytes = ctx->scratch_floats * sizeof(float);
    return ECC_OK;
}

float *ecc_cpu_scratch(ecc_backend *be) { return ((cpu_ctx *)be->ctx)->scratch; }

/* ---- forward ops ---------------------------------------------------------- */

static void cpu_embed(ecc_backend *be, float *out, const int32_t *ids, const int32_t *pos, int pos0,
                      const float *wte, const float *wpe, float tok_scale, int n, int C)
{
#pragma omp parallel for
    for (int t = 0; t < n; t++) {
        const float *e = wte + (int64_t)ids[t] * C, *p = wpe + (int64_t)(pos ? pos[t] : pos0 + t) * C;
        float *o = out + (int64_t)t * C;
        for (int i = 0; i < C; i++)
            o[i] = tok_scale * e[i] + p[i];
    }
}

static void cpu_layernorm(ecc_backend *be, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int T, int C, float eps)
{
#pragma omp parallel for
    for (int t = 0; t < T; t++) {
        const float *x = inp + (int64_t)t * C;
        double s = 0, v = 0;
        for (int i = 0; i < C; i++)
            s += x[i];
        float m = (float)(s / C);
        for (int i = 0; i < C; i++) {
            double d = (double)x[i] - m;
            v += d * d;
        }
        float r = (float)(1.0 / sqrt(v / C + (double)eps));
        float *o = out + (int64_t)t * C;
        for (int i = 0; i < C; i++)
            o[i] = (x[i] - m) * r * w[i] + b[i];
        if (mean)
            mean[t] = m;
        if (rstd)
            rstd[t] = r;
    }
}

static void cpu_matmul(ecc_backend *be, float *out, const float *inp, const float *w, const float *bias, int T,
                       int C, int OC)
{
    for (int t = 0; t < T; t++) {
        if (bias)
            memcpy(out + (int64_t)t * OC, bias, sizeof(float) * (size_t)OC);
        else
            memset(out + (int64_t)t * OC, 0, sizeof(float) * (size_t)OC);
    }
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, C, OC, 1.0f, w, OC, inp, 1, 1.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, OC, C, 1.0f, inp, C, w, OC, 1.0f, out, OC);
}

static void cpu_matmul_wt(ecc_backend *be, float *out, const float *inp, const float *wt, int T, int C, int OC)
{
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, wt, C, inp, 1, 0.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C, wt, C, 0.0f, out, OC);
}

/* Softmax of one row of scores in place: keys [0, n) are visible, [n, len)
 * are masked to probability 0. The sum runs left to right. */
static void softmax_row(float *s, int n, int len)
{
    float mx = -INFINITY, sum = 0;
    for (int j = 0; j < n; j++)
        mx = s[j] > mx ? s[j] : mx;
    for (int j = 0; j < n; j++) {
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++)
        s[j] *= inv;
    for (int j = n; j < len; j++)
        s[j] = 0.0f;
}

enum { ATT_BQ = 64 }; /* query rows per block in the matrix-product attention */

/* Attention of T >= 2 new rows as matrix products, block by block of ATT_BQ
 * query rows per head: S = scale Q K^T (m, n), causal softmax, O = P V. The
 * probabilities go straight into `att` when it is given, otherwise into a
 * per-thread tile (threads, ATT_BQ, Tk). Each block's products run on one
 * thread (OpenBLAS is serial inside an OpenMP region), so the bits do not
 * depend on the thread count. Returns 0 when the tile could not be allocated. */
static int attention_blocked(float *out, float *att, int64_t att_head_stride, int att_row_stride, const float *qkv,
                             const float *kcache, const float *vcache, int pos0, int T, int C, int NH, float scale)
{
    const int hd = C / NH, Tk = pos0 + T, nb = (T + ATT_BQ - 1) / ATT_BQ;
    float *tiles = NULL;
    if (!att && !(tiles = malloc(sizeof(float) * (size_t)omp_get_max_threads() * ATT_BQ * (size_t)Tk)))
        return 0;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int h = 0; h < NH; h++) {
        for (int b = 0; b < nb; b++) {
            int t0 = b * ATT_BQ, m = ECC_MIN(ATT_BQ, T - t0), n = pos0 + t0 + m; /* keys 0 .. n - 1 */
            float *S = att ? att + h * att_head_stride + (int64_t)t0 * att_row_stride
                           : tiles + (int64_t)omp_get_thread_num() * ATT_BQ * Tk;
            int lds = att ? att_row_stride : n, len = att ? Tk : n;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, scale, qkv + (int64_t)t0 * 3 * C + h * hd,
                        3 * C, kcache + h * hd, C, 0.0f, S, lds);
            for (int i = 0; i < m; i++)
                softmax_row(S + (int64_t)i * lds, pos0 + t0 + i + 1, len);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n, 1.0f, S, lds, vcache + h * hd, C, 0.0f,
                        out + (int64_t)t0 * C + h * hd, C);
        }
    }
    free(tiles);
    return 1;
}

/* out (T, C) = causal attention of the T new rows of qkv (T, 3C) against the
 * cache, after appending their keys and values at pos0; att, when given,
 * receives the probabilities (NH, T, Tk) at the given strides. */
static void cpu_attention(ecc_backend *be, float *out, float *att, int64_t att_head_stride, int att_row_stride,
                          const float *qkv, float *kcache, float *vcache, int pos0, int T, int C, int NH, float scale)
{
    int hd = C / NH, Tk = pos0 + T;
    for (int t = 0; t < T; t++) {
        memcpy(kcache + (int64_t)(pos0 + t) * C, qkv + (int64_t)t * 3 * C + C, sizeof(float) * (size_t)C);
        memcpy(vcache + (int64_t)(pos0 + t) * C, qkv + (int64_t)t * 3 * C + 2 * C, sizeof(float) * (size_t)C);
    }
    if (T >= 2 && attention_blocked(out, att, att_head_stride, att_row_stride, qkv, kcache, vcache, pos0, T, C, NH,
                                    scale))
        return;
    /* One row at a time (decoding, or no memory for the tile): one pass with a
     * running maximum (online softmax), so no row buffer is needed; a second
     * pass writes the probabilities when they are captured. */
#pragma omp parallel for collapse(2) schedule(dynamic, 4)
    for (int h = 0; h < NH; h++) {
        for (int t = 0; t < T; t++) {
            const float *q = qkv + (int64_t)t * 3 * C + h * hd;
            float *o = out + (int64_t)t * C + h * hd;
            int n = pos0 + t + 1; /* keys 0 .. pos0 + t */
            float mx = -INFINITY, sum = 0;
            memset(o, 0, sizeof(float) * (size_t)hd);
            for (int j = 0; j < n; j++) {
                const float *k = kcache + (int64_t)j * C + h * hd, *v = vcache + (int64_t)j * C + h * hd;
                float s = 0;
                for (int i = 0; i < hd; i++)
                    s += q[i] * k[i];
                s *= scale;
                if (s > mx) { /* rescale what was accumulated against the old maximum */
                    float r = expf(mx - s);
                    sum *= r;
                    for (int i = 0; i < hd; i++)
                        o[i] *= r;
                    mx = s;
                }
                float e = expf(s - mx);
                sum += e;
                for (int i = 0; i < hd; i++)
                    o[i] += e * v[i];
            }
            float inv = 1.0f / sum;
            for (int i = 0; i < hd; i++)
                o[i] *= inv;
            if (att) {
                float *a = att + h * att_head_stride + (int64_t)t * att_row_stride;
                for (int j = 0; j < n; j++) {
                    const float *k = kcache + (int64_t)j * C + h * hd;
                    float s = 0;
                    for (int i = 0; i < hd; i++)
                        s += q[i] * k[i];
                    a[j] = expf(s * scale - mx) * inv;
                }
                memset(a + n, 0, sizeof(float) * (size_t)(Tk - n));
            }
        }
    }
}

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

/* tanh(u) = sign(u) (1 - e) / (1 + e) with e = exp(-2|u|); exp by Cody-Waite
 * reduction, -2|u| = k ln 2 + r with |r| <= ln 2 / 2, and the degree-7 Taylor
 * polynomial of e^r, scaled by 2^k through the exponent bits. Within 1e-7 of
 * tanh in 1 + tanh(u), which is what GELU uses (libm's tanhf: the same to
 * 3e-8 over the test's range), and written without branches or calls, so
 * that the loops below vectorise. */
static inline float gelu_tanh(float u)
{
    float x = -2.0f * fabsf(u);
    x = x > -87.0f ? x : -87.0f; /* e^-87 is still a normal float */
    const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln 2) */
    const float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
                    r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
    const int32_t bits = ((int32_t)k + 127) * (1 << 23);
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    const float e = p * scale, t = (1.0f - e) / (1.0f + e);
    return copysignf(t, u);
}

ECC_SIMD_CLONES static void gelu_span(float *out, float *dgelu, const float *inp, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float x = inp[i], th = gelu_tanh(GELU_SCALE * (x + 0.044715f * x * x * x));
        out[i] = 0.5f * x * (1.0f + th);
        if (dgelu) /* d/dx of the above */
            dgelu[i] = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    }
}

static void cpu_gelu(ecc_backend *be, float *out, float *dgelu, const float *inp, int64_t n)
{
    enum { SPAN = 4096 };
#pragma omp parallel for schedule(static)
    for (int64_t i0 = 0; i0 < n; i0 += SPAN)
        gelu_span(out + i0, dgelu ? dgelu + i0 : NULL, inp + i0, ECC_MIN(SPAN, n - i0));
}

static void cpu_add(ecc_backend *be, float *out, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void cpu_pick(ecc_backend *be, int32_t *token, float *logprob, const float *logits, int V, int32_t forced,
                     const ecc_pick_params *p, uint64_t step)
{
    ecc_pick(token, logprob, logits, V, forced, p, step);
}

ecc_status ecc_backend_cpu_create(ecc_backend **out, int threads)
{
    ecc_backend *be = ecc_calloc(1, sizeof *be, "the CPU backend");
    cpu_ctx *ctx = ecc_calloc(1, sizeof *ctx, "the CPU backend");
    if (!be || !ctx) {
        free(be);
        free(ctx);
        return ECC_ERR_NOMEM;
    }
    be->ctx = ctx;
    if (threads > 0) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    be->threads = omp_get_max_threads();
    be->name = "cpu";
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->mirror = cpu_mirror;
    be->unmirror = cpu_unmirror;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->download2d = cpu_copy2d;
    be->zero = cpu_zero;
    be->available = cpu_available;
    be->synchronize = cpu_synchronize;
    be->status = cpu_status;
    be->destroy = cpu_destroy;
    be->reserve = cpu_reserve;
    be->embed = cpu_embed;
    be->layernorm = cpu_layernorm;
    be->matmul = cpu_matmul;
    be->matmul_wt = cpu_matmul_wt;
    be->attention = cpu_attention;
    be->gelu = cpu_gelu;
    be->add = cpu_add;
    be->pick = cpu_pick;
    ecc_cpu_register_explain(be);
    ecc_cpu_register_nmf(be);
    ecc_cpu_register_analysis(be);
    *out = be;
    return ECC_OK;
}
