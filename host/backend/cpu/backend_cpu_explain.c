/* The CPU backend's explanation ops: target gradients at the logits, the
 * backward ops to the input embeddings (layer norm, GELU, attention), the
 * saliency reduction and logit-lens statistics. See host/backend/backend.h for the
 * packed-target layout. Every loop runs in a fixed order per output element,
 * so results do not depend on the thread count. */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "util.h"

static void cpu_gather_rows(ecc_backend *be, float *out, const float *src, const int32_t *rows, int n, int C)
{
#pragma omp parallel for
    for (int k = 0; k < n; k++)
        memcpy(out + (int64_t)k * C, src + (int64_t)rows[k] * C, sizeof(float) * (size_t)C);
}

static void cpu_scatter_rows(ecc_backend *be, float *out, const float *src, const int32_t *rows, int n, int C)
{
#pragma omp parallel for
    for (int k = 0; k < n; k++)
        memcpy(out + (int64_t)rows[k] * C, src + (int64_t)k * C, sizeof(float) * (size_t)C);
}

static void cpu_target_grad(ecc_backend *be, float *logits, float *logprob, const int32_t *tokens,
                            const float *scale, int kind, int J, int V)
{
#pragma omp parallel for
    for (int j = 0; j < J; j++) {
        float *z = logits + (int64_t)j * V;
        int32_t x = tokens[j];
        float s = scale ? scale[j] : 1.0f;
        float mx = z[0];
        double sum = 0;
        if (kind != 1 || logprob) {
            for (int i = 1; i < V; i++)
                mx = fmaxf(mx, z[i]);
            for (int i = 0; i < V; i++)
                sum += exp((double)z[i] - mx);
        }
        if (logprob) /* the same bits as generation's ecc_log_softmax_at */
            logprob[j] = (float)((double)z[x] - mx - log(sum));
        if (kind == 1) { /* logit: the gradient is the one-hot of the token */
            memset(z, 0, sizeof(float) * (size_t)V);
            z[x] = s;
            continue;
        }
        float inv = (float)(1.0 / sum);
        float px = expf(z[x] - mx) * inv;
        float f = kind == 0 ? s * px : s; /* prob: p_x (onehot - p); logprob: onehot - p */
        for (int i = 0; i < V; i++)
            z[i] = -f * expf(z[i] - mx) * inv;
        z[x] += f;
    }
}

static void cpu_layernorm_backward(ecc_backend *be, float *dinp, const float *dout, const float *inp,
                                   const float *mean, const float *rstd, const float *w, const int32_t *in_rows,
                                   const int32_t *out_rows, int n, int C)
{
#pragma omp parallel for
    for (int k = 0; k < n; k++) {
        int64_t ri = in_rows ? in_rows[k] : k, ro = out_rows ? out_rows[k] : k;
        const float *x = inp + ri * C, *dy = dout + (int64_t)k * C;
        float m = mean[ri], r = rstd[ri];
        /* dx = r * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w */
        double a = 0, b = 0;
        for (int i = 0; i < C; i++) {
            float dxhat = dy[i] * w[i], xhat = (x[i] - m) * r;
            a += dxhat;
            b += dxhat * xhat;
        }
        float ma = (float)(a / C), mb = (float)(b / C);
        float *dx = dinp + ro * C;
        for (int i = 0; i < C; i++) {
            float dxhat = dy[i] * w[i], xhat = (x[i] - m) * r;
            dx[i] += r * (dxhat - ma - xhat * mb);
        }
    }
}

static void cpu_gelu_backward(ecc_backend *be, float *dinp, const float *dout, const float *dgelu,
                              const int32_t *rowpos, int64_t R, int F)
{
#pragma omp parallel for
    for (int64_t r = 0; r < R; r++) {
        const float *d = dgelu + (int64_t)rowpos[r] * F, *dy = dout + r * F;
        float *dx = dinp + r * F;
        for (int i = 0; i < F; i++)
            dx[i] = dy[i] * d[i];
    }
}

/* Per (target, head): with P the saved probabilities (n x n, lower
 * triangular) and dO the head's slice of datty (n x hd):
 *   dP = dO V^T;  dS = P * (dP - rowsum(P * dP));
 *   dQ = scale dS K;  dK = scale dS^T Q;  dV = P^T dO.
 * Four small matrix products per pair; the pairs run in parallel, each
 * product single-threaded (OpenBLAS's OpenMP build runs serially inside a
 * parallel region). */
static void cpu_attention_backward(ecc_backend *be, float *dqkv, const float *datty, const float *qkv,
                                   const float *att, const int32_t *tg_seq, const int32_t *tg_n,
                                   const int32_t *h_tg_n, const int64_t *tg_off, int J, int T, int C, int NH,
                                   float scale)
{
    float *tiles = ecc_cpu_scratch(be);
    const int hd = C / NH;
    const int64_t C3 = 3 * (int64_t)C;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int j = 0; j < J; j++) {
        for (int h = 0; h < NH; h++) {
            int n = tg_n[j];
            float *dS = tiles + (int64_t)omp_get_thread_num() * T * T; /* (n, n) */
            const float *Q = qkv + (int64_t)tg_seq[j] * T * C3 + h * hd, *K = Q + C, *V = Q + 2 * C;
            const float *P = att + ((int64_t)tg_seq[j] * NH + h) * T * T; /* (n, n), ld T */
            const float *dO = datty + tg_off[j] * C + h * hd;
            float *dQ = dqkv + tg_off[j] * C3 + h * hd, *dK = dQ + C, *dV = dQ + 2 * C;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, hd, 1.0f, dO, C, V, (int)C3, 0.0f, dS, n);
            for (int i = 0; i < n; i++) {
                const float *p = P + (int64_t)i * T;
                float *d = dS + (int64_t)i * n;
                double D = 0;
                for (int k = 0; k <= i; k++)
                    D += (double)p[k] * d[k];
                for (int k = 0; k <= i; k++)
                    d[k] = p[k] * (d[k] - (float)D);
                for (int k = i + 1; k < n; k++)
                    d[k] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, n, scale, dS, n, K, (int)C3, 0.0f, dQ,
                        (int)C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, n, scale, dS, n, Q, (int)C3, 0.0f, dK,
                        (int)C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, hd, n, 1.0f, P, T, dO, C, 0.0f, dV, (int)C3);
        }
    }
}

static void cpu_saliency(ecc_backend *be, float *scores, int ld, const float *grad, const float *mult,
                         const int32_t *rowpos, const int32_t *tg_n, const int64_t *tg_off, int J, int C)
{
#pragma omp parallel for schedule(dynamic, 1)
    for (int j = 0; j < J; j++) {
        float *s = scores + (int64_t)j * ld;
        double total = 0;
        for (int i = 0; i < tg_n[j]; i++) {
            int64_t r = tg_off[j] + i;
            const float *g = grad + r * C, *e = mult ? mult + (int64_t)rowpos[r] * C : NULL;
            double ss = 0;
            for (int c = 0; c < C; c++) {
                double v = e ? (double)g[c] * e[c] : g[c];
                ss += v * v;
            }
            s[i] = (float)sqrt(ss);
            total += s[i];
        }
        float inv = total > 0 ? (float)(1.0 / total) : 0.0f;
        for (int i = 0; i < tg_n[j]; i++)
            s[i] *= inv;
        for (int i = tg_n[j]; i < ld; i++)
            s[i] = 0.0f;
    }
}

/* Is (za, a) ranked before (zb, b)? Higher logit first, lower id on ties. */
static int before(float za, int32_t a, float zb, int32_t b) { return za > zb || (za == zb && a < b); }

static void cpu_lens_stats(ecc_backend *be, int32_t *ranks, int32_t *top_ids, float *top_probs,
                           int32_t *watch_ranks, const float *logits, const int32_t *tokens, const int32_t *watch,
                           int n, int V, int Vt, int k, int W)
{
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * V; /* ranks and top ids among the Vt tokens: no padding row */
        float zx = z[tokens[i]];
        int32_t above = 0;
        for (int v = 0; v < Vt; v++)
            above += z[v] > zx;
        ranks[i] = above + 1;
        for (int w = 0; watch_ranks && w < W; w++) {
            float zw = z[watch[w]];
            int32_t c = 0;
            for (int v = 0; v < Vt; v++)
                c += z[v] > zw;
            watch_ranks[(int64_t)i * W + w] = c + 1;
        }
        if (!top_ids || k <= 0)
            continue;
        /* the k best by insertion into a sorted list (k is small) */
        int32_t *ids = top_ids + (int64_t)i * k;
        int m = 0;
        for (int v = 0; v < Vt; v++) {
            if (m == k && !before(z[v], v, z[ids[k - 1]], ids[k - 1]))
                continue;
            int p = m < k ? m++ : k - 1;
            while (p > 0 && before(z[v], v, z[ids[p - 1]], ids[p - 1])) {
                ids[p] = ids[p - 1];
                p--;
            }
            ids[p] = v;
        }
        float mx = z[0]; /* softmax over all V rows, as transformers computes it */
        for (int v = 1; v < V; v++)
            mx = fmaxf(mx, z[v]);
        double sum = 0;
        for (int v = 0; v < V; v++)
            sum += exp((double)z[v] - mx);
        for (int q = 0; q < k; q++)
            top_probs[(int64_t)i * k + q] = (float)(exp((double)z[ids[q]] - mx) / sum);
    }
}

void ecc_cpu_register_explain(ecc_backend *be)
{
    be->gather_rows = cpu_gather_rows;
    be->scatter_rows = cpu_scatter_rows;
    be->target_grad = cpu_target_grad;
    be->layernorm_backward = cpu_layernorm_backward;
    be->gelu_backward = cpu_gelu_backward;
    be->attention_backward = cpu_attention_backward;
    be->saliency = cpu_saliency;
    be->lens_stats = cpu_lens_stats;
}
