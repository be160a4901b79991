/* Fuzz target: loading a tokenizer from tokenizer.json
 * (ecc_tokenizer_load_json), then using it. Text after a FUZZ_SEP line is
 * encoded with the result. */
#include "fuzz_tok_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data, size, part, len, 2);
    char path[1024];
    fuzz_write(path, sizeof path, "tokenizer.json", part[0], len[0]);
    ecc_tokenizer *t = NULL;
    ecc_status s = ecc_tokenizer_load_json(&t, path);
    FUZZ_CHECK((s == ECC_OK) == (t != NULL), "status %d with tokenizer %p", (int)s, (void *)t);
    if (t) {
        fuzz_use_tokenizer(t, n > 1 ? part[1] : part[0], n > 1 ? len[1] : len[0]);
        ecc_tokenizer_free(t);
    } else {
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
    }
    return 0;
}
