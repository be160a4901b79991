/* Run/tensors pairs and reruns (issue 14).
 *
 * The pair check cannot be fooled: two runs of the same shapes have
 * tensors files of the same size and the same header, so before run ids a
 * tensors file copied from one into the other passed the check. Each run now
 * carries a random run id in both files; `eccolo report` and `eccolo nmf`
 * refuse a pair whose ids differ. (A write killed between the two renames is
 * in test_atomic.c, which has the kill machinery.) */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/run_reader.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Two runs of exactly the same shapes: 3 prompt ids and 4 forced ones. */
static const char *const k_ids[2][2] = {{"10,20,30", "40,50,60,70"}, {"11,21,31", "41,51,61,71"}};

static int gen(char **err, const char *dir, int which, const char *nmf_k, int html)
{
    char *model = fixture_path("tiny-gpt2");
    const char *a[32] = {"generate", "--model", model, "--out", dir, "--prompt-ids", k_ids[which][0],
                         "--continuation-ids", k_ids[which][1], "--activations", "--attribution", "grad_x_input",
                         "--device", "cpu", "--threads", "1"};
    int n = 16;
    if (nmf_k) {
        a[n++] = "--nmf";
        a[n++] = nmf_k;
    }
    if (html)
        a[n++] = "--html";
    a[n] = NULL;
    int rc = run_cli(NULL, err, a);
    free(model);
    return rc;
}

static void gen_ok(const char *dir, int which, const char *nmf_k, int html)
{
    char *err;
    cr_assert_eq(gen(&err, dir, which, nmf_k, html), 0, "generate failed: %s", err);
    free(err);
}

/* exit 2 and one line "eccolo: error: ..." containing needle */
static void one_line_error(int rc, const char *err, const char *needle)
{
    cr_assert_eq(rc, 2, "expected exit 2, got %d (stderr: %s)", rc, err);
    cr_assert(!strncmp(err, "eccolo: error: ", 15), "not an eccolo error: %s", err);
    const char *nl = strchr(err, '\n');
    cr_assert(nl && nl[1] == '\0', "not one line: %s", err);
    cr_assert(strstr(err, needle), "'%s' does not say '%s'", err, needle);
}

static void copy_file(const char *from, const char *to)
{
    char *data;
    size_t len;
    cr_assert_eq(ecc_read_file(from, 1u << 30, &data, &len), ECC_OK, "%s", ecc_last_error());
    write_file(to, data, len);
    free(data);
}

Test(pairs, tensors_copied_from_a_run_of_the_same_shapes_are_refused)
{
    char *root = test_tmpdir("pairs-copy"), *d1 = ecc_path_join(root, "one"), *d2 = ecc_path_join(root, "two");
    gen_ok(d1, 0, NULL, 0);
    gen_ok(d2, 1, NULL, 0);
    char *t1 = ecc_path_join(d1, "tensors.safetensors"), *t2 = ecc_path_join(d2, "tensors.safetensors");
    /* what the check compared before run ids agrees: same size, same header but for the id itself */
    ecc_st_file *f1, *f2;
    cr_assert_eq(ecc_st_open(&f1, t1), ECC_OK);
    cr_assert_eq(ecc_st_open(&f2, t2), ECC_OK);
    cr_assert_eq(f1->map_len, f2->map_len, "the two runs should have the same shapes");
    cr_assert_str_neq(ecc_st_meta(f1, "run_id"), ecc_st_meta(f2, "run_id"));
    ecc_st_close(f1);
    ecc_st_close(f2);

    copy_file(t2, t1);
    char *err;
    int rc = run_cli(NULL, &err, ARGS("report", d1));
    one_line_error(rc, err, "are from different runs");
    cr_assert(strstr(err, "rerun eccolo generate --out"), "the message should say what to do: %s", err);
    free(err);
    rc = run_cli(NULL, &err, ARGS("nmf", d1, "--components", "2", "--device", "cpu"));
    one_line_error(rc, err,
                   "are from different runs");
    free(err);
    /* the run that the tensors came from is still fine */
    cr_assert_eq(run_cli(NULL, &err, ARGS("report", d2, "--quiet")), 0, "%s", err);
    free(err);
    free(t1), free(t2), free(d1), free(d2), free(root);
}
