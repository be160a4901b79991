#define _GNU_SOURCE
#include "nmf/nmf.h"

#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NMF_EPS 1.1920929e-07f /* float32 epsilon: scikit-learn's guard for zero denominators */

void ecc_nmf_options_default(ecc_nmf_options *o)
{
    memset(o, 0, sizeof *o);
    o->k = 10;
    o->init = ECC_NMF_RANDOM;
    o->solver = ECC_NMF_MU;
    o->max_iter = 500;
    o->tol = 1e-4f;
}

const char *ecc_nmf_init_name(ecc_nmf_init i)
{
    return i == ECC_NMF_NNDSVD ? "nndsvd" : i == ECC_NMF_NNDSVDA ? "nndsvda" : "random";
}

const char *ecc_nmf_solver_name(ecc_nmf_solver s) { return s == ECC_NMF_HALS ? "hals" : "mu"; }

/* ---- initialisation -------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* |N(0, 1)| by Box-Muller from a seeded SplitMix64 stream */
static double abs_normal(uint64_t *s)
{
    double u1 = ((splitmix(s) >> 11) + 1.0) / 9007199254740993.0, u2 = (splitmix(s) >> 11) / 9007199254740992.0;
    return fabs(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

static double mean_of(const float *X, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += X[i];
    return n ? s / (double)n : 0;
}

static ecc_status init_nndsvd(float *W, float *H, const float *X, int T, int F, int k, int fill_mean)
{
    /* thin SVD of X: U (T, r), S (r), VT (r, F), r = min(T, F) */
    int r = ECC_MIN(T, F);
    float *A = ecc_malloc(sizeof(float) * (size_t)T * F, "the SVD"), *U = ecc_malloc(sizeof(float) * (size_t)T * r,
                                                                                    "the SVD");
    float *S = ecc_malloc(sizeof(float) * (size_t)r, "the SVD"), *VT = ecc_malloc(sizeof(float) * (size_t)r * F,
                                                                                 "the SVD");
    if (!A || !U || !S || !VT) {
        free(A), free(U), free(S), free(VT);
        return ECC_ERR_NOMEM;
    }
    memcpy(A, X, sizeof(float) * (size_t)T * F);
    lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', T, F, A, F, S, U, r, VT, F);
    free(A);
    if (info != 0) {
        free(U), free(S), free(VT);
        return ecc_fail(ECC_ERR_FORMAT, "NNDSVD: the SVD did not converge (LAPACK sgesdd info %d); use --init random",
                        (int)info);
    }
    memset(W, 0, sizeof(float) * (size_t)T * k);
    memset(H, 0, sizeof(float) * (size_t)k * F);
    for (int j = 0; j < k && j < r; j++) {
        const float *x = U + j, *y = VT + (int64_t)j * F; /* column j of U (stride r), row j of VT */
        if (j == 0) { /* the leading singular vectors can be taken non-negative */
            float sq = sqrtf(S[0]);
            for (int i = 0; i < T; i++)
                W[(int64_t)i * k] = sq * fabsf(x[(int64_t)i * r]);
            for (int f = 0; f < F; f++)
                H[f] = sq * fabsf(y[f]);
            continue;
        }
        double xp = 0, xn = 0, yp = 0, yn = 0; /* norms of the positive and negative parts */
        for (int i = 0; i < T; i++) {
            double v = x[(int64_t)i * r];
            *(v > 0 ? &xp : &xn) += v * v;
        }
        for (int f = 0; f < F; f++) {
            double v = y[f];
            *(v > 0 ? &yp : &yn) += v * v;
        }
        xp = sqrt(xp), xn = sqrt(xn), yp = sqrt(yp), yn = sqrt(yn);
        double mp = xp * yp, mn = xn * yn;
        int pos = mp > mn;
        double sigma = pos ? mp : mn, xs = pos ? xp : xn, ys = pos ? yp : yn;
        if (xs == 0 || ys == 0)
            continue;
        double lbd = sqrt((double)S[j] * sigma);
        for (int i = 0; i < T; i++) {
            double v = x[(int64_t)i * r];
            W[(int64_t)i * k + j] = (float)(lbd * ((pos ? v > 0 : v < 0) ? fabs(v) : 0) / xs);
        }
        for (int f = 0; f < F; f++) {
            double v = y[f];
            H[(int64_t)j * F + f] = (float)(lbd * ((pos ? v > 0 : v < 0) ? fabs(v) : 0) / ys);
        }
    }
    free(U), free(S), free(VT);
    float avg = (float)mean_of(X, (int64_t)T * F);
    for (int64_t i = 0; i < (int64_t)T * k; i++)
        if (W[i] < 1e-6f)
            W[i] = fill_mean ? avg : 0;
    for (int64_t i = 0; i < (int64_t)k * F; i++)
        if (H[i] < 1e-6f)
            H[i] = fill_mean ? avg : 0;
    return ECC_OK;
}

ecc_status ecc_nmf_initialise(float *W, float *H, const float *X, int T, int F, const ecc_nmf_options *o)
{
    if (o->init != ECC_NMF_RANDOM)
        return init_nndsvd(W, H, X, T, F, o->k, o->init == ECC_NMF_NNDSVDA);
    double avg = sqrt(mean_of(X, (int64_t)T * F) / o->k);
    uint64_t s = o->seed;
    for (int64_t i = 0; i < (int64_t)o->k * F; i++) /* H first, then W, as scikit-learn draws them */
        H[i] = (float)(avg * abs_normal(&s));
    for (int64_t i = 0; i < (int64_t)T * o->k; i++)
        W[i] = (float)(avg * abs_normal(&s));
    return ECC_OK;
}

/* ---- the iterations ----------------------------------------------------------------- */

typedef struct nmf_bufs {
    float *X;      /* (T, F) */
    float *Xt;     /* (F, T) X^T, stored: X^T W as a plain product (BLAS packs a transposed X more slowly) */
    float *W;      /* (T, k) */
    float *Ht;     /* (F, k) */
    float *PW;     /* (T, k) X Ht */
    float *PH;     /* (F, k) X^T W */
    float *QW;     /* (k, k) Ht^T Ht */
    float *QH;     /* (k, k) W^T W */
    float *DW, *DH; /* (T, k), (F, k) denominators of the multiplicative update */
} nmf_bufs;

/* out (cols, rows) = in (rows, cols)^T, in 32 x 32 tiles (host memory) */
static void transpose(float *out, const float *in, int rows, int cols)
{
    enum { TILE = 32 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < cols; c0 += TILE)
        for (int r0 = 0; r0 < rows; r0 += TILE)
            for (int c = c0; c < ECC_MIN(c0 + TILE, cols); c++)
                for (int r = r0; r < ECC_MIN(r0 + TILE, rows); r++)
                    out[(int64_t)c * rows + r] = in[(int64_t)r * cols + c];
}

/* One update of M (n, k) given P (n, k) and the Gram matrix Q (k, k). */
static void update(ecc_backend *be, const ecc_nmf_options *o, float *M, const float *P, const float *Q, float *D,
                   int n)
{
    if (o->solver == ECC_NMF_HALS) {
        be->hals_update(be, M, P, Q, n, o->k);
    } else {
        be->gemm(be, D, M, Q, n, o->k, o->k, 0, 0, 1.0f, 0.0f); /* M Q */
        be->mu_update(be, M, P, D, (int64_t)n * o->k, NMF_EPS);
    }
}

/* ||X - W Ht^T||_F from ||X||^2, PH = X^T W, QH = W^T W and QW = Ht^T Ht of the current factors */
static double error_of(ecc_backend *be, const nmf_bufs *b, double xx, int F, int k)
{
    double e2 = xx - 2 * be->dot(be, b->PH, b->Ht, (int64_t)F * k) + be->dot(be, b->QH, b->QW, (int64_t)k * k);
    return sqrt(e2 > 0 ? e2 : 0);
}

ecc_status ecc_nmf(ecc_nmf_result *res, ecc_backend *be, const float *X, int T, int F, const ecc_nmf_options *o)
{
    memset(res, 0, sizeof *res);
    const int k = o->k;
    if (k < 1 || k > T || k > F)
        return ecc_fail(ECC_ERR_INPUT, "--components %d: must be from 1 to min(positions %d, columns %d)", k, T, F);
    /* inf or NaN gives NaN factors and a meaningless error; a negative value has no factorisation */
    for (int64_t i = 0; i < (int64_t)T * F; i++)
        if (!(X[i] >= 0 && X[i] <= FLT_MAX))
            return ecc_fail(ECC_ERR_INPUT, "NMF input: row %lld, column %lld is %g; NMF needs finite, non-negative "
                            "values", (long long)(i / F), (long long)(i % F), (double)X[i]);
    size_t tk = (size_t)T * k, fk = (size_t)F * k, f4 = sizeof(float);
    res->W = ecc_malloc(tk * f4, "NMF factors");
    res->H = ecc_malloc(fk * f4, "NMF loadings");
    float *H = ecc_malloc(fk * f4, "NMF loadings");
    if (!res->W || !res->H || !H) {
        free(H);
        ecc_nmf_result_free(res);
        return ECC_ERR_NOMEM;
    }
    ecc_status s = ecc_nmf_initialise(res->W, H, X, T, F, o);
    if (s != ECC_OK) {
        free(H);
        ecc_nmf_result_free(res);
        return s;
    }
    double t0 = ecc_now();
    nmf_bufs b;
    memset(&b, 0, sizeof b);
    void **all[] = {(void **)&b.W, (void **)&b.Ht, (void **)&b.PW, (void **)&b.PH, (void **)&b.QW, (void **)&b.QH,
                    (void **)&b.DW, (void **)&b.DH};
    size_t sizes[] = {tk, fk, tk, fk, (size_t)k * k, (size_t)k * k, tk, fk};
    float *Xt = ecc_malloc(sizeof(float) * (size_t)T * F, "the transposed activation matrix");
    if (Xt)
        transpose(Xt, X, T, F);
    b.X = be->mirror(be, X, (size_t)T * F * f4, "the activation matrix");
    b.Xt = Xt ? be->mirror(be, Xt, (size_t)T * F * f4, "the activation matrix, transposed") : NULL;
    int ok = b.X != NULL && b.Xt != NULL;
    for (size_t i = 0; ok && i < sizeof sizes / sizeof *sizes; i++)
        ok = (*all[i] = be->alloc(be, sizes[i] * f4, "NMF")) != NULL;
    if (ok) {
        transpose(res->H, H, k, F); /* Ht = H^T */
        be->upload(be, b.Ht, res->H, fk * f4);
        be->upload(be, b.W, res->W, tk * f4);
        double xx = be->dot(be, b.X, b.X, (int64_t)T * F);
        /* the initial error */
        be->gemm(be, b.PH, b.Xt, b.W, F, k, T, 0, 0, 1.0f, 0.0f); /* X^T W */
        be->gemm(be, b.QH, b.W, b.W, k, k, T, 1, 0, 1.0f, 0.0f);  /* W^T W */
        be->gemm(be, b.QW, b.Ht, b.Ht, k, k, F, 1, 0, 1.0f, 0.0f); /* Ht^T Ht */
        ecc_nvtx_push("nmf");
        double err0 = error_of(be, &b, xx, F, k), prev = err0;
        int it = 0;
        while (it < o->max_iter) {
            it++;
            be->gemm(be, b.PW, b.X, b.Ht, T, k, F, 0, 0, 1.0f, 0.0f);  /* X Ht */
            be->gemm(be, b.QW, b.Ht, b.Ht, k, k, F, 1, 0, 1.0f, 0.0f); /* Ht^T Ht */
            update(be, o, b.W, b.PW, b.QW, b.DW, T);
            be->gemm(be, b.PH, b.Xt, b.W, F, k, T, 0, 0, 1.0f, 0.0f); /* X^T W */
            be->gemm(be, b.QH, b.W, b.W, k, k, T, 1, 0, 1.0f, 0.0f);  /* W^T W */
            update(be, o, b.Ht, b.PH, b.QH, b.DH, F);
            if (o->tol > 0 && it % 10 == 0) {
                be->gemm(be, b.QW, b.Ht, b.Ht, k, k, F, 1, 0, 1.0f, 0.0f);
                double err = error_of(be, &b, xx, F, k);
                if (err0 > 0 && (prev - err) / err0 < o->tol)
                    break;
                prev = err;
            }
        }
        /* the final error, from fresh products */
        be->gemm(be, b.PH, b.Xt, b.W, F, k, T, 0, 0, 1.0f, 0.0f);
        be->gemm(be, b.QH, b.W, b.W, k, k, T, 1, 0, 1.0f, 0.0f);
        be->gemm(be, b.QW, b.Ht, b.Ht, k, k, F, 1, 0, 1.0f, 0.0f);
        res->rel_error = xx > 0 ? error_of(be, &b, xx, F, k) / sqrt(xx) : 0;
        res->iterations = it;
        be->download(be, res->W, b.W, tk * f4);
        be->download(be, H, b.Ht, fk * f4);
        be->synchronize(be);
        transpose(res->H, H, F, k); /* H = Ht^T */
        res->seconds = ecc_now() - t0;
        ecc_nvtx_pop();
    }
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        if (*all[i])
            be->free(be, *all[i]);
    if (b.X)
        be->unmirror(be, b.X);
    if (b.Xt)
        be->unmirror(be, b.Xt);
    free(Xt);
    free(H);
    ecc_status st = ok ? be->status(be) : ECC_ERR_NOMEM;
    if (st != ECC_OK)
        ecc_nmf_result_free(res);
    return st;
}

void ecc_nmf_result_free(ecc_nmf_result *res)
{
    free(res->W);
    free(res->H);
    res->W = res->H = NULL;
}
