/* Shared by the run-directory harnesses (report, nmf): the input is a run
 * directory's files separated by FUZZ_SEP lines:
 *   run.json FUZZ_SEP tensors.safetensors [FUZZ_SEP nmf.safetensors]
 * written into a fresh directory of the scratch space. */
#ifndef ECC_FUZZ_RUN_COMMON_H
#define ECC_FUZZ_RUN_COMMON_H

#include "fuzz_common.h"

/* Returns the number of parts; *dir receives the run directory. */
static inline int fuzz_run_dir(char *dir, size_t cap, const uint8_t *data, size_t size)
{
    static const char *const names[] = {"run/run.json", "run/tensors.safetensors", "run/nmf.safetensors"};
    const uint8_t *part[3];
    size_t len[3];
    int n = fuzz_split(data, size, part, len, 3);
    fuzz_subdir(dir, cap, "run");
    char path[1024];
    for (int i = 0; i < n; i++)
        fuzz_write(path, sizeof path, names[i], part[i], len[i]);
    /* the report looks models up in the Hugging Face cache: keep that empty */
    setenv("HF_HUB_CACHE", "/nonexistent/eccolo-fuzz", 1);
    return n;
}

#endif
