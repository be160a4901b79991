/* Fuzz target: what `eccolo nmf` reads: run.json and tensors.safetensors
 * through ecc_run_dir_open, the activations and run.json's
 * explain.activation_layers (host/nmf/nmf_runs.c), then a short factorisation
 * (2 components, 3 iterations, CPU) and the nmf.safetensors it writes, which
 * must open. Input: see fuzz_run_common.h (a third part is ignored). The run
 * is given once, or (when the input's size is odd) twice, as two runs. */
#include "fuzz_run_common.h"

#include "nmf/nmf_runs.h"
#include "io/safetensors.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[1024], out[1024];
    fuzz_run_dir(dir, sizeof dir, data, size);
    snprintf(out, sizeof out, "%s/nmf.out.safetensors", fuzz_tmpdir());
    const char *dirs[2] = {dir, dir};
    ecc_nmf_job job;
    memset(&job, 0, sizeof job);
    job.dirs = dirs;
    job.n_dirs = 1 + (int)(size & 1);
    job.layer_from = job.layer_to = -1;
    ecc_nmf_options_default(&job.nmf);
    job.nmf.k = 2;
    job.nmf.max_iter = 3;
    job.device = ECC_DEVICE_CPU;
    job.threads = 1;
    job.out = out;
    ecc_nmf_result res;
    char *path = NULL;
    ecc_status s = ecc_nmf_runs(&job, &res, &path);
    if (s == ECC_OK) {
        FUZZ_CHECK(path && !strcmp(path, out), "output path");
        ecc_st_file *f = NULL;
        FUZZ_CHECK(ecc_st_open(&f, out) == ECC_OK, "the NMF file written does not open: %s", ecc_last_error());
        const ecc_st_tensor *W = ecc_st_find(f, "factors"), *O = ecc_st_find(f, "offsets");
        FUZZ_CHECK(W && O && W->ndim == 2 && W->shape[0] == 2 && O->numel == (uint64_t)job.n_dirs + 1, "NMF tensors");
        ecc_st_close(f);
        ecc_nmf_result_free(&res);
        free(path);
        unlink(out);
    } else {
        FUZZ_CHECK(!path && ecc_last_error()[0], "status %d: path %p, message '%s'", (int)s, (void *)path,
                   ecc_last_error());
    }
    return 0;
}
