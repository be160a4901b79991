/* NMF against scikit-learn (tools/fixtures_nmf.py) on the fixture runs'
 * activation matrices: the relative error is no worse than 1.02x that of
 * scikit-learn called as Ecco calls it; one multiplicative update equals a
 * float64 reference; NNDSVD equals scikit-learn's initialisation; the CLI
 * concatenates runs and rejects bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "nmf/nmf.h"
#include "io/run_reader.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

static const char *k_models[] = {"tiny-gpt2", "tiny-gpt2-f16", "tiny-gpt2-deep"};

static float *load_x(const char *model, int *T, int *F)
{
    char rel[128];
    int64_t s[4];
    snprintf(rel, sizeof rel, "%s/nmf_reference.safetensors", model);
    float *X = fixture_tensor(rel, "X", ECC_F32, s, NULL);
    *T = (int)s[0];
    *F = (int)s[1];
    return X;
}

static double sk_value(const char *model, const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "%s/nmf_reference.safetensors", model);
    double *v = fixture_tensor(rel, name, ECC_F64, NULL, NULL), x = v[0];
    free(v);
    return x;
}

/* ||X - W H||_F / ||X||_F in double, independently of the library */
static double exact_error(const float *X, const float *W, const float *H, int T, int F, int k)
{
    double num = 0, den = 0;
    for (int t = 0; t < T; t++)
        for (int f = 0; f < F; f++) {
            double wh = 0;
            for (int j = 0; j < k; j++)
                wh += (double)W[t * k + j] * H[(size_t)j * F + f];
            double x = X[(size_t)t * F + f];
            num += (x - wh) * (x - wh);
            den += x * x;
        }
    return sqrt(num / den);
}

Test(nmf, error_is_within_2_percent_of_scikit_learn)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK);
    for (int m = 0; m < 3; m++) {
        int T, F;
        float *X = load_x(k_models[m], &T, &F);
        for (int k = 4; k <= 10; k += 6) {
            char key[32];
            snprintf(key, sizeof key, "sk_error_k%d", k);
            double sk = sk_value(k_models[m], key);
            for (int solver = 0; solver < 2; solver++) {
                ecc_nmf_options o;
                ecc_nmf_options_default(&o);
                o.k = k;
                o.solver = (ecc_nmf_solver)solver;
                ecc_nmf_result res;
                cr_assert_eq(ecc_nmf(&res, be, X, T, F, &o), ECC_OK, "%s", ecc_last_error());
                double exact = exact_error(X, res.W, res.H, T, F, k);
                /* the reported error comes from Gram-matrix traces: it must agree with the direct sum */
                cr_assert(fabs(exact - res.rel_error) < 1e-4, "%s k=%d: reported %.6f, direct %.6f", k_models[m], k,
                          res.rel_error, exact);
                cr_assert(exact <= 1.02 * sk, "%s k=%d %s: error %.5f > 1.02 x scikit-learn's %.5f", k_models[m], k,
                          ecc_nmf_solver_name(o.solver), exact, sk);
                for (size_t i = 0; i < (size_t)T * k; i++)
                    cr_assert(res.W[i] >= 0);
                for (size_t i = 0; i < (size_t)k * F; i++)
                    cr_assert(res.H[i] >= 0);
                cr_log_info("%s k=%d %s: %.5f (scikit-learn cd %.5f), %d iterations", k_models[m], k,
                            ecc_nmf_solver_name(o.solver), exact, sk, res.iterations);
                ecc_nmf_result_free(&res);
            }
        }
        free(X);
    }
    be->destroy(be);
}

/* One iteration by hand in double: W <- W * (X H^T) / (W H H^T), then
 * H <- H * (W^T X) / (W^T W H), from the same random start. */
Test(nmf, one_multiplicative_update_equals_the_float64_formula)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK);
    int T, F;
    float *X = load_x("tiny-gpt2-deep", &T, &F);
    ecc_nmf_options o;
    ecc_nmf_options_default(&o);
    o.k = 5;
    o.max_iter = 1;
    o.seed = 11;
    int k = o.k;
    float *W0 = malloc(sizeof(float) * T * k), *H0 = malloc(sizeof(float) * k * F);
    cr_assert_eq(ecc_nmf_initialise(W0, H0, X, T, F, &o), ECC_OK);
    ecc_nmf_result res;
    cr_assert_eq(ecc_nmf(&res, be, X, T, F, &o), ECC_OK);
    cr_assert_eq(res.iterations, 1);
    double *W = malloc(sizeof(double) * T * k), *H = malloc(sizeof(double) * k * F);
    for (int i = 0; i < T * k; i++)
        W[i] = W0[i];
    for (int i = 0; i < k * F; i++)
        H[i] = H0[i];
    double *HHt = calloc((size_t)k * k, sizeof(double)), *WtW = calloc((size_t)k * k, sizeof(double));
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            for (int f = 0; f < F; f++)
                HHt[a * k + b] += H[a * F + f] * H[b * F + f];
    double *Wn = malloc(sizeof(double) * T * k);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < k; j++) {
            double num = 0, den = 0;
            for (int f = 0; f < F; f++)
                num += X[(size_t)t * F + f] * H[j * F + f];
            for (int l = 0; l < k; l++)
                den += W[t * k + l] * HHt[l * k + j];
            Wn[t * k + j] = W[t * k + j] * num / den;
        }
    memcpy(W, Wn, sizeof(double) * T * k);
    free(Wn);
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++)
            for (int t = 0; t < T; t++)
                WtW[a * k + b] += W[t * k + a] * W[t * k + b];
    double *Hn = malloc(sizeof(double) * k * F);
    for (int j = 0; j < k; j++)
        for (int f = 0; f < F; f++) {
            double num = 0, den = 0;
            for (int t = 0; t < T; t++)
                num += W[t * k + j] * X[(size_t)t * F + f];
            for (int l = 0; l < k; l++)
                den += WtW[j * k + l] * H[l * F + f];
            Hn[j * F + f] = H[j * F + f] * num / den;
        }
    cr_assert(rel_err(res.W, W, (size_t)T * k) < 1e-5, "W after one update: %.3g", rel_err(res.W, W, (size_t)T * k));
    cr_assert(rel_err(res.H, Hn, (size_t)k * F) < 1e-5, "H after one update: %.3g",
              rel_err(res.H, Hn, (size_t)k * F));
    free(W0), free(H0), free(W), free(H), free(HHt), free(WtW), free(Hn), free(X);
    ecc_nmf_result_free(&res);
    be->destroy(be);
}

/* The backend's gemm on NMF's shapes, which the CPU cuts into slices (rows,
 * or the reduction, past 2 x 1024), against float64: every transpose, beta 0
 * and beta != 0, and an ordinary shape. */
Test(nmf, gemm_equals_float64_on_nmf_shapes)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK);
    const int shapes[][3] = {{9000, 10, 63}, {63, 10, 9000}, {10, 10, 5000}, {40, 30, 50}}; /* M, N, K */
    uint64_t seed = 9;
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++)
        for (int tr = 0; tr < 4; tr++) {
            const int M = shapes[sh][0], N = shapes[sh][1], K = shapes[sh][2], ta = tr & 1, tb = tr >> 1;
            const float alpha = 1.5f, beta = sh == 3 ? 0.5f : 0.0f;
            float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N);
            double *ref = malloc(sizeof(double) * M * N);
            for (int i = 0; i < M * K; i++)
                A[i] = (float)test_uniform(&seed);
            for (int i = 0; i < K * N; i++)
                B[i] = (float)test_uniform(&seed);
            for (int i = 0; i < M * N; i++)
                C[i] = beta != 0 ? (float)test_uniform(&seed) : NAN; /* beta 0: out is never read */
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * M + m] : A[m * K + k]) * (tb ? B[n * K + k] : B[k * N + n]);
                    ref[m * N + n] = alpha * s + (beta != 0 ? beta * (double)C[m * N + n] : 0);
                }
            be->gemm(be, C, A, B, M, N, K, ta, tb, alpha, beta);
            double e = rel_err(C, ref, (size_t)M * N);
            cr_expect(e < 1e-6, "gemm M=%d N=%d K=%d transA=%d transB=%d: %.3g from float64", M, N, K, ta, tb, e);
            free(A), free(B), free(C), free(ref);
        }
    be->destroy(be);
}

/* The backend's HALS sweep against the same sweep in float64: blocks of 64
 * rows with a partial last block (n = 100, 37), the row-by-row path for
 * k > 128, and a column whose Q[j, j] <= 0, which stays as it was. */
Test(nmf, hals_update_equals_the_float64_sweep)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK);
    const int shapes[][2] = {{100, 10}, {37, 3}, {37, 130}};
    uint64_t seed = 5;
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
        const int n = shapes[sh][0], k = shapes[sh][1];
        float *M = malloc(sizeof(float) * n * k), *P = malloc(sizeof(float) * n * k), *Q = malloc(sizeof(float) * k * k);
        float *G = malloc(sizeof(float) * 2 * k * k);
        double *ref = malloc(sizeof(double) * n * k);
        for (int i = 0; i < n * k; i++) {
            M[i] = test_uniform(&seed);
            P[i] = 4 * test_uniform(&seed) - 1;
            ref[i] = M[i];
        }
        for (int i = 0; i < 2 * k * k; i++) /* Q = G^T G + I: a Gram matrix, as the solver passes */
            G[i] = test_uniform(&seed);
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) {
                double q = a == b;
                for (int r = 0; r < 2 * k; r++)
                    q += (double)G[r * k + a] * G[r * k + b];
                Q[a * k + b] = (float)q;
            }
        Q[(k / 2) * k + k / 2] = 0; /* column k/2 is skipped */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) {
                if (!(Q[j * k + j] > 0))
                    continue;
                double s = 0;
                for (int l = 0; l < k; l++)
                    s += ref[i * k + l] * Q[l * k + j];
                double v = ref[i * k + j] + (P[i * k + j] - s) / Q[j * k + j];
                ref[i * k + j] = v > 0 ? v : 0;
            }
        be->hals_update(be, M, P, Q, n, k);
        double e = rel_err(M, ref, (size_t)n * k);
        cr_expect(e < 1e-5, "hals_update n=%d k=%d: %.3g from the float64 sweep", n, k, e);
        int kept = 1;
        for (int i = 0; i < n; i++)
            kept &= M[i * k + k / 2] == (float)ref[i * k + k / 2];
        cr_expect(kept, "hals_update n=%d k=%d changed the column whose Q[j, j] is 0", n, k);
        free(M), free(P), free(Q), free(G), free(ref);
    }
    be->destroy(be);
}

Test(nmf, nndsvd_initialisation_equals_scikit_learn)
{
    int T, F;
    float *X = load_x("tiny-gpt2", &T, &F);
    for (int a = 0; a < 2; a++) {
        const char *init = a ? "nndsvda" : "nndsvd";
        ecc_nmf_options o;
        ecc_nmf_options_default(&o);
        o.k = 10;
        o.init = a ? ECC_NMF_NNDSVDA : ECC_NMF_NNDSVD;
        float *W = malloc(sizeof(float) * T * 10), *H = malloc(sizeof(float) * 10 * F);
        cr_assert_eq(ecc_nmf_initialise(W, H, X, T, F, &o), ECC_OK, "%s", ecc_last_error());
        char rel[128], name[32];
        snprintf(rel, sizeof rel, "tiny-gpt2/nmf_reference.safetensors");
        snprintf(name, sizeof name, "%s_W", init);
        float *rw = fixture_tensor(rel, name, ECC_F32, NULL, NULL);
        snprintf(name, sizeof name, "%s_H", init);
        float *rh = fixture_tensor(rel, name, ECC_F32, NULL, NULL);
        /* fp32 LAPACK against float64 numpy SVD under scikit-learn's NNDSVD code: 1e-4 */
        double ew = rel_err_f(W, rw, (size_t)T * 10), eh = rel_err_f(H, rh, (size_t)10 * F);
        cr_assert(ew < 1e-4 && eh < 1e-4, "%s: W differs by %.3g, H by %.3g", init, ew, eh);
        free(W), free(H), free(rw), free(rh);
    }
    free(X);
}

Test(nmf, results_are_deterministic)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK);
    int T, F;
    float *X = load_x("tiny-gpt2", &T, &F);
    ecc_nmf_options o;
    ecc_nmf_options_default(&o);
    o.k = 6;
    ecc_nmf_result a, b;
    cr_assert_eq(ecc_nmf(&a, be, X, T, F, &o), ECC_OK);
    cr_assert_eq(ecc_nmf(&b, be, X, T, F, &o), ECC_OK);
    cr_assert_eq(memcmp(a.W, b.W, sizeof(float) * T * 6), 0);
    cr_assert_eq(a.iterations, b.iterations);
    cr_assert(a.iterations % 10 == 0 || a.iterations == o.max_iter, "stops only at a check (every 10 iterations)");
    ecc_nmf_result_free(&a);
    ecc_nmf_result_free(&b);
    free(X);
    be->destroy(be);
}

/* ---- the command line ---- */

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static char *make_run(const char *tag, const char *prompt, int activations)
{
    char *m = fixture_path("tiny-gpt2"), *dir = test_tmpdir(tag), *e;
    int rc = run_cli(NULL, &e,
                     activations ? ARGS("generate", "--model", m, "--prompt", prompt, "--max-new-tokens", "6",
                                        "--activations", "--out", dir, "--quiet")
                                 : ARGS("generate", "--model", m, "--prompt", prompt, "--max-new-tokens", "6",
                                        "--out", dir, "--quiet"));
    cr_assert_eq(rc, 0, "%s", e);
    free(e);
    free(m);
    return dir;
}

static void expect_error(const char *const *args, const char *want)
{
    char *o, *e;
    int rc = run_cli(&o, &e, args);
    cr_assert_eq(rc, 2, "exit code %d, stderr: %s", rc, e);
    cr_assert(strncmp(e, "eccolo: error: ", 15) == 0 && strchr(e, '\n') == e + strlen(e) - 1, "not one line: %s", e);
    cr_assert(strstr(e, want), "'%s' not in: %s", want, e);
    free(o);
    free(e);
}

Test(nmf, cli_concatenates_runs)
{
    char *a = make_run("nmfa", "Hello world, this is", 1), *b = make_run("nmfb", "Another prompt", 1);
    char *out = ecc_path_join(a, "joint.safetensors"), *e;
    int rc = run_cli(NULL, &e, ARGS("nmf", a, b, "--components", "3", "--out", out));
    cr_assert_eq(rc, 0, "%s", e);
    ecc_run_dir *ra, *rb;
    cr_assert_eq(ecc_run_dir_open(&ra, a), ECC_OK);
    cr_assert_eq(ecc_run_dir_open(&rb, b), ECC_OK);
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, out), ECC_OK, "%s", ecc_last_error());
    const ecc_st_tensor *fac = ecc_st_find(f, "factors"), *load = ecc_st_find(f, "loadings"),
                        *off = ecc_st_find(f, "offsets");
    cr_assert(fac && load && off);
    cr_assert_eq(fac->shape[0], 3);
    cr_assert_eq(fac->shape[1], ra->T + rb->T);
    cr_assert_eq(load->shape[1], 2 * 256, "columns = layers x neurons");
    int32_t o[3];
    memcpy(o, off->data, sizeof o);
    cr_assert(o[0] == 0 && o[1] == ra->T && o[2] == ra->T + rb->T);
    double err = strtod(ecc_st_meta(f, "relative_error"), NULL);
    cr_assert(err > 0 && err < 1, "relative error %g", err);
    cr_assert_str_eq(ecc_st_meta(f, "init"), "random");
    ecc_st_close(f);
    ecc_run_dir_close(ra);
    ecc_run_dir_close(rb);
    free(e);
    /* one layer only */
    rc = run_cli(NULL, &e, ARGS("nmf", a, "--components", "2", "--from-layer", "1", "--to-layer", "2"));
    cr_assert_eq(rc, 0, "%s", e);
    free(e), free(out), free(a), free(b);
}

Test(nmf, cli_bad_input)
{
    char *a = make_run("nmfbad", "Hello world", 1), *plain = make_run("nmfplain", "Hello world", 0);
    expect_error(ARGS("nmf", a, "--components", "0"), "--components");
    expect_error(ARGS("nmf", a, "--components", "500"), "min(positions");
    expect_error(ARGS("nmf", plain, "--components", "2"), "rerun eccolo generate with --activations");
    expect_error(ARGS("nmf", a, "--components", "2", "--from-layer", "1", "--to-layer", "3"), "captured layers 0 to 2");
    expect_error(ARGS("nmf", "/nonexistent/run", "--components", "2"), "no such run directory");
    expect_error(ARGS("nmf", a), "--components K is required");
    expect_error(ARGS("nmf", a, "--components", "2", "--init", "svd"), "--init");
    /* a corrupt tensors file */
    char *t = ecc_path_join(a, "tensors.safetensors");
    write_file(t, "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", 15);
    expect_error(ARGS("nmf", a, "--components", "2"), "tensors.safetensors");
    free(t), free(a), free(plain);
}
