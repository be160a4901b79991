/* Run/tensors pairs and reruns (issue 14).
 *
 * The pair check cannot be fooled: two runs of the same shapes have
 * tensors files of the same size and the same header, so before run ids a
 * tensors file copied from one into the other passed the check. Each run now
 * carries a random run id in both files; `eccolo report` and `eccolo nmf`
 * refuse a pair whose ids differ. (A write killed between the two renames is
 * in test_atomic.c, which has the kill machinery.)
 *
 * A rerun invalidates what it no longer matches: `generate --out D` over an
 * old run removes D/nmf.safetensors and D/report.html, and NMF factors name
 * the run ids they were computed from, so a report never embeds the factors
 * of another run; `--nmf K` larger than the tokens is refused before
 * anything is generated, naming --nmf. */
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
    assert_one_line_error(rc, err, "are from different runs");
    cr_assert(strstr(err, "rerun eccolo generate --out"), "the message should say what to do: %s", err);
    free(err);
    rc = run_cli(NULL, &err, ARGS("nmf", d1, "--components", "2", "--device", "cpu"));
    assert_one_line_error(rc, err,
                   "are from different runs");
    free(err);
    /* the run that the tensors came from is still fine */
    cr_assert_eq(run_cli(NULL, &err, ARGS("report", d2, "--quiet")), 0, "%s", err);
    free(err);
    free(t1), free(t2), free(d1), free(d2), free(root);
}

Test(pairs, a_rerun_removes_the_files_of_the_previous_run)
{
    char *root = test_tmpdir("pairs-rerun"), *d = ecc_path_join(root, "run");
    gen_ok(d, 0, "2", 1);
    cr_assert(ecc_file_exists_in(d, "nmf.safetensors") && ecc_file_exists_in(d, "report.html"));
    char *err;
    cr_assert_eq(gen(&err, d, 1, NULL, 0), 0, "%s", err);
    cr_assert(!ecc_file_exists_in(d, "nmf.safetensors"), "the previous run's NMF is still in %s", d);
    cr_assert(!ecc_file_exists_in(d, "report.html"), "the previous run's report is still in %s", d);
    cr_assert(strstr(err, "removed") && strstr(err, "nmf.safetensors") && strstr(err, "report.html"),
              "generate should say what it removed: %s", err);
    free(err);
    /* a failed rerun (bad option value) leaves everything as it was */
    gen_ok(d, 0, "2", 1);
    cr_assert_neq(gen(&err, d, 1, "99", 0), 0);
    free(err);
    cr_assert(ecc_file_exists_in(d, "nmf.safetensors") && ecc_file_exists_in(d, "report.html"));
    free(d), free(root);
}

Test(pairs, a_report_never_embeds_the_factors_of_another_run)
{
    char *root = test_tmpdir("pairs-nmf"), *d = ecc_path_join(root, "run");
    gen_ok(d, 0, "2", 1); /* --nmf and --html: the factors are this run's, the report accepts them */
    char *nmf = ecc_path_join(d, "nmf.safetensors"), *saved = ecc_path_join(root, "nmf-of-run-0.safetensors");
    copy_file(nmf, saved);
    ecc_run_dir *r;
    cr_assert_eq(ecc_run_dir_open(&r, d), ECC_OK, "%s", ecc_last_error());
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, saved), ECC_OK);
    cJSON *ids = cJSON_Parse(ecc_st_meta(f, "run_ids") ? ecc_st_meta(f, "run_ids") : "null");
    cr_assert(cJSON_IsArray(ids) && cJSON_GetArraySize(ids) == 1, "the NMF file records no run_ids");
    cr_assert_str_eq(cJSON_GetArrayItem(ids, 0)->valuestring, r->run_id);
    cr_assert_eq((int)strlen(r->run_id), 32);
    cJSON_Delete(ids);
    ecc_st_close(f);
    ecc_run_dir_close(r);

    /* the same shapes again, in the same directory */
    gen_ok(d, 1, NULL, 0);
    char *err;
    int rc = run_cli(NULL, &err, ARGS("report", d, "--nmf", saved));
    assert_one_line_error(rc, err, "not computed from this run");
    cr_assert(strstr(err, "rerun eccolo nmf"), "the message should say what to do: %s", err);
    free(err);
    /* the old file back in place (as a rerun killed before removing it would leave it) */
    copy_file(saved, nmf);
    rc = run_cli(NULL, &err, ARGS("report", d));
    assert_one_line_error(rc, err, "not computed from this run");
    free(err);
    cr_assert(!ecc_file_exists_in(d, "report.html"));
    /* factors of this run: accepted */
    cr_assert_eq(run_cli(NULL, &err, ARGS("nmf", d, "--components", "2", "--device", "cpu")), 0, "%s", err);
    free(err);
    cr_assert_eq(run_cli(NULL, &err, ARGS("report", d, "--quiet")), 0, "%s", err);
    free(err);
    free(nmf), free(saved), free(d), free(root);
}

Test(pairs, nmf_k_larger_than_the_tokens_is_refused_before_generating)
{
    char *root = test_tmpdir("pairs-k"), *d = ecc_path_join(root, "run"), *model = fixture_path("tiny-gpt2");
    char *err;
    /* forced: exactly 3 + 4 tokens */
    int rc = gen(&err, d, 0, "8", 0);
    assert_one_line_error(rc, err, "--nmf 8");
    cr_assert(strstr(err, "7 tokens"), "%s", err);
    cr_assert(!strstr(err, "--components"), "the user typed --nmf, not --components: %s", err);
    free(err);
    cr_assert(!ecc_dir_exists(d), "%s was written: the check should come before generating", d);
    /* generated: at most 3 + --max-new-tokens */
    rc = run_cli(NULL, &err,
                 ARGS("generate", "--model", model, "--out", d, "--prompt-ids", "1,2,3", "--max-new-tokens", "2",
                      "--activations", "--nmf=6", "--device", "cpu"));
    assert_one_line_error(rc, err, "--nmf 6");
    cr_assert(strstr(err, "at most 5 tokens") && strstr(err, "--max-new-tokens"), "%s", err);
    free(err);
    cr_assert(!ecc_dir_exists(d), "%s was written: the check should come before generating", d);
    /* K = the tokens: fine */
    gen_ok(d, 0, "7", 0);
    cr_assert(ecc_file_exists_in(d, "nmf.safetensors"));
    free(model), free(d), free(root);
}
