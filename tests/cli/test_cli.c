/* The command line's contract: every bad input (arguments, prompts, broken
 * model directories) ends with exit code 2 and exactly one line on stderr,
 * "eccolo: error: ...", saying what is wrong; never a crash. And the success
 * paths: --version, --help, info, generate (text on stdout, or run.json +
 * tensors.safetensors with --out), forced continuations, prompt escapes,
 * hub ids resolved in a local Hugging Face cache. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eccolo.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})

#define PREFIX "eccolo: error: "

/* ---- helpers ----------------------------------------------------------------- */

static char *tiny(void) { return fixture_path("tiny-gpt2"); }

/* A private copy of tests/fixtures/tiny-gpt2 to break: <tmp>/model. */
static char *model_copy(const char *tag)
{
    char *dir = test_tmpdir(tag);
    char *m = ecc_path_join(dir, "model");
    char *src = tiny();
    copy_dir(src, m);
    free(src);
    free(dir);
    return m;
}

static char *join(const char *a, const char *b) { return ecc_path_join(a, b); }

static char *read_all(const char *path, size_t *len)
{
    char *data;
    size_t l;
    cr_assert_eq(ecc_read_file(path, 1u << 30, &data, &l), ECC_OK, "%s", ecc_last_error());
    if (len)
        *len = l;
    return data;
}

static void remove_file(const char *dir, const char *name)
{
    char *p = join(dir, name);
    cr_assert_eq(unlink(p), 0, "cannot remove %s", p);
    free(p);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = join(dir, name);
    write_file(p, text, strlen(text));
    free(p);
}

/* Edit DIR/config.json: EDIT gets the parsed object. */
static void edit_config(const char *dir, void (*edit)(cJSON *))
{
    char *p = join(dir, "config.json");
    char *text = read_all(p, NULL);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s: invalid JSON", p);
    edit(j);
    char *out = cJSON_Print(j);
    write_file(p, out, strlen(out));
    free(out);
    cJSON_Delete(j);
    free(text);
    free(p);
}

/* A safetensors file taken apart: its header as JSON and its data bytes. */
typedef struct st_parts {
    cJSON *hdr;
    uint8_t *data;
    size_t data_len;
} st_parts;

static void st_load(st_parts *s, const char *path)
{
    size_t len;
    char *raw = read_all(path, &len);
    cr_assert_geq(len, 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | (uint8_t)raw[i];
    cr_assert_leq(hl, len - 8);
    s->hdr = cJSON_ParseWithLength(raw + 8, hl);
    cr_assert(s->hdr, "%s: header is not JSON", path);
    s->data_len = len - 8 - hl;
    s->data = malloc(s->data_len + 1);
    memcpy(s->data, raw + 8 + hl, s->data_len);
    free(raw);
}

/* Write 8-byte length + header + the data (the first DATA_LEN bytes). */
static void st_save_n(const st_parts *s, const char *path, size_t data_len)
{
    char *h = cJSON_PrintUnformatted(s->hdr);
    size_t hl = strlen(h);
    uint8_t *buf = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, h, hl);
    memcpy(buf + 8 + hl, s->data, data_len);
    write_file(path, buf, 8 + hl + data_len);
    free(buf);
    free(h);
}

static void st_save(const st_parts *s, const char *path) { st_save_n(s, path, s->data_len); }

static void st_free(st_parts *s)
{
    cJSON_Delete(s->hdr);
    free(s->data);
}

static cJSON *st_tensor(const st_parts *s, const char *name)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(s->hdr, name);
    cr_assert(t, "no tensor %s in the fixture", name);
    return t;
}

static uint64_t st_off(const cJSON *t, int k)
{
    return (uint64_t)cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "data_offsets"), k)->valuedouble;
}

static void st_set_offsets(cJSON *t, uint64_t begin, uint64_t end)
{
    cJSON *o = cJSON_CreateArray();
    cJSON_AddItemToArray(o, cJSON_CreateNumber((double)begin));
    cJSON_AddItemToArray(o, cJSON_CreateNumber((double)end));
    cJSON_ReplaceItemInObjectCaseSensitive(t, "data_offsets", o);
}

/* Lay the tensors out again, in their current offset order, without gaps:
 * the data of each is taken from its current offsets. */
static void st_repack(st_parts *s)
{
    int n = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, s->hdr) n += strcmp(e->string, "__metadata__") != 0;
    cJSON **ts = calloc((size_t)n + 1, sizeof *ts);
    int k = 0;
    cJSON_ArrayForEach(e, s->hdr) if (strcmp(e->string, "__metadata__")) ts[k++] = e;
    for (int i = 1; i < n; i++) /* insertion sort by begin */
        for (int j = i; j > 0 && st_off(ts[j - 1], 0) > st_off(ts[j], 0); j--) {
            cJSON *x = ts[j];
            ts[j] = ts[j - 1];
            ts[j - 1] = x;
        }
    uint8_t *nd = malloc(s->data_len + 1);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = st_off(ts[i], 0), en = st_off(ts[i], 1);
        memcpy(nd + at, s->data + b, en - b);
        st_set_offsets(ts[i], at, at + (en - b));
        at += en - b;
    }
    free(s->data);
    s->data = nd;
    s->data_len = at;
    free(ts);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* On success stderr may hold notices ("eccolo: ..."), nothing else: no
 * error line, no sanitizer report. */
static void assert_clean_stderr(const char *err)
{
    for (const char *l = err; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        cr_assert_eq(strncmp(l, "eccolo: ", 8), 0, "unexpected stderr output:\n%s", err);
        cr_assert_neq(strncmp(l, PREFIX, strlen(PREFIX)), 0, "an error on a successful run:\n%s", err);
    }
}

/* Run; it must fail with exit 2, one stderr line "eccolo: error: ..."
 * containing WANT1 (and WANT2 when not NULL), and nothing on stdout. */
static void expect_error_env(const char *const *env, const char *const *args, const char *want1, const char *want2)
{
    char *out, *err;
    int rc = run_cli_env(&out, &err, env, args);
    cr_assert_lt(rc, 128, "eccolo crashed (signal %d); stderr:\n%s", rc - 128, err);
    cr_assert_eq(rc, 2, "exit code %d, expected 2; stderr:\n%s", rc, err);
    cr_assert_eq(strncmp(err, PREFIX, strlen(PREFIX)), 0, "stderr does not start with '" PREFIX "':\n%s", err);
    cr_assert(count_lines(err) == 1 && err[strlen(err) - 1] == '\n', "stderr must be exactly one line:\n%s", err);
    cr_assert(strstr(err, want1), "stderr lacks '%s':\n%s", want1, err);
    if (want2)
        cr_assert(strstr(err, want2), "stderr lacks '%s':\n%s", want2, err);
    cr_assert_str_empty(out, "stdout should be empty on an error, got:\n%s", out);
    free(out);
    free(err);
}

static void expect_error(const char *const *args, const char *want1, const char *want2)
{
    expect_error_env(NULL, args, want1, want2);
}

/* "1,2,...": N copies of the id ID. */
static char *ids_string(int n, int id)
{
    char *s = malloc((size_t)n * 12 + 1), *p = s;
    for (int i = 0; i < n; i++)
        p += sprintf(p, i ? ",%d" : "%d", id);
    *p = '\0';
    return s;
}

static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static int32_t *lib_tokenize(const char *model, const char *text, int *n)
{
    ecc_model *m = NULL;
    cr_assert_eq(ecc_model_open(&m, model), ECC_OK, "%s", ecc_last_error());
    int32_t *ids = NULL;
    cr_assert_eq(ecc_tokenize(m, text, strlen(text), &ids, n), ECC_OK, "%s", ecc_last_error());
    ecc_model_close(m);
    return ids;
}

static cJSON *read_json(const char *dir, const char *name)
{
    char *p = join(dir, name);
    size_t len;
    char *text = read_all(p, &len);
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert(j, "%s is not valid JSON", p);
    free(text);
    free(p);
    return j;
}

static const cJSON *item(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cr_assert(v, "run.json lacks \"%s\"", key);
    return v;
}

/* Run a successful generate with --out into a fresh directory; returns its run.json. */
static cJSON *generate_out(const char *const *args, const char *dir)
{
    char *out, *err;
    int rc = run_cli(&out, &err, args);
    cr_assert_eq(rc, 0, "exit code %d; stderr:\n%s", rc, err);
    cr_assert_str_empty(err, "--quiet --device cpu should print nothing on stderr:\n%s", err);
    free(out);
    free(err);
    return read_json(dir, "run.json");
}

/* ---- success paths --------------------------------------------------------------- */

Test(cli, version)
{
    char *out, *err;
    int rc = run_cli(&out, &err, ARGS("--version"));
    cr_assert_eq(rc, 0, "stderr:\n%s", err);
    cr_assert(strstr(out, ECCOLO_VERSION), "--version printed '%s', expected %s", out, ECCOLO_VERSION);
    cr_assert_str_eq(out, "eccolo " ECCOLO_VERSION "\n");
    cr_assert_str_empty(err);
    free(out);
    free(err);
}

Test(cli, help)
{
    char *out, *err;
    int rc = run_cli(&out, &err, ARGS("--help"));
    cr_assert_eq(rc, 0, "stderr:\n%s", err);
    cr_assert(strstr(out, "usage: eccolo") && strstr(out, "generate") && strstr(out, "info"), "%s", out);
    cr_assert_str_empty(err);
    free(out);
    free(err);
}

Test(cli, generate_help)
{
    char *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--help"));
    cr_assert_eq(rc, 0, "stderr:\n%s", err);
    cr_assert(strstr(out, "usage: eccolo generate"), "%s", out);
    cr_assert(strstr(out, "--max-new-tokens") && strstr(out, "--prompt-ids") && strstr(out, "--out"), "%s", out);
    cr_assert_str_empty(err);
    free(out);
    free(err);
}

Test(cli, info)
{
    char *out, *err;
    int rc = run_cli(&out, &err, ARGS("info"));
    cr_assert_eq(rc, 0, "stderr:\n%s", err);
    cr_assert(strstr(out, "default model"), "%s", out);
    cr_assert(strstr(out, "cuda devices:"), "%s", out);
    cr_assert(strstr(out, ECCOLO_VERSION), "%s", out);
    cr_assert_str_empty(err);
    free(out);
    free(err);
}

Test(cli, no_arguments_is_a_one_line_error)
{
    expect_error((const char *const[]){NULL}, "no command", "--help");
}

Test(cli, generate_prints_text)
{
    char *m = tiny(), *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt", "Hello world", "--max-new-tokens", "5"));
    cr_assert_eq(rc, 0, "exit code %d; stderr:\n%s", rc, err);
    cr_assert_eq(strncmp(out, "Hello world", 11), 0, "stdout: '%s'", out);
    cr_assert_gt(strlen(out), 12, "no continuation was printed: '%s'", out);
    assert_clean_stderr(err);
    free(out);
    free(err);
    free(m);
}

Test(cli, generate_out_writes_run)
{
    char *m = tiny();
    char *dir = test_tmpdir("cli-out");
    char *out_dir = join(dir, "run"); /* not there yet: --out creates it */
    cJSON *j = generate_out(ARGS("generate", "--model", m, "--prompt", "Hello world", "--max-new-tokens", "5",
                                 "--device", "cpu", "--out", out_dir, "--quiet"),
                            out_dir);
    int n_input = (int)item(j, "n_input")->valuedouble, T = (int)item(j, "n_tokens")->valuedouble;
    cr_assert_gt(n_input, 0);
    cr_assert(T > n_input && T <= n_input + 5, "n_tokens %d, n_input %d", T, n_input);
    int n_ids;
    int32_t *ids = json_int_array(item(j, "token_ids"), &n_ids);
    cr_assert_eq(n_ids, T);
    cr_assert(cJSON_IsArray(item(j, "tokens")) && cJSON_GetArraySize(item(j, "tokens")) == T);
    cr_assert(cJSON_IsArray(item(j, "partial")) && cJSON_GetArraySize(item(j, "partial")) == T);
    cr_assert(cJSON_IsString(item(j, "generated_text")));
    cr_assert_str_eq(item(j, "prompt")->valuestring, "Hello world");
    const cJSON *params = item(j, "parameters");
    cr_assert_str_eq(item(params, "mode")->valuestring, "greedy");
    cr_assert_str_eq(item(j, "device")->valuestring, "cpu");
    cr_assert(cJSON_IsObject(item(j, "timings")));
    const cJSON *tens = item(j, "tensors");
    cr_assert(cJSON_IsObject(tens));
    cr_assert(cJSON_GetObjectItemCaseSensitive(tens, "token_ids"), "tensors index lacks token_ids");
    cr_assert(cJSON_GetObjectItemCaseSensitive(tens, "token_logprobs"), "tensors index lacks token_logprobs");

    /* the prompt ids are the library's tokenization */
    int n_p;
    int32_t *p = lib_tokenize(m, "Hello world", &n_p);
    cr_assert_eq(n_p, n_input);
    cr_assert_eq(memcmp(ids, p, sizeof(int32_t) * (size_t)n_p), 0);

    char *tp = join(out_dir, "tensors.safetensors");
    ecc_st_file *f = NULL;
    cr_assert_eq(ecc_st_open(&f, tp), ECC_OK, "%s", ecc_last_error());
    const ecc_st_tensor *ti = ecc_st_find(f, "token_ids");
    cr_assert(ti, "no token_ids tensor");
    cr_assert_eq(ti->dtype, ECC_I32);
    cr_assert_eq(ti->ndim, 1);
    cr_assert_eq(ti->shape[0], T);
    cr_assert_eq(memcmp(ti->data, ids, sizeof(int32_t) * (size_t)T), 0, "token_ids differ from run.json");
    const ecc_st_tensor *lp = ecc_st_find(f, "token_logprobs");
    cr_assert(lp, "no token_logprobs tensor");
    cr_assert_eq(lp->dtype, ECC_F32);
    cr_assert_eq(lp->ndim, 1);
    cr_assert_eq(lp->shape[0], T - n_input);
    for (int i = 0; i < T - n_input; i++) {
        float v;
        memcpy(&v, lp->data + 4 * i, 4);
        cr_assert(isfinite(v) && v <= 0, "token_logprobs[%d] = %g", i, (double)v);
    }
    ecc_st_close(f);
    cr_assert_eq(count_tmp_files(out_dir), 0, "*.tmp.* files left in %s", out_dir);

    free(tp);
    free(p);
    free(ids);
    cJSON_Delete(j);
    free(out_dir);
    free(dir);
    free(m);
}

Test(cli, forced_continuation)
{
    char *m = tiny();
    char *dir = test_tmpdir("cli-forced");
    cJSON *j = generate_out(ARGS("generate", "--model", m, "--prompt", "Hello world", "--continuation", " and more",
                                 "--device", "cpu", "--out", dir, "--quiet"),
                            dir);
    cr_assert_str_eq(item(item(j, "parameters"), "mode")->valuestring, "forced");
    int n_ids, n_c, n_p;
    int32_t *ids = json_int_array(item(j, "token_ids"), &n_ids);
    int32_t *c = lib_tokenize(m, " and more", &n_c);
    int32_t *p = lib_tokenize(m, "Hello world", &n_p);
    cr_assert_eq(n_ids, n_p + n_c, "%d tokens, expected %d prompt + %d forced", n_ids, n_p, n_c);
    cr_assert_eq((int)item(j, "n_input")->valuedouble, n_p);
    cr_assert_eq(memcmp(ids, p, sizeof(int32_t) * (size_t)n_p), 0);
    cr_assert_eq(memcmp(ids + n_ids - n_c, c, sizeof(int32_t) * (size_t)n_c), 0,
                 "the run does not end with the continuation's ids");
    cr_assert_str_eq(item(j, "generated_text")->valuestring, " and more");
    free(ids);
    free(c);
    free(p);
    cJSON_Delete(j);
    free(dir);
    free(m);
}

/* Token ids of the prompt as run.json records them (no new tokens). */
static int32_t *prompt_ids_of(const char *const *args, const char *dir, int *n, char **prompt)
{
    cJSON *j = generate_out(args, dir);
    int T;
    int32_t *ids = json_int_array(item(j, "token_ids"), &T);
    *n = (int)item(j, "n_input")->valuedouble;
    cr_assert_eq(T, *n, "--max-new-tokens 0 still generated");
    *prompt = ecc_strdup(item(j, "prompt")->valuestring);
    cJSON_Delete(j);
    return ids;
}

Test(cli, prompt_escapes)
{
    char *m = tiny();
    char *dir = test_tmpdir("cli-esc");
    char *d1 = join(dir, "escaped"), *d2 = join(dir, "raw");
    int n1, n2, ne, nr;
    char *p1, *p2;
    int32_t *got = prompt_ids_of(ARGS("generate", "--model", m, "--prompt", "a\\nb", "--max-new-tokens", "0",
                                      "--device", "cpu", "--out", d1, "--quiet"),
                                 d1, &n1, &p1);
    int32_t *want = lib_tokenize(m, "a\nb", &ne);
    cr_assert_eq(n1, ne, "'a\\nb' gave %d tokens, 'a<newline>b' has %d", n1, ne);
    cr_assert_eq(memcmp(got, want, sizeof(int32_t) * (size_t)ne), 0, "--prompt 'a\\nb' is not a newline b");
    cr_assert_str_eq(p1, "a\nb");

    int32_t *got_raw = prompt_ids_of(ARGS("generate", "--model", m, "--prompt", "a\\nb", "--raw",
                                          "--max-new-tokens", "0", "--device", "cpu", "--out", d2,
                                          "--quiet"),
                                     d2, &n2, &p2);
    int32_t *want_raw = lib_tokenize(m, "a\\nb", &nr);
    cr_assert_eq(n2, nr);
    cr_assert_eq(memcmp(got_raw, want_raw, sizeof(int32_t) * (size_t)nr), 0, "--raw did not keep the backslash");
    cr_assert_str_eq(p2, "a\\nb");
    free(got), free(want), free(got_raw), free(want_raw), free(p1), free(p2);
    free(d1), free(d2), free(dir), free(m);
}

/* HF_HUB_CACHE=<tmp>/hub with models--ORG--NAME as huggingface_hub lays it
 * out: refs/main -> a commit hash, snapshots/<hash>/ holding symlinks into
 * blobs/. A second, empty snapshot makes sure refs/main is what's followed. */
static void fake_repo(const char *hub, const char *repo_dir_name, const char *ref_text)
{
    static const char *files[] = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"};
    char *src = tiny();
    char *repo = join(hub, repo_dir_name);
    char *blobs = join(repo, "blobs"), *refs = join(repo, "refs");
    char *snap = join(repo, "snapshots/0123abcd"), *other = join(repo, "snapshots/ffff0000");
    cr_assert_eq(ecc_mkdirs(blobs), ECC_OK);
    cr_assert_eq(ecc_mkdirs(refs), ECC_OK);
    cr_assert_eq(ecc_mkdirs(snap), ECC_OK);
    cr_assert_eq(ecc_mkdirs(other), ECC_OK);
    write_text(refs, "main", ref_text);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char blob_name[64], target[128];
        snprintf(blob_name, sizeof blob_name, "%08zx%032zx", i + 1, 7 * i + 3);
        char *s = join(src, files[i]), *b = join(blobs, blob_name), *l = join(snap, files[i]);
        size_t len;
        char *data = read_all(s, &len);
        write_file(b, data, len);
        snprintf(target, sizeof target, "../../blobs/%s", blob_name);
        cr_assert_eq(symlink(target, l), 0, "symlink %s", l);
        free(data), free(s), free(b), free(l);
    }
    free(src), free(repo), free(blobs), free(refs), free(snap), free(other);
}

Test(cli, hub_id_in_cache)
{
    char *dir = test_tmpdir("cli-hub");
    char *hub = join(dir, "hub");
    fake_repo(hub, "models--testorg--tiny", "0123abcd");
    char env[4200];
    snprintf(env, sizeof env, "HF_HUB_CACHE=%s", hub);
    char *out, *err;
    int rc = run_cli_env(&out, &err, ENV(env),
                         ARGS("generate", "--model", "testorg/tiny", "--prompt", "Hello world",
                              "--max-new-tokens", "3"));
    cr_assert_eq(rc, 0, "exit code %d; stderr:\n%s", rc, err);
    cr_assert_eq(strncmp(out, "Hello world", 11), 0, "stdout: '%s'", out);
    assert_clean_stderr(err);
    free(out), free(err);
    free(hub), free(dir);
}

Test(cli, hub_id_alias_org)
{
    char *dir = test_tmpdir("cli-hub");
    char *hub = join(dir, "hub");
    fake_repo(hub, "models--openai-community--tinyalias", "0123abcd\n");
    char env[4200];
    snprintf(env, sizeof env, "HF_HUB_CACHE=%s", hub);
    char *out, *err;
    int rc = run_cli_env(&out, &err, ENV(env),
                         ARGS("generate", "--model", "tinyalias", "--prompt", "Hello world", "--max-new-tokens", "3"));
    cr_assert_eq(rc, 0, "exit code %d; stderr:\n%s", rc, err);
    cr_assert_eq(strncmp(out, "Hello world", 11), 0, "stdout: '%s'", out);
    assert_clean_stderr(err);
    free(out), free(err);
    free(hub), free(dir);
}

/* ---- broken model directories --------------------------------------------------- */

Test(cli, model_dir_missing)
{
    char *dir = test_tmpdir("cli-nomodel");
    char *m = join(dir, "nope");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "no such directory", "nope");
    free(m), free(dir);
}

Test(cli, no_config_json)
{
    char *m = model_copy("cli-nocfg");
    remove_file(m, "config.json");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "no config.json", NULL);
    free(m);
}

Test(cli, no_safetensors)
{
    char *m = model_copy("cli-nost");
    remove_file(m, "model.safetensors");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "no model.safetensors", NULL);
    free(m);
}

Test(cli, truncated_safetensors)
{
    char *m = model_copy("cli-trunc");
    char *p = join(m, "model.safetensors");
    st_parts s;
    st_load(&s, p);
    st_save_n(&s, p, s.data_len / 2);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "model.safetensors", "truncated");
    st_free(&s);
    free(p), free(m);
}

Test(cli, safetensors_header_past_end)
{
    char *m = model_copy("cli-hdr");
    char *p = join(m, "model.safetensors");
    size_t len;
    char *raw = read_all(p, &len);
    uint64_t claim = len; /* more than the len - 8 bytes after the prefix */
    for (int i = 0; i < 8; i++)
        raw[i] = (char)(uint8_t)(claim >> (8 * i));
    write_file(p, raw, len);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "runs past the end", "model.safetensors");
    free(raw), free(p), free(m);
}

Test(cli, safetensors_offsets_out_of_range)
{
    char *m = model_copy("cli-range");
    char *p = join(m, "model.safetensors");
    st_parts s;
    st_load(&s, p);
    cJSON *t = st_tensor(&s, "transformer.h.0.ln_1.bias");
    uint64_t nb = st_off(t, 1) - st_off(t, 0);
    st_set_offsets(t, s.data_len, s.data_len + nb);
    st_save(&s, p);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "transformer.h.0.ln_1.bias", "spans bytes");
    st_free(&s);
    free(p), free(m);
}

Test(cli, safetensors_offsets_overlap)
{
    char *m = model_copy("cli-overlap");
    char *p = join(m, "model.safetensors");
    st_parts s;
    st_load(&s, p);
    cJSON *a = st_tensor(&s, "transformer.h.0.ln_1.bias"), *b = st_tensor(&s, "transformer.h.0.ln_1.weight");
    st_set_offsets(b, st_off(a, 0), st_off(a, 1)); /* same size: 64 F32 each */
    st_save(&s, p);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "overlaps", NULL);
    st_free(&s);
    free(p), free(m);
}

Test(cli, weight_stored_as_i32)
{
    char *m = model_copy("cli-i32");
    char *p = join(m, "model.safetensors");
    st_parts s;
    st_load(&s, p);
    cJSON *t = st_tensor(&s, "transformer.h.0.ln_1.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(t, "dtype", cJSON_CreateString("I32")); /* 4 bytes, like F32 */
    st_save(&s, p);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "ln_1.weight' is I32", "F32, F16 and BF16");
    st_free(&s);
    free(p), free(m);
}

static void set_n_positions_64(cJSON *j)
{
    cJSON_ReplaceItemInObjectCaseSensitive(j, "n_positions", cJSON_CreateNumber(64));
}

Test(cli, shape_does_not_match_config)
{
    char *m = model_copy("cli-shape");
    edit_config(m, set_n_positions_64);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "wpe.weight' has shape [128, 64]",
                 "config.json implies [64, 64]");
    free(m);
}

Test(cli, missing_tensor)
{
    char *m = model_copy("cli-missing");
    char *p = join(m, "model.safetensors");
    st_parts s;
    st_load(&s, p);
    cJSON_DeleteItemFromObjectCaseSensitive(s.hdr, "transformer.ln_f.bias");
    st_repack(&s); /* drop its bytes, close the gap */
    st_save(&s, p);
    /* the rest of the file is valid */
    ecc_st_file *f = NULL;
    cr_assert_eq(ecc_st_open(&f, p), ECC_OK, "the rewritten file should be valid: %s", ecc_last_error());
    cr_assert_null(ecc_st_find(f, "transformer.ln_f.bias"));
    ecc_st_close(f);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "'ln_f.bias' is missing", NULL);
    st_free(&s);
    free(p), free(m);
}

Test(cli, malformed_config)
{
    char *m = model_copy("cli-badcfg");
    write_text(m, "config.json", "{\"model_type\": \"gpt2\", \"n_layer\": 2,");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "config.json", "not a valid JSON");
    free(m);
}

static void drop_n_layer(cJSON *j) { cJSON_DeleteItemFromObjectCaseSensitive(j, "n_layer"); }

Test(cli, incomplete_config)
{
    char *m = model_copy("cli-nolayer");
    edit_config(m, drop_n_layer);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "\"n_layer\" is missing", NULL);
    free(m);
}

static void set_llama(cJSON *j)
{
    cJSON_ReplaceItemInObjectCaseSensitive(j, "model_type", cJSON_CreateString("llama"));
}

Test(cli, unsupported_model_type)
{
    char *m = model_copy("cli-llama");
    edit_config(m, set_llama);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "\"llama\"", "not supported");
    free(m);
}

static void bad_heads(cJSON *j) { cJSON_ReplaceItemInObjectCaseSensitive(j, "n_head", cJSON_CreateNumber(5)); }

Test(cli, config_heads_do_not_divide_width)
{
    char *m = model_copy("cli-heads");
    edit_config(m, bad_heads);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "not a multiple of n_head", NULL);
    free(m);
}

Test(cli, tokenizer_missing)
{
    char *m = model_copy("cli-notok");
    remove_file(m, "tokenizer.json");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi"), "no tokenizer found", NULL);
    free(m);
}

Test(cli, hub_id_not_in_cache)
{
    char *dir = test_tmpdir("cli-emptyhub");
    char env[4200];
    snprintf(env, sizeof env, "HF_HUB_CACHE=%s", dir);
    expect_error_env(ENV(env), ARGS("generate", "--model", "testorg/absent", "--prompt", "hi"),
                     "not in the Hugging Face cache", "huggingface-cli download testorg/absent");
    expect_error_env(ENV(env), ARGS("generate", "--model", "absent", "--prompt", "hi"), "'absent'", "cache");
    free(dir);
}

/* ---- bad prompts ------------------------------------------------------------------ */

Test(cli, prompt_longer_than_context)
{
    char *m = tiny(), *ids = ids_string(129, 464);
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", ids), "129", "128");
    free(ids), free(m);
}

Test(cli, prompt_plus_new_tokens_beyond_context)
{
    char *m = tiny(), *ids = ids_string(100, 464);
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", ids, "--max-new-tokens", "50"), "128",
                 "--max-new-tokens 28");
    free(ids), free(m);
}

Test(cli, empty_continuation)
{
    char *m = fixture_path("tiny-gpt2");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--continuation", ""), "continuation is empty",
                 NULL);
    free(m);
}

Test(cli, prompt_plus_continuation_beyond_context)
{
    char *m = tiny(), *ids = ids_string(120, 464), *cont = ids_string(10, 13);
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", ids, "--continuation-ids", cont), "130", "128");
    free(cont), free(ids), free(m);
}

Test(cli, empty_prompt)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt", ""), "prompt is empty", NULL);
    free(m);
}

Test(cli, invalid_utf8_prompt)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt", "\xff\xfe"), "--prompt", "invalid UTF-8");
    expect_error(ARGS("generate", "--model", m, "--prompt", "ok", "--continuation", "x\xc3"), "--continuation",
                 "invalid UTF-8");
    free(m);
}

Test(cli, invalid_utf8_prompt_file)
{
    char *m = tiny(), *dir = test_tmpdir("cli-pf");
    char *pf = join(dir, "prompt.txt");
    write_file(pf, "abc\xff", 4);
    expect_error(ARGS("generate", "--model", m, "--prompt-file", pf), "prompt.txt", "invalid UTF-8");
    remove_file(dir, "prompt.txt");
    expect_error(ARGS("generate", "--model", m, "--prompt-file", pf), "prompt.txt", NULL);
    free(pf), free(dir), free(m);
}

Test(cli, prompt_ids_out_of_range)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", "464,1025"), "1025", "outside the vocabulary");
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", "464,99999999999"), "--prompt-ids", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", "-1"), "--prompt-ids", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", "1,,2"), "--prompt-ids", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt-ids", "12abc"), "--prompt-ids", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--continuation-ids", "5000"), "5000",
                 "outside the vocabulary");
    free(m);
}

Test(cli, device_cuda_without_gpu)
{
    char *out, *err;
    cr_assert_eq(run_cli(&out, &err, ARGS("info")), 0, "%s", err);
    const char *c = strstr(out, "cuda devices: ");
    cr_assert(c, "%s", out);
    int n = atoi(c + strlen("cuda devices: "));
    free(out), free(err);
    if (n > 0)
        cr_skip_test("this machine has %d CUDA device(s)", n);
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--device", "cuda"), "no usable GPU", NULL);
    free(m);
}

/* ---- bad options ---------------------------------------------------------------- */

Test(cli, unknown_option)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--frobnicate"), "unknown option '--frobnicate'",
                 NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--max-new-tokensX", "3"), "unknown option", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "stray"), "'stray'", NULL);
    free(m);
}

Test(cli, missing_option_value)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt"), "--prompt needs a value", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--max-new-tokens"), "--max-new-tokens needs a value",
                 NULL);
    expect_error(ARGS("generate", "--model"), "--model needs a value", NULL);
    free(m);
}

Test(cli, bad_numbers)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--max-new-tokens", "-1"), "--max-new-tokens",
                 "'-1'");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--max-new-tokens", "ten"), "--max-new-tokens",
                 "'ten'");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--max-new-tokens", "5x"), "--max-new-tokens",
                 "'5x'");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--sample", "--top-p", "2"), "--top-p", "'2'");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--sample", "--temperature", "0"), "--temperature",
                 "'0'");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--sample", "--temperature", "nan"),
                 "--temperature", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--sample", "--top-k", "-3"), "--top-k", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--sample", "--seed", "-5"), "--seed", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--threads", "0"), "--threads", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--device", "tpu"), "--device", "'tpu'");
    free(m);
}

Test(cli, conflicting_options)
{
    char *m = tiny();
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--greedy", "--sample"), "--greedy", "--sample");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--temperature", "0.7"), "--sample", NULL);
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--prompt-ids", "1,2"), "only one of", "--prompt");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--continuation", "a", "--continuation-ids", "1"),
                 "only one of", "--continuation");
    expect_error(ARGS("generate", "--model", m, "--prompt", "hi", "--continuation", "a", "--sample"),
                 "--continuation", "--sample");
    expect_error(ARGS("generate", "--model", m), "no prompt", NULL);
    free(m);
}

Test(cli, unknown_subcommand)
{
    expect_error(ARGS("frobnicate"), "unknown command 'frobnicate'", NULL);
    expect_error(ARGS("info", "extra"), "info takes no arguments", NULL);
}

Test(cli, out_is_a_file)
{
    char *m = tiny(), *dir = test_tmpdir("cli-outfile");
    char *f = join(dir, "file");
    write_file(f, "x", 1);
    char *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt", "hi", "--max-new-tokens", "1", "--out", f,
                                      "--quiet"));
    cr_assert_eq(rc, 2, "exit code %d; stderr:\n%s", rc, err);
    cr_assert_eq(strncmp(err, PREFIX, strlen(PREFIX)), 0, "%s", err);
    cr_assert_eq(count_lines(err), 1, "stderr must be one line:\n%s", err);
    cr_assert(strstr(err, "not a directory"), "%s", err);
    cr_assert_eq(count_tmp_files(dir), 0);
    free(out), free(err), free(f), free(dir), free(m);
}
