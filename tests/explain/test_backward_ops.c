#define _GNU_SOURCE
/* Each backward op of the CPU backend against central finite differences of
 * a float64 re-implementation of its forward, on random inputs (never
 * zeros). Tolerance: 1e-4 relative, norm-wise — the ops run in fp32, the
 * differences in float64 with h = 1e-5 (truncation error ~1e-10). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { return 2 * test_uniform(&rng) - 1; } /* uniform in [-1, 1) */
static void fill(float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * urand());
}

static ecc_backend *cpu(void)
{
    ecc_backend *be;
    cr_assert_eq(ecc_backend_cpu_create(&be, 0), ECC_OK);
    return be;
}

static const double H = 1e-5;

/* ---- target gradient at the logits ---- */

static double target_value(const double *z, int V, int x, int kind)
{
    double mx = z[0], s = 0;
    for (int i = 1; i < V; i++)
        mx = fmax(mx, z[i]);
    for (int i = 0; i < V; i++)
        s += exp(z[i] - mx);
    double lp = z[x] - mx - log(s);
    return kind == 0 ? exp(lp) : kind == 1 ? z[x] : lp;
}

Test(backward_ops, target_grad_matches_finite_differences)
{
    ecc_backend *be = cpu();
    enum { J = 3, V = 11 };
    for (int kind = 0; kind < 3; kind++) {
        float z[J * V], scale[J] = {1.0f, 0.5f, 2.0f};
        int32_t tok[J] = {0, 7, 10};
        fill(z, J * V, 3.0);
        float g[J * V], lp[J];
        memcpy(g, z, sizeof z);
        be->target_grad(be, g, lp, tok, scale, kind, J, V);
        for (int j = 0; j < J; j++) {
            double mx = z[j * V], sum = 0; /* log p_x in float64 */
            for (int i = 0; i < V; i++)
                mx = fmax(mx, z[j * V + i]);
            for (int i = 0; i < V; i++)
                sum += exp(z[j * V + i] - mx);
            double want = z[j * V + tok[j]] - mx - log(sum);
            cr_assert(fabs(lp[j] - want) <= 1e-6 * (1 + fabs(want)), "kind %d target %d: logprob %.8g vs %.8g", kind,
                      j, lp[j], want);
            double zd[V], fd[V];
            for (int i = 0; i < V; i++)
                zd[i] = z[j * V + i];
            for (int i = 0; i < V; i++) {
                double keep = zd[i];
                zd[i] = keep + H;
                double up = target_value(zd, V, tok[j], kind);
                zd[i] = keep - H;
                double dn = target_value(zd, V, tok[j], kind);
                zd[i] = keep;
                fd[i] = scale[j] * (up - dn) / (2 * H);
            }
            double e = rel_err(g + j * V, fd, V);
            cr_assert(e < 1e-4, "kind %d target %d: relative error %.3g", kind, j, e);
        }
    }
    be->destroy(be);
}

/* ---- layer norm ---- */

static double ln_dot(const double *x, const float *w, const float *b, const double *r, int C, double eps)
{
    double m = 0, v = 0, f = 0;
    for (int i = 0; i < C; i++)
        m += x[i];
    m /= C;
    for (int i = 0; i < C; i++)
        v += (x[i] - m) * (x[i] - m);
    double rs = 1 / sqrt(v / C + eps);
    for (int i = 0; i < C; i++)
        f += r[i] * ((x[i] - m) * rs * w[i] + b[i]);
    return f;
}

Test(backward_ops, layernorm_backward_matches_finite_differences)
{
    ecc_backend *be = cpu();
    enum { N = 5, C = 24, n = 3 };
    const float eps = 1e-5f;
    float x[N * C], w[C], b[C], y[N * C], mean[N], rstd[N], dout[n * C], dinp[4 * C];
    fill(x, N * C, 2.0);
    fill(w, C, 1.0);
    fill(b, C, 0.5);
    fill(dout, n * C, 1.0);
    for (int i = 0; i < C; i++)
        x[i] += 3.0f; /* a row with a large mean */
    be->layernorm(be, y, mean, rstd, x, w, b, N, C, eps);
    int32_t in_rows[n] = {4, 0, 2}, out_rows[n] = {1, 3, 0};
    float base[4 * C];
    fill(base, 4 * C, 1.0); /* the op accumulates into what is there */
    memcpy(dinp, base, sizeof base);
    be->layernorm_backward(be, dinp, dout, x, mean, rstd, w, in_rows, out_rows, n, C);
    for (int k = 0; k < n; k++) {
        double xd[C], rd[C], fd[C], got[C];
        for (int i = 0; i < C; i++) {
            xd[i] = x[in_rows[k] * C + i];
            rd[i] = dout[k * C + i];
        }
        for (int i = 0; i < C; i++) {
            double keep = xd[i];
            xd[i] = keep + H;
            double up = ln_dot(xd, w, b, rd, C, eps);
            xd[i] = keep - H;
            double dn = ln_dot(xd, w, b, rd, C, eps);
            xd[i] = keep;
            fd[i] = (up - dn) / (2 * H);
            got[i] = (double)dinp[out_rows[k] * C + i] - base[out_rows[k] * C + i];
        }
        float gotf[C];
        for (int i = 0; i < C; i++)
            gotf[i] = (float)got[i];
        double e = rel_err(gotf, fd, C);
        cr_assert(e < 1e-4, "row %d: relative error %.3g", k, e);
    }
    /* the row no target wrote keeps its value */
    cr_assert_eq(memcmp(dinp + 2 * C, base + 2 * C, C * sizeof(float)), 0);
    be->destroy(be);
}

/* ---- GELU ---- */

static double gelu(double x) { return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))); }

Test(backward_ops, gelu_backward_matches_finite_differences)
{
    ecc_backend *be = cpu();
    enum { N = 4, F = 40, R = 5 };
    float x[N * F], dout[R * F], dinp[R * F];
    fill(x, N * F, 4.0);
    fill(dout, R * F, 1.0);
    int32_t rowpos[R] = {3, 1, 1, 0, 2};
    float dg[N * F], y0[N * F];
    be->gelu(be, y0, dg, x, N * F);
    be->gelu_backward(be, dinp, dout, dg, rowpos, R, F);
    double fd[R * F];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < F; i++) {
            double v = x[rowpos[r] * F + i];
            fd[r * F + i] = dout[r * F + i] * (gelu(v + H) - gelu(v - H)) / (2 * H);
        }
    double e = rel_err(dinp, fd, R * F);
    cr_assert(e < 1e-4, "relative error %.3g", e);
    /* also check the forward op against the same formula */
    float y[N * F];
    double yd[N * F];
    be->gelu(be, y, NULL, x, N * F);
    for (int i = 0; i < N * F; i++)
        yd[i] = gelu(x[i]);
    cr_assert(rel_err(y, yd, N * F) < 1e-6);
    for (int i = 0; i < N * F; i++) /* with or without the derivative, the same values */
        cr_assert(y[i] == y0[i], "gelu at %d: %g with the derivative, %g without", i, y0[i], y[i]);
    be->destroy(be);
}

/* ---- causal attention ---- */

/* f = sum over rows i < n of r_i . out_i, out = causal attention of qkv (T, 3C) */
static double attn_dot(const double *qkv, const float *r, int n, int C, int NH, double scale)
{
    int hd = C / NH;
    double f = 0;
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < n; i++) {
            double s[64], mx = -1e300, sum = 0;
            for (int j = 0; j <= i; j++) {
                double d = 0;
                for (int k = 0; k < hd; k++)
                    d += qkv[i * 3 * C + h * hd + k] * qkv[j * 3 * C + C + h * hd + k];
                s[j] = d * scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j <= i; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (int k = 0; k < hd; k++) {
                double o = 0;
                for (int j = 0; j <= i; j++)
                    o += s[j] / sum * qkv[j * 3 * C + 2 * C + h * hd + k];
                f += r[i * C + h * hd + k] * o;
            }
        }
    return f;
}

Test(backward_ops, attention_backward_matches_finite_differences)
{
    ecc_backend *be = cpu();
    enum { A = 2, T = 6, C = 12, NH = 3, J = 3 };
    const float scale = 1.0f / sqrtf(C / NH);
    float qkv[A * T * 3 * C], att[A * NH * T * T], out[T * C], kc[T * C], vc[T * C];
    fill(qkv, A * T * 3 * C, 1.5);
    for (int a = 0; a < A; a++) /* the forward op writes the probabilities the backward reads */
        be->attention(be, out, att + a * NH * T * T, T * T, T, qkv + a * T * 3 * C, kc, vc, 0, T, C, NH, scale);
    int32_t seq[J] = {1, 0, 1}, n[J] = {6, 3, 4};
    int64_t off[J] = {0, 6, 9};
    int R = 13;
    float datty[13 * C], dqkv[13 * 3 * C];
    fill(datty, 13 * C, 1.0);
    memset(dqkv, 0xff, sizeof dqkv); /* poisoned: every entry must be written */
    size_t bytes;
    cr_assert_eq(be->reserve(be, T, &bytes), ECC_OK);
    be->attention_backward(be, dqkv, datty, qkv, att, seq, n, n, off, J, T, C, NH, scale);
    for (int j = 0; j < J; j++) {
        double q[T * 3 * C], fd[T * 3 * C];
        float got[T * 3 * C];
        for (int i = 0; i < T * 3 * C; i++)
            q[i] = qkv[seq[j] * T * 3 * C + i];
        int m = n[j] * 3 * C;
        for (int i = 0; i < m; i++) {
            double keep = q[i];
            q[i] = keep + H;
            double up = attn_dot(q, datty + off[j] * C, n[j], C, NH, scale);
            q[i] = keep - H;
            double dn = attn_dot(q, datty + off[j] * C, n[j], C, NH, scale);
            q[i] = keep;
            fd[i] = (up - dn) / (2 * H);
            got[i] = dqkv[off[j] * 3 * C + i];
            cr_assert(isfinite(got[i]), "target %d: entry %d not written", j, i);
        }
        double e = rel_err(got, fd, (size_t)m);
        cr_assert(e < 1e-4, "target %d (sequence %d, %d rows): relative error %.3g", j, seq[j], n[j], e);
    }
    (void)R;
    be->destroy(be);
}

/* ---- saliency and lens statistics (direct definitions, not derivatives) ---- */

Test(backward_ops, saliency_normalises_norms_per_target)
{
    ecc_backend *be = cpu();
    enum { C = 5, J = 2, LD = 6 };
    int32_t n[J] = {3, 5}, rowpos[8] = {0, 1, 2, 0, 1, 2, 3, 4};
    int64_t off[J] = {0, 3};
    float grad[8 * C], emb[5 * C], s1[J * LD], s2[J * LD];
    fill(grad, 8 * C, 1.0);
    fill(emb, 5 * C, 1.0);
    be->saliency(be, s1, LD, grad, emb, rowpos, n, off, J, C);
    be->saliency(be, s2, LD, grad, NULL, rowpos, n, off, J, C);
    for (int j = 0; j < J; j++) {
        double w1[LD] = {0}, w2[LD] = {0}, t1 = 0, t2 = 0;
        for (int i = 0; i < n[j]; i++) {
            double a = 0, b = 0;
            for (int c = 0; c < C; c++) {
                double g = grad[(off[j] + i) * C + c], e = emb[rowpos[off[j] + i] * C + c];
                a += g * e * g * e;
                b += g * g;
            }
            t1 += (w1[i] = sqrt(a));
            t2 += (w2[i] = sqrt(b));
        }
        for (int i = 0; i < LD; i++) {
            cr_assert_float_eq(s1[j * LD + i], w1[i] / t1, 1e-6, "grad_x_input target %d pos %d", j, i);
            cr_assert_float_eq(s2[j * LD + i], w2[i] / t2, 1e-6, "gradient target %d pos %d", j, i);
        }
    }
    be->destroy(be);
}

Test(backward_ops, lens_stats_ranks_and_top_k)
{
    ecc_backend *be = cpu();
    enum { V = 9, n = 2, k = 4, W = 2 };
    /* row 0 has a tie between ids 2 and 5 */
    float z[n * V] = {0.5f, -1, 3, 1, 0, 3, 2, -2, 0.25f, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    int32_t tok[n] = {5, 0}, watch[W] = {2, 8}, ranks[n], ids[n * k], wr[n * W];
    float probs[n * k];
    be->lens_stats(be, ranks, ids, probs, wr, z, tok, watch, n, V, V, k, W);
    cr_assert_eq(ranks[0], 1, "a tie with the best counts as rank 1");
    cr_assert_eq(ranks[1], 9);
    int32_t want0[k] = {2, 5, 6, 3}, want1[k] = {8, 7, 6, 5};
    for (int q = 0; q < k; q++) {
        cr_assert_eq(ids[q], want0[q]);
        cr_assert_eq(ids[k + q], want1[q]);
    }
    double s = 0;
    for (int v = 0; v < V; v++)
        s += exp(z[v] - 3.0);
    cr_assert_float_eq(probs[0], 1.0 / s, 1e-6);
    cr_assert_eq(wr[0], 1);
    cr_assert_eq(wr[1], 6);
    cr_assert_eq(wr[2], 7);
    cr_assert_eq(wr[3], 1);
    be->destroy(be);
}

/* A padded vocabulary: ids 6..8 are padding rows with the largest logits.
 * Ranks and top ids see only ids 0..5; probabilities are softmax over all 9. */
Test(backward_ops, lens_stats_skip_padding_rows)
{
    ecc_backend *be = cpu();
    enum { V = 9, Vt = 6, n = 1, k = 3, W = 1 };
    float z[V] = {0.5f, -1, 3, 1, 0, 2, 10, 11, 12};
    int32_t tok[n] = {3}, watch[W] = {0}, ranks[n], ids[k], wr[W];
    float probs[k];
    be->lens_stats(be, ranks, ids, probs, wr, z, tok, watch, n, V, Vt, k, W);
    cr_assert_eq(ranks[0], 3, "token 3 (logit 1) is behind ids 2 and 5 only, not the padding");
    cr_assert_eq(wr[0], 4);
    int32_t want[k] = {2, 5, 3};
    double s = 0;
    for (int v = 0; v < V; v++)
        s += exp((double)z[v] - 12.0);
    for (int q = 0; q < k; q++) {
        cr_assert_eq(ids[q], want[q], "top %d is %d", q, ids[q]);
        cr_assert_float_eq(probs[q], exp((double)z[want[q]] - 12.0) / s, 1e-9, "probability over all V rows");
    }
    be->destroy(be);
}
