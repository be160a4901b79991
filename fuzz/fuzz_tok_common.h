/* Shared by the tokenizer harnesses: use a tokenizer that loaded. */
#ifndef ECC_FUZZ_TOK_COMMON_H
#define ECC_FUZZ_TOK_COMMON_H

#include "fuzz_common.h"
#include "model/tokenizer.h"
#include "util.h"

/* Encode text with t and check what any loaded tokenizer must guarantee:
 * valid UTF-8 encodes (invalid is rejected with ECC_ERR_INPUT and no ids),
 * ids are in range, not many more than bytes (normalizers and prefixes add
 * text: NFKD can turn 3 bytes into 18 characters), and decode and display work on
 * them. ids_out and n_out receive the ids (malloc'd) when the caller wants them. */
static inline ecc_status fuzz_encode_checked(const ecc_tokenizer *t, const char *text, size_t len, int32_t **ids_out,
                                      int *n_out)
{
    int32_t *ids = NULL;
    int n = -1;
    int valid = ecc_utf8_valid(text, len);
    ecc_status s = ecc_tokenizer_encode(t, text, len, &ids, &n);
    if (!valid) {
        FUZZ_CHECK(s == ECC_ERR_INPUT && !ids && n == 0, "invalid UTF-8 was not rejected (status %d)", (int)s);
        return s;
    }
    FUZZ_CHECK(s == ECC_OK, "valid UTF-8 of %zu bytes does not encode: %s", len, ecc_last_error());
    FUZZ_CHECK(n >= 0 && (size_t)n <= 32 * len + 16, "%d ids for %zu bytes", n, len);
    FUZZ_CHECK(n == 0 || ids, "no id array");
    int V = ecc_tokenizer_n_vocab(t);
    for (int i = 0; i < n; i++) {
        size_t bl;
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < V, "id %d out of [0, %d)", (int)ids[i], V);
        FUZZ_CHECK(ecc_tokenizer_token_bytes(t, ids[i], &bl) != NULL, "id %d has no bytes", (int)ids[i]);
    }
    char *dec = NULL;
    size_t dl = 0;
    FUZZ_CHECK(ecc_tokenizer_decode(t, ids, n, &dec, &dl) == ECC_OK, "decode fails: %s", ecc_last_error());
    FUZZ_CHECK(ecc_utf8_valid(dec, dl) && strlen(dec) <= dl, "decode gives invalid UTF-8");
    free(dec);
    char **disp = NULL;
    uint8_t *partial = NULL;
    FUZZ_CHECK(ecc_tokenizer_display(t, ids, n, &disp, &partial) == ECC_OK, "display fails: %s", ecc_last_error());
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(ecc_utf8_valid(disp[i], strlen(disp[i])) && partial[i] <= 1, "display[%d]", i);
    ecc_tokenizer_display_free(disp, n);
    free(partial);
    if (ids_out) {
        *ids_out = ids;
        *n_out = n;
    } else {
        free(ids);
    }
    return ECC_OK;
}

/* Exercise a tokenizer loaded from fuzzed files with fixed texts and with
 * text taken from the input, and the id-based calls with ids out of range. */
static inline void fuzz_use_tokenizer(const ecc_tokenizer *t, const uint8_t *extra, size_t extra_len)
{
    static const char *const texts[] = {
        "", "Hello world", " the quick  brown fox\n\n", "<|endoftext|>It's 2024!", "naïve café 日本語 🙂",
        "   \t\r\n", "'s've'll", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        fuzz_encode_checked(t, texts[i], strlen(texts[i]), NULL, NULL);
    if (extra_len > 4096)
        extra_len = 4096;
    fuzz_encode_checked(t, (const char *)extra, extra_len, NULL, NULL);
    int V = ecc_tokenizer_n_vocab(t);
    FUZZ_CHECK(V >= 1, "n_vocab %d", V);
    int32_t eot = ecc_tokenizer_eot(t);
    FUZZ_CHECK(eot >= -1 && eot < V, "eot %d", (int)eot);
    int32_t bad[3] = {-1, V, INT32_MAX};
    for (int i = 0; i < 3; i++) {
        char *dec = NULL;
        size_t bl = 1;
        FUZZ_CHECK(ecc_tokenizer_decode(t, &bad[i], 1, &dec, NULL) == ECC_ERR_INPUT && !dec, "bad id decodes");
        FUZZ_CHECK(ecc_tokenizer_token_bytes(t, bad[i], &bl) == NULL && bl == 0, "bad id has bytes");
    }
    /* every id: decode alone (ids no token has are an input error) */
    int step = V > 4096 ? V / 4096 : 1;
    for (int32_t id = 0; id < V; id += step) {
        char *dec = NULL;
        size_t bl;
        ecc_status s = ecc_tokenizer_decode(t, &id, 1, &dec, NULL);
        FUZZ_CHECK((s == ECC_OK) == (ecc_tokenizer_token_bytes(t, id, &bl) != NULL), "decode of id %d", (int)id);
        free(dec);
    }
}

#endif
