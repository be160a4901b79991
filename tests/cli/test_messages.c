/* Messages (issue 14): one line, always; control characters and bytes from
 * files (a dtype, a merges line, a tensor name, a model_type, a path) reach
 * the terminal escaped as \xNN, never raw (an ESC sequence could move the
 * cursor, retitle the terminal or ring the bell). The "no usable GPU" notice
 * only when a GPU is present but unusable: without any GPU, --device auto
 * says nothing, and eccolo info says "no GPU". --quiet silences every notice
 * on every command. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "eccolo.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* One line (expect_cli_error), every byte of it printable ASCII or part of a
 * valid UTF-8 character. */
static void expect_escaped(const char *const *args, const char *want1, const char *want2)
{
    char *err = expect_cli_error(NULL, args, 120, want1, want2);
    for (const unsigned char *p = (const unsigned char *)err; *p; p++)
        cr_assert((*p >= 0x20 && *p != 0x7F) || (*p == '\n' && !p[1]), "byte 0x%02x at %td reached the terminal: %s",
                  *p, (const char *)p - err, err);
    cr_assert(ecc_utf8_valid(err, strlen(err)), "invalid UTF-8 reached the terminal: %s", err);
    free(err);
}

/* ---- escaping ------------------------------------------------------------------- */

Test(messages, escape_text)
{
    char out[64];
    ecc_escape_text(out, sizeof out, "a\x1b[31mb\x07", 8);
    cr_assert_str_eq(out, "a\\x1b[31mb\\x07");
    ecc_escape_text(out, sizeof out, "line\nnext\ttab\x7f", 14);
    cr_assert_str_eq(out, "line\\x0anext\\x09tab\\x7f");
    ecc_escape_text(out, sizeof out, "caf\xc3\xa9 \xe4\xb8\xad", 9); /* valid UTF-8 is kept */
    cr_assert_str_eq(out, "caf\xc3\xa9 \xe4\xb8\xad");
    ecc_escape_text(out, sizeof out, "\xff\xc3(\xed\xa0\x80", 6); /* invalid, truncated, a surrogate */
    cr_assert_str_eq(out, "\\xff\\xc3(\\xed\\xa0\\x80");
    ecc_escape_text(out, sizeof out, "x\0y", 3);
    cr_assert_str_eq(out, "x\\x00y");
    /* cut before an escape or a character, never inside one */
    cr_assert_eq(ecc_escape_text(out, 6, "ab\x1b", 3), 2);
    cr_assert_str_eq(out, "ab");
    cr_assert_eq(ecc_escape_text(out, 4, "ab\xc3\xa9", 4), 2);
    cr_assert_eq(ecc_escape_text(out, 5, "ab\xc3\xa9", 4), 4);
    /* ecc_fail escapes what it formats */
    ecc_fail(ECC_ERR_FORMAT, "dtype '%s'", "F\x1b]0;pwned\x07");
    cr_assert_str_eq(ecc_last_error(), "dtype 'F\\x1b]0;pwned\\x07'");
}

Test(messages, model_type_from_config)
{
    char *m = fixture_copy("tiny-gpt2", "msg-type");
    config_set(m, "model_type", cJSON_CreateString("llama\x1b[2J\x07"));
    expect_escaped(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "llama\\x1b[2J\\x07",
                   "not supported");
    free(m);
}

/* Rewrite a safetensors file with the header edited by EDIT (tensor data kept). */
static void edit_header(const char *path, void (*edit)(cJSON *))
{
    size_t len;
    char *raw = slurp(path);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    fclose(f);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | (uint8_t)raw[i];
    cJSON *h = cJSON_ParseWithLength(raw + 8, hl);
    cr_assert(h);
    edit(h);
    char *hs = cJSON_PrintUnformatted(h);
    size_t nl = strlen(hs), data = len - 8 - hl;
    char *buf = malloc(8 + nl + data);
    for (int i = 0; i < 8; i++)
        buf[i] = (char)((uint64_t)nl >> (8 * i));
    memcpy(buf + 8, hs, nl);
    memcpy(buf + 8 + nl, raw + 8 + hl, data);
    write_file(path, buf, 8 + nl + data);
    free(buf), free(hs), cJSON_Delete(h), free(raw);
}

static void evil_dtype(cJSON *h)
{
    cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "transformer.wpe.weight");
    cJSON_ReplaceItemInObjectCaseSensitive(t, "dtype", cJSON_CreateString("F\x1b]0;pwned\x07"));
}

Test(messages, dtype_from_safetensors)
{
    char *m = fixture_copy("tiny-gpt2", "msg-dtype"), *p = ecc_path_join(m, "model.safetensors");
    edit_header(p, evil_dtype);
    expect_escaped(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "F\\x1b]0;pwned\\x07",
                   "unknown dtype");
    free(p), free(m);
}

/* A tensor of a layer past n_layer, whose name holds an ESC sequence and a
 * byte that is not UTF-8: named in the error, escaped. */
static void evil_name(cJSON *h)
{
    cJSON *t = cJSON_DetachItemFromObjectCaseSensitive(h, "transformer.h.1.ln_1.weight");
    cJSON_AddItemToObject(h, "transformer.h.9.\x1b[31mred\xff", t);
}

Test(messages, tensor_name_from_safetensors)
{
    char *m = fixture_copy("tiny-gpt2", "msg-name"), *p = ecc_path_join(m, "model.safetensors");
    edit_header(p, evil_name);
    expect_escaped(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"),
                   "h.9.\\x1b[31mred\\xff", "n_layer");
    free(p), free(m);
}

Test(messages, merges_line)
{
    char *m = fixture_copy("tiny-gpt2-f16", "msg-merges"), *p = ecc_path_join(m, "merges.txt");
    char *text = slurp(p), *bad = fmt("%sab\x1b[2Jc\x07\n", text);
    write_file(p, bad, strlen(bad));
    expect_escaped(ARGS("generate", "--model", m, "--prompt", "Hi", "--device", "cpu"), "ab\\x1b[2Jc\\x07",
                   "merges.txt line");
    free(bad), free(text), free(p), free(m);
}

/* A path from the command line, with a newline and a raw byte: still one line. */
Test(messages, path_with_newline_and_raw_byte)
{
    char *m = fixture_path("tiny-gpt2");
    expect_escaped(ARGS("generate", "--model", m, "--prompt-file", "/nonexistent/a\nb\xfe", "--device", "cpu"),
                   "a\\x0ab\\xfe", "cannot open");
    free(m);
}

/* ---- the GPU notice --------------------------------------------------------------------- */

static int has_nvidia_nodes(void)
{
    DIR *d = opendir("/dev");
    int found = 0;
    struct dirent *e;
    while (d && !found && (e = readdir(d)))
        found = strncmp(e->d_name, "nvidia", 6) == 0;
    if (d)
        closedir(d);
    return found;
}

/* No GPU here: --device auto (the default) runs on the CPU and says nothing. */
Test(messages, no_gpu_no_notice)
{
    if (has_nvidia_nodes())
        cr_skip_test("this machine has /dev/nvidia*: the no-GPU case cannot be checked here");
    char *m = fixture_path("tiny-gpt2"), *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt", "Hi", "--max-new-tokens", "2"));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_empty(err, "a notice without any GPU:\n%s", err);
    free(out), free(err);
    rc = run_cli(&out, &err, ARGS("info"));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "cuda devices: 0 (no GPU"), "%s", out);
    free(out), free(err), free(m);
}

/* The probe itself, with a fake /dev: an NVIDIA node makes a GPU present
 * (unusable by a build without CUDA), none makes it absent. */
Test(messages, gpu_probe_tells_absent_from_unusable)
{
    char *dir = test_tmpdir("msg-dev"), why[256];
    int absent = -1;
    cr_assert_eq(ecc_gpu_probe_in(dir, why, sizeof why, &absent), 0);
    cr_assert_eq(absent, 1, "an empty /dev: no GPU (%s)", why);
    if (strstr(ecc_build_info(), "CPU only")) {
        char *node = ecc_path_join(dir, "nvidia0");
        write_file(node, "", 0);
        cr_assert_eq(ecc_gpu_probe_in(dir, why, sizeof why, &absent), 0);
        cr_assert_eq(absent, 0, "nvidia0 in /dev and a build without CUDA: present but unusable");
        cr_assert(strstr(why, "without CUDA"), "%s", why);
        free(node);
    }
    free(dir);
}

/* ---- --quiet on every command ------------------------------------------------------------- */

static void expect_quiet(const char *const *args, int stdout_too)
{
    char *out, *err;
    int rc = run_cli(&out, &err, args);
    cr_assert_eq(rc, 0, "%s: exit %d\n%s", args[0], rc, err);
    cr_assert_str_empty(err, "%s --quiet wrote on stderr:\n%s", args[0], err);
    if (stdout_too)
        cr_assert_str_empty(out, "%s --quiet wrote on stdout:\n%s", args[0], out);
    free(out), free(err);
}

Test(messages, quiet_everywhere)
{
    char *m = fixture_path("tiny-gpt2"), *dir = test_tmpdir("msg-quiet"), *run = ecc_path_join(dir, "run");
    char *p = ecc_path_join(dir, "p.jsonl"), *b = ecc_path_join(dir, "batch");
    const char *line = "{\"id\": \"a\", \"prompt\": \"Hello\"}\n";
    write_file(p, line, strlen(line));
    expect_quiet(ARGS("generate", "--model", m, "--prompt", "Hi", "--max-new-tokens", "3", "--activations", "--out",
                      run, "--nmf", "2", "--html", "--quiet"),
                 0);
    expect_quiet(ARGS("nmf", run, "--components", "2", "--quiet"), 1);
    expect_quiet(ARGS("report", run, "--quiet"), 1);
    expect_quiet(ARGS("batch", "--model", m, "--prompts", p, "--out", b, "--max-new-tokens", "2", "--quiet"), 1);
    char *b2 = ecc_path_join(dir, "batch2"), *out, *err;
    int rc = run_cli(&out, &err, ARGS("submit", "--shards", "2", "--dry-run", "--quiet", "--", "--prompts", p, "--out",
                                      b2));
    cr_assert_eq(rc, 0, "submit --quiet: exit %d\n%s", rc, err);
    cr_assert_str_empty(err, "%s", err);
    cr_assert(strstr(out, "#SBATCH --array=0-1"), "--dry-run still prints the script:\n%s", out);
    free(out), free(err);
    /* status needs a submitted batch; --quiet is known to it all the same */
    rc = run_cli(&out, &err, ARGS("status", b, "--quiet"));
    cr_assert(!strstr(err, "unknown option"), "%s", err);
    free(out), free(err), free(b2);
    free(b), free(p), free(run), free(dir), free(m);
}
