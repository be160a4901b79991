/* CCA, SVCCA, PWCCA and linear CKA (host/analysis/) against Ecco 0.1.2's own
 * ecco.analysis on the fixture models' activation matrices
 * (tools/fixtures_analysis.py -> tests/fixtures/analysis_reference.safetensors),
 * the known cases (a layer against itself, against a random rotation of
 * itself), rank-deficient inputs, the pair API in Ecco's layout, and the
 * errors. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/analysis.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define REF "analysis_reference.safetensors"

static ecc_compare_method method_of(const char *name)
{
    for (int m = ECC_COMPARE_CCA; m <= ECC_COMPARE_CKA; m++)
        if (!strcmp(ecc_compare_method_name((ecc_compare_method)m), name))
            return (ecc_compare_method)m;
    cr_assert_fail("unknown method %s", name);
    return ECC_COMPARE_CKA;
}

static ecc_backend *cpu(void)
{
    ecc_backend *be = NULL;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK, "%s", ecc_last_error());
    return be;
}

/* Every case and method of the fixture, on the CPU backend: each value within
 * its stated tolerance of Ecco's (float64 inputs): max(1e-6, 10 x Ecco's own
 * change under a ~2-ulp perturbation of its input), so 1e-6 wherever the
 * problem is well-conditioned; and within 1e-6 + that of Ecco run on the
 * float32 inputs (its float32 SVD and products differ from float64 by up to
 * 3.1e-7 on these inputs). */
Test(analysis, equals_ecco_on_the_fixture_matrices, .timeout = 120)
{
    char *path = fixture_path(REF);
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, path), ECC_OK, "%s", ecc_last_error());
    cJSON *cases = cJSON_Parse(ecc_st_meta(f, "cases"));
    cr_assert(cJSON_IsArray(cases), "%s: no cases metadata", path);
    ecc_backend *be = cpu();
    int n_values = 0, n_tight = 0;
    double worst_tight = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *name = cJSON_GetObjectItem(c, "case")->valuestring;
        char *ka = fmt("in.%s", cJSON_GetObjectItem(c, "a")->valuestring);
        char *kb = fmt("in.%s", cJSON_GetObjectItem(c, "b")->valuestring);
        int64_t sa[4], sb[4];
        float *a = fixture_tensor(REF, ka, ECC_F32, sa, NULL);
        float *b = fixture_tensor(REF, kb, ECC_F32, sb, NULL);
        const int same = !strcmp(ka, kb);
        cr_assert_eq(sa[1], sb[1]);
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(c, "methods"))
        {
            ecc_compare_options o;
            ecc_compare_options_default(&o);
            o.method = method_of(m->valuestring);
            o.dims = cJSON_GetObjectItem(c, "dims")->valueint;
            const int La = (int)sa[0], Lb = (int)sb[0];
            double *got = malloc(sizeof(double) * (size_t)La * Lb);
            cr_assert_eq(ecc_analysis_compare(be, got, a, same ? a : b, La, Lb, (int)sa[2], (int)sb[2], (int)sa[1], &o),
                         ECC_OK, "%s %s: %s", name, m->valuestring, ecc_last_error());
            char *k = fmt("%s.%s", name, m->valuestring), *kt = fmt("%s.tol", k), *k32 = fmt("%s.f32", k);
            double *ref = fixture_tensor(REF, k, ECC_F64, NULL, NULL);
            double *tol = fixture_tensor(REF, kt, ECC_F64, NULL, NULL);
            double *r32 = fixture_tensor(REF, k32, ECC_F64, NULL, NULL);
            for (int i = 0; i < La * Lb; i++) {
                const double d = fabs(got[i] - ref[i]);
                cr_expect(d <= tol[i], "%s layer %d vs %d: eccolo %.12f, Ecco %.12f (|diff| %.2e > tolerance %.1e)", k,
                          i / Lb, i % Lb, got[i], ref[i], d, tol[i]);
                cr_expect(fabs(got[i] - r32[i]) <= 1e-6 + tol[i], "%s layer %d vs %d: eccolo %.12f, Ecco on float32 "
                          "%.12f", k, i / Lb, i % Lb, got[i], r32[i]);
                n_values++;
                if (tol[i] <= 1e-6) {
                    n_tight++;
                    worst_tight = fmax(worst_tight, d);
                }
            }
            free(got);
            free(ref);
            free(tol);
            free(r32);
            free(k);
            free(kt);
            free(k32);
        }
        free(a);
        free(b);
        free(ka);
        free(kb);
    }
    cr_log_info("%d values, %d well-conditioned (tolerance 1e-6): largest difference there %.2e", n_values, n_tight,
                worst_tight);
    cr_expect(n_tight > n_values * 9 / 10, "most fixture values should be well-conditioned (%d of %d)", n_tight,
              n_values);
    be->destroy(be);
    cJSON_Delete(cases);
    ecc_st_close(f);
    free(path);
}

/* The pair API takes Ecco's layout (neurons, tokens) and gives Ecco's values. */
Test(analysis, pair_api_in_eccos_layout)
{
    int64_t s[4];
    float *x = fixture_tensor(REF, "in.deep_act", ECC_F32, s, NULL);  /* (12, 53, 8) */
    float *y = fixture_tensor(REF, "in.deep_hid", ECC_F32, NULL, NULL); /* (13, 53, 16) */
    const int T = (int)s[1], n1 = 8, n2 = 16, i = 4, j = 7;
    float *a1 = malloc(sizeof(float) * n1 * T), *a2 = malloc(sizeof(float) * n2 * T);
    for (int t = 0; t < T; t++) { /* layer i of x and j of y, transposed to (neurons, tokens) */
        for (int k = 0; k < n1; k++)
            a1[k * T + t] = x[((int64_t)i * T + t) * n1 + k];
        for (int k = 0; k < n2; k++)
            a2[k * T + t] = y[((int64_t)j * T + t) * n2 + k];
    }
    double v[4];
    cr_assert_eq(ecc_cca(&v[0], a1, a2, n1, n2, T), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_svcca(&v[1], a1, a2, 8, n1, n2, T), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_pwcca(&v[2], a1, a2, 1e-10, n1, n2, T), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_cka(&v[3], a1, a2, n1, n2, T), ECC_OK, "%s", ecc_last_error());
    static const char *const names[] = {"cca", "svcca", "pwcca", "cka"};
    for (int m = 0; m < 4; m++) {
        char *k = fmt("deep_act_hid.%s", names[m]), *kt = fmt("%s.tol", k);
        double *ref = fixture_tensor(REF, k, ECC_F64, NULL, NULL), *tol = fixture_tensor(REF, kt, ECC_F64, NULL, NULL);
        const int at = i * 13 + j;
        cr_expect(fabs(v[m] - ref[at]) <= tol[at], "ecc_%s: %.12f, Ecco %.12f (tolerance %.1e)", names[m], v[m],
                  ref[at], tol[at]);
        free(ref);
        free(tol);
        free(k);
        free(kt);
    }
    free(a1);
    free(a2);
    free(x);
    free(y);
}

/* Q (n, n): a random rotation (the Q of a Gaussian matrix's QR). */
static double *random_rotation(int n, uint64_t seed)
{
    double *Q = malloc(sizeof(double) * (size_t)n * n), *tau = malloc(sizeof(double) * (size_t)n);
    uint64_t st = seed;
    for (int i = 0; i < n * n; i++) { /* Box-Muller */
        double u1 = test_uniform(&st), u2 = test_uniform(&st);
        Q[i] = sqrt(-2 * log(u1 + 1e-300)) * cos(6.283185307179586 * u2);
    }
    cr_assert_eq(LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, Q, n, tau), 0);
    cr_assert_eq(LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, Q, n, tau), 0);
    free(tau);
    return Q;
}

/* Y (T, N) = X (T, N) Q, in double then rounded. */
static float *rotate(const float *X, const double *Q, int T, int N)
{
    float *Y = malloc(sizeof(float) * (size_t)T * N);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < N; k++)
                s += (double)X[(int64_t)t * N + k] * Q[(int64_t)k * N + j];
            Y[(int64_t)t * N + j] = (float)s;
        }
    return Y;
}

static double compare1(ecc_backend *be, ecc_compare_method m, const float *a, const float *b, int Na, int Nb, int T,
                       int dims)
{
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    o.method = m;
    o.dims = dims;
    double v = NAN;
    cr_assert_eq(ecc_analysis_compare(be, &v, a, b, 1, 1, Na, Nb, T, &o), ECC_OK, "%s: %s",
                 ecc_compare_method_name(m), ecc_last_error());
    return v;
}

/* A layer against itself and against a random rotation of itself: 1 for
 * every method. CCA's canonical correlations are lambda / (lambda + eps), so
 * the bound is 1e-6 on well-conditioned layers (the deep model's, smallest
 * rescaled covariance eigenvalue above 1e-4); the float32 rounding of the
 * rotated copy costs CKA ~1e-7. CKA also with more neurons than tokens. */
Test(analysis, self_and_rotation_give_one, .timeout = 60)
{
    int64_t s[4];
    float *x = fixture_tensor(REF, "in.deep_hid", ECC_F32, s, NULL); /* (13, 53, 16) */
    float *big = fixture_tensor(REF, "in.tiny_act", ECC_F32, NULL, NULL); /* (2, 53, 256) */
    const int T = (int)s[1], N = (int)s[2];
    ecc_backend *be = cpu();
    double *Q = random_rotation(N, 2101);
    for (int l = 0; l < 12; l++) { /* not 12: the final layer norm leaves that one rank-deficient */
        const float *X = x + (int64_t)l * T * N;
        float *Y = rotate(X, Q, T, N);
        for (int m = ECC_COMPARE_CCA; m <= ECC_COMPARE_CKA; m++) {
            double self = compare1(be, (ecc_compare_method)m, X, X, N, N, T, 10);
            double rot = compare1(be, (ecc_compare_method)m, X, Y, N, N, T, 10);
            cr_expect(fabs(self - 1) <= 1e-6, "layer %d %s against itself: %.12f", l,
                      ecc_compare_method_name((ecc_compare_method)m), self);
            cr_expect(fabs(rot - 1) <= 1e-6, "layer %d %s against a rotation of itself: %.12f", l,
                      ecc_compare_method_name((ecc_compare_method)m), rot);
        }
        free(Y);
    }
    free(Q);
    const int NB = 256; /* 256 neurons over 53 tokens */
    double *QB = random_rotation(NB, 77);
    float *YB = rotate(big, QB, T, NB);
    cr_expect(fabs(compare1(be, ECC_COMPARE_CKA, big, YB, NB, NB, T, 0) - 1) <= 1e-6, "CKA, 256 neurons, rotated");
    cr_expect(fabs(compare1(be, ECC_COMPARE_SVCCA, big, YB, NB, NB, T, 20) - 1) <= 1e-6, "SVCCA, 256 neurons, rotated");
    free(QB);
    free(YB);
    be->destroy(be);
    free(x);
    free(big);
}

/* Rank-deficient inputs: duplicated and scaled neurons (a singular
 * covariance, regularised by eps) still give 1 against the original; a
 * constant layer gives 0 (CCA family, Ecco's zero dict) and NaN (CKA, 0/0 as
 * in Ecco). */
Test(analysis, rank_deficient_and_constant_layers)
{
    int64_t s[4];
    float *x = fixture_tensor(REF, "in.deep_act", ECC_F32, s, NULL); /* (12, 53, 8) */
    const int T = (int)s[1], N = (int)s[2], N2 = 2 * N;
    float *dup = malloc(sizeof(float) * (size_t)T * N2), *flat = malloc(sizeof(float) * (size_t)T * N);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++) {
            dup[t * N2 + j] = x[t * N + j];
            dup[t * N2 + N + j] = 2.0f * x[t * N + j];
            flat[t * N + j] = 0.5f * (float)j;
        }
    ecc_backend *be = cpu();
    for (int m = ECC_COMPARE_CCA; m <= ECC_COMPARE_CKA; m++) {
        const char *name = ecc_compare_method_name((ecc_compare_method)m);
        double v = compare1(be, (ecc_compare_method)m, x, dup, N, N2, T, 8);
        cr_expect(fabs(v - 1) <= 1e-5, "%s of a layer and its duplicated neurons: %.12f", name, v);
        double z = compare1(be, (ecc_compare_method)m, x, flat, N, N, T, 8);
        if (m == ECC_COMPARE_CKA)
            cr_expect(isnan(z), "cka against a constant layer: %g (Ecco: nan)", z);
        else
            cr_expect_eq(z, 0.0, "%s against a constant layer: %g (Ecco: 0)", name, z);
    }
    be->destroy(be);
    free(dup);
    free(flat);
    free(x);
}

/* CKA's two routes (the Gram matrices, or the features' products per pair)
 * give the same values, and the choice follows the cost. */
Test(analysis, cka_routes_agree)
{
    cr_expect(ecc_analysis_cka_gram(24, 144, 1024, 3072, 3072, (size_t)64 << 30), "gpt2-sized runs: Gram route");
    cr_expect(!ecc_analysis_cka_gram(2, 1, 100000, 768, 768, (size_t)64 << 30), "many tokens: features");
    cr_expect(!ecc_analysis_cka_gram(24, 144, 1024, 3072, 3072, (size_t)100 << 20), "no memory: features");
    int64_t s[4];
    float *x = fixture_tensor(REF, "in.tiny_act", ECC_F32, s, NULL); /* (2, 53, 256): Gram route */
    float *y = fixture_tensor(REF, "in.deep_act", ECC_F32, NULL, NULL); /* (12, 53, 8): features */
    double *ref = fixture_tensor(REF, "tiny_act.cka", ECC_F64, NULL, NULL);
    const int T = (int)s[1];
    cr_assert(ecc_analysis_cka_gram(2, 3, T, 256, 256, (size_t)1 << 30));
    cr_assert(!ecc_analysis_cka_gram(12, 78, T, 8, 8, (size_t)1 << 30));
    ecc_backend *be = cpu();
    double v[4], w[4];
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    cr_assert_eq(ecc_analysis_compare(be, v, x, x, 2, 2, 256, 256, T, &o), ECC_OK, "%s", ecc_last_error());
    /* the same layers, one side a copy: not "same", so P = 4 pairs, still Gram */
    float *x2 = malloc(sizeof(float) * 2 * T * 256);
    memcpy(x2, x, sizeof(float) * 2 * T * 256);
    cr_assert_eq(ecc_analysis_compare(be, w, x, x2, 2, 2, 256, 256, T, &o), ECC_OK, "%s", ecc_last_error());
    for (int i = 0; i < 4; i++) {
        cr_expect(fabs(v[i] - ref[i]) <= 1e-6, "Gram route, pair %d: %.12f vs Ecco %.12f", i, v[i], ref[i]);
        cr_expect(fabs(w[i] - v[i]) <= 1e-12, "pair %d: %.15f with a copy, %.15f with itself", i, w[i], v[i]);
    }
    double *r2 = fixture_tensor(REF, "deep_act.cka", ECC_F64, NULL, NULL), g[144];
    cr_assert_eq(ecc_analysis_compare(be, g, y, y, 12, 12, 8, 8, T, &o), ECC_OK, "%s", ecc_last_error());
    for (int i = 0; i < 144; i++)
        cr_expect(fabs(g[i] - r2[i]) <= 1e-6, "feature route, pair %d: %.12f vs Ecco %.12f", i, g[i], r2[i]);
    be->destroy(be);
    free(x);
    free(x2);
    free(y);
    free(ref);
    free(r2);
}

/* The CPU's Gram op against float64 sums: within fp32 rounding, both triangles, exactly symmetric. */
Test(analysis, gram_op_is_x_xt)
{
    ecc_backend *be = cpu();
    const int T = 70, N = 300;
    float *X = malloc(sizeof(float) * T * N), *K = malloc(sizeof(float) * T * T);
    uint64_t st = 7;
    for (int i = 0; i < T * N; i++)
        X[i] = (float)(test_uniform(&st) - 0.3);
    for (int i = 0; i < T * T; i++)
        K[i] = NAN; /* poisoned: every entry must be written */
    be->gram(be, K, X, T, N);
    double worst = 0;
    for (int i = 0; i < T; i++)
        for (int j = 0; j < T; j++) {
            double s = 0, a = 0;
            for (int k = 0; k < N; k++) {
                s += (double)X[i * N + k] * X[j * N + k];
                a += fabs((double)X[i * N + k] * X[j * N + k]);
            }
            cr_assert(K[i * T + j] == K[j * T + i], "K[%d][%d] != K[%d][%d]", i, j, j, i);
            worst = fmax(worst, fabs(K[i * T + j] - s) / a); /* relative to the sum of |terms| */
        }
    cr_expect(worst <= 1e-5, "gram: error %.2e of the sum of |terms| (fp32 over %d terms)", worst, N);
    be->destroy(be);
    free(X);
    free(K);
}

/* Bad input: one-line errors that say what to do. */
Test(analysis, bad_input_is_refused)
{
    float x[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13};
    double v;
    /* (neurons 3, tokens 4) for CCA: fine; (4 neurons, 3 tokens): refused as Ecco asserts */
    cr_assert_eq(ecc_cca(&v, x, x, 3, 3, 4), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_cca(&v, x, x, 4, 4, 3), ECC_ERR_INPUT);
    cr_expect(strstr(ecc_last_error(), "fewer neurons than tokens") && strstr(ecc_last_error(), "svcca or cka"), "%s",
              ecc_last_error());
    cr_assert_eq(ecc_pwcca(&v, x, x, 1e-10, 6, 6, 2), ECC_ERR_INPUT);
    cr_assert_eq(ecc_svcca(&v, x, x, 5, 3, 3, 4), ECC_ERR_INPUT);
    cr_expect(strstr(ecc_last_error(), "dims 5"), "%s", ecc_last_error());
    cr_assert_eq(ecc_svcca(&v, x, x, 0, 3, 3, 4), ECC_ERR_INPUT);
    cr_assert_eq(ecc_cka(&v, x, x, 12, 12, 1), ECC_ERR_INPUT);
    cr_expect(strstr(ecc_last_error(), "at least 2 tokens"), "%s", ecc_last_error());
    cr_assert_eq(ecc_cka(&v, x, x, 0, 3, 4), ECC_ERR_INPUT);
    cr_assert_eq(ecc_cka(NULL, x, x, 3, 3, 4), ECC_ERR_INPUT);
    cr_assert_eq(ecc_pwcca(&v, x, x, -1, 3, 3, 4), ECC_ERR_INPUT);
    float bad[12];
    memcpy(bad, x, sizeof bad);
    bad[5] = NAN;
    cr_assert_eq(ecc_cka(&v, x, bad, 3, 3, 4), ECC_ERR_INPUT);
    cr_expect(strstr(ecc_last_error(), "finite"), "%s", ecc_last_error());
    cr_expect(!strchr(ecc_last_error(), '\n'));
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    o.method = (ecc_compare_method)9;
    cr_assert_eq(ecc_compare_layers(&v, x, x, 1, 1, 3, 3, 4, &o), ECC_ERR_INPUT);
}
