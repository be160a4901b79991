/* Fuzz target: everything `eccolo report` reads: run.json and
 * tensors.safetensors through ecc_run_dir_open, the tensors the views read
 * (token_logprobs, attribution.*, rankings, layer_top_*, watch_*,
 * activations, attention), and the NMF file (report.c's add_nmf), then the
 * page itself (ecc_report_write_ex). Input: see fuzz_run_common.h. */
#include "fuzz_run_common.h"

#include "report/report.h"
#include "io/run_reader.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[1024], out[1024];
    int parts = fuzz_run_dir(dir, sizeof dir, data, size);
    ecc_run_dir *r = NULL;
    ecc_status s = ecc_run_dir_open(&r, dir);
    FUZZ_CHECK((s == ECC_OK) == (r != NULL), "status %d with run %p", (int)s, (void *)r);
    if (r) {
        FUZZ_CHECK(r->T >= 1 && r->n_input >= 1 && r->n_input <= r->T, "T %d n_input %d", r->T, r->n_input);
        const ecc_st_tensor *ids = ecc_st_find(r->st, "token_ids");
        FUZZ_CHECK(ids && ids->numel == (uint64_t)r->T, "token_ids");
        for (int i = 0; i < r->st->n; i++) {
            const ecc_st_tensor *t = &r->st->tensors[i];
            ecc_status ts = ECC_OK;
            const ecc_st_tensor *u = ecc_run_dir_tensor(r, t->name, ECC_F32, t->ndim, &ts);
            FUZZ_CHECK(t->dtype == ECC_F32 ? u == t && ts == ECC_OK : !u && ts != ECC_OK, "ecc_run_dir_tensor");
            if (u && u->nbytes <= ((size_t)16 << 20)) {
                float *f = ecc_run_dir_floats(u);
                FUZZ_CHECK(f, "ecc_run_dir_floats");
                free(f);
            }
        }
        ecc_run_dir_close(r);
    } else {
        FUZZ_CHECK(ecc_last_error()[0], "an error without a message");
    }
    snprintf(out, sizeof out, "%s/report.html", fuzz_tmpdir());
    size_t bytes = 0;
    s = ecc_report_write_ex(dir, NULL, out, &bytes);
    FUZZ_CHECK(s == ECC_OK ? bytes > 0 : ecc_last_error()[0] != 0, "report status %d, %zu bytes", (int)s, bytes);
    unlink(out);
    (void)parts;
    return 0;
}
