/* Fuzz target: encoding arbitrary bytes with real tokenizers: GPT-2's
 * (tests/fixtures/gpt2-tokenizer, vocab.json + merges.txt) when the first
 * byte is even, the small test tokenizer (tests/fixtures/small-tokenizer,
 * tokenizer.json) when it is odd; the rest of the input is the text.
 *
 * Properties: valid UTF-8 encodes and decode(encode(x)) == x byte for byte;
 * invalid UTF-8 is rejected (ECC_ERR_INPUT, no ids), in agreement with
 * ecc_utf8_valid; ids are in range and display works on them. */
#include "fuzz_tok_common.h"

static ecc_tokenizer *g_tok[2];

static void load(void)
{
    char a[2048], b[2048];
    snprintf(a, sizeof a, "%s/gpt2-tokenizer/vocab.json", fuzz_fixtures());
    snprintf(b, sizeof b, "%s/gpt2-tokenizer/merges.txt", fuzz_fixtures());
    if (ecc_tokenizer_load_bpe(&g_tok[0], a, b) != ECC_OK) {
        fprintf(stderr, "fuzz_tokenize: %s\n", ecc_last_error());
        abort();
    }
    snprintf(a, sizeof a, "%s/small-tokenizer/tokenizer.json", fuzz_fixtures());
    if (ecc_tokenizer_load_json(&g_tok[1], a) != ECC_OK) {
        fprintf(stderr, "fuzz_tokenize: %s\n", ecc_last_error());
        abort();
    }
}

static void unload(void)
{
    ecc_tokenizer_free(g_tok[0]);
    ecc_tokenizer_free(g_tok[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tok[0]) {
        load();
        atexit(unload);
    }
    if (size == 0)
        return 0;
    const ecc_tokenizer *t = g_tok[data[0] & 1];
    /* an exact-size copy without the selector byte: reads past it are ASan errors */
    size_t len = size - 1;
    char *text = malloc(len ? len : 1);
    if (!text)
        abort();
    memcpy(text, data + 1, len);
    int32_t *ids = NULL;
    int n = 0;
    if (fuzz_encode_checked(t, text, len, &ids, &n) == ECC_OK) {
        char *dec = NULL;
        size_t dl = 0;
        FUZZ_CHECK(ecc_tokenizer_decode(t, ids, n, &dec, &dl) == ECC_OK, "decode: %s", ecc_last_error());
        FUZZ_CHECK(dl == len && memcmp(dec, text, len) == 0, "decode(encode(x)) != x (%zu bytes in, %zu out)", len, dl);
        free(dec);
        free(ids);
    }
    free(text);
    return 0;
}
