/* sgemm on given shapes, with the BLAS eccolo links (CPU) or cuBLAS (CUDA):
 * the reference rate that bench/harness.py sets eccolo's GFLOP/s against.
 *
 *   bench_sgemm [--device cpu|cuda] [--threads N] [--repeats R] MxNxK [MxNxK ...]
 *
 * For each shape, C[M,N] = A[M,K] @ B[K,N] in row-major float32, one untimed
 * call, then the best of R timed calls; prints one JSON object per line:
 *   {"M": .., "N": .., "K": .., "seconds": .., "gflops": ..}   (GFLOP = 2MNK / 1e9) */
#define _GNU_SOURCE
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_rand.h"
#include "util.h"

#ifdef ECCOLO_HAVE_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif


static float *random_matrix(size_t n)
{
    float *a = malloc(sizeof(float) * n);
    if (!a) {
        fprintf(stderr, "bench_sgemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        a[i] = frand();
    return a;
}

static double cpu_sgemm(int M, int N, int K, int repeats)
{
    float *a = random_matrix((size_t)M * K), *b = random_matrix((size_t)K * N), *c = random_matrix((size_t)M * N);
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) { /* r = 0 is the warm-up */
        double t0 = ecc_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1, a, K, b, N, 0, c, N);
        if (r > 0)
            best = fmin(best, ecc_now() - t0);
    }
    free(a), free(b), free(c);
    return best;
}

#ifdef ECCOLO_HAVE_CUDA
static double cuda_sgemm(int M, int N, int K, int repeats)
{
    float *a, *b, *c, *h = random_matrix((size_t)ECC_MAX(M, N) * K);
    cublasHandle_t hd;
    cudaEvent_t e0, e1;
    if (cudaMalloc((void **)&a, sizeof(float) * (size_t)M * K) != cudaSuccess ||
        cudaMalloc((void **)&b, sizeof(float) * (size_t)K * N) != cudaSuccess ||
        cudaMalloc((void **)&c, sizeof(float) * (size_t)M * N) != cudaSuccess || cublasCreate(&hd) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "bench_sgemm: CUDA unavailable\n");
        exit(1);
    }
    cudaMemcpy(a, h, sizeof(float) * (size_t)M * K, cudaMemcpyHostToDevice);
    cudaMemcpy(b, h, sizeof(float) * (size_t)K * N, cudaMemcpyHostToDevice);
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const float one = 1, zero = 0;
    double best = 1e30;
    for (int r = 0; r <= repeats; r++) {
        cudaEventRecord(e0, 0);
        /* row-major C = A B is column-major C^T = B^T A^T */
        cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, b, N, a, K, &zero, c, N);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (r > 0)
            best = fmin(best, ms / 1e3);
    }
    cublasDestroy(hd);
    cudaFree(a), cudaFree(b), cudaFree(c);
    free(h);
    return best;
}
#endif

int main(int argc, char **argv)
{
    int repeats = 3, threads = 0, cuda = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
            repeats = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            cuda = !strcmp(argv[++i], "cuda");
        } else {
            int M, N, K;
            if (sscanf(argv[i], "%dx%dx%d", &M, &N, &K) != 3 || M < 1 || N < 1 || K < 1) {
                fprintf(stderr, "usage: bench_sgemm [--device cpu|cuda] [--threads N] [--repeats R] MxNxK ...\n");
                return 2;
            }
            if (threads > 0) {
                omp_set_num_threads(threads);
                openblas_set_num_threads(threads);
            }
            double s;
            if (cuda) {
#ifdef ECCOLO_HAVE_CUDA
                s = cuda_sgemm(M, N, K, repeats);
#else
                fprintf(stderr, "bench_sgemm: built without CUDA\n");
                return 2;
#endif
            } else {
                s = cpu_sgemm(M, N, K, repeats);
            }
            printf("{\"M\": %d, \"N\": %d, \"K\": %d, \"seconds\": %.6g, \"gflops\": %.2f}\n", M, N, K, s,
                   2.0 * M * N * K / s / 1e9);
            fflush(stdout);
        }
    }
    return 0;
}
