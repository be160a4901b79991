/* Fuzz target: encoding arbitrary bytes with real tokenizers and every
 * family's pipeline. The first byte picks the tokenizer (modulo the list
 * below) and, with its bit 7, special tokens read as text; the rest is the
 * text. GPT-2's (tests/fixtures/gpt2-tokenizer, vocab.json + merges.txt),
 * the small test tokenizer, and tests/fixtures/tokenizers/<family>.
 *
 * Properties: valid UTF-8 encodes, with and without the template; where
 * Hugging Face round-trips (byte-level pipelines without a normalizer),
 * decode(encode(x)) == x byte for byte; invalid UTF-8 is rejected
 * (ECC_ERR_INPUT, no ids), in agreement with ecc_utf8_valid; ids are in
 * range and display works on them. */
#include "fuzz_tok_common.h"

static const struct {
    const char *path; /* under the fixtures; a directory, or vocab.json + merges.txt when bpe */
    int bpe, roundtrip;
} k_toks[] = {
    {"gpt2-tokenizer", 1, 1},          {"small-tokenizer/tokenizer.json", 0, 1},
    {"tokenizers/llama3", 0, 1},       {"tokenizers/qwen2", 0, 0},
    {"tokenizers/pythia", 0, 0},       {"tokenizers/llama2", 0, 0},
    {"tokenizers/gemma", 0, 0},        {"tokenizers/mistral-v0.3", 0, 0},
    {"tokenizers/coverage", 0, 0},
};
#define N_TOKS (sizeof k_toks / sizeof *k_toks)
static ecc_tokenizer *g_tok[N_TOKS];

static void load(void)
{
    for (size_t i = 0; i < N_TOKS; i++) {
        char a[2048], b[2048];
        ecc_status s;
        if (k_toks[i].bpe) {
            snprintf(a, sizeof a, "%s/%s/vocab.json", fuzz_fixtures(), k_toks[i].path);
            snprintf(b, sizeof b, "%s/%s/merges.txt", fuzz_fixtures(), k_toks[i].path);
            s = ecc_tokenizer_load_bpe(&g_tok[i], a, b);
        } else {
            snprintf(a, sizeof a, "%s/%s", fuzz_fixtures(), k_toks[i].path);
            s = strstr(a, ".json") ? ecc_tokenizer_load_json(&g_tok[i], a) : ecc_tokenizer_load_dir(&g_tok[i], a);
        }
        if (s != ECC_OK) {
            fprintf(stderr, "fuzz_tokenize: %s\n", ecc_last_error());
            abort();
        }
    }
}

static void unload(void)
{
    for (size_t i = 0; i < N_TOKS; i++)
        ecc_tokenizer_free(g_tok[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_tok[0]) {
        load();
        atexit(unload);
    }
    if (size == 0)
        return 0;
    size_t which = (size_t)(data[0] & 0x7F) % N_TOKS;
    const ecc_tokenizer *t = g_tok[which];
    unsigned as_text = data[0] & 0x80 ? ECC_TOK_SPECIAL_AS_TEXT : 0;
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
        if (k_toks[which].roundtrip)
            FUZZ_CHECK(dl == len && memcmp(dec, text, len) == 0, "%s: decode(encode(x)) != x (%zu bytes in, %zu out)",
                       k_toks[which].path, len, dl);
        free(dec);
        free(ids);
        int32_t *t_ids = NULL;
        int tn = 0, nf, nb;
        FUZZ_CHECK(ecc_tokenizer_encode_flags(t, text, len, ECC_TOK_ADD_SPECIAL | as_text, &t_ids, &tn) == ECC_OK,
                   "encode with the template: %s", ecc_last_error());
        ecc_tokenizer_template(t, NULL, &nf, NULL, &nb);
        FUZZ_CHECK(tn >= nf + nb, "%d ids with a template of %d", tn, nf + nb);
        for (int i = 0; i < tn; i++)
            FUZZ_CHECK(t_ids[i] >= 0 && t_ids[i] < ecc_tokenizer_n_vocab(t), "id %d", (int)t_ids[i]);
        free(t_ids);
    }
    free(text);
    return 0;
}
