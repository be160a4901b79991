/* Encoding speed of eccolo's tokenizer: bench_tokenizer DIR FILE [REPEATS]
 * loads DIR's tokenizer, encodes FILE (one call, no template) REPEATS times
 * after one warm-up, and prints the fastest time and the id count as JSON
 * (bench/tokenizer_speed.py compares it with Hugging Face's tokenizers). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/tokenizer.h"
#include "util.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer MODEL_DIR TEXT_FILE [REPEATS]\n");
        return 2;
    }
    int repeats = argc > 3 ? atoi(argv[3]) : 5;
    ecc_tokenizer *t;
    char *text;
    size_t len;
    if (ecc_tokenizer_load_dir(&t, argv[1]) != ECC_OK || ecc_read_file(argv[2], (size_t)1 << 30, &text, &len) != ECC_OK) {
        fprintf(stderr, "bench_tokenizer: %s\n", ecc_last_error());
        return 2;
    }
    double best = 1e30;
    int n = 0;
    uint64_t hash = 0;
    for (int r = 0; r <= repeats; r++) {
        int32_t *ids;
        double t0 = ecc_now();
        if (ecc_tokenizer_encode(t, text, len, &ids, &n) != ECC_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", ecc_last_error());
            return 2;
        }
        double dt = ecc_now() - t0;
        if (r > 0 && dt < best) /* r = 0 warms up */
            best = dt;
        hash = 1469598103934665603ull; /* FNV-1a over the ids, for comparing them with HF's */
        for (int i = 0; i < n; i++)
            hash = (hash ^ (uint32_t)ids[i]) * 1099511628211ull;
        free(ids);
    }
    printf("{\"seconds\": %.6f, \"ids\": %d, \"bytes\": %zu, \"fnv\": \"%016llx\"}\n", best, n, len,
           (unsigned long long)hash);
    free(text);
    ecc_tokenizer_free(t);
    return 0;
}
