/* CCA, SVCCA, PWCCA and linear CKA between every layer of a and every layer
 * of b, over the backend op table: what Ecco computes, and how, is described
 * in analysis.h. Each layer is prepared once (prep_*), then each pair costs a
 * product and a small factorisation (pair_*). */
#include "analysis/analysis.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define CCA_THRESHOLD 0.98 /* get_cca_similarity's default: Ecco keeps it */
#define PINV_RCOND 1e-15   /* numpy.linalg.pinv's default cut-off, relative to the largest value */

/* One layer, prepared. */
typedef struct prep {
    /* CCA, SVCCA, PWCCA */
    double *Z;        /* backend (T, n): the kept neurons, centred and whitened (analysis.h) */
    int n;            /* neurons kept (Ecco's remove_small), 0 for a constant layer */
    int *keep;        /* host (n): their indices */
    double *mu;       /* host (N): every neuron's mean over the tokens */
    const float *X;   /* host (T, N): the layer itself (PWCCA reads it again) */
    int N;
    /* CKA */
    float *K;         /* backend: the Gram matrix Xc Xc^T (T, T), or the centred features Xc (T, N) */
    double norm2;     /* ||Xc^T Xc||_F^2 = <K, K> */
} prep;

static void prep_free(ecc_backend *be, prep *p)
{
    if (p->Z)
        be->free(be, p->Z);
    if (p->K)
        be->free(be, p->K);
    free(p->keep);
    free(p->mu);
    memset(p, 0, sizeof *p);
}

static void *be_alloc(ecc_backend *be, size_t elems, size_t size, const char *what)
{
    return be->alloc(be, (elems ? elems : 1) * size, what);
}

/* mu (N) = the mean of each column of X (T, N) (doubles Xd or floats Xf),
 * summed in double, row after row: threads take blocks of columns, so the
 * order, and the bits, do not depend on their number. */
static void col_means(double *mu, const double *Xd, const float *Xf, int T, int N)
{
    enum { COLS = 256 };
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < N; j0 += COLS) {
        const int j1 = ECC_MIN(N, j0 + COLS);
        for (int j = j0; j < j1; j++)
            mu[j] = 0;
        for (int t = 0; t < T; t++) {
            const int64_t o = (int64_t)t * N;
            if (Xd)
                for (int j = j0; j < j1; j++)
                    mu[j] += Xd[o + j];
            else
                for (int j = j0; j < j1; j++)
                    mu[j] += (double)Xf[o + j];
        }
        for (int j = j0; j < j1; j++)
            mu[j] /= T;
    }
}

/* ---- the CCA family ------------------------------------------------------------ */

/* p->Z, n, keep, mu from X (T, N), host doubles. */
static ecc_status prep_cca(ecc_backend *be, prep *p, const double *X, int T, int N, double eps)
{
    const size_t TN = (size_t)T * N, NN = (size_t)N * N;
    p->N = N;
    p->mu = ecc_malloc(sizeof(double) * (size_t)N, "neuron means");
    p->keep = ecc_malloc(sizeof(int) * (size_t)N, "kept neurons");
    double *Xc = ecc_malloc(sizeof(double) * TN, "centred activations (double)"); /* (T, N) */
    double *S = ecc_malloc(sizeof(double) * NN, "a covariance matrix");          /* (N, N) */
    double *V = ecc_malloc(sizeof(double) * NN, "eigenvectors");                  /* (n, n) */
    double *w = ecc_malloc(sizeof(double) * (size_t)N, "eigenvalues");
    double *dX = be_alloc(be, TN, sizeof(double), "centred activations (double)");
    double *dS = be_alloc(be, NN, sizeof(double), "a covariance matrix");
    double *dV = be_alloc(be, NN, sizeof(double), "eigenvectors");
    ecc_status st = p->mu && p->keep && Xc && S && V && w && dX && dS && dV ? ECC_OK : ECC_ERR_NOMEM;
    if (st != ECC_OK)
        goto done;

    /* np.cov: centre, then Xc^T Xc / (T - 1) */
    col_means(p->mu, X, NULL, T, N);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++)
            Xc[(int64_t)t * N + j] = X[(int64_t)t * N + j] - p->mu[j];
    be->upload(be, dX, Xc, sizeof(double) * TN);
    be->dgemm(be, dS, dX, dX, N, N, T, 1, 0, 1.0 / (T - 1), 0.0);
    be->download(be, S, dS, sizeof(double) * NN);
    if ((st = be->status(be)) != ECC_OK)
        goto done;

    /* rescale by the largest |entry|, drop the neurons whose variance is below eps */
    double xmax = 0;
    for (size_t i = 0; i < NN; i++)
        xmax = fmax(xmax, fabs(S[i]));
    int n = 0;
    if (xmax > 0 && isfinite(xmax))
        for (int j = 0; j < N; j++)
            if (fabs(S[(int64_t)j * N + j] / xmax) >= eps)
                p->keep[n++] = j;
    p->n = n;
    if (n == 0) /* a constant layer: Ecco's create_zero_dict */
        goto done;

    /* Sk = S[keep, keep] / xmax + eps I, then Sk^-1/2 = B^T B with B = diag(w^-1/4) V */
    double *Sk = V; /* (n, n), V is free until eigh */
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++)
            Sk[(int64_t)r * n + c] = S[(int64_t)p->keep[r] * N + p->keep[c]] / xmax + (r == c ? eps : 0.0);
    be->upload(be, dS, Sk, sizeof(double) * (size_t)n * n);
    if ((st = be->eigh(be, w, dV, dS, n)) != ECC_OK)
        goto done;
    be->download(be, V, dV, sizeof(double) * (size_t)n * n);
    if ((st = be->status(be)) != ECC_OK)
        goto done;
    const double cut = PINV_RCOND * fmax(fabs(w[0]), fabs(w[n - 1]));
    for (int k = 0; k < n; k++) {
        const double f = w[k] > cut ? pow(w[k], -0.25) : 0.0; /* pinv would cut the others */
        for (int j = 0; j < n; j++)
            V[(int64_t)k * n + j] *= f;
    }
    be->upload(be, dV, V, sizeof(double) * (size_t)n * n);
    be->dgemm(be, dS, dV, dV, n, n, n, 1, 0, 1.0, 0.0); /* dS (n, n) = Sk^-1/2 */

    /* Z (T, n) = Xc[:, keep] Sk^-1/2 / sqrt((T - 1) xmax) */
    for (int t = 0; t < T; t++)
        for (int k = 0; k < n; k++)
            Xc[(int64_t)t * n + k] = Xc[(int64_t)t * N + p->keep[k]]; /* in place: k <= keep[k], rows in order */
    be->upload(be, dX, Xc, sizeof(double) * (size_t)T * n);
    p->Z = be_alloc(be, (size_t)T * n, sizeof(double), "whitened activations");
    if (!p->Z) {
        st = ECC_ERR_NOMEM;
        goto done;
    }
    be->dgemm(be, p->Z, dX, dS, T, n, n, 0, 0, 1.0 / sqrt((double)(T - 1) * xmax), 0.0);
    st = be->status(be);
done:
    if (dX)
        be->free(be, dX);
    if (dS)
        be->free(be, dS);
    if (dV)
        be->free(be, dV);
    free(Xc);
    free(S);
    free(V);
    free(w);
    return st;
}

/* A layer (T, N) of floats, for CCA or PWCCA. */
static ecc_status prep_layer_cca(ecc_backend *be, prep *p, const float *X, int T, int N, double eps)
{
    double *Xd = ecc_malloc(sizeof(double) * (size_t)T * N, "activations (double)");
    if (!Xd)
        return ECC_ERR_NOMEM;
    for (size_t i = 0; i < (size_t)T * N; i++)
        Xd[i] = X[i];
    ecc_status st = prep_cca(be, p, Xd, T, N, eps);
    p->X = X;
    free(Xd);
    return st;
}

/* SVCCA: the top `dims` singular directions of the centred layer, sv (T, dims)
 * = U[:, :dims] diag(s[:dims]) (Ecco's diag(s[:dims]) V[:dims] transposed), then CCA. */
static ecc_status prep_svcca(ecc_backend *be, prep *p, const float *X, int T, int N, int dims, double eps)
{
    const int k = ECC_MIN(T, N);
    double *Xc = ecc_malloc(sizeof(double) * (size_t)T * N, "centred activations (double)");
    double *mu = ecc_malloc(sizeof(double) * (size_t)N, "neuron means");
    double *s = ecc_malloc(sizeof(double) * (size_t)k, "singular values");
    double *U = ecc_malloc(sizeof(double) * (size_t)T * k, "singular vectors");
    double *dX = be_alloc(be, (size_t)T * N, sizeof(double), "centred activations (double)");
    double *dU = be_alloc(be, (size_t)T * k, sizeof(double), "singular vectors");
    ecc_status st = Xc && mu && s && U && dX && dU ? ECC_OK : ECC_ERR_NOMEM;
    if (st == ECC_OK) {
        col_means(mu, NULL, X, T, N);
        for (int t = 0; t < T; t++)
            for (int j = 0; j < N; j++)
                Xc[(int64_t)t * N + j] = (double)X[(int64_t)t * N + j] - mu[j];
        be->upload(be, dX, Xc, sizeof(double) * (size_t)T * N);
        st = be->svd(be, s, dU, dX, T, N);
    }
    if (st == ECC_OK) {
        be->download(be, U, dU, sizeof(double) * (size_t)T * k);
        st = be->status(be);
    }
    if (st == ECC_OK) {
        for (int t = 0; t < T; t++) /* sv (T, dims) in Xc's place */
            for (int j = 0; j < dims; j++)
                Xc[(int64_t)t * dims + j] = U[(int64_t)t * k + j] * s[j];
        st = prep_cca(be, p, Xc, T, dims, eps);
    }
    if (dX)
        be->free(be, dX);
    if (dU)
        be->free(be, dU);
    free(Xc);
    free(mu);
    free(s);
    free(U);
    return st;
}

/* mean(s[:i]), i the first index with sum(s[:i]) / sum(s) >= 0.98 (sum_threshold), else all. */
static double cca_mean(const double *s, int k)
{
    double total = 0, part = 0, sum = 0;
    for (int i = 0; i < k; i++)
        total += s[i];
    int idx = k;
    for (int i = 0; i < k; i++) {
        if (part / total >= CCA_THRESHOLD) {
            idx = i;
            break;
        }
        part += s[i];
    }
    for (int i = 0; i < idx; i++)
        sum += s[i];
    return idx ? sum / idx : 0.0;
}

/* CCA (thresholded mean) or SVCCA (mean) of two prepared layers; darr: backend scratch. */
static ecc_status pair_cca(ecc_backend *be, double *value, const prep *pa, const prep *pb, double *darr, double *s,
                           int T, ecc_compare_method m)
{
    *value = 0.0;
    if (pa->n == 0 || pb->n == 0)
        return ECC_OK;
    const int k = ECC_MIN(pa->n, pb->n);
    be->dgemm(be, darr, pa->Z, pb->Z, pa->n, pb->n, T, 1, 0, 1.0, 0.0); /* arr (na, nb) = Za^T Zb */
    ECC_TRY(be->svd(be, s, NULL, darr, pa->n, pb->n));
    ECC_TRY(be->status(be));
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += fabs(s[i]);
    *value = m == ECC_COMPARE_CCA ? cca_mean(s, k) : sum / k;
    return ECC_OK;
}

/* PWCCA of two prepared layers (analysis.h). */
static ecc_status pair_pwcca(ecc_backend *be, double *value, const prep *pa, const prep *pb, double *darr, int T)
{
    *value = 0.0;
    if (pa->n == 0 || pb->n == 0)
        return ECC_OK; /* Ecco raises KeyError ('x_idxs' of the zero dict); 0 as its cca */
    const int na = pa->n, nb = pb->n, side_a = na <= nb, n = side_a ? na : nb;
    const prep *p = side_a ? pa : pb;
    const size_t Tn = (size_t)T * n;
    double *arr = ecc_malloc(sizeof(double) * (size_t)na * nb, "the CCA matrix");
    double *s = ecc_malloc(sizeof(double) * (size_t)n, "canonical correlations");
    double *u = ecc_malloc(sizeof(double) * (size_t)na * na, "CCA directions");
    double *vt = ecc_malloc(sizeof(double) * (size_t)nb * nb, "CCA directions");
    double *Xk = ecc_malloc(sizeof(double) * Tn, "kept activations");      /* (T, n), centred, then raw */
    double *D = ecc_malloc(sizeof(double) * Tn, "PWCCA directions");        /* (n, T) */
    double *G = ecc_malloc(sizeof(double) * (size_t)n * n, "projections");  /* (n, n) */
    double *dC = be_alloc(be, (size_t)n * n, sizeof(double), "CCA directions");
    double *dXk = be_alloc(be, Tn, sizeof(double), "kept activations");
    double *dD = be_alloc(be, Tn, sizeof(double), "PWCCA directions");
    double *dQ = be_alloc(be, Tn, sizeof(double), "orthonormal directions");
    ecc_status st = arr && s && u && vt && Xk && D && G && dC && dXk && dD && dQ ? ECC_OK : ECC_ERR_NOMEM;
    if (st != ECC_OK)
        goto done;
    be->dgemm(be, darr, pa->Z, pb->Z, na, nb, T, 1, 0, 1.0, 0.0);
    be->download(be, arr, darr, sizeof(double) * (size_t)na * nb);
    if ((st = be->status(be)) != ECC_OK)
        goto done;
    /* numpy.linalg.svd(arr): dgesdd, jobz 'A', on arr itself (LAPACKE transposes the row-major copy) */
    lapack_int info = LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'A', na, nb, arr, nb, s, u, na, vt, nb);
    if (info != 0) {
        st = ecc_fail(info < 0 ? ECC_ERR_NOMEM : ECC_ERR_INPUT, "PWCCA: LAPACK dgesdd failed (info %d)%s", (int)info,
                      info > 0 ? ": the SVD did not converge" : "");
        goto done;
    }
    /* dirns (n, T) = C Xk^T + mu_k, C = u^T (x side) or vt (y side), Xk the side's kept neurons centred */
    for (int t = 0; t < T; t++)
        for (int k = 0; k < n; k++)
            Xk[(int64_t)t * n + k] = (double)p->X[(int64_t)t * p->N + p->keep[k]] - p->mu[p->keep[k]];
    for (int k = 0; k < n; k++)
        for (int t = 0; t < T; t++)
            D[(int64_t)k * T + t] = p->mu[p->keep[k]];
    be->upload(be, dC, side_a ? u : vt, sizeof(double) * (size_t)n * n);
    be->upload(be, dXk, Xk, sizeof(double) * Tn);
    be->upload(be, dD, D, sizeof(double) * Tn);
    be->dgemm(be, dD, dC, dXk, n, T, n, side_a, 1, 1.0, 1.0);
    if ((st = be->orth_rows(be, dQ, dD, n, T)) != ECC_OK)
        goto done;
    /* weights_k = sum_j |P_k . x_j| over the side's kept neurons, not centred */
    for (int t = 0; t < T; t++)
        for (int k = 0; k < n; k++)
            Xk[(int64_t)t * n + k] = (double)p->X[(int64_t)t * p->N + p->keep[k]];
    be->upload(be, dXk, Xk, sizeof(double) * Tn);
    double *dG = dC; /* (n, n) */
    be->dgemm(be, dG, dQ, dXk, n, n, T, 0, 0, 1.0, 0.0);
    be->download(be, G, dG, sizeof(double) * (size_t)n * n);
    if ((st = be->status(be)) != ECC_OK)
        goto done;
    double total = 0, v = 0;
    for (int k = 0; k < n; k++) {
        double wk = 0;
        for (int j = 0; j < n; j++)
            wk += fabs(G[(int64_t)k * n + j]);
        D[k] = wk;
        total += wk;
    }
    for (int k = 0; k < n; k++)
        v += D[k] / total * s[k];
    *value = v;
done:
    if (dC)
        be->free(be, dC);
    if (dXk)
        be->free(be, dXk);
    if (dD)
        be->free(be, dD);
    if (dQ)
        be->free(be, dQ);
    free(arr);
    free(s);
    free(u);
    free(vt);
    free(Xk);
    free(D);
    free(G);
    return st;
}

/* ---- CKA --------------------------------------------------------------------- */

int ecc_analysis_cka_gram(int64_t D, int64_t P, int64_t T, int64_t Na, int64_t Nb, size_t available)
{
    /* multiply-adds: Gram D T^2 N / 2 (a symmetric update) + pairs' dots; features: pairs Na Nb T + D N^2 T */
    const double Nm = (double)(Na > Nb ? Na : Nb);
    const double gram = (double)D * T * T * Nm / 2 + (double)P * T * T;
    const double feat = (double)P * Na * Nb * T + (double)D * Nm * Nm * T;
    const double bytes = (double)D * T * T * sizeof(float);
    return gram <= feat && bytes <= (double)available / 2 && T * T < ((int64_t)1 << 31);
}

/* p->K and p->norm2 from X (T, N): centred in double, stored as float. */
static ecc_status prep_cka(ecc_backend *be, prep *p, const float *X, int T, int N, int gram)
{
    const size_t TN = (size_t)T * N;
    double *mu = ecc_malloc(sizeof(double) * (size_t)N, "neuron means");
    float *Xc = ecc_malloc(sizeof(float) * TN, "centred activations");
    float *dX = be_alloc(be, TN, sizeof(float), "centred activations");
    float *dK = be_alloc(be, gram ? (size_t)T * T : (size_t)N * N, sizeof(float), gram ? "a Gram matrix" : "a product");
    ecc_status st = mu && Xc && dX && dK ? ECC_OK : ECC_ERR_NOMEM;
    if (st == ECC_OK) {
        col_means(mu, NULL, X, T, N);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            for (int j = 0; j < N; j++)
                Xc[(int64_t)t * N + j] = (float)((double)X[(int64_t)t * N + j] - mu[j]);
        be->upload(be, dX, Xc, sizeof(float) * TN);
        if (gram) { /* K (T, T) = Xc Xc^T */
            be->gram(be, dK, dX, T, N);
            p->norm2 = be->dot(be, dK, dK, (int64_t)T * T);
        } else { /* Xc^T Xc (N, N) */
            be->gemm(be, dK, dX, dX, N, N, T, 1, 0, 1.0f, 0.0f);
            p->norm2 = be->dot(be, dK, dK, (int64_t)N * N);
        }
        st = be->status(be);
    }
    if (st == ECC_OK) { /* keep the Gram matrix, or the centred features */
        p->K = gram ? dK : dX;
        p->N = N;
        if (gram)
            dK = NULL;
        else
            dX = NULL;
    }
    if (dX)
        be->free(be, dX);
    if (dK)
        be->free(be, dK);
    free(mu);
    free(Xc);
    return st;
}

static ecc_status pair_cka(ecc_backend *be, double *value, const prep *pa, const prep *pb, float *dC, int T, int gram)
{
    double hsic;
    if (gram) {
        hsic = be->dot(be, pa->K, pb->K, (int64_t)T * T);
    } else { /* ||Xa^T Xb||_F^2 */
        be->gemm(be, dC, pa->K, pb->K, pa->N, pb->N, T, 1, 0, 1.0f, 0.0f);
        hsic = be->dot(be, dC, dC, (int64_t)pa->N * pb->N);
    }
    ECC_TRY(be->status(be));
    *value = hsic / (sqrt(pa->norm2) * sqrt(pb->norm2));
    return ECC_OK;
}

/* ---- all pairs ------------------------------------------------------------------ */

static ecc_status check_finite(const float *x, int L, int T, int N, const char *name)
{
    const int64_t n = (int64_t)L * T * N;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
    for (int64_t i = 0; i < n; i++)
        bad |= !isfinite(x[i]);
    for (int l = 0; bad && l < L; l++) /* where: for the message */
        for (int t = 0; t < T; t++)
            for (int j = 0; j < N; j++)
                if (!isfinite(x[((int64_t)l * T + t) * N + j]))
                    return ecc_fail(ECC_ERR_INPUT, "%s: layer %d, token %d, neuron %d is %g; compare needs finite "
                                    "activations", name, l, t, j, (double)x[((int64_t)l * T + t) * N + j]);
    return ECC_OK;
}

static ecc_status check_args(const float *a, const float *b, int La, int Lb, int Na, int Nb, int T,
                             const ecc_compare_options *o)
{
    const char *name = ecc_compare_method_name(o->method);
    if (!a || !b || La < 1 || Lb < 1 || Na < 1 || Nb < 1)
        return ecc_fail(ECC_ERR_INPUT, "compare: give at least one layer with at least one neuron on each side "
                        "(got %d x %d and %d x %d)", La, Na, Lb, Nb);
    if (o->method < ECC_COMPARE_CCA || o->method > ECC_COMPARE_CKA)
        return ecc_fail(ECC_ERR_INPUT, "compare: unknown method %d (cca, svcca, pwcca or cka)", (int)o->method);
    if (T < 2)
        return ecc_fail(ECC_ERR_INPUT, "%s needs at least 2 tokens (got %d)", name, T);
    if ((int64_t)T * ECC_MAX(Na, Nb) >= ((int64_t)1 << 31))
        return ecc_fail(ECC_ERR_INPUT, "%s of %d tokens x %d neurons is too large for one comparison; compare fewer "
                        "tokens", name, T, ECC_MAX(Na, Nb));
    if (o->method == ECC_COMPARE_CCA || o->method == ECC_COMPARE_PWCCA) {
        if (Na >= T || Nb >= T)
            return ecc_fail(ECC_ERR_INPUT, "%s needs fewer neurons than tokens, as Ecco asserts (%d and %d neurons "
                            "over %d tokens): compare more tokens, or use svcca or cka", name, Na, Nb, T);
        if (!(o->epsilon >= 0) || !isfinite(o->epsilon))
            return ecc_fail(ECC_ERR_INPUT, "%s: epsilon must be a finite number >= 0 (got %g)", name, o->epsilon);
    }
    if (o->method == ECC_COMPARE_SVCCA) {
        if (o->dims < 1 || o->dims > ECC_MIN(Na, Nb) || o->dims >= T)
            return ecc_fail(ECC_ERR_INPUT, "svcca: dims %d must be at least 1, at most the neurons of each side "
                            "(%d, %d) and below the tokens (%d)", o->dims, Na, Nb, T);
        if (!(o->epsilon >= 0) || !isfinite(o->epsilon))
            return ecc_fail(ECC_ERR_INPUT, "svcca: epsilon must be a finite number >= 0 (got %g)", o->epsilon);
    }
    return ECC_OK;
}

ecc_status ecc_analysis_compare(ecc_backend *be, double *values, const float *a, const float *b, int La, int Lb,
                                int Na, int Nb, int T, const ecc_compare_options *o)
{
    ECC_TRY(check_args(a, b, La, Lb, Na, Nb, T, o));
    const int same = a == b && La == Lb && Na == Nb;
    ECC_TRY(check_finite(a, La, T, Na, "a"));
    if (!same)
        ECC_TRY(check_finite(b, Lb, T, Nb, "b"));
    const ecc_compare_method m = o->method;
    const int symmetric = same && m != ECC_COMPARE_PWCCA;
    const int64_t D = same ? La : (int64_t)La + Lb, P = symmetric ? (int64_t)La * (La + 1) / 2 : (int64_t)La * Lb;
    const int gram = m == ECC_COMPARE_CKA && ecc_analysis_cka_gram(D, P, T, Na, Nb, be->available(be));

    prep *pa = ecc_calloc((size_t)La, sizeof(prep), "prepared layers");
    prep *pb = same ? pa : ecc_calloc((size_t)Lb, sizeof(prep), "prepared layers");
    ecc_status st = pa && pb ? ECC_OK : ECC_ERR_NOMEM;
    for (int side = 0; side < (same ? 1 : 2) && st == ECC_OK; side++) {
        const float *x = side ? b : a;
        const int L = side ? Lb : La, N = side ? Nb : Na;
        prep *pp = side ? pb : pa;
        for (int l = 0; l < L && st == ECC_OK; l++) {
            const float *X = x + (int64_t)l * T * N;
            if (m == ECC_COMPARE_CKA)
                st = prep_cka(be, &pp[l], X, T, N, gram);
            else if (m == ECC_COMPARE_SVCCA)
                st = prep_svcca(be, &pp[l], X, T, N, o->dims, o->epsilon);
            else
                st = prep_layer_cca(be, &pp[l], X, T, N, o->epsilon);
        }
    }
    /* per-pair scratch: the CCA matrix (na, nb) or the features' product (Na, Nb) */
    const size_t scratch = m == ECC_COMPARE_CKA ? (gram ? 1 : (size_t)Na * Nb * sizeof(float))
                                                : (size_t)Na * Nb * sizeof(double);
    void *dscr = st == ECC_OK ? be->alloc(be, scratch, "a pair's product") : NULL;
    double *s = st == ECC_OK ? ecc_malloc(sizeof(double) * (size_t)ECC_MAX(Na, Nb), "canonical correlations") : NULL;
    if (st == ECC_OK && (!dscr || !s))
        st = ECC_ERR_NOMEM;
    for (int i = 0; i < La && st == ECC_OK; i++)
        for (int j = 0; j < Lb && st == ECC_OK; j++) {
            double *v = &values[(int64_t)i * Lb + j];
            if (symmetric && j < i)
                *v = values[(int64_t)j * Lb + i];
            else if (m == ECC_COMPARE_CKA)
                st = pair_cka(be, v, &pa[i], &pb[j], dscr, T, gram);
            else if (m == ECC_COMPARE_PWCCA)
                st = pair_pwcca(be, v, &pa[i], &pb[j], dscr, T);
            else
                st = pair_cca(be, v, &pa[i], &pb[j], dscr, s, T, m);
        }
    if (dscr)
        be->free(be, dscr);
    free(s);
    for (int l = 0; pa && l < La; l++)
        prep_free(be, &pa[l]);
    for (int l = 0; !same && pb && l < Lb; l++)
        prep_free(be, &pb[l]);
    free(pa);
    if (!same)
        free(pb);
    return st;
}
