/* Limits checked before allocating (issue 9): inputs from strangers that
 * would need unbounded memory are refused with a one-line error, without
 * the allocation. The fuzz targets (fuzz/, ctest -L fuzz) cover the rest;
 * these are the cases too large for a committed fuzz input. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "model/model.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

Test(limits, batch_line_longer_than_64_mib_is_an_item_error)
{
    size_t n = ((size_t)64 << 20) + 1;
    char *line = malloc(n); /* only the first bytes are read: the length is checked before parsing */
    cr_assert(line);
    memcpy(line, "{\"id\": \"x\", \"prompt\": \"", 23);
    ecc_batch_item it;
    cr_assert_eq(ecc_batch_parse_line(&it, line, n, 7), 1);
    cr_assert_str_eq(it.id, "line:7");
    cr_assert(it.error && strstr(it.error, "more than"), "%s", it.error ? it.error : "(no error)");
    cr_assert_null(it.prompt);
    free(it.id), free(it.error);
    free(line);
}

static char *write_st_prefix(const char *tag, uint64_t hlen, off_t size)
{
    char *dir = test_tmpdir(tag), *p = ecc_path_join(dir, "x.safetensors");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0);
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    cr_assert_eq(write(fd, b, 8), 8);
    cr_assert_eq(ftruncate(fd, size), 0); /* sparse */
    close(fd);
    free(dir);
    return p;
}

Test(limits, safetensors_header_over_100_mb_is_refused)
{
    char *p = write_st_prefix("limits-st", ((uint64_t)100 << 20) + 1, ((off_t)100 << 20) + 64);
    ecc_st_file *f = NULL;
    cr_assert_eq(ecc_st_open(&f, p), ECC_ERR_FORMAT);
    cr_assert(strstr(ecc_last_error(), "larger than the 104857600 bytes allowed"), "%s", ecc_last_error());
    free(p);
    p = write_st_prefix("limits-st", UINT64_MAX, 64);
    cr_assert_eq(ecc_st_open(&f, p), ECC_ERR_FORMAT);
    cr_assert_null(f);
    free(p);
    /* the same checks on a buffer */
    static const uint8_t img[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    cr_assert_eq(ecc_st_parse(&f, "buffer", img, sizeof img), ECC_ERR_FORMAT);
    cr_assert_eq(ecc_st_parse(&f, "buffer", img, 7), ECC_ERR_FORMAT);
}

Test(limits, model_larger_than_memory_is_refused_before_allocating)
{
    char *dir = test_tmpdir("limits-model"), *src = fixture_path("tiny-gpt2");
    copy_dir(src, dir);
    char *cfg = ecc_path_join(dir, "config.json");
    /* 1024 layers of n_embd 65536: about 800 TB of fp32 weights */
    const char *big = "{\"model_type\": \"gpt2\", \"n_layer\": 1024, \"n_head\": 64, \"n_embd\": 65536, "
                      "\"n_positions\": 128, \"vocab_size\": 1025}";
    write_file(cfg, big, strlen(big));
    ecc_model *m = NULL;
    cr_assert_eq(ecc_model_load_dir(&m, dir, NULL), ECC_ERR_NOMEM);
    cr_assert_null(m);
    cr_assert(strstr(ecc_last_error(), "the weights need") && strstr(ecc_last_error(), "MiB of memory is available"),
              "%s", ecc_last_error());
    cr_assert_null(strchr(ecc_last_error(), '\n'));
    free(cfg), free(dir), free(src);
}
