/* The backend op interface: every op the orchestration (forward.c,
 * generate.c) needs, implemented once for the CPU (backend_cpu.c, the
 * readable reference) and once for CUDA (kernels/backend_cuda.cu).
 *
 * Pointers passed to ops are backend memory: host memory for the CPU backend,
 * device memory for CUDA. Ops are called as be->op(be, outputs..., inputs...,
 * sizes...). Ops do not fail (sizes are validated by the orchestration); the
 * memory calls report failure by returning NULL / a status with
 * ecc_last_error() set.
 *
 * Weight layout (canonical, Conv1D style): y = x @ W + b with W (C_in, C_out)
 * row-major. The output matrix (wte or lm_head) is (V, C) and used transposed.
 */
#ifndef ECC_BACKEND_H
#define ECC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "eccolo.h"

typedef struct ecc_backend ecc_backend;

/* How the next token is chosen from a row of logits. */
typedef struct ecc_pick_params {
    int greedy;         /* 1: arg-max (lowest id wins ties) */
    float temperature;  /* > 0 */
    int top_k;          /* 0 = off */
    float top_p;        /* 1 = off */
    uint64_t seed;      /* with the step index, the counter of the RNG */
    int n_tokens;       /* ids n_tokens .. V-1 are padding rows: never picked (0: every id is a token) */
} ecc_pick_params;

struct ecc_backend {
    const char *name; /* "cpu" or "cuda" */
    void *ctx;        /* backend-private state */
    int threads;      /* CPU threads used by the ops (and BLAS) */

    /* ---- memory ---- */
    void *(*alloc)(ecc_backend *be, size_t bytes, const char *what); /* zeroed; NULL + error on failure */
    void (*free)(ecc_backend *be, void *p);
    /* Backend memory mirroring a host buffer the caller keeps alive and
     * unchanged: the CPU backend returns host itself, CUDA copies it once. */
    void *(*mirror)(ecc_backend *be, const void *host, size_t bytes, const char *what);
    void (*unmirror)(ecc_backend *be, void *p);
    void (*upload)(ecc_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(ecc_backend *be, void *host_dst, const void *src, size_t bytes);
    /* rows x width bytes from src (pitch src_pitch) to host_dst (pitch dst_pitch) */
    void (*download2d)(ecc_backend *be, void *host_dst, size_t dst_pitch, const void *src, size_t src_pitch,
                       size_t width, size_t rows);
    void (*zero)(ecc_backend *be, void *p, size_t bytes);
    /* Bytes the backend could still allocate (free device memory, or the
     * host's available memory), for planning. */
    size_t (*available)(ecc_backend *be);
    void (*synchronize)(ecc_backend *be);
    /* ECC_OK, or the first failure of an op since the backend was created, with
     * ecc_last_error() set. Ops cannot return errors: the CUDA backend records
     * the first one, turns the ops after it into no-ops, and reports it here
     * (the CPU backend always answers ECC_OK). Call after each phase. */
    ecc_status (*status)(ecc_backend *be);
    void (*destroy)(ecc_backend *be);
    /* Working memory the explanation ops need for sequences of up to T_max
     * tokens (e.g. per-thread T x T attention-gradient tiles); call before them.
     * Returns the bytes it holds in *bytes. */
    ecc_status (*reserve)(ecc_backend *be, int T_max, size_t *bytes);

    /* ---- forward ops ---- */

    /* out (n, C) = tok_scale * wte[ids[t]] + wpe[p_t], p_t = pos[t], or pos0 + t
     * when pos is NULL (tok_scale: integrated gradients scales the token
     * embeddings only, never the positions) */
    void (*embed)(ecc_backend *be, float *out, const int32_t *ids, const int32_t *pos, int pos0, const float *wte,
                  const float *wpe, float tok_scale, int n, int C);

    /* out (T, C) = (inp - mean) * rstd * w + b per row; mean, rstd (T) may be NULL */
    void (*layernorm)(ecc_backend *be, float *out, float *mean, float *rstd, const float *inp,
                      const float *w, const float *b, int T, int C, float eps);

    /* out (T, OC) = inp (T, C) @ w (C, OC) + bias (OC, may be NULL) */
    void (*matmul)(ecc_backend *be, float *out, const float *inp, const float *w, const float *bias,
                   int T, int C, int OC);

    /* out (T, OC) = inp (T, C) @ wt (OC, C)^T — the logits against wte / lm_head */
    void (*matmul_wt)(ecc_backend *be, float *out, const float *inp, const float *wt, int T, int C, int OC);

    /* Causal multi-head self-attention for T new tokens at positions
     * pos0 .. pos0+T-1. Appends their keys and values (from qkv (T, 3C), laid
     * out q | k | v) to kcache/vcache (n_ctx, C) at rows pos0.., then
     *   out (T, C) = softmax(q k^T * scale, causal) v   per head (hd = C / NH).
     * att (optional): the softmax probabilities, row t of head h at
     * att + h * att_head_stride + t * att_row_stride, pos0 + t + 1 entries
     * followed by zeros up to pos0 + T. */
    void (*attention)(ecc_backend *be, float *out, float *att, int64_t att_head_stride, int att_row_stride,
                      const float *qkv, float *kcache, float *vcache, int pos0, int T, int C, int NH,
                      float scale);

    /* out = gelu(inp), tanh approximation ("gelu_new"), n values; dgelu, when
     * not NULL, also receives gelu'(inp) (it may alias inp): the saved forward
     * keeps it so that the backward of every target only multiplies */
    void (*gelu)(ecc_backend *be, float *out, float *dgelu, const float *inp, int64_t n);

    /* out = a + b, n values (out may alias a or b) */
    void (*add)(ecc_backend *be, float *out, const float *a, const float *b, int64_t n);

    /* Choose a token from logits (V): forced >= 0 takes that token; else
     * arg-max or a sample per p (counter-based RNG on (seed, step), so the
     * same seed gives the same tokens on every backend), among the ids below
     * p->n_tokens (the rest are padding rows). Writes the token to *token and
     * log_softmax(logits)[token] (temperature 1, over all V, as transformers
     * computes it) to *logprob; both pointers are host memory. */
    void (*pick)(ecc_backend *be, int32_t *token, float *logprob, const float *logits, int V, int32_t forced,
                 const ecc_pick_params *p, uint64_t step);

    /* ---- explanation ops (input gradients, saliency, logit lens) ----
     *
     * A backward pass runs for a chunk of J targets at once. Target j explains
     * the token at position n_j of forward sequence seq_j (an integrated-
     * gradients step, or 0); its gradient rows are positions 0 .. n_j - 1,
     * packed one target after another: row off_j + i is position i of target
     * j, R = sum of n_j rows in all. rowpos[r] = seq_j * T + i is the row of
     * the saved forward activations that gradient row r belongs to. All these
     * arrays are backend memory. */

    /* out (n, C) = src[rows[k]] for k < n */
    void (*gather_rows)(ecc_backend *be, float *out, const float *src, const int32_t *rows, int n, int C);
    /* out[rows[k]] = src (n, C)[k] for k < n; rows distinct; other rows of out untouched */
    void (*scatter_rows)(ecc_backend *be, float *out, const float *src, const int32_t *rows, int n, int C);

    /* In place on logits (J, V), row j -> d s_j / d logits for the token
     * tokens[j], times scale[j] (NULL = 1):
     *   kind 0 "prob":    p_x (onehot_x - p)     (p = softmax(logits))
     *   kind 1 "logit":   onehot_x
     *   kind 2 "logprob": onehot_x - p
     * logprob (J), when not NULL, first receives log p_x of each row: the
     * token log-probabilities of a forced continuation come from the same
     * logits, with no second product with the vocabulary. */
    void (*target_grad)(ecc_backend *be, float *logits, float *logprob, const int32_t *tokens, const float *scale,
                        int kind, int J, int V);

    /* dinp[out_rows[k]] += layer-norm backward of dout[k] (n, C), the forward
     * input being inp[in_rows[k]] with its mean/rstd; w the layer-norm weight.
     * out_rows / in_rows NULL mean k. */
    void (*layernorm_backward)(ecc_backend *be, float *dinp, const float *dout, const float *inp, const float *mean,
                               const float *rstd, const float *w, const int32_t *in_rows, const int32_t *out_rows,
                               int n, int C);

    /* dinp (R, F) = dout (R, F) * dgelu[rowpos[r]], dgelu the saved gelu'
     * rows (dinp may alias dout) */
    void (*gelu_backward)(ecc_backend *be, float *dinp, const float *dout, const float *dgelu,
                          const int32_t *rowpos, int64_t R, int F);

    /* Causal attention backward for the packed targets: from datty (R, C),
     * the gradient of the attention output, to dqkv (R, 3C) (q | k | v), given
     * the saved forward qkv (rows seq * T + i, 3C) and probabilities att
     * (seq, NH, T, T). h_tg_n is the host's copy of tg_n (the CUDA backend
     * plans its sub-batches from it without reading tg_n back). */
    void (*attention_backward)(ecc_backend *be, float *dqkv, const float *datty, const float *qkv, const float *att,
                               const int32_t *tg_seq, const int32_t *tg_n, const int32_t *h_tg_n,
                               const int64_t *tg_off, int J, int T, int C, int NH, float scale);

    /* Saliency of each target: for i < n_j,
     *   v = grad[off_j + i] (* mult[rowpos] when mult is not NULL)
     *   scores[j * ld + i] = ||v||_2 / sum_i' ||v_i'||_2
     * and zeros for i in [n_j, ld). */
    void (*saliency)(ecc_backend *be, float *scores, int ld, const float *grad, const float *mult,
                     const int32_t *rowpos, const int32_t *tg_n, const int64_t *tg_off, int J, int C);

    /* Logit lens statistics of each row of logits (n, V): rank (1 = top) of
     * tokens[i] (1 + number of strictly larger logits), the k most likely ids
     * and their softmax probabilities (descending; lower id first on ties),
     * and ranks of the W watched ids. Outputs are row-major (n, k) / (n, W);
     * top_ids/top_probs/watch_ranks may be NULL. Rows have V logits, of which
     * only the first Vt (the tokenizer's ids) are ranked or chosen: the others
     * are padding rows; probabilities are softmax over all V. k <= Vt. */
    void (*lens_stats)(ecc_backend *be, int32_t *ranks, int32_t *top_ids, float *top_probs, int32_t *watch_ranks,
                       const float *logits, const int32_t *tokens, const int32_t *watch, int n, int V, int Vt, int k,
                       int W);

    /* ---- NMF (and general matrix products) ---- */

    /* out (M, N) = alpha op(A) op(B) + beta out, row-major; op(A) is (M, K):
     * A is (M, K), or (K, M) when transA; op(B) is (K, N): B is (K, N), or
     * (N, K) when transB. */
    void (*gemm)(ecc_backend *be, float *out, const float *A, const float *B, int M, int N, int K, int transA,
                 int transB, float alpha, float beta);

    /* Multiplicative update, fused: x = x * num / den over n values, a
     * denominator <= 0 replaced by eps (as scikit-learn does). */
    void (*mu_update)(ecc_backend *be, float *x, const float *num, const float *den, int64_t n, float eps);

    /* One HALS sweep over the k columns of M (n, k), in order, each row on
     * its own: M[i, j] = max(0, M[i, j] + (P[i, j] - M[i, :] Q[:, j]) / Q[j, j])
     * (columns with Q[j, j] <= 0 are left as they are). */
    void (*hals_update)(ecc_backend *be, float *M, const float *P, const float *Q, int n, int k);

    /* sum of a[i] * b[i] over n values, accumulated in double in a fixed order */
    double (*dot)(ecc_backend *be, const float *a, const float *b, int64_t n);

    /* ---- analysis: CCA, SVCCA, PWCCA, CKA (host/analysis/) ----
     *
     * Double-precision linear algebra, row-major like gemm (Ecco's numpy
     * computes these in float64). The factorisations can fail to converge, so
     * they return a status (ECC_OK, or an error with ecc_last_error() set, which
     * also reports an earlier op's failure as be->status does). Matrices are
     * backend memory; the eigenvalues w and singular values s are host memory.
     * The signs of the vectors they return are the backend's own (callers use
     * only sign-free quantities: V f(w) V^T, subspaces, |.|). */

    /* out (M, N) = alpha op(A) op(B) + beta out, as gemm, in double */
    void (*dgemm)(ecc_backend *be, double *out, const double *A, const double *B, int M, int N, int K, int transA,
                  int transB, double alpha, double beta);

    /* Symmetric eigendecomposition of A (n, n): w (n) ascending, V (n, n) with
     * row k the unit eigenvector of w[k]. A is not modified. */
    ecc_status (*eigh)(ecc_backend *be, double *w, double *V, const double *A, int n);

    /* Singular values s (k = min(m, n), descending) of A (m, n), and when U is
     * not NULL the left singular vectors U (m, k) (column j belongs to s[j]).
     * A is not modified. */
    ecc_status (*svd)(ecc_backend *be, double *s, double *U, const double *A, int m, int n);

    /* CKA's Gram matrix: K (T, T) = X X^T for X (T, N), both triangles
     * written; float products, like gemm (a symmetric rank-k update: half a
     * gemm's work) */
    void (*gram)(ecc_backend *be, float *K, const float *X, int T, int N);

    /* Q (n, m): orthonormal rows spanning the rows of A (n, m), n <= m, in
     * Gram-Schmidt order (rows 0..k of Q span rows 0..k of A): the Q of the
     * Householder QR of A^T, as numpy.linalg.qr(A.T) returns it (transposed). */
    ecc_status (*orth_rows)(ecc_backend *be, double *Q, const double *A, int n, int m);
};

/* Create the backend for a device. AUTO picks CUDA when a usable GPU is there
 * (and eccolo was built with CUDA), else the CPU; *notice then gets a one-line
 * explanation when a GPU is present but cannot be used (NULL when there is
 * no GPU or driver at all: the CPU is then no surprise). threads <= 0 keeps the default (OMP_NUM_THREADS or
 * all cores). A precision other than FP32 needs CUDA. */
ecc_status ecc_backend_create(ecc_backend **out, ecc_device dev, int threads, ecc_precision precision,
                              const char **notice);
ecc_status ecc_backend_cpu_create(ecc_backend **out, int threads);
#ifdef ECCOLO_HAVE_CUDA
ecc_status ecc_backend_cuda_create(ecc_backend **out, int threads, ecc_precision precision);
#endif

/* GPUs visible to eccolo: count (0 when none, or when built without CUDA)
 * and a one-line description per device. */
int ecc_gpu_count(char *why, size_t why_len);
/* The same, and when the count is 0 whether a GPU is absent (*absent = 1: no
 * CUDA device or driver, cudaErrorNoDevice / cudaErrorInsufficientDriver, or
 * no NVIDIA node in /dev) or present but unusable (0: another CUDA error, or
 * /dev/nvidia* in a build without CUDA). ecc_gpu_probe_in looks for the
 * nodes in dev_dir instead of /dev (for tests). */
int ecc_gpu_probe(char *why, size_t why_len, int *absent);
int ecc_gpu_probe_in(const char *dev_dir, char *why, size_t why_len, int *absent);
void ecc_gpu_describe(int i, char *buf, size_t len);

/* NVTX ranges around the host's phases (generate, forward, backward, nmf,
 * copy), for Nsight Systems; no-ops when built without CUDA. */
void ecc_nvtx_push(const char *name);
void ecc_nvtx_pop(void);

/* Functions the CUDA kernels share with the host (ecc_uniform). */
#if defined(__CUDACC__)
#define ECC_HD __host__ __device__
#else
#define ECC_HD
#endif

/* The counter-based RNG shared by the backends: a uniform float in [0, 1)
 * from (seed, counter), SplitMix64 finaliser on the combined key. */
static inline ECC_HD float ecc_uniform(uint64_t seed, uint64_t counter)
{
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + counter * 0xD1B54A32D192ED03ull + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

#endif
