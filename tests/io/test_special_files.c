/* Special files never hang eccolo (issue 14). Every input eccolo reads — a
 * checkpoint (single file, shard, index), config.json, the tokenizer files, a
 * Hugging Face cache's refs/main, a prompt file, a prompts JSONL, a run's
 * run.json / tensors.safetensors / nmf.safetensors, a batch manifest, a Slurm
 * jobs file — is replaced by a FIFO with no writer, a socket and a character
 * device (/dev/zero), and the command must end within the time limit with
 * exit 2 and one line naming the file and what it is. Before the shared
 * opener (ecc_open_input) every FIFO case blocked forever in open(): here the
 * command is killed after the limit and the test fails. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Generous for the sanitizer build; a blocked open never ends. */
#define LIMIT_S 30.0

typedef enum { FIFO, SOCK, DEV } kind;
static const char *const k_kind_word[] = {"FIFO", "socket", "character device"};

/* Replace PATH by a special file of kind K. */
static void make_special(const char *path, kind k)
{
    unlink(path);
    if (k == FIFO) {
        cr_assert_eq(mkfifo(path, 0644), 0, "mkfifo %s", path);
    } else if (k == DEV) {
        cr_assert_eq(symlink("/dev/zero", path), 0, "symlink %s", path);
    } else {
        /* bind by a relative name: sun_path holds only 108 bytes */
        char *dir = ecc_strdup(path);
        char *slash = strrchr(dir, '/');
        *slash = '\0';
        int here = open(".", O_RDONLY | O_DIRECTORY);
        cr_assert(here >= 0 && chdir(dir) == 0, "chdir %s", dir);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof a.sun_path, "%s", slash + 1);
        cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind %s", path);
        close(fd); /* the socket file stays */
        cr_assert_eq(fchdir(here), 0);
        close(here);
        free(dir);
    }
}

/* Run; it must end in time with exit 2 and one line that names WHO and says
 * what kind of file it is. */
static void expect_refused_env(const char *const *env, const char *const *args, const char *who, kind k)
{
    char *err = expect_cli_error(env, args, LIMIT_S, who, k_kind_word[k]);
    cr_assert(strstr(err, "not a regular file"), "%s", err);
    free(err);
}

static void expect_refused(const char *const *args, const char *who, kind k)
{
    expect_refused_env(NULL, args, who, k);
}

/* FILE of a copy of FIXTURE replaced by a special file; generate must refuse it. */
static void model_file(const char *fixture, const char *file, kind k)
{
    char *m = fixture_copy(fixture, "special-model"), *p = ecc_path_join(m, file);
    make_special(p, k);
    expect_refused(ARGS("generate", "--model", m, "--prompt", "Hi", "--max-new-tokens", "1", "--device", "cpu"),
                   file, k);
    free(p);
    free(m);
}

Test(special, checkpoint_file) { for (kind k = FIFO; k <= DEV; k++) model_file("tiny-gpt2", "model.safetensors", k); }
Test(special, checkpoint_shard)
{
    for (kind k = FIFO; k <= DEV; k++)
        model_file("tiny-gpt2-sharded", "model-00002-of-00002.safetensors", k);
}
Test(special, checkpoint_index)
{
    for (kind k = FIFO; k <= DEV; k++)
        model_file("tiny-gpt2-sharded", "model.safetensors.index.json", k);
}
Test(special, config_json) { for (kind k = FIFO; k <= DEV; k++) model_file("tiny-gpt2", "config.json", k); }
Test(special, tokenizer_json) { for (kind k = FIFO; k <= DEV; k++) model_file("tiny-gpt2", "tokenizer.json", k); }
Test(special, vocab_and_merges)
{
    for (kind k = FIFO; k <= DEV; k++) {
        model_file("tiny-gpt2-f16", "vocab.json", k);
        model_file("tiny-gpt2-f16", "merges.txt", k);
    }
}

/* models--acme--tiny/{refs/main, snapshots/abc/...} with refs/main special. */
Test(special, hub_refs_main)
{
    for (kind k = FIFO; k <= DEV; k++) {
        char *root = test_tmpdir("special-hub"), *repo = ecc_path_join(root, "models--acme--tiny");
        char *refs = ecc_path_join(repo, "refs"), *snap = ecc_path_join(repo, "snapshots/abc");
        char *src = fixture_path("tiny-gpt2"), *main_ref = ecc_path_join(refs, "main");
        cr_assert_eq(ecc_mkdirs(refs), ECC_OK);
        copy_dir(src, snap);
        make_special(main_ref, k);
        char *env = fmt("HF_HUB_CACHE=%s", root);
        expect_refused_env((const char *const[]){env, NULL},
                           ARGS("generate", "--model", "acme/tiny", "--prompt", "Hi", "--max-new-tokens", "1",
                                "--device", "cpu"),
                           "refs/main", k);
        free(env), free(main_ref), free(src), free(snap), free(refs), free(repo), free(root);
    }
}

Test(special, prompt_file)
{
    for (kind k = FIFO; k <= DEV; k++) {
        char *dir = test_tmpdir("special-prompt"), *p = ecc_path_join(dir, "prompt.txt"), *m = fixture_path("tiny-gpt2");
        make_special(p, k);
        expect_refused(ARGS("generate", "--model", m, "--prompt-file", p, "--max-new-tokens", "1", "--device", "cpu"),
                       "prompt.txt", k);
        free(m), free(p), free(dir);
    }
}

Test(special, batch_prompts)
{
    for (kind k = FIFO; k <= DEV; k++) {
        char *dir = test_tmpdir("special-prompts"), *p = ecc_path_join(dir, "prompts.jsonl");
        char *out = ecc_path_join(dir, "out"), *m = fixture_path("tiny-gpt2");
        make_special(p, k);
        expect_refused(ARGS("batch", "--model", m, "--prompts", p, "--out", out, "--max-new-tokens", "1", "--device",
                            "cpu", "--quiet"),
                       "prompts.jsonl", k);
        free(m), free(out), free(p), free(dir);
    }
}

/* A finished run (generate --activations --out DIR), in a fresh directory. */
static char *make_run(const char *tag)
{
    char *dir = test_tmpdir(tag), *run = ecc_path_join(dir, "run"), *m = fixture_path("tiny-gpt2");
    char *out, *err;
    int rc = run_cli(&out, &err, ARGS("generate", "--model", m, "--prompt", "Hello world", "--max-new-tokens", "3",
                                      "--activations", "--device", "cpu", "--quiet", "--out", run));
    cr_assert_eq(rc, 0, "generate failed: %s", err);
    free(out), free(err), free(m), free(dir);
    return run;
}

Test(special, run_files)
{
    static const char *const files[] = {"run.json", "tensors.safetensors"};
    for (int f = 0; f < 2; f++)
        for (kind k = FIFO; k <= DEV; k++) {
            char *run = make_run("special-run"), *p = ecc_path_join(run, files[f]);
            make_special(p, k);
            expect_refused(ARGS("report", run, "--quiet"), files[f], k);
            expect_refused(ARGS("nmf", run, "--components", "2", "--device", "cpu"), files[f], k);
            free(p), free(run);
        }
}

Test(special, nmf_file_for_report)
{
    for (kind k = FIFO; k <= DEV; k++) {
        char *run = make_run("special-nmf"), *p = ecc_path_join(run, "nmf.safetensors");
        make_special(p, k);
        expect_refused(ARGS("report", run, "--quiet"), "nmf.safetensors", k);
        free(p), free(run);
    }
}

Test(special, batch_manifest)
{
    for (kind k = FIFO; k <= DEV; k++) {
        char *dir = test_tmpdir("special-manifest"), *p = ecc_path_join(dir, "prompts.jsonl");
        char *out = ecc_path_join(dir, "out"), *man = ecc_path_join(out, "manifest.jsonl"), *m = fixture_path("tiny-gpt2");
        const char *line = "{\"id\": \"a\", \"prompt\": \"Hello\"}\n";
        write_file(p, line, strlen(line));
        cr_assert_eq(ecc_mkdirs(out), ECC_OK);
        make_special(man, k);
        expect_refused(ARGS("batch", "--model", m, "--prompts", p, "--out", out, "--max-new-tokens", "1", "--device",
                            "cpu", "--quiet"),
                       "manifest.jsonl", k);
        expect_refused(ARGS("nmf", out, "--components", "2", "--device", "cpu"), "manifest.jsonl", k);
        free(m), free(man), free(out), free(p), free(dir);
    }
}

Test(special, slurm_jobs_file)
{
    for (kind k = FIFO; k <= DEV; k++) {
        char *dir = test_tmpdir("special-jobs"), *sd = ecc_path_join(dir, "slurm"), *p = ecc_path_join(sd, "jobs.json");
        cr_assert_eq(ecc_mkdirs(sd), ECC_OK);
        make_special(p, k);
        expect_refused(ARGS("status", dir), "jobs.json", k);
        free(p), free(sd), free(dir);
    }
}

/* The library entry points themselves, without the CLI: a FIFO must come back
 * at once (the test would hang otherwise, and Criterion's timeout fails it). */
Test(special, library_readers, .timeout = 60)
{
    char *dir = test_tmpdir("special-lib"), *p = ecc_path_join(dir, "fifo");
    make_special(p, FIFO);
    char *data;
    size_t len;
    cr_assert_eq(ecc_read_file(p, 1 << 20, &data, &len), ECC_ERR_IO);
    cr_assert(strstr(ecc_last_error(), "FIFO"), "%s", ecc_last_error());
    int fd;
    uint64_t size;
    cr_assert_eq(ecc_open_input(p, &fd, &size), ECC_ERR_IO);
    cr_assert_eq(fd, -1);
    /* a regular file opens, with its size, and reads back */
    char *q = ecc_path_join(dir, "regular");
    write_file(q, "abc", 3);
    cr_assert_eq(ecc_open_input(q, &fd, &size), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(size, 3);
    close(fd);
    cr_assert_eq(ecc_read_file(q, 16, &data, &len), ECC_OK);
    cr_assert(len == 3 && memcmp(data, "abc", 4) == 0);
    free(data);
    cr_assert_eq(ecc_read_file(q, 2, &data, &len), ECC_ERR_FORMAT, "a file over the limit is refused");
    free(q), free(p), free(dir);
}
