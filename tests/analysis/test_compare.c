/* eccolo compare: the command against the library on real runs of two
 * fixture models (same text, different widths), batches as their runs one
 * after another, the token check, the errors (one line, exit 2) and the
 * HTML view in headless Chromium. The numbers themselves are checked against
 * Ecco in test_analysis.c. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "browser.h"
#include "io/run_reader.h"
#include "jobs/batch.h"
#include "testutil.h"
#include "util.h"

static const char *k_prompt = "The quick brown fox jumps over the lazy dog, and the capital of France is";
static const char *k_cont = " Paris, a city of art and history on the Seine."; /* 51 tokens in all */

/* eccolo generate MODEL (a fixture) into a fresh directory; returns it (malloc'd). */
static char *gen(const char *tag, const char *model, const char *prompt, const char *cont, int captures)
{
    char *dir = test_tmpdir(tag), *m = fixture_path(model), *err = NULL;
    const char *args[] = {"generate", "--model", m, "--quiet", "--threads", "1", "--out", dir, "--prompt", prompt,
                          "--continuation", cont, captures ? "--activations" : "--max-new-tokens",
                          captures ? "--hidden-states" : "1", NULL};
    int rc = run_cli(NULL, &err, args);
    cr_assert_eq(rc, 0, "eccolo generate: %s", err);
    free(err);
    free(m);
    return dir;
}

/* NAME of a run directory: (L, T, N) floats and the sizes. */
static float *run_tensor(const char *dir, const char *name, int64_t shape[3])
{
    ecc_run_dir *r;
    cr_assert_eq(ecc_run_dir_open(&r, dir), ECC_OK, "%s", ecc_last_error());
    ecc_status s = ECC_OK;
    const ecc_st_tensor *t = ecc_run_dir_tensor(r, name, ECC_F32, 3, &s);
    cr_assert(t, "%s: no %s", dir, name);
    memcpy(shape, t->shape, 3 * sizeof(int64_t));
    float *x = ecc_run_dir_floats(t);
    ecc_run_dir_close(r);
    return x;
}

static double json_value(const cJSON *j, int i, int k)
{
    const cJSON *v = cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "values"), i), k);
    cr_assert(cJSON_IsNumber(v), "values[%d][%d] is not a number", i, k);
    return v->valuedouble;
}

/* The CLI's JSON holds what ecc_compare_layers gives on the runs' tensors. */
static void check_cli(const char *a, const char *b, const char *method, const char *what, const char *dims)
{
    char *dir = test_tmpdir("compare-json"), *json = ecc_path_join(dir, "v.json"), *out = NULL, *err = NULL;
    const char *args[16] = {"compare", a, b, "--method", method, "--what", what, "--out", json, "--threads", "1"};
    int n = 11;
    if (dims) {
        args[n++] = "--dims";
        args[n++] = dims;
    }
    int rc = run_cli(&out, &err, args);
    cr_assert_eq(rc, 0, "eccolo compare %s: %s", method, err);
    int64_t sa[3], sb[3];
    float *xa = run_tensor(a, what, sa), *xb = run_tensor(b, what, sb);
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    for (int m = ECC_COMPARE_CCA; m <= ECC_COMPARE_CKA; m++)
        if (!strcmp(method, ecc_compare_method_name((ecc_compare_method)m)))
            o.method = (ecc_compare_method)m;
    o.dims = dims ? atoi(dims) : 20;
    o.device = ECC_DEVICE_CPU;
    o.threads = 1; /* as the command: BLAS and LAPACK's bits depend on their threads */
    double *ref = malloc(sizeof(double) * (size_t)(sa[0] * sb[0])); /* one side: shared as the CLI does */
    cr_assert_eq(ecc_compare_layers(ref, xa, strcmp(a, b) ? xb : xa, (int)sa[0], (int)sb[0], (int)sa[2], (int)sb[2], (int)sa[1], &o), ECC_OK,
                 "%s", ecc_last_error());
    cJSON *j = slurp_json(json);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "method")->valuestring, method);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "what")->valuestring, what);
    cr_expect_eq(cJSON_GetObjectItem(j, "tokens")->valueint, (int)sa[1]);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers_a")), (int)sa[0]);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers_b")), (int)sb[0]);
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers_b"), (int)sb[0] - 1)->valueint, (int)sb[0] - 1);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "values")), (int)sa[0]);
    for (int i = 0; i < sa[0]; i++)
        for (int k = 0; k < sb[0]; k++) { /* cJSON prints 15 significant digits when they read back within an ulp */
            const double v = json_value(j, i, k), r = ref[i * sb[0] + k];
            cr_expect(fabs(v - r) <= 1e-14, "%s %s [%d][%d]: CLI %.17g, library %.17g", method, what, i, k, v, r);
            cr_expect(v > 0 && v <= 1 + 1e-6, "%s [%d][%d] = %g is not a similarity", method, i, k, v);
        }
    /* the table: a title, a header, one row per layer of A */
    int lines = 0;
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, 2 + (int)sa[0] + 1, "table of %d rows, then the file line: %s", (int)sa[0], out);
    cJSON_Delete(j);
    free(ref);
    free(xa);
    free(xb);
    free(out);
    free(err);
    free(json);
    free(dir);
}

Test(compare, the_command_gives_the_librarys_values, .timeout = 120)
{
    /* the same 51 tokens through a 12-layer 16-wide model and a 3-layer 48-wide one */
    char *a = gen("cmp-deep", "tiny-gpt2-deep", k_prompt, k_cont, 1);
    char *b = gen("cmp-f16", "tiny-gpt2-f16", k_prompt, k_cont, 1);
    check_cli(a, b, "cka", "hidden_states", NULL);
    check_cli(a, b, "cca", "hidden_states", NULL);
    check_cli(a, b, "pwcca", "hidden_states", NULL); /* 16 against 48 neurons: the first side's branch */
    check_cli(b, a, "pwcca", "hidden_states", NULL); /* 48 against 16: the second's (an IndexError in Ecco) */
    check_cli(a, b, "svcca", "activations", "6");
    check_cli(a, a, "cka", "activations", NULL);
    free(a);
    free(b);
}

/* B defaults to A; --layers-a/-b pick [a, b); a symmetric method gives a symmetric table. */
Test(compare, layer_ranges_and_one_side)
{
    char *a = gen("cmp-one", "tiny-gpt2-deep", k_prompt, k_cont, 1);
    char *dir = test_tmpdir("compare-one"), *json = ecc_path_join(dir, "v.json"), *err = NULL;
    const char *args[] = {"compare", a, "--method", "cca", "--layers-a", "2:5", "--layers-b", "9:12", "--out", json,
                          "--quiet", NULL};
    cr_assert_eq(run_cli(NULL, &err, args), 0, "%s", err);
    free(err);
    cJSON *j = slurp_json(json);
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers_a"), 0)->valueint, 2);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "layers_a")), 3);
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "layers_b"), 2)->valueint, 11);
    int64_t s[3];
    float *x = run_tensor(a, "activations", s);
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    o.method = ECC_COMPARE_CCA;
    double v;
    const int64_t layer = (int64_t)s[1] * s[2];
    cr_assert_eq(ecc_compare_layers(&v, x + 3 * layer, x + 10 * layer, 1, 1, (int)s[2], (int)s[2], (int)s[1], &o),
                 ECC_OK);
    cr_expect(fabs(json_value(j, 1, 1) - v) <= 1e-14, "A L3 x B L10: %.17g, library %.17g", json_value(j, 1, 1), v);
    cJSON_Delete(j);
    const char *sym[] = {"compare", a, "--method", "cka", "--out", json, "--quiet", NULL};
    cr_assert_eq(run_cli(NULL, &err, sym), 0, "%s", err);
    j = slurp_json(json);
    for (int i = 0; i < 12; i++)
        for (int k = 0; k < 12; k++)
            cr_expect(json_value(j, i, k) == json_value(j, k, i), "cka [%d][%d] != [%d][%d]", i, k, k, i);
    cJSON_Delete(j);
    free(x);
    free(err);
    free(json);
    free(dir);
    free(a);
}

/* A batch directory is its finished runs, tokens one after another in manifest order. */
Test(compare, a_batch_is_its_runs_in_manifest_order, .timeout = 120)
{
    char *dir = test_tmpdir("compare-batch"), *prompts = ecc_path_join(dir, "p.jsonl"), *out = ecc_path_join(dir, "b");
    const char *lines = "{\"id\": \"two\", \"prompt\": \"Once upon a time\", \"continuation\": \" there was a fox.\"}\n"
                        "{\"id\": \"one\", \"prompt\": \"The capital of France is\", \"continuation\": \" Paris.\"}\n";
    write_file(prompts, lines, strlen(lines));
    char *model = fixture_path("tiny-gpt2-deep"), *err = NULL, *json = ecc_path_join(dir, "v.json");
    const char *bargs[] = {"batch", "--model", model, "--prompts", prompts, "--out", out, "--activations", "--quiet",
                           "--threads", "1", NULL};
    cr_assert_eq(run_cli(NULL, &err, bargs), 0, "eccolo batch: %s", err);
    free(err);
    const char *cargs[] = {"compare", out, "--method", "cka", "--out", json, "--quiet", NULL};
    cr_assert_eq(run_cli(NULL, &err, cargs), 0, "%s", err);
    free(err);
    /* by hand: the runs' activations one after another */
    char **ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_OK);
    cr_assert_eq(n, 2);
    int64_t s0[3], s1[3];
    char *r0 = fmt("%s/runs/%s", out, ids[0]), *r1 = fmt("%s/runs/%s", out, ids[1]);
    float *x0 = run_tensor(r0, "activations", s0), *x1 = run_tensor(r1, "activations", s1);
    const int L = (int)s0[0], N = (int)s0[2], T = (int)(s0[1] + s1[1]);
    float *x = malloc(sizeof(float) * (size_t)L * T * N);
    for (int l = 0; l < L; l++) {
        memcpy(x + (int64_t)l * T * N, x0 + l * s0[1] * N, sizeof(float) * s0[1] * N);
        memcpy(x + ((int64_t)l * T + s0[1]) * N, x1 + l * s1[1] * N, sizeof(float) * s1[1] * N);
    }
    ecc_compare_options o;
    ecc_compare_options_default(&o);
    double *ref = malloc(sizeof(double) * L * L);
    cr_assert_eq(ecc_compare_layers(ref, x, x, L, L, N, N, T, &o), ECC_OK, "%s", ecc_last_error());
    cJSON *j = slurp_json(json);
    cr_expect_eq(cJSON_GetObjectItem(j, "tokens")->valueint, T);
    for (int i = 0; i < L * L; i++)
        cr_expect(fabs(json_value(j, i / L, i % L) - ref[i]) <= 1e-14, "[%d][%d]: %.17g, by hand %.17g", i / L, i % L,
                  json_value(j, i / L, i % L), ref[i]);
    cJSON_Delete(j);
    /* the batch against its first run: the tokens both hold are that run's, with a notice */
    const char *pargs[] = {"compare", out, r0, "--method", "cka", "--quiet", NULL};
    cr_assert_eq(run_cli(NULL, &err, pargs), 0, "%s", err);
    cr_expect(strstr(err, "compared the first") != NULL, "no notice: %s", err);
    free(err);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(x), free(x0), free(x1), free(ref), free(r0), free(r1);
    free(model), free(json), free(prompts), free(out), free(dir);
}

/* exit 2, one line on stderr starting "eccolo: error:", containing needle */
static void fails(const char *const *args, const char *needle)
{
    char *out = NULL, *err = NULL;
    int rc = run_cli(&out, &err, args);
    cr_expect_eq(rc, 2, "eccolo %s ... %s: exit %d (%s)", args[0], args[1], rc, err);
    cr_expect(!strncmp(err, "eccolo: error: ", 15), "not an error line: %s", err);
    cr_expect(strchr(err, '\n') == err + strlen(err) - 1, "more than one line: %s", err);
    cr_expect(strstr(err, needle) != NULL, "'%s' not in: %s", needle, err);
    free(out);
    free(err);
}

Test(compare, bad_input_is_one_line_error, .timeout = 120)
{
    char *a = gen("cmp-err-a", "tiny-gpt2-deep", k_prompt, k_cont, 1);
    char *other = gen("cmp-err-b", "tiny-gpt2-deep", "A different text entirely", " with other tokens.", 1);
    char *bare = gen("cmp-err-c", "tiny-gpt2-deep", k_prompt, k_cont, 0);
    char *wide = gen("cmp-err-d", "tiny-gpt2", k_prompt, k_cont, 1); /* 256 neurons over 51 tokens */
    char *missing = fmt("%s-nonexistent", a);
    fails((const char *[]){"compare", a, other, "--method", "cka", NULL}, "hold different tokens");
    fails((const char *[]){"compare", a, NULL}, "--method");
    fails((const char *[]){"compare", a, "--method", "xcorr", NULL}, "cca, svcca, pwcca or cka");
    fails((const char *[]){"compare", "--method", "cka", NULL}, "give a run");
    fails((const char *[]){"compare", a, a, a, "--method", "cka", NULL}, "third");
    fails((const char *[]){"compare", a, "--method", "cka", "--layers-a", "5:99", NULL}, "use a:b with 0 <= a < b <= 12");
    fails((const char *[]){"compare", a, "--method", "cka", "--layers-b", "3:3", NULL}, "a < b");
    fails((const char *[]){"compare", a, "--method", "cka", "--what", "logits", NULL}, "--what");
    fails((const char *[]){"compare", a, "--method", "cka", "--dims", "4", NULL}, "--dims is for");
    fails((const char *[]){"compare", a, "--method", "svcca", "--dims", "40", NULL}, "dims 40");
    fails((const char *[]){"compare", missing, "--method", "cka", NULL}, "no such directory");
    fails((const char *[]){"compare", bare, "--method", "cka", NULL}, "--activations");
    fails((const char *[]){"compare", wide, "--method", "cca", NULL}, "fewer neurons than tokens");
    fails((const char *[]){"compare", wide, "--method", "pwcca", NULL}, "use svcca or cka");
    free(a), free(other), free(bare), free(wide), free(missing);
}

/* The heatmap page: self-contained, and in Chromium every cell is drawn and
 * listed, hovering and clicking show the value; a directory name holding
 * markup stays text (its '<' written as \u003c inside the JSON). */
Test(compare_browser, html_view, .timeout = 180)
{
    char *root = test_tmpdir("compare-html"), *run = fmt("%s/run<!--<script><b>x", root);
    char *a = gen("cmp-html", "tiny-gpt2-deep", k_prompt, k_cont, 1);
    cr_assert_eq(rename(a, run), 0);
    char *html = ecc_path_join(root, "v.html"), *json = ecc_path_join(root, "v.json"), *err = NULL;
    const char *args[] = {"compare", run, "--method", "cka", "--what", "hidden_states", "--html", html, "--out", json,
                          "--quiet", NULL};
    cr_assert_eq(run_cli(NULL, &err, args), 0, "%s", err);
    char *page = slurp(html);
    cr_expect(strstr(page, "Content-Security-Policy") && strstr(page, "default-src 'none'"), "no CSP");
    cr_expect(!strstr(page, "http://") && !strstr(page, "https://") && !strstr(page, " src="), "the page links out");
    cr_expect(!strstr(page, "run<!--"), "the directory name entered the page as markup");
    cJSON *res = page_result(html, "1", NULL);
    cJSON *j = slurp_json(json);
    const int L = 13;
    cr_expect_eq(cJSON_GetObjectItem(res, "rows")->valueint, L);
    cr_expect_eq(cJSON_GetObjectItem(res, "drawn")->valueint, L * L);
    cr_expect_eq(cJSON_GetObjectItem(res, "table_cells")->valueint, L * L);
    cr_expect_eq(cJSON_GetObjectItem(res, "scripts")->valueint, 2, "extra <script> elements");
    char want[64];
    snprintf(want, sizeof want, "%.4f", json_value(j, L - 1, L - 2 + 1));
    cr_expect_str_eq(cJSON_GetObjectItem(res, "last_cell")->valuestring, want);
    const cJSON *tip = cJSON_GetObjectItem(res, "tooltip");
    cr_expect(cJSON_IsString(tip) && strstr(tip->valuestring, "A H12 × B H12: cka") &&
                  strstr(tip->valuestring, want),
              "hover: %s", cJSON_IsString(tip) ? tip->valuestring : "(none)");
    cr_expect_str_eq(cJSON_GetObjectItem(res, "info")->valuestring, tip->valuestring, "click pins the cell");
    const char *dir = getenv("ECCOLO_SCREENSHOTS");
    if (dir) { /* for the docs: build/tests/screenshots/compare.png */
        cr_assert_eq(ecc_mkdirs(dir), ECC_OK);
        char *file = ecc_path_join(dir, "compare.png"), *mode = fmt("--screenshot=%s", file), *e2 = NULL;
        cr_expect_eq(browse(html, NULL, mode, NULL, &e2, NULL), 0, "%s", e2);
        free(file), free(mode), free(e2);
    }
    cJSON_Delete(res);
    cJSON_Delete(j);
    free(page), free(html), free(json), free(err), free(run), free(root), free(a);
}
