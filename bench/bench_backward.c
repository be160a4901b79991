/* The batched backward pass against a per-target loop, on GPT-2-shaped
 * random weights (124M: L=12, C=768, NH=12, F=3072, V=50257), with the
 * sgemm rate on the same shapes measured in the same run.
 *
 *   bench_backward [--T 128,512] [--n-input 8] [--device cpu|cuda] [--repeats 1] [--json FILE]
 *
 * For each T: a random sequence of T tokens, the first n_input a "prompt",
 * the rest forced; G = T - n_input targets explained by grad_x_input.
 * "batched" lets the memory budget choose chunks (4 GiB); "per-target" runs
 * one target per backward pass (the shape of Ecco's loop, without its
 * recomputed forwards). GFLOP/s counts the backward's matrix products and
 * attention products; the sgemm rate is cblas_sgemm on (R x K) @ (K x N) with
 * the backward's largest shapes. */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_rand.h"
#include "eccolo.h"
#include "model/model.h"
#include "engine/run.h"
#include "util.h"


/* A GPT-2 124M-shaped model with random weights, without files. */
static ecc_model *random_gpt2(void)
{
    ecc_model *m = calloc(1, sizeof *m);
    ecc_config *c = &m->cfg;
    snprintf(c->model_type, sizeof c->model_type, "gpt2");
    c->n_layer = 12;
    c->n_head = 12;
    c->n_embd = 768;
    c->n_inner = 3072;
    c->n_positions = 1024;
    c->vocab_size = 50257;
    c->layer_norm_eps = 1e-5f;
    snprintf(c->activation, sizeof c->activation, "gelu_new");
    c->eos_token_id = 50256;
    c->tied_lm_head = 1;
    size_t sizes[ECC_N_PARAMS];
    m->n_params = ecc_param_sizes(sizes, c);
    m->params = malloc(m->n_params * sizeof(float));
    ecc_weights_carve(&m->w, m->params, c);
    for (int i = 0; i < ECC_N_PARAMS; i++) {
        int is_ln = i == ECC_P_LN1W || i == ECC_P_LN2W || i == ECC_P_LNFW;
        for (size_t k = 0; k < sizes[i]; k++)
            m->w.p[i][k] = is_ln ? 1.0f + 0.1f * frand() : 0.05f * frand();
    }
    m->id = strdup("random gpt2 (124M shape)");
    m->dir = strdup("(none)");
    return m;
}

/* FLOPs of the backward for targets at positions n_input .. T-1 */
static double backward_flops(const ecc_config *c, int T, int n_input)
{
    double C = c->n_embd, F = c->n_inner, L = c->n_layer, V = c->vocab_size, rows = 0, sq = 0;
    for (int t = n_input; t < T; t++) {
        rows += t;
        sq += (double)t * t;
    }
    double G = T - n_input;
    double matmul = 2 * rows * (2 * C * F + 4 * C * C) * L;
    double attention = 8 * sq * C * L; /* four n x n x hd products per head */
    double logits = 2 * 2 * G * V * C;
    return matmul + attention + logits;
}

static double sgemm_rate(int M, int N, int K, int repeats)
{
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)K * N),
          *c = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = frand();
    for (size_t i = 0; i < (size_t)K * N; i++)
        b[i] = frand();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        double t0 = ecc_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
        best = fmin(best, ecc_now() - t0);
    }
    free(a), free(b), free(c);
    return 2.0 * M * N * K / best / 1e9;
}

static double run_backward(ecc_model *m, const int32_t *ids, int T, int n_input, int per_target, ecc_device dev)
{
    ecc_options o;
    ecc_options_default(&o);
    o.device = dev;
    o.continuation_ids = ids + n_input;
    o.n_continuation = T - n_input;
    o.attribution = ECC_ATTR_GRAD_X_INPUT;
    o.max_chunk_targets = per_target ? 1 : 0;
    ecc_run *r;
    if (ecc_generate(&r, m, ids, n_input, &o) != ECC_OK) {
        fprintf(stderr, "bench_backward: %s\n", ecc_last_error());
        exit(1);
    }
    double t = ecc_run_timing(r, "backward");
    ecc_run_free(r);
    return t;
}

int main(int argc, char **argv)
{
    int Ts[8] = {128, 512}, nT = 2, n_input = 8, repeats = 1;
    ecc_device dev = ECC_DEVICE_CPU;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--T") && i + 1 < argc) {
            nT = 0;
            for (char *s = strtok(argv[++i], ","); s && nT < 8; s = strtok(NULL, ","))
                Ts[nT++] = atoi(s);
        } else if (!strcmp(argv[i], "--n-input") && i + 1 < argc) {
            n_input = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
            repeats = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            i++;
            dev = !strcmp(argv[i], "cuda") ? ECC_DEVICE_CUDA : ECC_DEVICE_CPU;
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_backward [--T 128,512] [--n-input 8] [--repeats N] [--device cpu|cuda] "
                            "[--json FILE]\n");
            return 2;
        }
    }
    ecc_model *m = random_gpt2();
    const ecc_config *c = &m->cfg;
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf)
        fprintf(jf, "[\n");
    printf("%-5s %-4s %10s %10s %10s %8s %12s %12s %10s\n", "T", "G", "batched_s", "per_tgt_s", "ratio", "GFLOP",
           "batched_GF/s", "per_tgt_GF/s", "sgemm_GF/s");
    for (int k = 0; k < nT; k++) {
        int T = Ts[k];
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
        for (int i = 0; i < T; i++)
            ids[i] = (int32_t)((bench_rng = bench_rng * 6364136223846793005ull + 1442695040888963407ull) >> 33) % c->vocab_size;
        double tb = 1e30, tp = 1e30;
        for (int r = 0; r < repeats; r++) {
            tb = fmin(tb, run_backward(m, ids, T, n_input, 0, dev));
            tp = fmin(tp, run_backward(m, ids, T, n_input, 1, dev));
        }
        double gf = backward_flops(c, T, n_input) / 1e9;
        /* sgemm on the backward's main shapes: all packed rows (one chunk) x (C -> F) */
        int64_t rows = 0;
        for (int t = n_input; t < T; t++)
            rows += t;
        double sg = sgemm_rate((int)ECC_MIN(rows, 65536), c->n_inner, c->n_embd, 3);
        printf("%-5d %-4d %10.3f %10.3f %9.2fx %8.1f %12.1f %12.1f %10.1f\n", T, T - n_input, tb, tp, tp / tb, gf,
               gf / tb, gf / tp, sg);
        fflush(stdout);
        if (jf)
            fprintf(jf,
                    "  {\"T\": %d, \"G\": %d, \"batched_s\": %.4f, \"per_target_s\": %.4f, \"gflop\": %.2f, "
                    "\"batched_gflops\": %.2f, \"per_target_gflops\": %.2f, \"sgemm_gflops\": %.2f}%s\n",
                    T, T - n_input, tb, tp, gf, gf / tb, gf / tp, sg, k + 1 < nT ? "," : "");
        free(ids);
    }
    if (jf) {
        fprintf(jf, "]\n");
        fclose(jf);
    }
    free(m->params), free(m->id), free(m->dir), free(m);
    return 0;
}
