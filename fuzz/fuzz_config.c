/* Fuzz target: config.json (ecc_config_parse). A config that parses must
 * hold values inside the ranges the model code relies on. */
#include "fuzz_common.h"

#include "model/config.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ecc_config c;
    ecc_status s = ecc_config_parse(&c, (const char *)data, size, "config.json");
    if (s != ECC_OK) {
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
        return 0;
    }
    FUZZ_CHECK(c.n_layer >= 1 && c.n_layer <= 1024, "n_layer %d", c.n_layer);
    FUZZ_CHECK(c.n_head >= 1 && c.n_embd >= 1 && c.n_embd % c.n_head == 0, "n_embd %d n_head %d", c.n_embd, c.n_head);
    FUZZ_CHECK(c.n_positions >= 1 && c.vocab_size >= 1 && c.n_inner >= 1, "sizes");
    FUZZ_CHECK(c.eos_token_id >= -1 && c.eos_token_id < c.vocab_size, "eos %d", c.eos_token_id);
    FUZZ_CHECK(c.layer_norm_eps > 0 && c.layer_norm_eps < 1, "eps %g", (double)c.layer_norm_eps);
    FUZZ_CHECK(!strcmp(c.model_type, "gpt2"), "model_type %s", c.model_type);
    return 0;
}
