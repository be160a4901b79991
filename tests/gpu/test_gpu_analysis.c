/* The CUDA backend's analysis ops (kernels/analysis.cu: cuBLAS dgemm,
 * cuSOLVER syevd, gesvd, geqrf + orgqr) against the CPU backend's (OpenBLAS,
 * LAPACK), on fresh random inputs in poisoned buffers with guard bytes, and
 * CCA / SVCCA / PWCCA / CKA end to end on both backends. The vectors'
 * signs are each library's own, so vectors are compared through sign-free
 * quantities (|<v_gpu, v_cpu>| = 1 for distinct values). Run under the CUDA
 * emulation without a GPU (kernels/README.md). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/analysis.h"
#include "gpu_testutil.h"
#include "io/safetensors.h"
#include "testutil.h"

static double *rand_d(size_t n)
{
    double *x = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        x[i] = gt_urand();
        if (x[i] == 0)
            x[i] = 0.5;
    }
    return x;
}

/* max_i |a_i - b_i| / max_i |b_i|, every a finite */
static double rel_maxdiff(const double *a, const double *b, size_t n, const char *what)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert(isfinite(a[i]), "%s: element %zu is %g (NaN/Inf, or never written)", what, i, a[i]);
        d = fmax(d, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / (s > 0 ? s : 1);
}

/* |<row i of a, row i of b>| for rows of length n, stride ld */
static double row_cos(const double *a, const double *b, int i, int n, int ld_a, int ld_b)
{
    double s = 0;
    for (int j = 0; j < n; j++)
        s += a[(int64_t)i * ld_a + j] * b[(int64_t)i * ld_b + j];
    return fabs(s);
}

Test(gpu_analysis, dgemm_all_transposes)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    const int M = 37, N = 29, K = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            double *A = rand_d((size_t)M * K), *B = rand_d((size_t)K * N), *C0 = rand_d((size_t)M * N);
            double *ref = malloc(sizeof(double) * M * N), *got = malloc(sizeof(double) * M * N);
            memcpy(ref, C0, sizeof(double) * M * N);
            c->dgemm(c, ref, A, B, M, N, K, ta, tb, 0.75, 0.5);
            dbuf dA, dB, dC;
            double *a = dfrom(&dA, g, A, sizeof(double) * M * K), *b = dfrom(&dB, g, B, sizeof(double) * K * N);
            double *cc = dfrom(&dC, g, C0, sizeof(double) * M * N);
            g->dgemm(g, cc, a, b, M, N, K, ta, tb, 0.75, 0.5);
            dget(&dC, got, "dgemm");
            /* fp64 against fp64, different summation orders: 1e-13 of the largest entry */
            cr_expect(rel_maxdiff(got, ref, (size_t)M * N, "dgemm") <= 1e-13, "dgemm transA %d transB %d", ta, tb);
            /* beta = 0 must not read the (poisoned) output */
            double *cz = dnew(&dC, g, sizeof(double) * M * N);
            g->dgemm(g, cz, a, b, M, N, K, ta, tb, 1.0, 0.0);
            c->dgemm(c, ref, A, B, M, N, K, ta, tb, 1.0, 0.0);
            dget(&dC, got, "dgemm beta 0");
            cr_expect(rel_maxdiff(got, ref, (size_t)M * N, "dgemm beta 0") <= 1e-13);
            dfree(&dA), dfree(&dB), dfree(&dC);
            free(A), free(B), free(C0), free(ref), free(got);
        }
    g->destroy(g);
    c->destroy(c);
}

Test(gpu_analysis, gram_matches_the_cpu)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    static const int shapes[][2] = {{1, 1}, {37, 53}, {130, 300}, {300, 20}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int T = shapes[si][0], N = shapes[si][1];
        float *X = gt_rand((size_t)T * N, 1.0), *Kc = malloc(sizeof(float) * T * T), *Kg = malloc(sizeof(float) * T * T);
        c->gram(c, Kc, X, T, N);
        dbuf dX, dK;
        float *x = dfrom(&dX, g, X, sizeof(float) * T * N), *k = dnew(&dK, g, sizeof(float) * T * T);
        g->gram(g, k, x, T, N);
        dget(&dK, Kg, "gram");
        GT_EXPECT_NSE(Kg, Kc, (size_t)T * T, 1e-12, "gram T %d N %d", T, N); /* fp32 sums of N products */
        for (int i = 0; i < T; i++)
            for (int j = 0; j < i; j++)
                cr_assert(Kg[i * T + j] == Kg[j * T + i], "gram T %d: K[%d][%d] != K[%d][%d]", T, i, j, j, i);
        dfree(&dX), dfree(&dK);
        free(X), free(Kc), free(Kg);
    }
    g->destroy(g);
    c->destroy(c);
}

Test(gpu_analysis, eigh_matches_the_cpu)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    static const int sizes[] = {1, 5, 33, 70};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int n = sizes[si];
        double *R = rand_d((size_t)n * n), *A = malloc(sizeof(double) * n * n);
        for (int i = 0; i < n; i++) /* A = (R + R^T) / 2: symmetric, distinct eigenvalues */
            for (int j = 0; j < n; j++)
                A[i * n + j] = 0.5 * (R[i * n + j] + R[j * n + i]);
        double *wc = malloc(sizeof(double) * n), *Vc = malloc(sizeof(double) * n * n);
        double *wg = malloc(sizeof(double) * n), *Vg = malloc(sizeof(double) * n * n);
        cr_assert_eq(c->eigh(c, wc, Vc, A, n), ECC_OK, "%s", ecc_last_error());
        dbuf dA, dV;
        double *a = dfrom(&dA, g, A, sizeof(double) * n * n), *v = dnew(&dV, g, sizeof(double) * n * n);
        cr_assert_eq(g->eigh(g, wg, v, a, n), ECC_OK, "%s", ecc_last_error());
        dget(&dV, Vg, "eigh V");
        double *Aback = malloc(sizeof(double) * n * n);
        dget(&dA, Aback, "eigh A");
        cr_expect(memcmp(Aback, A, sizeof(double) * n * n) == 0, "eigh must not modify A (n %d)", n);
        cr_expect(rel_maxdiff(wg, wc, (size_t)n, "eigenvalues") <= 1e-12, "eigenvalues, n %d", n);
        for (int k = 0; k < n; k++)
            cr_expect(fabs(row_cos(Vg, Vc, k, n, n, n) - 1) <= 1e-9, "eigenvector %d of %d: |cos| %.15f", k, n,
                      row_cos(Vg, Vc, k, n, n, n));
        dfree(&dA), dfree(&dV);
        free(R), free(A), free(wc), free(Vc), free(wg), free(Vg), free(Aback);
    }
    g->destroy(g);
    c->destroy(c);
}

Test(gpu_analysis, svd_matches_the_cpu, .timeout = 120)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    static const int shapes[][2] = {{1, 1}, {7, 3}, {3, 7}, {50, 50}, {64, 130}, {130, 64}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int m = shapes[si][0], n = shapes[si][1], k = m < n ? m : n;
        double *A = rand_d((size_t)m * n);
        double *sc = malloc(sizeof(double) * k), *Uc = malloc(sizeof(double) * m * k);
        double *sg = malloc(sizeof(double) * k), *Ug = malloc(sizeof(double) * m * k), *s0 = malloc(sizeof(double) * k);
        cr_assert_eq(c->svd(c, sc, Uc, A, m, n), ECC_OK, "%s", ecc_last_error());
        dbuf dA, dU;
        double *a = dfrom(&dA, g, A, sizeof(double) * m * n), *u = dnew(&dU, g, sizeof(double) * m * k);
        cr_assert_eq(g->svd(g, sg, u, a, m, n), ECC_OK, "%s", ecc_last_error());
        cr_assert_eq(g->svd(g, s0, NULL, a, m, n), ECC_OK, "%s", ecc_last_error());
        dget(&dU, Ug, "svd U");
        double *Aback = malloc(sizeof(double) * m * n);
        dget(&dA, Aback, "svd A");
        cr_expect(memcmp(Aback, A, sizeof(double) * m * n) == 0, "svd must not modify A (%d x %d)", m, n);
        cr_expect(rel_maxdiff(sg, sc, (size_t)k, "singular values") <= 1e-12, "singular values %d x %d", m, n);
        cr_expect(rel_maxdiff(s0, sc, (size_t)k, "singular values only") <= 1e-12, "values only, %d x %d", m, n);
        for (int j = 0; j < k; j++) { /* column j of U (m, k): gather both */
            double dot = 0;
            for (int i = 0; i < m; i++)
                dot += Ug[(int64_t)i * k + j] * Uc[(int64_t)i * k + j];
            cr_expect(fabs(fabs(dot) - 1) <= 1e-9, "left vector %d of %d x %d: |cos| %.15f", j, m, n, fabs(dot));
        }
        dfree(&dA), dfree(&dU);
        free(A), free(sc), free(Uc), free(sg), free(Ug), free(s0), free(Aback);
    }
    g->destroy(g);
    c->destroy(c);
}

Test(gpu_analysis, orth_rows_matches_the_cpu)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    static const int shapes[][2] = {{1, 1}, {1, 9}, {6, 6}, {20, 53}, {64, 300}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int n = shapes[si][0], m = shapes[si][1];
        double *A = rand_d((size_t)n * m), *Qc = malloc(sizeof(double) * n * m), *Qg = malloc(sizeof(double) * n * m);
        cr_assert_eq(c->orth_rows(c, Qc, A, n, m), ECC_OK, "%s", ecc_last_error());
        dbuf dA, dQ;
        double *a = dfrom(&dA, g, A, sizeof(double) * n * m), *q = dnew(&dQ, g, sizeof(double) * n * m);
        cr_assert_eq(g->orth_rows(g, q, a, n, m), ECC_OK, "%s", ecc_last_error());
        dget(&dQ, Qg, "orth_rows");
        for (int k = 0; k < n; k++) {
            cr_expect(fabs(row_cos(Qg, Qc, k, m, m, m) - 1) <= 1e-10, "row %d of %d x %d: |cos| %.15f", k, n, m,
                      row_cos(Qg, Qc, k, m, m, m));
            cr_expect(fabs(row_cos(Qg, Qg, k, m, m, m) - 1) <= 1e-12, "row %d is not a unit vector", k);
        }
        dfree(&dA), dfree(&dQ);
        free(A), free(Qc), free(Qg);
    }
    g->destroy(g);
    c->destroy(c);
}

/* The four methods end to end on the fixture's deep-model activations (12
 * layers, 53 tokens, 8 neurons; CKA on 3 of them: each of its dot products
 * takes seconds under the emulation) and its 256-neuron layers (CKA's Gram
 * route, SVCCA with more neurons than tokens): GPU and CPU agree to 1e-9
 * (fp64 orchestration; CKA's fp32 products 1e-6). */
Test(gpu_analysis, compare_end_to_end_matches_the_cpu, .timeout = 300)
{
    ecc_backend *g = gpu_backend(ECC_PRECISION_FP32), *c = cpu_backend();
    int64_t s[4], sb[4];
    float *x = fixture_tensor("analysis_reference.safetensors", "in.deep_act", ECC_F32, s, NULL);
    float *big = fixture_tensor("analysis_reference.safetensors", "in.tiny_act", ECC_F32, sb, NULL);
    const int T = (int)s[1], N = (int)s[2];
    for (int m = ECC_COMPARE_CCA; m <= ECC_COMPARE_CKA; m++) {
        const int L = m == ECC_COMPARE_CKA ? 3 : (int)s[0];
        ecc_compare_options o;
        ecc_compare_options_default(&o);
        o.method = (ecc_compare_method)m;
        o.dims = 5;
        double vc[144], vg[144];
        cr_assert_eq(ecc_analysis_compare(c, vc, x, x, L, L, N, N, T, &o), ECC_OK, "%s", ecc_last_error());
        cr_assert_eq(ecc_analysis_compare(g, vg, x, x, L, L, N, N, T, &o), ECC_OK, "%s", ecc_last_error());
        const double tol = m == ECC_COMPARE_CKA ? 1e-6 : 1e-9;
        for (int i = 0; i < L * L; i++)
            cr_expect(fabs(vg[i] - vc[i]) <= tol, "%s layers %d, %d: GPU %.15f, CPU %.15f",
                      ecc_compare_method_name((ecc_compare_method)m), i / L, i % L, vg[i], vc[i]);
        if (m == ECC_COMPARE_SVCCA || m == ECC_COMPARE_CKA) {
            o.dims = 20;
            double bc[4], bg[4];
            cr_assert_eq(ecc_analysis_compare(c, bc, big, big, 2, 2, 256, 256, T, &o), ECC_OK, "%s", ecc_last_error());
            cr_assert_eq(ecc_analysis_compare(g, bg, big, big, 2, 2, 256, 256, T, &o), ECC_OK, "%s", ecc_last_error());
            for (int i = 0; i < 4; i++)
                cr_expect(fabs(bg[i] - bc[i]) <= tol, "%s, 256 neurons, pair %d: GPU %.15f, CPU %.15f",
                          ecc_compare_method_name((ecc_compare_method)m), i, bg[i], bc[i]);
        }
    }
    free(x);
    free(big);
    g->destroy(g);
    c->destroy(c);
}
