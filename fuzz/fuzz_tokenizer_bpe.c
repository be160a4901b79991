/* Fuzz target: loading a tokenizer from vocab.json + merges.txt
 * (ecc_tokenizer_load_bpe). The input is the two files separated by the
 * FUZZ_SEP line; text after a second separator is encoded with the result. */
#include "fuzz_tok_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[3];
    size_t len[3];
    int n = fuzz_split(data, size, part, len, 3);
    char vocab[1024], merges[1024];
    fuzz_write(vocab, sizeof vocab, "vocab.json", part[0], len[0]);
    fuzz_write(merges, sizeof merges, "merges.txt", n > 1 ? part[1] : (const uint8_t *)"", n > 1 ? len[1] : 0);
    ecc_tokenizer *t = NULL;
    ecc_status s = ecc_tokenizer_load_bpe(&t, vocab, merges);
    FUZZ_CHECK((s == ECC_OK) == (t != NULL), "status %d with tokenizer %p", (int)s, (void *)t);
    if (t) {
        fuzz_use_tokenizer(t, n > 2 ? part[2] : part[0], n > 2 ? len[2] : len[0]);
        ecc_tokenizer_free(t);
    } else {
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
    }
    return 0;
}
