/* The benchmarks' random numbers (bench_backward.c, bench_sgemm.c): a
 * xorshift64 stream with a fixed seed, uniform in [-1, 1). */
#ifndef ECC_BENCH_RAND_H
#define ECC_BENCH_RAND_H

#include <stdint.h>

static uint64_t bench_rng = 88172645463325252ull;

static inline float frand(void)
{
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (float)((double)(bench_rng >> 11) / 9007199254740992.0 * 2 - 1);
}

#endif
