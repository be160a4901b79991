/* Helpers for the GPU tests: the backends, device buffers with guard bytes
 * and poisoned contents, random fills that are never zero, and norm-wise
 * comparisons that reject NaN/Inf. */
#ifndef ECC_GPU_TESTUTIL_H
#define ECC_GPU_TESTUTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "util.h"

/* The CUDA backend, or a visible skip when there is no usable GPU. A GPU
 * that is there but cannot be used (wrong architecture, driver error) is a
 * failure, not a skip. */
static inline ecc_backend *gpu_backend(ecc_precision prec)
{
    char why[256] = "";
    if (ecc_gpu_count(why, sizeof why) == 0)
        cr_skip_test("no usable GPU: %s", why);
#ifdef ECCOLO_HAVE_CUDA
    ecc_backend *be = NULL;
    ecc_status s = ecc_backend_cuda_create(&be, 0, prec);
    cr_assert_eq(s, ECC_OK, "a GPU is visible but the CUDA backend did not start: %s", ecc_last_error());
    return be;
#else
    (void)prec;
    cr_skip_test("no usable GPU: built without CUDA");
    return NULL;
#endif
}

static inline ecc_backend *cpu_backend(void)
{
    ecc_backend *be = NULL;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK, "%s", ecc_last_error());
    return be;
}

/* ---- random inputs (never zero) ---- */

static uint64_t gt_rng = 0x9E3779B97F4A7C15ull;
static inline double gt_urand(void) /* uniform in [-1, 1) */
{
    gt_rng ^= gt_rng << 13;
    gt_rng ^= gt_rng >> 7;
    gt_rng ^= gt_rng << 17;
    return (double)(gt_rng >> 11) / 4503599627370496.0 - 1.0;
}
static inline void gt_fill(float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++) {
        float v = (float)(scale * gt_urand());
        x[i] = v != 0.0f ? v : (float)(0.5 * scale);
    }
}
static inline float *gt_rand(size_t n, double scale)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    gt_fill(x, n, scale);
    return x;
}
static inline void *gt_dup(const void *p, size_t bytes)
{
    void *q = malloc(bytes ? bytes : 1);
    memcpy(q, p, bytes);
    return q;
}

/* ---- device buffers with guards ---- */

#define GT_GUARD 256          /* guard bytes on each side */
#define GT_GUARD_BYTE 0xA5    /* guard pattern */
#define GT_POISON_BYTE 0xFF   /* fresh contents: NaN as floats, -1 as integers */

typedef struct dbuf {
    ecc_backend *be;
    unsigned char *base; /* device: guard | payload | guard */
    size_t bytes;        /* payload */
} dbuf;

/* A device buffer of `bytes`, guards around it, contents poisoned; returns the payload. */
static inline void *dnew(dbuf *d, ecc_backend *be, size_t bytes)
{
    d->be = be;
    d->bytes = bytes;
    size_t total = bytes + 2 * GT_GUARD;
    d->base = be->alloc(be, total, "a test buffer");
    cr_assert(d->base, "%s", ecc_last_error());
    unsigned char *h = malloc(total);
    memset(h, GT_GUARD_BYTE, GT_GUARD);
    memset(h + GT_GUARD, GT_POISON_BYTE, bytes);
    memset(h + GT_GUARD + bytes, GT_GUARD_BYTE, GT_GUARD);
    be->upload(be, d->base, h, total);
    free(h);
    return d->base + GT_GUARD;
}
static inline void *dptr(const dbuf *d) { return d->base + GT_GUARD; }
/* payload <- host */
static inline void dput(dbuf *d, const void *host) { d->be->upload(d->be, dptr(d), host, d->bytes); }
/* a device buffer holding a copy of host */
static inline void *dfrom(dbuf *d, ecc_backend *be, const void *host, size_t bytes)
{
    void *p = dnew(d, be, bytes);
    dput(d, host);
    return p;
}
/* host <- payload, after checking that the backend is healthy and the guards are intact */
static inline void dget(const dbuf *d, void *host, const char *what)
{
    size_t total = d->bytes + 2 * GT_GUARD;
    unsigned char *h = malloc(total);
    d->be->download(d->be, h, d->base, total);
    cr_assert_eq(d->be->status(d->be), ECC_OK, "%s: the backend failed: %s", what, ecc_last_error());
    for (size_t i = 0; i < GT_GUARD; i++) {
        cr_assert(h[i] == GT_GUARD_BYTE, "%s: guard byte %zu before the buffer was overwritten", what, GT_GUARD - i);
        cr_assert(h[GT_GUARD + d->bytes + i] == GT_GUARD_BYTE, "%s: guard byte %zu after the buffer was overwritten",
                  what, i);
    }
    memcpy(host, h + GT_GUARD, d->bytes);
    free(h);
}
static inline void dfree(dbuf *d)
{
    if (d->base)
        d->be->free(d->be, d->base);
    d->base = NULL;
}

/* ---- comparisons ---- */

/* ||got - ref||^2 / ||ref||^2 over n values; every got must be finite. */
static inline double gt_nse(const float *got, const float *ref, size_t n, const char *what)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(got[i]), "%s: element %zu is %g (NaN/Inf, or never written)", what, i, (double)got[i]);
        double d = (double)got[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return num / (den > 0 ? den : 1);
}

#define GT_EXPECT_NSE(got, ref, n, tol, ...)                                                               \
    do {                                                                                                   \
        char gt_what_[160];                                                                                \
        snprintf(gt_what_, sizeof gt_what_, __VA_ARGS__);                                                  \
        double gt_e_ = gt_nse((got), (ref), (n), gt_what_);                                                \
        cr_assert(gt_e_ <= (tol), "%s: normalised squared error %.3g > %.1g", gt_what_, gt_e_, (double)(tol)); \
    } while (0)

#endif
