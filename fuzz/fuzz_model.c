/* Fuzz target: opening a model directory whose config.json and
 * model.safetensors come from the input (host/model/model.c: the checkpoint's
 * tensors against the config, F16/BF16 conversion, the memory plan), with a
 * fixed real tokenizer (tests/fixtures/small-tokenizer). A model that opens
 * then generates two tokens on the CPU, greedy or (odd input sizes) sampled,
 * whatever its weights hold (NaN, inf): the ids picked must be in range.
 * Input: config.json FUZZ_SEP model.safetensors. */
#include "fuzz_common.h"

#include "model/model.h"
#include "util.h"

static void copy_tokenizer(const char *dst)
{
    char src[2048];
    snprintf(src, sizeof src, "%s/small-tokenizer/tokenizer.json", fuzz_fixtures());
    char *data;
    size_t len;
    if (ecc_read_file(src, 1u << 26, &data, &len) != ECC_OK) {
        fprintf(stderr, "fuzz_model: %s\n", ecc_last_error());
        abort();
    }
    char path[1024];
    fuzz_write(path, sizeof path, dst, data, len);
    free(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    char dir[1024], path[1024];
    if (!ready) {
        fuzz_subdir(dir, sizeof dir, "model");
        copy_tokenizer("model/tokenizer.json");
        ready = 1;
    }
    snprintf(dir, sizeof dir, "%s/model", fuzz_tmpdir());
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data, size, part, len, 2);
    fuzz_write(path, sizeof path, "model/config.json", part[0], len[0]);
    fuzz_write(path, sizeof path, "model/model.safetensors", n > 1 ? part[1] : (const uint8_t *)"", n > 1 ? len[1] : 0);
    ecc_model *m = NULL;
    ecc_status s = ecc_model_load_dir(&m, dir, "fuzz");
    FUZZ_CHECK((s == ECC_OK) == (m != NULL), "status %d with model %p", (int)s, (void *)m);
    if (getenv("ECCOLO_FUZZ_VERBOSE"))
        fprintf(stderr, "  model: %s\n", m ? "opened" : ecc_last_error());
    if (!m) {
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
        return 0;
    }
    const ecc_config *c = ecc_model_config(m);
    int32_t *ids = NULL;
    int np = 0;
    FUZZ_CHECK(ecc_tokenize(m, "Hello world", 11, &ids, &np) == ECC_OK, "tokenize: %s", ecc_last_error());
    ecc_options o;
    ecc_options_default(&o);
    o.device = ECC_DEVICE_CPU;
    o.threads = 1;
    o.max_new_tokens = 2;
    o.sample = (int)(size & 1);
    o.top_k = 5;
    o.top_p = 0.9f;
    o.seed = size;
    ecc_run *r = NULL;
    s = ecc_generate(&r, m, ids, np, &o);
    if (getenv("ECCOLO_FUZZ_VERBOSE"))
        fprintf(stderr, "  generate: %s\n", s == ECC_OK ? "ok" : ecc_last_error());
    if (s == ECC_OK) {
        int T = ecc_run_n_tokens(r);
        const int32_t *out = ecc_run_token_ids(r);
        FUZZ_CHECK(T >= np && T <= np + 2, "%d tokens", T);
        for (int i = 0; i < T; i++)
            FUZZ_CHECK(out[i] >= 0 && out[i] < c->vocab_size, "token %d is id %d", i, (int)out[i]);
        ecc_run_free(r);
    } else {
        /* a context too short for the prompt, or memory: errors, never crashes */
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
    }
    free(ids);
    ecc_model_close(m);
    return 0;
}
