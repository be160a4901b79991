/* eccolo report: the page's data (decoded back from the HTML and compared
 * with the run), the command's errors, and the views in headless Chromium
 * (DOM self-checks through #test=..., console errors, screenshots under
 * build/tests/screenshots/), including a synthetic gpt2-sized run.
 *
 * The browser tests need Chromium (apt-get install chromium; tools/setup.sh
 * installs it), found as $ECCOLO_CHROMIUM, /usr/lib/chromium/chromium or
 * /usr/bin/chromium; without it they fail with that message, the others
 * still pass. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "browser.h"
#include "io/run_reader.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

/* ---- helpers: runs, NMF files, the page's data ------------------------------------ */

static char *fixture_model(void) { return fixture_path("tiny-gpt2"); }

/* eccolo generate into a fresh directory; returns it (malloc'd). */
static char *make_run(const char *tag, const char *const *extra)
{
    char *dir = test_tmpdir(tag), *model = fixture_model();
    const char *args[40] = {"generate", "--model", model, "--quiet", "--threads", "1", "--out", dir};
    int n = 8;
    for (int i = 0; extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    char *err;
    int rc = run_cli(NULL, &err, args);
    cr_assert_eq(rc, 0, "eccolo generate failed: %s", err);
    free(err);
    free(model);
    return dir;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) / (float)(1ull << 24);
}

/* A synthetic NMF file: factors [K, T_total] and loadings [K, Fp] random
 * non-negative, offsets [runs + 1], metadata as eccolo nmf writes it. */
static void write_nmf(const char *path, int K, int T_total, int Fp, const int32_t *offsets, int n_runs,
                      const char *runs_json, int from, int to)
{
    float *W = malloc(sizeof(float) * (size_t)K * T_total), *H = malloc(sizeof(float) * (size_t)K * Fp);
    for (size_t i = 0; i < (size_t)K * T_total; i++)
        W[i] = frand();
    for (size_t i = 0; i < (size_t)K * Fp; i++)
        H[i] = frand() * frand();
    ecc_st_writer w;
    ecc_st_writer_init(&w);
    cr_assert_eq(ecc_st_writer_add(&w, "factors", ECC_F32, 2, (int64_t[]){K, T_total}, W), ECC_OK);
    cr_assert_eq(ecc_st_writer_add(&w, "loadings", ECC_F32, 2, (int64_t[]){K, Fp}, H), ECC_OK);
    cr_assert_eq(ecc_st_writer_add(&w, "offsets", ECC_I32, 1, (int64_t[]){n_runs + 1}, offsets), ECC_OK);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", from);
    ecc_st_writer_meta(&w, "layer_from", buf);
    snprintf(buf, sizeof buf, "%d", to);
    ecc_st_writer_meta(&w, "layer_to", buf);
    snprintf(buf, sizeof buf, "%d", K);
    ecc_st_writer_meta(&w, "n_components", buf);
    ecc_st_writer_meta(&w, "relative_error", "0.5");
    ecc_st_writer_meta(&w, "iterations", "42");
    ecc_st_writer_meta(&w, "init", "random");
    ecc_st_writer_meta(&w, "solver", "mu");
    ecc_st_writer_meta(&w, "runs", runs_json);
    /* run_ids, as eccolo nmf records them: each run's id from its run.json ("" when none) */
    cJSON *runs = cJSON_Parse(runs_json), *ids = cJSON_CreateArray();
    const cJSON *e;
    cJSON_ArrayForEach(e, runs)
    {
        char *rj = ecc_path_join(e->valuestring, "run.json");
        cJSON *j = ecc_file_exists(rj) ? slurp_json(rj) : NULL;
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "run_id"));
        cJSON_AddItemToArray(ids, cJSON_CreateString(id ? id : ""));
        cJSON_Delete(j);
        free(rj);
    }
    char *ids_s = cJSON_PrintUnformatted(ids);
    ecc_st_writer_meta(&w, "run_ids", ids_s);
    free(ids_s);
    cJSON_Delete(ids);
    cJSON_Delete(runs);
    cr_assert_eq(ecc_st_writer_write(&w, path), ECC_OK, "%s", ecc_last_error());
    ecc_st_writer_free(&w);
    free(W);
    free(H);
}

/* The single-run NMF of RUN (K factors over its activations' layers). */
static char *write_run_nmf(const char *run, int K, int T, int from, int to, int F)
{
    char *path = ecc_path_join(run, "nmf.safetensors"), runs[4200];
    snprintf(runs, sizeof runs, "[\"%s\"]", run);
    write_nmf(path, K, T, (to - from) * F, (int32_t[]){0, T}, 1, runs, from, to);
    return path;
}

static int report(char **err, const char *run, const char *nmf, const char *out)
{
    const char *args[8] = {"report", run};
    int n = 2;
    if (nmf) {
        args[n++] = "--nmf";
        args[n++] = nmf;
    }
    if (out) {
        args[n++] = "--out";
        args[n++] = out;
    }
    args[n++] = "--quiet";
    args[n] = NULL;
    return run_cli(NULL, err, args);
}

/* eccolo report RUN [--nmf NMF] [--out OUT] fails with one line naming `needle`. */
static void report_fails(const char *run, const char *nmf, const char *out, const char *needle)
{
    char *err;
    int rc = report(&err, run, nmf, out);
    assert_one_line_error(rc, err, needle);
    free(err);
}

static void cli_fails(const char *const *args, const char *needle)
{
    char *err;
    int rc = run_cli(NULL, &err, args);
    assert_one_line_error(rc, err, needle);
    free(err);
}

static size_t b64_decode(uint8_t *out, const char *s, size_t n)
{
    static int8_t val[256];
    if (!val['B'])
        for (int i = 0; i < 64; i++)
            val[(unsigned char)"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i]] = (int8_t)i;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        acc = acc << 6 | (uint32_t)val[(unsigned char)s[i]];
        if ((bits += 6) >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

typedef struct page {
    char *html;
    size_t len;
    cJSON *meta;
    uint8_t *blob;
    size_t blob_len;
} page;

/* Read a report and decode its JSON header and binary blob. */
static void page_open(page *p, const char *path)
{
    cr_assert_eq(ecc_read_file(path, (size_t)1 << 30, &p->html, &p->len), ECC_OK, "%s", ecc_last_error());
    const char *m0 = "<script type=\"application/json\" id=\"ecc-meta\">";
    const char *b0 = "<script type=\"application/octet-stream\" id=\"ecc-blob\">";
    char *m = strstr(p->html, m0), *b = strstr(p->html, b0);
    cr_assert(m && b, "%s: no data elements", path);
    m += strlen(m0);
    b += strlen(b0);
    char *me = strstr(m, "</script>"), *be = strstr(b, "</script>");
    cr_assert(me && be);
    p->meta = cJSON_ParseWithLength(m, (size_t)(me - m));
    cr_assert(p->meta, "%s: the JSON header does not parse", path);
    p->blob = malloc((size_t)(be - b) + 1);
    p->blob_len = b64_decode(p->blob, b, (size_t)(be - b));
    cr_assert_eq((double)p->blob_len, cJSON_GetObjectItem(p->meta, "blob_bytes")->valuedouble);
}

static void page_close(page *p)
{
    free(p->html);
    cJSON_Delete(p->meta);
    free(p->blob);
}

/* The array described at meta path (e.g. "saliency"), key: a copy as floats. */
static double *page_array(const page *p, const cJSON *desc, size_t *n)
{
    cr_assert(desc, "missing array");
    const char *type = cJSON_GetObjectItem(desc, "type")->valuestring;
    size_t off = (size_t)cJSON_GetObjectItem(desc, "off")->valuedouble;
    *n = (size_t)cJSON_GetObjectItem(desc, "n")->valuedouble;
    cr_assert_eq(off % 8, 0, "array not aligned");
    double *v = malloc(sizeof(double) * (*n ? *n : 1));
    const uint8_t *d = p->blob + off;
    for (size_t i = 0; i < *n; i++) {
        if (!strcmp(type, "u8"))
            v[i] = d[i];
        else if (!strcmp(type, "u16")) {
            uint16_t x;
            memcpy(&x, d + 2 * i, 2);
            v[i] = x;
        } else if (!strcmp(type, "i32")) {
            int32_t x;
            memcpy(&x, d + 4 * i, 4);
            v[i] = x;
        } else {
            float x;
            memcpy(&x, d + 4 * i, 4);
            v[i] = x;
        }
    }
    cr_assert(off + *n <= p->blob_len);
    return v;
}

static const cJSON *jget(const cJSON *o, const char *path) /* "a.b.c" */
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

static int jint(const cJSON *o, const char *path)
{
    const cJSON *v = jget(o, path);
    cr_assert(cJSON_IsNumber(v) || cJSON_IsBool(v), "no number at %s", path);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : v->valueint;
}

/* ---- the page's data against the run --------------------------------------------------- */

static const char *const k_full[] = {"--prompt", "Frameworks for Machine Learning include: 1. TensorFlow\\n2. PyTorch",
                                     "--max-new-tokens", "12", "--attribution", "grad_x_input,ig", "--ig-steps", "4",
                                     "--activations", "--attention", "--rankings", "--watch-ids", "11,500",
                                     "--hidden-states", NULL};

Test(report, data_matches_run)
{
    char *run = make_run("report-data", k_full), *err;
    char *out = ecc_path_join(run, "page.html");
    cr_assert_eq(report(&err, run, NULL, out), 0, "%s", err);
    free(err);
    page p;
    page_open(&p, out);
    char *tp = ecc_path_join(run, "tensors.safetensors");
    ecc_st_file *st;
    cr_assert_eq(ecc_st_open(&st, tp), ECC_OK);
    const int T = jint(p.meta, "T"), n0 = jint(p.meta, "n_input"), G = T - n0;
    cr_assert_eq(cJSON_GetArraySize(jget(p.meta, "tokens")), T);

    /* saliency: packed rows, uint16 of the row max */
    const cJSON *methods = jget(p.meta, "saliency.methods");
    cr_assert_eq(cJSON_GetArraySize(methods), 2);
    const cJSON *m;
    cJSON_ArrayForEach(m, methods)
    {
        char name[64];
        snprintf(name, sizeof name, "attribution.%s", cJSON_GetObjectItem(m, "name")->valuestring);
        const ecc_st_tensor *t = ecc_st_find(st, name);
        cr_assert(t, "%s", name);
        float *ref = malloc(t->nbytes);
        memcpy(ref, t->data, t->nbytes);
        size_t nq, nm;
        double *q = page_array(&p, cJSON_GetObjectItem(m, "q"), &nq), *mx = page_array(&p, cJSON_GetObjectItem(m, "rowmax"), &nm);
        cr_assert_eq(nq, (size_t)G * n0 + (size_t)G * (G - 1) / 2);
        cr_assert_eq(nm, (size_t)G);
        size_t o = 0;
        for (int g = 0; g < G; g++)
            for (int j = 0; j < n0 + g; j++, o++) {
                double v = q[o] / 65535.0 * mx[g], r = ref[(size_t)g * T + j];
                cr_assert(fabs(v - r) <= 1e-5 * mx[g] + 1e-9, "%s[%d, %d] = %g, page %g", name, g, j, r, v);
            }
        free(ref);
        free(q);
        free(mx);
    }

    /* rankings exact, probabilities to 1/65535 */
    const ecc_st_tensor *rk = ecc_st_find(st, "rankings"), *tp_ = ecc_st_find(st, "layer_top_probs");
    size_t n;
    double *ranks = page_array(&p, jget(p.meta, "rankings.ranks"), &n);
    cr_assert_eq(n, rk->numel);
    for (size_t i = 0; i < n; i++) {
        int32_t r;
        memcpy(&r, rk->data + 4 * i, 4);
        cr_assert_eq(ranks[i], r);
    }
    double *probs = page_array(&p, jget(p.meta, "rankings.top_probs"), &n);
    for (size_t i = 0; i < n; i++) {
        float r;
        memcpy(&r, tp_->data + 4 * i, 4);
        cr_assert(fabs(probs[i] / 65535.0 - r) <= 1e-5);
    }
    cr_assert_eq(jint(p.meta, "rankings.watch.W"), 2);
    cr_assert_str_eq(jget(p.meta, "vocab.source")->valuestring, "tokenizer");
    free(ranks);
    free(probs);

    /* activations: a small model embeds every neuron */
    const ecc_st_tensor *act = ecc_st_find(st, "activations");
    const int F = (int)act->shape[2], Lp = (int)act->shape[0];
    cr_assert(jint(p.meta, "activations.all"));
    cr_assert_eq(cJSON_GetArraySize(jget(p.meta, "activations.layer")), Lp * F);
    double *aq = page_array(&p, jget(p.meta, "activations.q"), &n);
    cr_assert_eq(n, (size_t)Lp * F * T);
    const cJSON *jl = jget(p.meta, "activations.layer"), *jn = jget(p.meta, "activations.neuron");
    const cJSON *jlo = jget(p.meta, "activations.lo"), *jhi = jget(p.meta, "activations.hi");
    for (int i = 0; i < Lp * F; i += 37) { /* a sample of neurons */
        int l = cJSON_GetArrayItem(jl, i)->valueint, nn = cJSON_GetArrayItem(jn, i)->valueint;
        double lo = cJSON_GetArrayItem(jlo, i)->valuedouble, hi = cJSON_GetArrayItem(jhi, i)->valuedouble;
        for (int t = 0; t < T; t++) {
            float r;
            memcpy(&r, act->data + 4 * (((size_t)l * T + t) * F + nn), 4);
            double v = lo + aq[(size_t)i * T + t] / 255.0 * (hi - lo);
            cr_assert(fabs(v - r) <= (hi - lo) / 255.0 * 0.51 + 1e-6, "neuron (%d, %d) at %d: %g vs %g", l, nn, t, v, r);
        }
    }
    free(aq);
    /* each token's top neuron is its largest activation */
    double *tf = page_array(&p, jget(p.meta, "activations.top.flat"), &n), *tv = page_array(&p, jget(p.meta, "activations.top.value"), &n);
    const int k = jint(p.meta, "activations.top.k");
    for (int t = 0; t < T; t++) {
        float best = -INFINITY;
        for (int l = 0; l < Lp; l++)
            for (int nn = 0; nn < F; nn++) {
                float r;
                memcpy(&r, act->data + 4 * (((size_t)l * T + t) * F + nn), 4);
                best = fmaxf(best, r);
            }
        cr_assert_eq((float)tv[(size_t)t * k], best);
        int f = (int)tf[(size_t)t * k];
        float r;
        memcpy(&r, act->data + 4 * (((size_t)(f / F) * T + t) * F + f % F), 4);
        cr_assert_eq(r, best);
    }
    free(tf);
    free(tv);

    /* attention: a small run keeps every entry */
    const ecc_st_tensor *at = ecc_st_find(st, "attention");
    const int L = (int)at->shape[0], NH = (int)at->shape[1];
    cr_assert_eq(jint(p.meta, "attention.k"), T);
    double *ai = page_array(&p, jget(p.meta, "attention.idx"), &n), *ap = page_array(&p, jget(p.meta, "attention.p"), &n);
    cr_assert_eq(n, (size_t)L * NH * T * T);
    float *dense = calloc((size_t)T, sizeof(float));
    for (size_t row = 0; row < (size_t)L * NH * T; row += 7) {
        memset(dense, 0, sizeof(float) * T);
        for (int r = 0; r < T; r++)
            dense[(int)ai[row * T + r]] += (float)(ap[row * T + r] / 65535.0);
        for (int j = 0; j < T; j++) {
            float ref;
            memcpy(&ref, at->data + 4 * (row * T + j), 4);
            cr_assert(fabsf(dense[j] - ref) <= 1e-5f, "attention row %zu key %d: %g vs %g", row, j, dense[j], ref);
        }
        for (int r = 1; r < T; r++)
            cr_assert(ap[row * T + r] <= ap[row * T + r - 1], "entries not in decreasing order");
    }
    free(dense);
    free(ai);
    free(ap);
    cr_assert_null(jget(p.meta, "nmf"), "no NMF file, no NMF view");
    ecc_st_close(st);
    page_close(&p);
    free(tp);
    free(out);
    free(run);
}

/* Text that could break out of the page stays text. */
Test(report, untrusted_text_is_escaped)
{
    const char *const extra[] = {"--prompt", "a </script><script>alert(1)</script> <!-- & &amp; \\t tab\\n\\nend",
                                 "--continuation", " </script>\\n<b>x</b>", "--attribution", "grad_x_input", NULL};
    char *run = make_run("report-escape", extra), *err;
    cr_assert_eq(report(&err, run, NULL, NULL), 0, "%s", err);
    free(err);
    char *path = ecc_path_join(run, "report.html"), *html;
    size_t len;
    cr_assert_eq(ecc_read_file(path, 1u << 30, &html, &len), ECC_OK);
    /* the template's own </script> closings only: 3 data/code elements */
    int n = 0;
    for (const char *q = html; (q = strstr(q, "</script>")); q++)
        n++;
    cr_assert_eq(n, 3, "token text closed a script element (%d </script>)", n);
    cr_assert(strstr(html, "\\u003c/script>"), "'<' should be written as \\u003c");
    cr_assert_null(strstr(html, "<!-- &"), "an HTML comment opener leaked");
    page p;
    page_open(&p, path);
    const cJSON *tokens = jget(p.meta, "tokens");
    char *joined = calloc(1, 4096);
    const cJSON *t;
    cJSON_ArrayForEach(t, tokens) strcat(joined, t->valuestring);
    cr_assert(strstr(joined, "</script><script>alert(1)</script>"), "tokens do not round-trip: %s", joined);
    free(joined);
    page_close(&p);
    free(html);
    free(path);
    free(run);
}

Test(report, nmf_of_several_runs_picks_this_run)
{
    const char *const extra[] = {"--prompt", "Hello world, this is", "--max-new-tokens", "5", "--activations",
                                 "--layers", "1:2", NULL};
    char *run = make_run("report-nmf", extra), *other = make_run("report-nmf-other", extra), *err;
    ecc_run_dir *r;
    cr_assert_eq(ecc_run_dir_open(&r, run), ECC_OK);
    const int T = r->T, F = (int)ecc_st_find(r->st, "activations")->shape[2];
    ecc_run_dir_close(r);
    /* runs: other (7 tokens, pretend), then this one */
    char *path = ecc_path_join(other, "multi.safetensors"), runs[9000];
    snprintf(runs, sizeof runs, "[\"%s\", \"%s\"]", other, run);
    rng_state = 12345;
    write_nmf(path, 3, 7 + T, F, (int32_t[]){0, 7, 7 + T}, 2, runs, 1, 2);
    cr_assert_eq(report(&err, run, path, NULL), 0, "%s", err);
    free(err);
    /* the factors of this run are columns 7 … 7+T of the file */
    ecc_st_file *st;
    cr_assert_eq(ecc_st_open(&st, path), ECC_OK);
    const ecc_st_tensor *W = ecc_st_find(st, "factors");
    char *html_path = ecc_path_join(run, "report.html");
    page p;
    page_open(&p, html_path);
    cr_assert_eq(jint(p.meta, "nmf.K"), 3);
    cr_assert_eq(jint(p.meta, "nmf.runs"), 2);
    cr_assert_eq(jint(p.meta, "nmf.layer_from"), 1);
    cr_assert_eq(cJSON_GetArraySize(jget(p.meta, "nmf.top")), 3);
    size_t n;
    double *f = page_array(&p, jget(p.meta, "nmf.factors"), &n);
    cr_assert_eq(n, (size_t)3 * T);
    for (int k = 0; k < 3; k++)
        for (int t = 0; t < T; t++) {
            float ref;
            memcpy(&ref, W->data + 4 * ((size_t)k * (7 + T) + 7 + t), 4);
            cr_assert_eq((float)f[(size_t)k * T + t], ref);
        }
    /* the listed top neurons: layer 1, largest loadings first */
    const cJSON *top0 = cJSON_GetArrayItem(jget(p.meta, "nmf.top"), 0);
    cr_assert_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(top0, 0), 0)->valueint, 1);
    cr_assert_geq(cJSON_GetArrayItem(cJSON_GetArrayItem(top0, 0), 2)->valuedouble,
                  cJSON_GetArrayItem(cJSON_GetArrayItem(top0, 1), 2)->valuedouble);
    free(f);
    page_close(&p);
    ecc_st_close(st);
    /* an NMF of two other runs: an error */
    snprintf(runs, sizeof runs, "[\"%s\", \"/nonexistent/run\"]", other);
    write_nmf(path, 3, 7 + T, F, (int32_t[]){0, 7, 7 + T}, 2, runs, 1, 2);
    report_fails(run, path, NULL, "not computed from this run");
    free(html_path);
    free(path);
    free(run);
    free(other);
}

/* ---- errors ------------------------------------------------------------------------ */

Test(report, bad_input_is_one_line_error)
{
    char *out;
    const char *help[] = {"report", "--help", NULL};
    cr_assert_eq(run_cli(&out, NULL, help), 0);
    cr_assert(strstr(out, "usage: eccolo report RUN_DIR"));
    free(out);
    const char *none[] = {"report", NULL};
    cli_fails(none, "no run directory");
    const char *unk[] = {"report", "x", "--bogus", NULL};
    cli_fails(unk, "--bogus");

    /* a directory without run.json */
    char *empty = test_tmpdir("report-empty");
    report_fails(empty, NULL, NULL, "run.json");
    char *missing = ecc_path_join(empty, "nope");
    report_fails(missing, NULL, NULL, "no such run directory");

    /* a corrupt tensors file */
    const char *const extra[] = {"--prompt", "Hello world", "--max-new-tokens", "4", "--attribution", "grad_x_input",
                                 "--activations", NULL};
    char *run = make_run("report-bad", extra);
    char *bad = test_tmpdir("report-corrupt");
    copy_dir(run, bad);
    char *tp = ecc_path_join(bad, "tensors.safetensors");
    write_file(tp, "\x10\x00\x00\x00\x00\x00\x00\x00{not json at all", 24);
    report_fails(bad, NULL, NULL, "tensors.safetensors");
    /* truncated: the header promises more data than the file holds */
    char *data;
    size_t len;
    char *orig = ecc_path_join(run, "tensors.safetensors");
    cr_assert_eq(ecc_read_file(orig, 1u << 30, &data, &len), ECC_OK);
    write_file(tp, data, len / 2);
    free(data);
    report_fails(bad, NULL, NULL, "tensors.safetensors");

    /* NMF files with wrong shapes */
    ecc_run_dir *r;
    cr_assert_eq(ecc_run_dir_open(&r, run), ECC_OK);
    const int T = r->T, F = (int)ecc_st_find(r->st, "activations")->shape[2];
    ecc_run_dir_close(r);
    char *nmf = ecc_path_join(run, "wrong.safetensors"), runs[4200];
    snprintf(runs, sizeof runs, "[\"%s\"]", run);
    write_nmf(nmf, 3, T + 1, 2 * F, (int32_t[]){0, T + 1}, 1, runs, 0, 2); /* one token too many */
    report_fails(run, nmf, NULL, "tokens");
    write_nmf(nmf, 3, T, 2 * F + 1, (int32_t[]){0, T}, 1, runs, 0, 2); /* columns not layers × neurons */
    report_fails(run, nmf, NULL, "wrong.safetensors");
    write_nmf(nmf, 3, T, 2 * F, (int32_t[]){0, T - 1}, 1, runs, 0, 2); /* offsets do not reach T */
    report_fails(run, nmf, NULL, "offsets");
    write_nmf(nmf, 3, T, 4 * F, (int32_t[]){0, T}, 1, runs, 0, 2); /* 2F neurons per layer, the run has F */
    report_fails(run, nmf, NULL, "neurons per layer");
    { /* loadings with another number of components */
        ecc_st_writer w;
        ecc_st_writer_init(&w);
        float *z = calloc((size_t)4 * T * 2 * F, sizeof(float));
        ecc_st_writer_add(&w, "factors", ECC_F32, 2, (int64_t[]){3, T}, z);
        ecc_st_writer_add(&w, "loadings", ECC_F32, 2, (int64_t[]){4, 2 * F}, z);
        ecc_st_writer_add(&w, "offsets", ECC_I32, 1, (int64_t[]){2}, (int32_t[]){0, T});
        ecc_st_writer_meta(&w, "layer_from", "0");
        ecc_st_writer_meta(&w, "layer_to", "2");
        cr_assert_eq(ecc_st_writer_write(&w, nmf), ECC_OK);
        ecc_st_writer_free(&w);
        free(z);
        report_fails(run, nmf, NULL, "components");
    }
    char *nonexist = ecc_path_join(run, "absent.safetensors");
    report_fails(run, nonexist, NULL, "no such NMF file");
    /* a default nmf.safetensors that is broken is reported too */
    char *dflt = ecc_path_join(run, "nmf.safetensors");
    write_file(dflt, "garbage", 7);
    report_fails(run, NULL, NULL, "nmf.safetensors");
    unlink(dflt);
    /* an output path that cannot be written */
    report_fails(run, NULL, "/nonexistent-dir/x.html", "x.html");
    /* no page and no temporary file was left behind by the failures */
    DIR *d = opendir(run);
    for (struct dirent *e; (e = readdir(d));)
        cr_assert(!strstr(e->d_name, ".tmp.") && strcmp(e->d_name, "report.html"), "left behind: %s", e->d_name);
    closedir(d);
    free(dflt);
    free(nonexist);
    free(nmf);
    free(orig);
    free(tp);
    free(bad);
    free(run);
    free(missing);
    free(empty);
}

/* ---- the browser ---------------------------------------------------------------------- */

/* Run the page's self-check #test=SPEC and return its JSON result (browser.c), with the report's own check. */
static cJSON *page_test(const char *html, const char *spec, double *secs)
{
    cJSON *j = page_result(html, spec, secs);
    cr_assert_eq(jint(j, "scripts"), 3, "the page has extra <script> elements");
    return j;
}

static void no_view_error(const cJSON *res, const char *view)
{
    const cJSON *e = jget(res, view);
    cr_assert(e, "view %s was not tested", view);
    const cJSON *msg = cJSON_GetObjectItem(e, "error");
    cr_assert_null(msg, "view %s: %s", view, msg ? msg->valuestring : "");
}

static void screenshot(const char *html, const char *hash, const char *name)
{
    const char *dir = getenv("ECCOLO_SCREENSHOTS");
    if (!dir)
        return;
    cr_assert_eq(ecc_mkdirs(dir), ECC_OK);
    char *file = ecc_path_join(dir, name), mode[4300], *err;
    snprintf(mode, sizeof mode, "--screenshot=%s", file);
    int rc = browse(html, hash, mode, NULL, &err, NULL);
    cr_assert_eq(rc, 0, "screenshot %s: chromium exited with %d: %.1000s", name, rc, err);
    assert_clean_console(err);
    cr_assert(ecc_file_exists(file), "no screenshot %s", file);
    free(err);
    free(file);
}

Test(report_browser, every_view_works)
{
    char *run = make_run("report-views", k_full), *err;
    ecc_run_dir *r;
    cr_assert_eq(ecc_run_dir_open(&r, run), ECC_OK);
    const int T = r->T, n0 = r->n_input, G = T - n0;
    const ecc_st_tensor *act = ecc_st_find(r->st, "activations");
    const int L = (int)ecc_st_find(r->st, "rankings")->shape[0], F = (int)act->shape[2];
    ecc_run_dir_close(r);
    const int K = 5;
    char *nmf = write_run_nmf(run, K, T, 0, L, F);
    cr_assert_eq(report(&err, run, NULL, NULL), 0, "%s", err); /* finds RUN/nmf.safetensors */
    free(err);
    char *html = ecc_path_join(run, "report.html");

    cJSON *res = page_test(html, "all", NULL);
    char *s = cJSON_PrintUnformatted(res);
    cr_log_info("report views: %s", s);
    free(s);
    const char *views[] = {"saliency", "nmf", "rankings", "neurons", "attention"};
    cr_assert_eq(cJSON_GetArraySize(jget(res, "views")), 6);
    for (int i = 0; i < 5; i++)
        no_view_error(res, views[i]);
    /* saliency: T tokens; activating generated token 0 shades the n0 tokens before it */
    cr_assert_eq(jint(res, "saliency.tokens"), T);
    cr_assert_eq(jint(res, "saliency.generated"), G);
    cr_assert_eq(jint(res, "saliency.shaded_before"), 0);
    cr_assert_gt(jint(res, "saliency.changed"), 0);
    cr_assert_leq(jint(res, "saliency.shaded_after"), n0);
    cr_assert_gt(jint(res, "saliency.shaded_after"), n0 / 2);
    cr_assert_eq(jint(res, "saliency.after_right_key"), 1, "→ should move to the next generated token");
    /* NMF: K sparklines, isolating a factor changes the tints */
    cr_assert_eq(jint(res, "nmf.tokens"), T);
    cr_assert_eq(jint(res, "nmf.sparklines"), K);
    cr_assert_eq(jint(res, "nmf.isolated"), 0);
    cr_assert_gt(jint(res, "nmf.changed"), 0);
    cr_assert_eq(jint(res, "nmf.neurons_listed"), K * 10);
    /* rankings: L × G cells, one prediction row per layer, watch table */
    cr_assert_eq(jint(res, "rankings.cells"), L * G);
    cr_assert_eq(jint(res, "rankings.predRows"), L);
    cr_assert_eq(jint(res, "rankings.watchRows"), L + 1);
    /* neurons and attention shade tokens */
    cr_assert_eq(jint(res, "neurons.tokens"), T);
    cr_assert_gt(jint(res, "neurons.changed"), 0);
    cr_assert_eq(jint(res, "neurons.listed"), 10);
    cr_assert_eq(jint(res, "attention.tokens"), T);
    cr_assert_gt(jint(res, "attention.changed"), 0);
    cr_assert_eq(jint(res, "attention.query"), T / 2);
    cJSON_Delete(res);

    /* a selection in the middle, by its own hash */
    char spec[32];
    snprintf(spec, sizeof spec, "saliency:%d", G / 2);
    res = page_test(html, spec, NULL);
    cr_assert_eq(jint(res, "saliency.selected"), G / 2);
    cr_assert_gt(jint(res, "saliency.shaded_after"), n0);
    cJSON_Delete(res);

    screenshot(html, spec, "saliency.png");
    screenshot(html, "test=nmf", "nmf.png");
    screenshot(html, "test=rankings:3", "rankings.png");
    screenshot(html, "test=neurons", "neurons.png");
    screenshot(html, "test=attention", "attention.png");
    screenshot(html, "view=about", "about.png");
    free(html);
    free(nmf);
    free(run);
}

/* A run with only one attribution method and awkward text: the views that
 * have data, nothing else, and no errors. */
Test(report_browser, partial_data_and_awkward_text)
{
    const char *const extra[] = {"--prompt", "a </script><b>bold</b> &amp; \\t\\ttabs\\n\\n\\x01",
                                 "--continuation", "  two spaces\\r\\nend", "--attribution", "gradient", NULL};
    char *run = make_run("report-partial", extra), *err;
    cr_assert_eq(report(&err, run, NULL, NULL), 0, "%s", err);
    free(err);
    ecc_run_dir *r;
    cr_assert_eq(ecc_run_dir_open(&r, run), ECC_OK);
    const int T = r->T;
    ecc_run_dir_close(r);
    char *html = ecc_path_join(run, "report.html");
    cJSON *res = page_test(html, "all", NULL);
    const cJSON *views = jget(res, "views");
    cr_assert_eq(cJSON_GetArraySize(views), 2, "only saliency and about");
    cr_assert_str_eq(cJSON_GetArrayItem(views, 0)->valuestring, "saliency");
    no_view_error(res, "saliency");
    cr_assert_eq(jint(res, "saliency.tokens"), T);
    cr_assert_gt(jint(res, "saliency.changed"), 0);
    cJSON_Delete(res);
    screenshot(html, "test=saliency:1", "saliency-awkward-text.png");
    free(html);
    free(run);
}

/* ---- a synthetic gpt2-sized run -------------------------------------------------------- */

/* Deterministic pseudo-random numbers by index (splitmix64). */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}
static float urand(uint64_t i, uint64_t salt) { return (float)(mix(i * 0x100000001b3ull ^ salt) >> 40) / 16777216.0f; }

enum { BIG_T = 1024, BIG_N0 = 24, BIG_G = BIG_T - BIG_N0, BIG_L = 12, BIG_NH = 12, BIG_C = 768, BIG_F = 3072,
       BIG_K = 10, BIG_W = 2, BIG_V = 50257 };

typedef struct big_tensor {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
} big_tensor;

/* Element i of tensor `which` (by name), written as 4 bytes. */
static void big_value(const big_tensor *t, uint64_t i, void *out)
{
    const char *n = t->name;
    uint64_t salt = mix((uint64_t)(uintptr_t)n[0] * 131 + strlen(n));
    if (!strcmp(n, "token_ids") || !strcmp(n, "watch_ids") || !strcmp(n, "layer_top_ids")) {
        int32_t v = (int32_t)(mix(i ^ salt) % BIG_V);
        memcpy(out, &v, 4);
    } else if (!strcmp(n, "rankings") || !strcmp(n, "watch_rankings")) {
        float u = urand(i, salt);
        int32_t v = 1 + (int32_t)(u * u * u * u * 20000);
        memcpy(out, &v, 4);
    } else if (!strcmp(n, "layer_top_probs")) {
        float v = urand(i, salt) / (float)(1 + i % BIG_K);
        memcpy(out, &v, 4);
    } else if (!strncmp(n, "attribution.", 12)) {
        uint64_t g = i / BIG_T, j = i % BIG_T;
        float v = j < BIG_N0 + g ? urand(i, salt) / (BIG_N0 + g) : 0.0f;
        memcpy(out, &v, 4);
    } else if (!strcmp(n, "attention")) {
        uint64_t q = (i / BIG_T) % BIG_T, j = i % BIG_T;
        float u = urand(i, salt), v = j <= q ? u * u * u * u : 0.0f;
        memcpy(out, &v, 4);
    } else if (!strcmp(n, "activations")) {
        float u = urand(i, salt), v = u < 0.9f ? -0.17f * u : (u - 0.9f) * 40.0f;
        memcpy(out, &v, 4);
    } else {
        float v = urand(i, salt) * 2 - 1;
        memcpy(out, &v, 4);
    }
}

/* Write a safetensors file by streaming each tensor's values (the attention
 * alone is 600 MB: no need to hold it). */
static void write_big_safetensors(const char *path, const big_tensor *ts, int n)
{
    cJSON *h = cJSON_CreateObject();
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(h, ts[i].name);
        cJSON_AddStringToObject(e, "dtype", ts[i].dtype);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape"), *of = cJSON_AddArrayToObject(e, "data_offsets");
        uint64_t numel = 1;
        for (int d = 0; d < ts[i].ndim; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ts[i].shape[d]));
            numel *= (uint64_t)ts[i].shape[d];
        }
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        off += numel * 4;
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(h);
    size_t jl = strlen(json), padded = (jl + 7) & ~(size_t)7;
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    uint64_t hl = padded;
    fwrite(&hl, 8, 1, f);
    fwrite(json, 1, jl, f);
    for (size_t i = jl; i < padded; i++)
        fputc(' ', f);
    enum { CH = 1 << 16 };
    uint8_t *buf = malloc(4 * CH);
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < ts[i].ndim; d++)
            numel *= (uint64_t)ts[i].shape[d];
        for (uint64_t s = 0; s < numel; s += CH) {
            size_t m = (size_t)ECC_MIN((uint64_t)CH, numel - s);
            for (size_t k = 0; k < m; k++)
                big_value(&ts[i], s + k, buf + 4 * k);
            cr_assert_eq(fwrite(buf, 4, m, f), m);
        }
    }
    cr_assert_eq(fclose(f), 0);
    free(buf);
    free(json);
    cJSON_Delete(h);
}

static char *make_big_run(void)
{
    char *dir = test_tmpdir("report-gpt2-sized");
    static const big_tensor ts[] = {
        {"token_ids", "I32", 1, {BIG_T}},
        {"token_logprobs", "F32", 1, {BIG_G}},
        {"attribution.grad_x_input", "F32", 2, {BIG_G, BIG_T}},
        {"attribution.gradient", "F32", 2, {BIG_G, BIG_T}},
        {"attribution.integrated_gradients", "F32", 2, {BIG_G, BIG_T}},
        {"activations", "F32", 3, {BIG_L, BIG_T, BIG_F}},
        {"hidden_states", "F32", 3, {BIG_L + 1, BIG_T, BIG_C}},
        {"attention", "F32", 4, {BIG_L, BIG_NH, BIG_T, BIG_T}},
        {"rankings", "I32", 2, {BIG_L, BIG_G}},
        {"layer_top_ids", "I32", 3, {BIG_L, BIG_G, BIG_K}},
        {"layer_top_probs", "F32", 3, {BIG_L, BIG_G, BIG_K}},
        {"watch_ids", "I32", 1, {BIG_W}},
        {"watch_rankings", "I32", 3, {BIG_L, BIG_G, BIG_W}},
    };
    char *tp = ecc_path_join(dir, "tensors.safetensors");
    write_big_safetensors(tp, ts, (int)(sizeof ts / sizeof *ts));
    /* run.json: the token texts are the gpt2 tokenizer's for these ids */
    char *tok_dir = fixture_path("gpt2-tokenizer");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "eccolo_version", "test");
    cJSON *model = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(model, "id", "synthetic-gpt2-sized");
    cJSON_AddStringToObject(model, "dir", tok_dir);
    cJSON *cfg = cJSON_AddObjectToObject(model, "config");
    cJSON_AddNumberToObject(cfg, "n_layer", BIG_L);
    cJSON_AddNumberToObject(cfg, "n_head", BIG_NH);
    cJSON_AddNumberToObject(cfg, "n_embd", BIG_C);
    cJSON_AddNumberToObject(j, "n_input", BIG_N0);
    cJSON_AddNumberToObject(j, "n_tokens", BIG_T);
    cJSON *tokens = cJSON_AddArrayToObject(j, "tokens"), *partial = cJSON_AddArrayToObject(j, "partial");
    big_tensor ids_t = ts[0];
    for (int i = 0; i < BIG_T; i++) {
        char buf[32];
        int32_t id;
        big_value(&ids_t, (uint64_t)i, &id);
        snprintf(buf, sizeof buf, i % 17 == 16 ? "\n" : (i % 3 ? " w%d" : "p%d"), id % 1000);
        cJSON_AddItemToArray(tokens, cJSON_CreateString(buf));
        cJSON_AddItemToArray(partial, cJSON_CreateBool(i % 3 == 0 && i % 17 != 16));
    }
    cJSON *ex = cJSON_AddObjectToObject(j, "explain");
    cJSON *al = cJSON_AddArrayToObject(ex, "activation_layers");
    cJSON_AddItemToArray(al, cJSON_CreateNumber(0));
    cJSON_AddItemToArray(al, cJSON_CreateNumber(BIG_L));
    char *text = cJSON_Print(j), *jp = ecc_path_join(dir, "run.json");
    write_file(jp, text, strlen(text));
    free(text);
    free(jp);
    cJSON_Delete(j);
    free(tok_dir);
    free(tp);
    return dir;
}

Test(report_browser, gpt2_sized_run, .timeout = 600)
{
    double t0 = ecc_now();
    char *run = make_big_run(), *err;
    double t_make = ecc_now() - t0;
    char *nmf = write_run_nmf(run, 8, BIG_T, 0, BIG_L, BIG_F);
    t0 = ecc_now();
    int rc = report(&err, run, NULL, NULL);
    double t_report = ecc_now() - t0;
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru); /* the largest child of this test so far: eccolo report */
    char *html = ecc_path_join(run, "report.html");
    struct stat sb;
    cr_assert_eq(stat(html, &sb), 0);
    double mb = (double)sb.st_size / 1e6;
    cr_log_info("gpt2-sized report: %.1f MB page, written in %.2f s (peak RSS %.0f MB; synthetic run made in %.1f s)",
                mb, t_report, (double)ru.ru_maxrss / 1024.0, t_make);
    cr_assert_lt(mb, 40.0, "the page should stay small (%.1f MB)", mb);
    cr_assert_lt(t_report, 60.0, "writing the page took %.1f s", t_report);

    double wall;
    cJSON *res = page_test(html, "load", &wall);
    double load_ms = cJSON_GetObjectItem(res, "load_ms")->valuedouble;
    cr_log_info("gpt2-sized report: %.1f MB of binary data (before base64); Chromium ready after %.0f ms "
                "(performance.now() after init and a forced layout; the headless run took %.1f s in all)",
                cJSON_GetObjectItem(res, "blob_bytes")->valuedouble / 1e6, load_ms, wall);
    cr_assert_eq(jint(res, "T"), BIG_T);
    cr_assert_lt(load_ms, 10000.0, "the page took %.0f ms to load", load_ms);
    cJSON_Delete(res);

    /* every view at this size */
    res = page_test(html, "all", &wall);
    const char *views[] = {"saliency", "nmf", "rankings", "neurons", "attention"};
    for (int i = 0; i < 5; i++)
        no_view_error(res, views[i]);
    cr_assert_eq(jint(res, "saliency.tokens"), BIG_T);
    cr_assert_eq(jint(res, "nmf.sparklines"), 8);
    cr_assert_eq(jint(res, "rankings.cells"), BIG_L * BIG_G);
    cr_assert_eq(jint(res, "attention.k"), 7);
    cr_assert_gt(jint(res, "attention.changed"), 0);
    cr_log_info("gpt2-sized report: all five views exercised in %.1f s of headless Chromium", wall);
    cJSON_Delete(res);
    screenshot(html, "test=saliency:500", "gpt2-sized-saliency.png");
    screenshot(html, "test=attention", "gpt2-sized-attention.png");
    screenshot(html, "test=rankings:10", "gpt2-sized-rankings.png");
    rm_rf(run); /* 800 MB */
    free(html);
    free(nmf);
    free(run);
}
