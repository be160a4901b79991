/* Every CUDA backend op against the CPU backend's op (the readable
 * reference) on fresh random inputs (never zeros), in several shapes: odd
 * sizes, T = 1 decode against a filled cache, T > 1024, V = 50257. Device
 * buffers carry guard bytes (an out-of-bounds write fails the test) and start
 * poisoned with NaN bytes (an element never written fails the test); every
 * output must be finite. Integer outputs (ranks, ids, tokens) must be equal.
 *
 * Tolerances, as normalised squared errors ||gpu - cpu||^2 / ||cpu||^2:
 *   - elementwise ops (embed, gelu, add, ...): <= 1e-12. The same float
 *     expressions; only the math library's last bits (tanhf, expf: <= 2 ulp,
 *     i.e. ~1e-13 squared) and fused multiply-adds differ.
 *   - row reductions (layer norm, softmax rows, saliency, target gradient):
 *     <= 1e-10. Sums in double on both sides, different orders: ~1e-14.
 *   - fp32 matrix products: <= 1e-10. Two fp32 summation orders over K <= 3072
 *     differ by ~K * 2^-48 / 3 ~ 1e-12; TF32 (2^-11 input rounding) would give
 *     ~1e-7, so this also proves that fp32 mode never uses TF32.
 *   - attention forward <= 1e-10; attention backward (four chained products
 *     and a softmax backward) <= 1e-9.
 *   - NMF ops: mu_update and hals_update are written to give the CPU's bits
 *     (<= 1e-14 asserted, 0 expected); dot: relative 1e-12 (double sums).
 * Without a GPU every test but the host-only self-test is skipped, visibly. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "gpu_testutil.h"
#include "util.h"

#ifdef ECCOLO_HAVE_CUDA
int ecc_cuda_selftest_host(char *msg, size_t len); /* kernels/backend_cuda.cu */
#endif

/* ---- host-only: the index math the kernels share with the host ---- */

Test(gpu_ops, host_index_math_selftest)
{
#ifdef ECCOLO_HAVE_CUDA
    char msg[256];
    cr_assert(ecc_cuda_selftest_host(msg, sizeof msg), "%s", msg);
#else
    cr_skip_test("built without CUDA");
#endif
}

/* ---- memory ---- */

Test(gpu_ops, memory_calls_round_trip)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32);
    cr_assert_eq(g->status(g), ECC_OK);
    cr_assert(g->available(g) > ((size_t)64 << 20), "available() = %zu bytes", g->available(g));
    /* alloc is zeroed */
    size_t n = 1000003;
    float *d = g->alloc(g, n * 4, "test");
    cr_assert(d);
    float *h = malloc(n * 4);
    g->download(g, h, d, n * 4);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(h[i], 0.0f, "alloc is not zeroed at %zu", i);
    /* sizes around the staging slots and download halves: small, 256 KiB +- 4, 4 MiB +- 4, 9 MiB + 12 */
    size_t sizes[] = {4, 4096, (256u << 10) - 4, (256u << 10) + 4, (4u << 20) - 4, (4u << 20) + 4, (9u << 20) + 12};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t b = sizes[s], m = b / 4;
        float *src = gt_rand(m, 3.0), *back = malloc(b);
        dbuf buf;
        void *p = dfrom(&buf, g, src, b);
        (void)p;
        dget(&buf, back, "round trip");
        cr_assert_eq(memcmp(src, back, b), 0, "upload/download of %zu bytes differs", b);
        dfree(&buf);
        free(src);
        free(back);
    }
    /* many small uploads in a row (the pinned ring wraps) keep their order and contents */
    int32_t *di = g->alloc(g, 4 * 100, "test");
    for (int32_t i = 0; i < 100; i++)
        g->upload(g, di + i, &i, 4);
    int32_t hi[100];
    g->download(g, hi, di, sizeof hi);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(hi[i], i);
    /* zero, mirror, download2d */
    float *src = gt_rand(n, 1.0);
    float *mir = g->mirror(g, src, n * 4, "mirror");
    cr_assert(mir, "%s", ecc_last_error());
    g->download(g, h, mir, n * 4);
    cr_assert_eq(memcmp(h, src, n * 4), 0);
    g->zero(g, mir + 10, 40);
    g->download(g, h, mir, n * 4);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(h[i], (i >= 10 ? 0.0f : src[i]));
    float sub[7 * 5];
    g->download2d(g, sub, 5 * 4, mir + 1000, 333 * 4, 5 * 4, 7);
    for (int r = 0; r < 7; r++)
        for (int c = 0; c < 5; c++)
            cr_assert_eq(sub[r * 5 + c], src[1000 + r * 333 + c]);
    g->unmirror(g, mir);
    /* out of memory is a NULL with a message, and the backend stays usable */
    void *huge = g->alloc(g, (size_t)1 << 50, "an impossible buffer");
    cr_assert_null(huge);
    cr_assert(strstr(ecc_last_error(), "out of GPU memory") && strstr(ecc_last_error(), "an impossible buffer"), "%s",
              ecc_last_error());
    cr_assert_eq(g->status(g), ECC_OK);
    g->synchronize(g);
    g->free(g, d);
    g->free(g, di);
    free(h);
    free(src);
    g->destroy(g);
}

/* ---- forward ops ---- */

Test(gpu_ops, embed)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int V = 1000, NP = 64;
    const int Cs[] = {768, 48, 13};
    for (int ci = 0; ci < 3; ci++) {
        int C = Cs[ci], n = 7;
        float *wte = gt_rand((size_t)V * C, 1.0), *wpe = gt_rand((size_t)NP * C, 1.0);
        int32_t ids[7] = {0, 999, 5, 5, 123, 42, 7}, pos[7] = {3, 0, 63, 1, 1, 17, 2};
        for (int use_pos = 0; use_pos < 2; use_pos++) {
            float *ref = malloc(sizeof(float) * n * C), *got = malloc(sizeof(float) * n * C);
            c->embed(c, ref, ids, use_pos ? pos : NULL, 11, wte, wpe, 0.37f, n, C);
            dbuf bo, bi, bp, bwte, bwpe;
            float *o = dnew(&bo, g, sizeof(float) * n * C);
            g->embed(g, o, dfrom(&bi, g, ids, sizeof ids), use_pos ? dfrom(&bp, g, pos, sizeof pos) : NULL, 11,
                     dfrom(&bwte, g, wte, sizeof(float) * V * C), dfrom(&bwpe, g, wpe, sizeof(float) * NP * C), 0.37f,
                     n, C);
            dget(&bo, got, "embed");
            GT_EXPECT_NSE(got, ref, (size_t)n * C, 1e-12, "embed C=%d pos=%d", C, use_pos);
            dfree(&bo), dfree(&bi), dfree(&bwte), dfree(&bwpe);
            if (use_pos)
                dfree(&bp);
            free(ref), free(got);
        }
        free(wte), free(wpe);
    }
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, layernorm_forward)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int shapes[][2] = {{1, 768}, {7, 48}, {33, 100}, {1030, 1600}, {5, 31}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int T = shapes[s][0], C = shapes[s][1];
        float *x = gt_rand((size_t)T * C, 2.0), *w = gt_rand(C, 1.0), *b = gt_rand(C, 0.5);
        for (int t = 0; t < T; t += 3) /* rows with a large mean */
            for (int i = 0; i < C; i++)
                x[(size_t)t * C + i] += 5.0f;
        float *ref = malloc(sizeof(float) * T * C), *got = malloc(sizeof(float) * T * C);
        float *rm = malloc(sizeof(float) * T), *rr = malloc(sizeof(float) * T), *gm = malloc(sizeof(float) * T),
              *gr = malloc(sizeof(float) * T);
        c->layernorm(c, ref, rm, rr, x, w, b, T, C, 1e-5f);
        for (int stats = 0; stats < 2; stats++) {
            dbuf bo, bm, br, bx, bw, bb;
            float *o = dnew(&bo, g, sizeof(float) * T * C);
            float *m = stats ? dnew(&bm, g, sizeof(float) * T) : NULL,
                  *r = stats ? dnew(&br, g, sizeof(float) * T) : NULL;
            g->layernorm(g, o, m, r, dfrom(&bx, g, x, sizeof(float) * T * C), dfrom(&bw, g, w, sizeof(float) * C),
                         dfrom(&bb, g, b, sizeof(float) * C), T, C, 1e-5f);
            dget(&bo, got, "layernorm");
            GT_EXPECT_NSE(got, ref, (size_t)T * C, 1e-10, "layernorm T=%d C=%d", T, C);
            if (stats) {
                dget(&bm, gm, "mean");
                dget(&br, gr, "rstd");
                GT_EXPECT_NSE(gm, rm, T, 1e-10, "layernorm mean T=%d C=%d", T, C);
                GT_EXPECT_NSE(gr, rr, T, 1e-10, "layernorm rstd T=%d C=%d", T, C);
                dfree(&bm), dfree(&br);
            }
            dfree(&bo), dfree(&bx), dfree(&bw), dfree(&bb);
        }
        free(x), free(w), free(b), free(ref), free(got), free(rm), free(rr), free(gm), free(gr);
    }
    g->destroy(g), c->destroy(c);
}

static void matmul_case(ecc_backend *g, ecc_backend *c, int T, int C, int OC, int bias, double tol)
{
    float *x = gt_rand((size_t)T * C, 1.0), *w = gt_rand((size_t)C * OC, 0.1), *b = gt_rand(OC, 1.0);
    float *ref = malloc(sizeof(float) * T * OC), *got = malloc(sizeof(float) * T * OC);
    c->matmul(c, ref, x, w, bias ? b : NULL, T, C, OC);
    dbuf bo, bx, bw, bb;
    float *o = dnew(&bo, g, sizeof(float) * T * OC);
    g->matmul(g, o, dfrom(&bx, g, x, sizeof(float) * T * C), dfrom(&bw, g, w, sizeof(float) * C * OC),
              bias ? dfrom(&bb, g, b, sizeof(float) * OC) : NULL, T, C, OC);
    dget(&bo, got, "matmul");
    GT_EXPECT_NSE(got, ref, (size_t)T * OC, tol, "matmul T=%d C=%d OC=%d bias=%d", T, C, OC, bias);
    dfree(&bo), dfree(&bx), dfree(&bw);
    if (bias)
        dfree(&bb);
    free(x), free(w), free(b), free(ref), free(got);
}

static void matmul_wt_case(ecc_backend *g, ecc_backend *c, int T, int C, int OC, double tol)
{
    float *x = gt_rand((size_t)T * C, 1.0), *wt = gt_rand((size_t)OC * C, 0.1);
    float *ref = malloc(sizeof(float) * T * OC), *got = malloc(sizeof(float) * T * OC);
    c->matmul_wt(c, ref, x, wt, T, C, OC);
    dbuf bo, bx, bw;
    float *o = dnew(&bo, g, sizeof(float) * T * OC);
    g->matmul_wt(g, o, dfrom(&bx, g, x, sizeof(float) * T * C), dfrom(&bw, g, wt, sizeof(float) * OC * C), T, C, OC);
    dget(&bo, got, "matmul_wt");
    GT_EXPECT_NSE(got, ref, (size_t)T * OC, tol, "matmul_wt T=%d C=%d OC=%d", T, C, OC);
    dfree(&bo), dfree(&bx), dfree(&bw);
    free(x), free(wt), free(ref), free(got);
}

Test(gpu_ops, matmul_and_matmul_wt, .timeout = 120)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int shapes[][3] = {{1, 768, 2304}, {7, 48, 144}, {1030, 768, 3072}, {13, 3072, 768}, {3, 5, 7}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int bias = 0; bias < 2; bias++)
            matmul_case(g, c, shapes[s][0], shapes[s][1], shapes[s][2], bias, 1e-10);
    matmul_wt_case(g, c, 1, 768, 50257, 1e-10);
    matmul_wt_case(g, c, 130, 768, 50257, 1e-10);
    matmul_wt_case(g, c, 9, 64, 1025, 1e-10);
    matmul_wt_case(g, c, 2, 50257, 768, 1e-10); /* K = V: the (J, V) @ (V, C) shape of the backward */
    g->destroy(g), c->destroy(c);
}

/* tf32 and bf16 keep fp32 storage and round the products' inputs: within
 * their input precision (tf32: 10-bit mantissa, ~1e-7 squared; bf16: 7-bit,
 * ~1e-5), and certainly not fp32-exact (proving the mode is applied). */
Test(gpu_ops, matmul_precision_modes)
{
    char why[256];
    if (ecc_gpu_count(why, sizeof why) == 0)
        cr_skip_test("no usable GPU: %s", why);
    ecc_backend *c = cpu_backend();
    const ecc_precision modes[2] = {ECC_PRECISION_TF32, ECC_PRECISION_BF16};
    const double tol[2] = {1e-5, 1e-3}, floor_[2] = {1e-10, 1e-8}; /* fp32 noise is ~1e-12 */
    for (int m = 0; m < 2; m++) {
        ecc_backend *g = gpu_backend(modes[m]);
        int T = 64, C = 768, OC = 768;
        float *x = gt_rand((size_t)T * C, 1.0), *w = gt_rand((size_t)C * OC, 0.1);
        float *ref = malloc(sizeof(float) * T * OC), *got = malloc(sizeof(float) * T * OC);
        c->matmul(c, ref, x, w, NULL, T, C, OC);
        dbuf bo, bx, bw;
        float *o = dnew(&bo, g, sizeof(float) * T * OC);
        g->matmul(g, o, dfrom(&bx, g, x, sizeof(float) * T * C), dfrom(&bw, g, w, sizeof(float) * C * OC), NULL, T, C,
                  OC);
        dget(&bo, got, "matmul");
        double e = gt_nse(got, ref, (size_t)T * OC, "matmul");
        cr_assert(e <= tol[m] && e >= floor_[m], "precision %d: normalised squared error %.3g outside [%.0e, %.0e]",
                  m + 1, e, floor_[m], tol[m]);
        cr_log_info("precision %s: normalised squared error %.3g", m ? "bf16" : "tf32", e);
        dfree(&bo), dfree(&bx), dfree(&bw);
        free(x), free(w), free(ref), free(got);
        g->destroy(g);
    }
    c->destroy(c);
}

/* Attention forward: T new tokens at pos0 against a cache whose rows < pos0
 * are filled; the cache rows pos0 .. pos0+T-1 appended exactly, rows after
 * untouched; probabilities with padded head and row strides (the gaps must
 * stay poisoned). */
static void attention_case(ecc_backend *g, ecc_backend *c, int C, int NH, int pos0, int T, int capture)
{
    const int Tk = pos0 + T, n_ctx = Tk + 2, hd = C / NH;
    const float scale = 1.0f / sqrtf((float)hd);
    const int rs = Tk + 3;
    const int64_t hs = (int64_t)T * rs + 5, natt = (int64_t)NH * hs;
    float *qkv = gt_rand((size_t)T * 3 * C, 1.5), *k0 = gt_rand((size_t)n_ctx * C, 1.5),
          *v0 = gt_rand((size_t)n_ctx * C, 1.0);
    float *kr = gt_dup(k0, sizeof(float) * n_ctx * C), *vr = gt_dup(v0, sizeof(float) * n_ctx * C);
    float *ref = malloc(sizeof(float) * T * C), *got = malloc(sizeof(float) * T * C);
    float *aref = malloc(sizeof(float) * natt), *agot = malloc(sizeof(float) * natt);
    memset(aref, GT_POISON_BYTE, sizeof(float) * natt);
    c->attention(c, ref, capture ? aref : NULL, hs, rs, qkv, kr, vr, pos0, T, C, NH, scale);
    dbuf bo, ba, bq, bk, bv;
    float *o = dnew(&bo, g, sizeof(float) * T * C), *a = capture ? dnew(&ba, g, sizeof(float) * natt) : NULL;
    float *dk = dfrom(&bk, g, k0, sizeof(float) * n_ctx * C), *dv = dfrom(&bv, g, v0, sizeof(float) * n_ctx * C);
    g->attention(g, o, a, hs, rs, dfrom(&bq, g, qkv, sizeof(float) * T * 3 * C), dk, dv, pos0, T, C, NH, scale);
    dget(&bo, got, "attention out");
    GT_EXPECT_NSE(got, ref, (size_t)T * C, 1e-10, "attention out C=%d NH=%d pos0=%d T=%d", C, NH, pos0, T);
    float *kg = malloc(sizeof(float) * n_ctx * C), *vg = malloc(sizeof(float) * n_ctx * C);
    dget(&bk, kg, "kcache");
    dget(&bv, vg, "vcache");
    cr_assert_eq(memcmp(kg, kr, sizeof(float) * n_ctx * C), 0, "kcache differs (C=%d pos0=%d T=%d)", C, pos0, T);
    cr_assert_eq(memcmp(vg, vr, sizeof(float) * n_ctx * C), 0, "vcache differs (C=%d pos0=%d T=%d)", C, pos0, T);
    if (capture) {
        dget(&ba, agot, "attention probabilities");
        /* compare the written entries; the gaps between rows and heads must be untouched */
        float *wg = malloc(sizeof(float) * NH * T * Tk), *wr = malloc(sizeof(float) * NH * T * Tk);
        size_t k = 0;
        for (int64_t i = 0; i < natt; i++) {
            int64_t h = i / hs, rem = i % hs, t = rem / rs, j = rem % rs;
            if (h < NH && t < T && j < Tk) {
                wg[k] = agot[i];
                wr[k++] = aref[i];
                if (j > pos0 + t)
                    cr_assert_eq(agot[i], 0.0f, "probability after the causal limit is not zero");
            } else {
                uint32_t bits;
                memcpy(&bits, &agot[i], 4);
                cr_assert_eq(bits, 0xFFFFFFFFu, "attention wrote outside its rows (entry %lld)", (long long)i);
            }
        }
        GT_EXPECT_NSE(wg, wr, k, 1e-10, "attention probabilities C=%d NH=%d pos0=%d T=%d", C, NH, pos0, T);
        free(wg), free(wr);
        dfree(&ba);
    }
    dfree(&bo), dfree(&bq), dfree(&bk), dfree(&bv);
    free(qkv), free(k0), free(v0), free(kr), free(vr), free(ref), free(got), free(aref), free(agot), free(kg), free(vg);
}

Test(gpu_ops, attention_forward, .timeout = 240)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int cases[][4] = {
        /* C, NH, pos0, T */
        {64, 4, 0, 17},     {64, 4, 0, 1},    {64, 4, 16, 1},  {48, 3, 5, 9},    {100, 5, 0, 70},    {768, 12, 0, 130},
        {768, 12, 1000, 1}, {64, 2, 0, 1030}, {256, 1, 7, 40}, {1600, 25, 3, 4}, {768, 12, 0, 1024}, {16, 2, 90, 6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        attention_case(g, c, cases[i][0], cases[i][1], cases[i][2], cases[i][3], (int)(i % 4 != 1));
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, gelu_backward_add)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int64_t ns[] = {1, 1000, 3 * 1030 * 768 + 5};
    for (int s = 0; s < 3; s++) {
        int64_t n = ns[s];
        float *x = gt_rand((size_t)n, 5.0), *y = gt_rand((size_t)n, 1.0);
        float *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
        dbuf bx, by, bo;
        float *dx = dfrom(&bx, g, x, sizeof(float) * n), *dy = dfrom(&by, g, y, sizeof(float) * n);
        float *o = dnew(&bo, g, sizeof(float) * n);
        c->gelu(c, ref, NULL, x, n);
        g->gelu(g, o, NULL, dx, n);
        dget(&bo, got, "gelu");
        GT_EXPECT_NSE(got, ref, (size_t)n, 1e-12, "gelu n=%lld", (long long)n);
        float *ref_d = malloc(sizeof(float) * n);
        c->gelu(c, ref, ref_d, x, n);
        dbuf bd;
        float *dd = dfrom(&bd, g, x, sizeof(float) * n);
        g->gelu(g, o, dd, dd, n); /* the derivative in place of the input, as the saved forward does */
        dget(&bo, got, "gelu with its derivative");
        GT_EXPECT_NSE(got, ref, (size_t)n, 1e-12, "gelu with derivative n=%lld", (long long)n);
        dget(&bd, got, "gelu'");
        GT_EXPECT_NSE(got, ref_d, (size_t)n, 1e-12, "gelu' n=%lld", (long long)n);
        dfree(&bd);
        free(ref_d);
        c->add(c, ref, x, y, n);
        g->add(g, dx, dx, dy, n); /* in place: out aliases a */
        dget(&bx, got, "add");
        GT_EXPECT_NSE(got, ref, (size_t)n, 1e-12, "add n=%lld", (long long)n);
        dfree(&bx), dfree(&by), dfree(&bo);
        free(x), free(y), free(ref), free(got);
    }
    /* gelu_backward: packed rows against saved gelu' rows, in place */
    const int N = 9, F = 3072, R = 14;
    float *dg = gt_rand((size_t)N * F, 1.0), *dout = gt_rand((size_t)R * F, 1.0);
    int32_t rowpos[14] = {8, 0, 0, 3, 5, 7, 1, 2, 8, 8, 4, 6, 3, 0};
    float *ref = malloc(sizeof(float) * R * F), *got = malloc(sizeof(float) * R * F);
    c->gelu_backward(c, ref, dout, dg, rowpos, R, F);
    dbuf bd, bdg, brp;
    float *dd = dfrom(&bd, g, dout, sizeof(float) * R * F);
    g->gelu_backward(g, dd, dd, dfrom(&bdg, g, dg, sizeof(float) * N * F), dfrom(&brp, g, rowpos, sizeof rowpos), R, F);
    dget(&bd, got, "gelu_backward");
    GT_EXPECT_NSE(got, ref, (size_t)R * F, 1e-12, "gelu_backward");
    dfree(&bd), dfree(&bdg), dfree(&brp);
    free(dg), free(dout), free(ref), free(got);
    g->destroy(g), c->destroy(c);
}

/* ---- explanation ops ---- */

Test(gpu_ops, gather_rows_is_exact)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int S = 50, C = 777, n = 12;
    int32_t rows[12] = {49, 0, 3, 3, 17, 48, 1, 2, 30, 30, 30, 5};
    float *src = gt_rand((size_t)S * C, 1.0), *ref = malloc(sizeof(float) * n * C),
          *got = malloc(sizeof(float) * n * C);
    c->gather_rows(c, ref, src, rows, n, C);
    dbuf bo, bs, br;
    float *o = dnew(&bo, g, sizeof(float) * n * C);
    g->gather_rows(g, o, dfrom(&bs, g, src, sizeof(float) * S * C), dfrom(&br, g, rows, sizeof rows), n, C);
    dget(&bo, got, "gather_rows");
    cr_assert_eq(memcmp(got, ref, sizeof(float) * n * C), 0, "gather_rows is a copy: it must be exact");
    dfree(&bo), dfree(&bs), dfree(&br);
    free(src), free(ref), free(got);
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, scatter_rows_is_exact)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int S = 50, C = 777, n = 6;
    int32_t rows[6] = {49, 0, 3, 17, 48, 30};
    float *src = gt_rand((size_t)n * C, 1.0), *ref = gt_rand((size_t)S * C, 1.0), *got = malloc(sizeof(float) * S * C);
    dbuf bo, bs, br;
    float *o = dfrom(&bo, g, ref, sizeof(float) * S * C); /* rows not scattered to must keep their values */
    c->scatter_rows(c, ref, src, rows, n, C);
    g->scatter_rows(g, o, dfrom(&bs, g, src, sizeof(float) * n * C), dfrom(&br, g, rows, sizeof rows), n, C);
    dget(&bo, got, "scatter_rows");
    cr_assert_eq(memcmp(got, ref, sizeof(float) * S * C), 0, "scatter_rows is a copy: it must be exact");
    dfree(&bo), dfree(&bs), dfree(&br);
    free(src), free(ref), free(got);
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, target_grad)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int Vs[] = {11, 50257};
    for (int vi = 0; vi < 2; vi++) {
        int V = Vs[vi], J = 3;
        int32_t tok[3] = {0, V - 1, V / 2};
        float scale[3] = {1.0f, 0.5f, 2.0f};
        for (int kind = 0; kind < 3; kind++)
            for (int sc = 0; sc < 2; sc++) {
                float *z = gt_rand((size_t)J * V, 8.0), *ref = gt_dup(z, sizeof(float) * J * V),
                      *got = malloc(sizeof(float) * J * V);
                float lp_ref[3], lp_got[3];
                c->target_grad(c, ref, sc ? lp_ref : NULL, tok, sc ? scale : NULL, kind, J, V);
                dbuf bz, bt, bs, bl;
                float *dz = dfrom(&bz, g, z, sizeof(float) * J * V), *dl = dnew(&bl, g, sizeof lp_got);
                g->target_grad(g, dz, sc ? dl : NULL, dfrom(&bt, g, tok, sizeof tok),
                               sc ? dfrom(&bs, g, scale, sizeof scale) : NULL, kind, J, V);
                dget(&bz, got, "target_grad");
                GT_EXPECT_NSE(got, ref, (size_t)J * V, 1e-10, "target_grad V=%d kind=%d scale=%d", V, kind, sc);
                if (sc) { /* the log-probabilities, read before the logits are overwritten */
                    dget(&bl, lp_got, "target_grad logprob");
                    for (int j = 0; j < J; j++)
                        cr_expect(fabsf(lp_got[j] - lp_ref[j]) <= 1e-6f * (1 + fabsf(lp_ref[j])),
                                  "logprob V=%d kind=%d row %d: %.8g vs %.8g", V, kind, j, lp_got[j], lp_ref[j]);
                }
                dfree(&bz), dfree(&bt), dfree(&bl);
                if (sc)
                    dfree(&bs);
                free(z), free(ref), free(got);
            }
    }
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, layernorm_backward)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int N = 11, C = 768, n = 6, NO = 9;
    float *x = gt_rand((size_t)N * C, 2.0), *w = gt_rand(C, 1.0), *b = gt_rand(C, 0.5),
          *y = malloc(sizeof(float) * N * C);
    float *mean = malloc(sizeof(float) * N), *rstd = malloc(sizeof(float) * N);
    c->layernorm(c, y, mean, rstd, x, w, b, N, C, 1e-5f);
    float *dout = gt_rand((size_t)n * C, 1.0);
    int32_t in_rows[6] = {10, 0, 4, 4, 7, 2}, out_rows[6] = {8, 0, 3, 1, 5, 6};
    for (int mode = 0; mode < 3; mode++) { /* both tables, in_rows only, none */
        const int32_t *ir = mode < 2 ? in_rows : NULL, *orw = mode == 0 ? out_rows : NULL;
        float *base = gt_rand((size_t)NO * C, 1.0), *ref = gt_dup(base, sizeof(float) * NO * C),
              *got = malloc(sizeof(float) * NO * C);
        c->layernorm_backward(c, ref, dout, x, mean, rstd, w, ir, orw, n, C);
        dbuf bdi, bdo, bx, bm, br, bw, bir, bor;
        float *ddi = dfrom(&bdi, g, base, sizeof(float) * NO * C);
        g->layernorm_backward(g, ddi, dfrom(&bdo, g, dout, sizeof(float) * n * C),
                              dfrom(&bx, g, x, sizeof(float) * N * C), dfrom(&bm, g, mean, sizeof(float) * N),
                              dfrom(&br, g, rstd, sizeof(float) * N), dfrom(&bw, g, w, sizeof(float) * C),
                              ir ? dfrom(&bir, g, in_rows, sizeof in_rows) : NULL,
                              orw ? dfrom(&bor, g, out_rows, sizeof out_rows) : NULL, n, C);
        dget(&bdi, got, "layernorm_backward");
        GT_EXPECT_NSE(got, ref, (size_t)NO * C, 1e-10, "layernorm_backward mode %d", mode);
        dfree(&bdi), dfree(&bdo), dfree(&bx), dfree(&bm), dfree(&br), dfree(&bw);
        if (ir)
            dfree(&bir);
        if (orw)
            dfree(&bor);
        free(base), free(ref), free(got);
    }
    free(x), free(w), free(b), free(y), free(mean), free(rstd), free(dout);
    g->destroy(g), c->destroy(c);
}

/* Attention backward on real probabilities (from the CPU forward) of A
 * sequences, for J packed targets. reserve: call be->reserve(T) first (else
 * the op grows its tiles to one (target, head) pair: one pair per sub-batch). */
static void attn_bwd_case(ecc_backend *g, ecc_backend *c, int A, int T, int C, int NH, int J, const int32_t *seq,
                          const int32_t *n, int reserve)
{
    const int hd = C / NH;
    const float scale = 1.0f / sqrtf((float)hd);
    float *qkv = gt_rand((size_t)A * T * 3 * C, 1.5), *att = malloc(sizeof(float) * A * NH * T * T);
    float *o = malloc(sizeof(float) * T * C), *kc = malloc(sizeof(float) * T * C), *vc = malloc(sizeof(float) * T * C);
    for (int a = 0; a < A; a++)
        c->attention(c, o, att + (size_t)a * NH * T * T, (int64_t)T * T, T, qkv + (size_t)a * T * 3 * C, kc, vc, 0, T,
                     C, NH, scale);
    int64_t *off = malloc(sizeof(int64_t) * J), R = 0;
    for (int j = 0; j < J; j++) {
        off[j] = R;
        R += n[j];
    }
    float *datty = gt_rand((size_t)R * C, 1.0), *ref = malloc(sizeof(float) * R * 3 * C),
          *got = malloc(sizeof(float) * R * 3 * C);
    size_t bytes;
    cr_assert_eq(c->reserve(c, T, &bytes), ECC_OK);
    c->attention_backward(c, ref, datty, qkv, att, seq, n, n, off, J, T, C, NH, scale);
    if (reserve)
        cr_assert_eq(g->reserve(g, T, &bytes), ECC_OK, "%s", ecc_last_error());
    dbuf bd, bdat, bq, ba, bs, bn, bo;
    float *dd = dnew(&bd, g, sizeof(float) * R * 3 * C);
    g->attention_backward(
        g, dd, dfrom(&bdat, g, datty, sizeof(float) * R * C), dfrom(&bq, g, qkv, sizeof(float) * A * T * 3 * C),
        dfrom(&ba, g, att, sizeof(float) * A * NH * T * T), dfrom(&bs, g, seq, sizeof(int32_t) * J),
        dfrom(&bn, g, n, sizeof(int32_t) * J), n, dfrom(&bo, g, off, sizeof(int64_t) * J), J, T, C, NH, scale);
    dget(&bd, got, "attention_backward");
    GT_EXPECT_NSE(got, ref, (size_t)R * 3 * C, 1e-9, "attention_backward A=%d T=%d C=%d NH=%d J=%d reserve=%d", A, T, C,
                  NH, J, reserve);
    dfree(&bd), dfree(&bdat), dfree(&bq), dfree(&ba), dfree(&bs), dfree(&bn), dfree(&bo);
    free(qkv), free(att), free(o), free(kc), free(vc), free(off), free(datty), free(ref), free(got);
}

Test(gpu_ops, attention_backward, .timeout = 240)
{
    ecc_backend *c = cpu_backend();
    {
        ecc_backend *g = gpu_backend(ECC_PRECISION_FP32); /* fresh: no reserve, one pair per sub-batch */
        int32_t seq[5] = {0, 1, 0, 1, 1}, n[5] = {19, 1, 7, 12, 19};
        attn_bwd_case(g, c, 2, 20, 48, 3, 5, seq, n, 0);
        g->destroy(g);
    }
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32);
    {
        int32_t seq[5] = {0, 1, 0, 1, 1}, n[5] = {19, 1, 7, 12, 19};
        attn_bwd_case(g, c, 2, 20, 48, 3, 5, seq, n, 1);
    }
    {
        int32_t seq[8] = {0, 0, 0, 0, 0, 0, 0, 0}, n[8] = {5, 40, 64, 100, 128, 129, 129, 3};
        attn_bwd_case(g, c, 1, 130, 768, 12, 8, seq, n, 1);
    }
    {
        int32_t seq[3] = {0, 0, 0}, n[3] = {1023, 512, 1000}; /* long rows, widely different paddings */
        attn_bwd_case(g, c, 1, 1024, 128, 2, 3, seq, n, 1);
    }
    {
        int32_t seq[40], n[40]; /* a chunk of consecutive targets, as explain.c packs them */
        for (int j = 0; j < 40; j++) {
            seq[j] = 0;
            n[j] = 8 + j;
        }
        attn_bwd_case(g, c, 1, 48, 64, 4, 40, seq, n, 1);
    }
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, saliency)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int J = 4, C = 768, ld = 30, NPOS = 40;
    int32_t n[4] = {29, 1, 13, 30};
    int64_t off[4], R = 0;
    for (int j = 0; j < J; j++) {
        off[j] = R;
        R += n[j];
    }
    int32_t *rowpos = malloc(sizeof(int32_t) * R);
    for (int64_t r = 0; r < R; r++)
        rowpos[r] = (int32_t)((r * 7) % NPOS);
    float *grad = gt_rand((size_t)R * C, 1.0), *mult = gt_rand((size_t)NPOS * C, 1.0);
    for (int m = 0; m < 2; m++) {
        float *ref = malloc(sizeof(float) * J * ld), *got = malloc(sizeof(float) * J * ld);
        c->saliency(c, ref, ld, grad, m ? mult : NULL, rowpos, n, off, J, C);
        dbuf bs, bg, bm, brp, bn, bo;
        float *s = dnew(&bs, g, sizeof(float) * J * ld);
        g->saliency(g, s, ld, dfrom(&bg, g, grad, sizeof(float) * R * C),
                    m ? dfrom(&bm, g, mult, sizeof(float) * NPOS * C) : NULL,
                    dfrom(&brp, g, rowpos, sizeof(int32_t) * R), dfrom(&bn, g, n, sizeof n),
                    dfrom(&bo, g, off, sizeof off), J, C);
        dget(&bs, got, "saliency");
        GT_EXPECT_NSE(got, ref, (size_t)J * ld, 1e-10, "saliency mult=%d", m);
        for (int j = 0; j < J; j++)
            for (int i = n[j]; i < ld; i++)
                cr_assert_eq(got[j * ld + i], 0.0f, "saliency: not zero after the target's positions");
        dfree(&bs), dfree(&bg), dfree(&brp), dfree(&bn), dfree(&bo);
        if (m)
            dfree(&bm);
        free(ref), free(got);
    }
    free(rowpos), free(grad), free(mult);
    g->destroy(g), c->destroy(c);
}

/* Vt < V: the ids from Vt on are padding rows, given logits above every
 * token's so that a kernel that ranked or chose them would be caught. */
static void lens_case_padded(ecc_backend *g, ecc_backend *c, int n, int V, int Vt, int k, int W, int ties)
{
    float *z = gt_rand((size_t)n * V, 10.0);
    if (ties) /* few distinct values, and zeros of both signs: the tie order decides */
        for (size_t i = 0; i < (size_t)n * V; i++) {
            float v = (float)(int)(z[i] * 0.3f);
            z[i] = (v == 0.0f && i % 5 == 0) ? -0.0f : v;
        }
    for (int i = 0; i < n; i++)
        for (int v = Vt; v < V; v++)
            z[(size_t)i * V + v] = 30.0f + (float)(v - Vt);
    int32_t *tok = malloc(sizeof(int32_t) * n), *watch = calloc((size_t)(W ? W : 1), sizeof(int32_t));
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)((i * 7919 + 13) % Vt);
    for (int w = 0; w < W; w++)
        watch[w] = (int32_t)((w * 104729 + 1) % Vt);
    int32_t *rr = malloc(sizeof(int32_t) * n), *ri = malloc(sizeof(int32_t) * n * k),
            *rw = malloc(sizeof(int32_t) * n * (W ? W : 1));
    int32_t *gr = malloc(sizeof(int32_t) * n), *gi = malloc(sizeof(int32_t) * n * k),
            *gw = malloc(sizeof(int32_t) * n * (W ? W : 1));
    float *rp = malloc(sizeof(float) * n * k), *gp = malloc(sizeof(float) * n * k);
    c->lens_stats(c, rr, ri, rp, W ? rw : NULL, z, tok, watch, n, V, Vt, k, W);
    dbuf br, bi, bp, bw, bz, bt, bwa;
    int32_t *dr = dnew(&br, g, sizeof(int32_t) * n), *di = dnew(&bi, g, sizeof(int32_t) * n * k),
            *dw = W ? dnew(&bw, g, sizeof(int32_t) * n * W) : NULL;
    float *dp = dnew(&bp, g, sizeof(float) * n * k);
    g->lens_stats(g, dr, di, dp, dw, dfrom(&bz, g, z, sizeof(float) * n * V), dfrom(&bt, g, tok, sizeof(int32_t) * n),
                  W ? dfrom(&bwa, g, watch, sizeof(int32_t) * W) : NULL, n, V, Vt, k, W);
    dget(&br, gr, "ranks");
    dget(&bi, gi, "top ids");
    dget(&bp, gp, "top probs");
    cr_assert_eq(memcmp(gr, rr, sizeof(int32_t) * n), 0, "ranks differ (n=%d V=%d k=%d ties=%d)", n, V, k, ties);
    for (int64_t i = 0; i < (int64_t)n * k; i++) {
        cr_assert_eq(gi[i], ri[i], "top id %lld: %d, the CPU %d (n=%d V=%d k=%d ties=%d)", (long long)i, gi[i], ri[i],
                     n, V, k, ties);
        cr_assert_lt(gi[i], Vt, "top id %lld is the padding row %d (Vt %d)", (long long)i, gi[i], Vt);
    }
    GT_EXPECT_NSE(gp, rp, (size_t)n * k, 1e-10, "top probs n=%d V=%d k=%d", n, V, k);
    if (W) {
        dget(&bw, gw, "watch ranks");
        cr_assert_eq(memcmp(gw, rw, sizeof(int32_t) * n * W), 0, "watched ranks differ");
        dfree(&bw), dfree(&bwa);
    }
    dfree(&br), dfree(&bi), dfree(&bp), dfree(&bz), dfree(&bt);
    free(z), free(tok), free(watch), free(rr), free(ri), free(rw), free(gr), free(gi), free(gw), free(rp), free(gp);
}

static void lens_case(ecc_backend *g, ecc_backend *c, int n, int V, int k, int W, int ties)
{
    lens_case_padded(g, c, n, V, V, k, W, ties);
}

Test(gpu_ops, lens_stats, .timeout = 240)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    lens_case(g, c, 6, 50257, 10, 3, 0);
    lens_case(g, c, 6, 50257, 10, 3, 1);
    lens_case(g, c, 2, 50257, 1, 0, 0);
    lens_case(g, c, 3, 50257, 4096, 0, 0); /* the largest shared-memory candidate list */
    lens_case(g, c, 3, 50257, 5000, 9, 0); /* candidates in global scratch */
    lens_case(g, c, 2, 3001, 3001, 20, 1); /* k = V: a full sort, ties */
    lens_case(g, c, 70, 1025, 10, 3, 0);   /* more rows than one batch of blocks */
    lens_case_padded(g, c, 4, 50304, 50277, 10, 3, 0); /* Pythia's padded vocabulary */
    lens_case_padded(g, c, 3, 1030, 1025, 1025, 4, 1); /* k = Vt: every token, none of the padding */
    g->destroy(g), c->destroy(c);
}

/* ---- pick ---- */

Test(gpu_ops, pick_matches_the_cpu, .timeout = 120)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int V = 50257;
    float *z = gt_rand(V, 4.0);
    z[17] = z[4000] = 9.5f; /* a tie for the maximum: the lower id wins */
    dbuf bz;
    float *dz = dfrom(&bz, g, z, sizeof(float) * V);
    ecc_pick_params greedy = {.greedy = 1, .temperature = 1, .top_k = 0, .top_p = 1, .seed = 0};
    int32_t tg, tc;
    float lg, lc;
    g->pick(g, &tg, &lg, dz, V, -1, &greedy, 0);
    c->pick(c, &tc, &lc, z, V, -1, &greedy, 0);
    cr_assert_eq(g->status(g), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(tg, 17, "greedy: token %d (lowest id of the tied maximum is 17)", tg);
    cr_assert_eq(tg, tc);
    cr_assert(fabsf(lg - lc) <= 1e-5f, "greedy logprob %.8g vs %.8g", lg, lc);
    g->pick(g, &tg, &lg, dz, V, 31337, &greedy, 0);
    c->pick(c, &tc, &lc, z, V, 31337, &greedy, 0);
    cr_assert_eq(tg, 31337);
    cr_assert(fabsf(lg - lc) <= 1e-5f, "forced logprob %.8g vs %.8g", lg, lc);
    /* samples: the same tokens for the same seeds, over a grid of parameters */
    const struct {
        float temp;
        int top_k;
        float top_p;
    } P[] = {{1.0f, 0, 1.0f}, {0.7f, 40, 1.0f},    {1.3f, 0, 0.9f},  {0.8f, 40, 0.95f},
             {1.0f, 1, 1.0f}, {1.0f, V + 5, 0.5f}, {0.25f, 0, 0.3f}, {2.0f, 1000, 0.99f}};
    int draws = 0, distinct = 0, last = -1;
    for (size_t p = 0; p < sizeof P / sizeof P[0]; p++)
        for (uint64_t seed = 0; seed < 6; seed++)
            for (uint64_t step = 0; step < 3; step++) {
                ecc_pick_params pp = {.greedy = 0,
                                      .temperature = P[p].temp,
                                      .top_k = P[p].top_k,
                                      .top_p = P[p].top_p,
                                      .seed = seed * 1000003 + 7};
                g->pick(g, &tg, &lg, dz, V, -1, &pp, step);
                c->pick(c, &tc, &lc, z, V, -1, &pp, step);
                cr_assert_eq(g->status(g), ECC_OK, "%s", ecc_last_error());
                cr_assert_eq(tg, tc, "sample (T=%g, top_k=%d, top_p=%g, seed %llu, step %llu): GPU %d, CPU %d",
                             (double)P[p].temp, P[p].top_k, (double)P[p].top_p, (unsigned long long)pp.seed,
                             (unsigned long long)step, tg, tc);
                cr_assert(fabsf(lg - lc) <= 1e-5f, "sample logprob %.8g vs %.8g", lg, lc);
                draws++;
                distinct += tg != last;
                last = tg;
            }
    cr_assert(distinct > draws / 2, "the samples hardly vary (%d changes in %d draws)", distinct, draws);
    dfree(&bz);
    free(z);
    g->destroy(g), c->destroy(c);
}

/* A padded vocabulary (Pythia: 50304 rows, 50277 tokens) whose padding rows
 * have the largest logits: neither backend may pick one, greedy or sampled,
 * and the log-probability stays over all V rows. */
Test(gpu_ops, pick_never_chooses_padding, .timeout = 120)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int V = 50304, Vt = 50277;
    float *z = gt_rand(V, 4.0);
    for (int v = Vt; v < V; v++)
        z[v] = 12.0f + 0.01f * (float)(v - Vt);
    dbuf bz;
    float *dz = dfrom(&bz, g, z, sizeof(float) * V);
    int best = 0;
    for (int v = 1; v < Vt; v++)
        best = z[v] > z[best] ? v : best;
    double mx = z[V - 1], s = 0; /* float64 log-softmax at the best token, over all V */
    for (int v = 0; v < V; v++)
        s += exp((double)z[v] - mx);
    const double want = (double)z[best] - mx - log(s);
    ecc_pick_params greedy = {.greedy = 1, .temperature = 1, .top_p = 1, .n_tokens = Vt};
    int32_t tg, tc;
    float lg, lc;
    g->pick(g, &tg, &lg, dz, V, -1, &greedy, 0);
    c->pick(c, &tc, &lc, z, V, -1, &greedy, 0);
    cr_assert_eq(g->status(g), ECC_OK, "%s", ecc_last_error());
    cr_assert(tg == best && tc == best, "greedy: GPU %d, CPU %d, the best token is %d", tg, tc, best);
    cr_assert(fabs(lg - want) <= 1e-5 * fabs(want) && fabs(lc - want) <= 1e-5 * fabs(want),
              "greedy log-probability GPU %.8g CPU %.8g, float64 %.8g (1e-5 relative)", lg, lc, want);
    const struct {
        float temp;
        int top_k;
        float top_p;
    } P[] = {{1.0f, 0, 1.0f}, {1.0f, 40, 1.0f}, {1.3f, 0, 0.9f}, {1.0f, V, 1.0f}};
    for (size_t p = 0; p < sizeof P / sizeof P[0]; p++)
        for (uint64_t seed = 0; seed < 8; seed++) {
            ecc_pick_params pp = {.temperature = P[p].temp, .top_k = P[p].top_k, .top_p = P[p].top_p,
                                  .seed = seed, .n_tokens = Vt};
            g->pick(g, &tg, &lg, dz, V, -1, &pp, seed);
            c->pick(c, &tc, &lc, z, V, -1, &pp, seed);
            cr_assert_eq(g->status(g), ECC_OK, "%s", ecc_last_error());
            cr_assert(tg < Vt && tc < Vt, "sampled a padding row: GPU %d, CPU %d (Vt %d)", tg, tc, Vt);
            cr_assert_eq(tg, tc, "sample (T=%g, top_k=%d, top_p=%g, seed %llu): GPU %d, CPU %d", (double)P[p].temp,
                         P[p].top_k, (double)P[p].top_p, (unsigned long long)seed, tg, tc);
        }
    dfree(&bz);
    free(z);
    g->destroy(g), c->destroy(c);
}

/* ---- NMF ops ---- */

Test(gpu_ops, gemm_all_transposes)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int shapes[][3] = {{37, 10, 1030}, {10, 10, 50}, {1, 1, 1}, {1030, 7, 36864 / 32}, {64, 3072, 768}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float alpha = 0.75f, beta = (ta ^ tb) ? 0.5f : 0.0f;
                float *A = gt_rand((size_t)M * K, 1.0), *B = gt_rand((size_t)K * N, 1.0),
                      *o0 = gt_rand((size_t)M * N, 1.0);
                float *ref = gt_dup(o0, sizeof(float) * M * N), *got = malloc(sizeof(float) * M * N);
                c->gemm(c, ref, A, B, M, N, K, ta, tb, alpha, beta);
                dbuf bo, ba, bb;
                float *o = beta != 0 ? dfrom(&bo, g, o0, sizeof(float) * M * N) : dnew(&bo, g, sizeof(float) * M * N);
                g->gemm(g, o, dfrom(&ba, g, A, sizeof(float) * M * K), dfrom(&bb, g, B, sizeof(float) * K * N), M, N, K,
                        ta, tb, alpha, beta);
                dget(&bo, got, "gemm");
                GT_EXPECT_NSE(got, ref, (size_t)M * N, 1e-10, "gemm M=%d N=%d K=%d tA=%d tB=%d beta=%g", M, N, K, ta,
                              tb, (double)beta);
                dfree(&bo), dfree(&ba), dfree(&bb);
                free(A), free(B), free(o0), free(ref), free(got);
            }
    g->destroy(g), c->destroy(c);
}

Test(gpu_ops, nmf_updates_and_dot)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    /* mu_update, with some denominators <= 0 */
    const int64_t n = 100003;
    float *x = gt_rand(n, 1.0), *num = gt_rand(n, 1.0), *den = gt_rand(n, 1.0);
    for (int64_t i = 0; i < n; i++) {
        x[i] = fabsf(x[i]);
        num[i] = fabsf(num[i]);
        if (i % 7 == 0)
            den[i] = -den[i] * (i % 2);
    }
    float *ref = gt_dup(x, sizeof(float) * n), *got = malloc(sizeof(float) * n);
    c->mu_update(c, ref, num, den, n, 1.1920929e-07f);
    dbuf bx, bn, bd;
    float *dx = dfrom(&bx, g, x, sizeof(float) * n);
    g->mu_update(g, dx, dfrom(&bn, g, num, sizeof(float) * n), dfrom(&bd, g, den, sizeof(float) * n), n,
                 1.1920929e-07f);
    dget(&bx, got, "mu_update");
    GT_EXPECT_NSE(got, ref, (size_t)n, 1e-14, "mu_update (same expression: same bits expected)");
    dfree(&bx), dfree(&bn), dfree(&bd);
    free(x), free(num), free(den), free(ref), free(got);
    /* hals_update, with one column whose Q[j, j] <= 0 (left as it is) */
    const int rows = 1037, k = 7;
    float *M = gt_rand((size_t)rows * k, 1.0), *P = gt_rand((size_t)rows * k, 2.0), *Q = gt_rand((size_t)k * k, 0.3);
    for (int i = 0; i < rows * k; i++)
        M[i] = fabsf(M[i]);
    for (int j = 0; j < k; j++)
        Q[j * k + j] = j == 3 ? -0.5f : 1.0f + fabsf(Q[j * k + j]);
    float *mref = gt_dup(M, sizeof(float) * rows * k), *mgot = malloc(sizeof(float) * rows * k);
    c->hals_update(c, mref, P, Q, rows, k);
    dbuf bm, bp, bq;
    float *dm = dfrom(&bm, g, M, sizeof(float) * rows * k);
    g->hals_update(g, dm, dfrom(&bp, g, P, sizeof(float) * rows * k), dfrom(&bq, g, Q, sizeof(float) * k * k), rows, k);
    dget(&bm, mgot, "hals_update");
    GT_EXPECT_NSE(mgot, mref, (size_t)rows * k, 1e-14, "hals_update (the CPU's order, no FMA: same bits expected)");
    dfree(&bm), dfree(&bp), dfree(&bq);
    free(M), free(P), free(Q), free(mref), free(mgot);
    /* dot */
    const int64_t ns[] = {5, 256, 1000003};
    for (int s = 0; s < 3; s++) {
        float *a = gt_rand((size_t)ns[s], 1.0), *b = gt_rand((size_t)ns[s], 1.0);
        double r = c->dot(c, a, b, ns[s]);
        dbuf ba, bb;
        double v = g->dot(g, dfrom(&ba, g, a, sizeof(float) * ns[s]), dfrom(&bb, g, b, sizeof(float) * ns[s]), ns[s]);
        cr_assert_eq(g->status(g), ECC_OK, "%s", ecc_last_error());
        cr_assert(fabs(v - r) <= 1e-12 * fabs(r) + 1e-300, "dot n=%lld: %.17g vs %.17g", (long long)ns[s], v, r);
        dfree(&ba), dfree(&bb);
        free(a), free(b);
    }
    g->destroy(g), c->destroy(c);
}

/* ---- determinism: the same input gives the same bits ---- */

Test(gpu_ops, ops_are_deterministic, .timeout = 120)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32);
    const int T = 130, C = 768, NH = 12, V = 50257, hd = C / NH;
    float *qkv = gt_rand((size_t)T * 3 * C, 1.0), *z = gt_rand((size_t)4 * V, 5.0);
    dbuf bq, bk, bv, bo, ba, bz, bl;
    float *dq = dfrom(&bq, g, qkv, sizeof(float) * T * 3 * C), *dk = dnew(&bk, g, sizeof(float) * T * C),
          *dv = dnew(&bv, g, sizeof(float) * T * C), *o = dnew(&bo, g, sizeof(float) * T * C),
          *a = dnew(&ba, g, sizeof(float) * NH * T * T), *dz = dfrom(&bz, g, z, sizeof(float) * 4 * V);
    float *logits = dnew(&bl, g, sizeof(float) * 4 * V);
    float *o1 = malloc(sizeof(float) * T * C), *o2 = malloc(sizeof(float) * T * C);
    float *a1 = malloc(sizeof(float) * NH * T * T), *a2 = malloc(sizeof(float) * NH * T * T);
    float *l1 = malloc(sizeof(float) * 4 * V), *l2 = malloc(sizeof(float) * 4 * V);
    int32_t tok[4] = {1, 2, 3, 50256};
    dbuf bt;
    int32_t *dt = dfrom(&bt, g, tok, sizeof tok);
    double d1 = 0, d2 = 0;
    for (int run = 0; run < 2; run++) {
        g->attention(g, o, a, (int64_t)T * T, T, dq, dk, dv, 0, T, C, NH, 1.0f / sqrtf((float)hd));
        g->zero(g, logits, sizeof(float) * 4 * V);
        g->add(g, logits, logits, dz, 4 * V);
        g->target_grad(g, logits, NULL, dt, NULL, 0, 4, V);
        double d = g->dot(g, dz, dz, 4 * V);
        dget(&bo, run ? o2 : o1, "attention");
        dget(&ba, run ? a2 : a1, "probabilities");
        dget(&bl, run ? l2 : l1, "target_grad");
        *(run ? &d2 : &d1) = d;
    }
    cr_assert_eq(memcmp(o1, o2, sizeof(float) * T * C), 0, "attention output differs between runs");
    cr_assert_eq(memcmp(a1, a2, sizeof(float) * NH * T * T), 0, "attention probabilities differ between runs");
    cr_assert_eq(memcmp(l1, l2, sizeof(float) * 4 * V), 0, "target_grad differs between runs");
    cr_assert_eq(memcmp(&d1, &d2, sizeof d1), 0, "dot differs between runs");
    dfree(&bq), dfree(&bk), dfree(&bv), dfree(&bo), dfree(&ba), dfree(&bz), dfree(&bl), dfree(&bt);
    free(qkv), free(z), free(o1), free(o2), free(a1), free(a2), free(l1), free(l2);
    g->destroy(g);
}

/* ---- error handling: the first failure is kept, later ops are no-ops ---- */

Test(gpu_ops, a_failed_op_is_reported_by_status)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32);
    const int C = 4100, NH = 2; /* head width 2050: more than the attention kernel supports */
    float *qkv = g->alloc(g, sizeof(float) * 3 * C, "qkv"), *k = g->alloc(g, sizeof(float) * C, "k"),
          *v = g->alloc(g, sizeof(float) * C, "v"), *o = g->alloc(g, sizeof(float) * C, "o");
    cr_assert(qkv && k && v && o);
    cr_assert_eq(g->status(g), ECC_OK);
    g->attention(g, o, NULL, 0, 0, qkv, k, v, 0, 1, C, NH, 1.0f);
    ecc_status s = g->status(g);
    cr_assert_neq(s, ECC_OK, "an unsupported head width must be reported");
    cr_assert(strstr(ecc_last_error(), "head width 2050 is outside") && strstr(ecc_last_error(), "attention.cu"), "%s",
              ecc_last_error());
    g->add(g, o, o, o, C); /* a no-op now */
    cr_assert_eq(g->status(g), s, "the first failure is the one reported");
    cr_assert_null(g->alloc(g, 16, "after the failure"), "alloc after a failure must fail");
    g->free(g, qkv), g->free(g, k), g->free(g, v), g->free(g, o);
    g->destroy(g);
}
