/* eccolo batch when things go wrong around it (issue 14): two processes on one
 * output directory, a manifest torn by a kill or by a full disk, work that
 * changed since it was done, a manifest whose ids would escape the directory,
 * prompts lines whose fallback ids would collide with real ids, and NUL
 * characters in prompts. Each test failed on the code before the fix. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "jobs/batch_dir.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static char *write_prompts(const char *dir, const char *text, size_t len)
{
    char *p = ecc_path_join(dir, "prompts.jsonl");
    write_file(p, text, len);
    return p;
}

/* eccolo batch with the options every test here uses, and up to two more arguments (or NULL). */
static int batch(char **err, const char *prompts, const char *out, const char *extra1, const char *extra2)
{
    char *m = fixture_path("tiny-gpt2");
    const char *argv[16] = {"batch", "--model", m, "--prompts", prompts, "--out", out, "--max-new-tokens", "3",
                            "--activations", "--batch-size", "2", "--quiet"};
    int n = 13;
    if (extra1)
        argv[n++] = extra1;
    if (extra2)
        argv[n++] = extra2;
    argv[n] = NULL;
    int rc = run_cli(NULL, err, argv);
    free(m);
    return rc;
}

/* A fresh directory DIR with a batch of one prompt (p1) done in DIR/out. */
static void batch_of_p1(const char *tag, char **dir, char **out, char **prompts)
{
    const char *one = "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n";
    char *err;
    *dir = test_tmpdir(tag);
    *out = ecc_path_join(*dir, "out");
    *prompts = write_prompts(*dir, one, strlen(one));
    cr_assert_eq(batch(&err, *prompts, *out, NULL, NULL), 0, "%s", err);
    free(err);
}

/* Start eccolo batch in the background; ECCOLO_TEST_SLOW_WRITE=slow_ms makes
 * each run's write last that long (host/io/run_writer.c). */
static pid_t spawn_batch(const char *prompts, const char *out, const char *shard, const char *slow_ms)
{
    char *m = fixture_path("tiny-gpt2");
    const char *bin = getenv("ECCOLO_BIN");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        setenv("ECCOLO_TEST_SLOW_WRITE", slow_ms, 1);
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execl(bin, bin, "batch", "--model", m, "--prompts", prompts, "--out", out, "--shard", shard, "--batch-size",
              "1", "--max-new-tokens", "3", "--threads", "1", "--quiet", (char *)NULL);
        _exit(127);
    }
    free(m);
    return pid;
}

static int wait_exit(pid_t pid)
{
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The first entry of dir whose name starts with prefix and that holds a file
 * named inner (NULL: any), malloc'd; or NULL. */
static char *find_entry(const char *dir, const char *prefix, const char *inner)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char *found = NULL;
    while (d && !found && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            char *p = ecc_path_join(dir, e->d_name);
            if (!inner || ecc_file_exists_in(p, inner))
                found = p;
            else
                free(p);
        }
    if (d)
        closedir(d);
    return found;
}

/* Wait (up to 60 s) until a run is being written: a .tmp-<prefix> directory with its tensors. */
static void wait_for_tmp(const char *out, const char *prefix)
{
    char *runs = ecc_path_join(out, "runs"), *p = NULL;
    for (int t = 0; t < 6000 && !(p = find_entry(runs, prefix, "tensors.safetensors")); t++)
        usleep(10000);
    cr_assert(p, "no %s/%s* being written after 60 s", runs, prefix);
    free(p);
    free(runs);
}

/* Records of id in OUT/manifest.jsonl; every line must be a JSON object. */
static void count_records(const char *out, const char *id, int *done, int *failed)
{
    char *path = ecc_path_join(out, "manifest.jsonl"), *data = slurp(path);
    *done = *failed = 0;
    int line = 0;
    for (char *at = data, *nl; *at; at = nl + 1) {
        nl = strchr(at, '\n');
        cr_assert(nl, "%s: the last line has no newline", path);
        line++;
        cJSON *j = cJSON_ParseWithLength(at, (size_t)(nl - at));
        cr_assert(cJSON_IsObject(j), "%s line %d is not a JSON object: %.*s", path, line, (int)(nl - at), at);
        const cJSON *i = cJSON_GetObjectItemCaseSensitive(j, "id"), *s = cJSON_GetObjectItemCaseSensitive(j, "status");
        if (cJSON_IsString(i) && !strcmp(i->valuestring, id)) {
            *done += !strcmp(s->valuestring, "done");
            *failed += !strcmp(s->valuestring, "failed");
        }
        cJSON_Delete(j);
    }
    free(data);
    free(path);
}

static void assert_no_temporaries(const char *out)
{
    char *runs = ecc_path_join(out, "runs"), *t = find_entry(runs, ".tmp-", NULL), *o = find_entry(runs, ".old-", NULL);
    cr_assert(!t && !o, "left behind: %s", t ? t : o);
    free(runs);
}

/* Before: the second process removed the first one's live temporaries and
 * computed every id again (two records per id, or a failed rename). */
Test(batch_safety, the_same_command_twice_on_one_directory_computes_each_id_once, .timeout = 240)
{
    char *dir = test_tmpdir("batchtwice"), *out = ecc_path_join(dir, "out");
    char text[1024];
    size_t len = 0;
    for (int i = 0; i < 8; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "{\"id\": \"c%d\", \"prompt\": \"Prompt %d says\"}\n", i,
                                i);
    char *prompts = write_prompts(dir, text, len);
    pid_t a = spawn_batch(prompts, out, "0/1", "300");
    wait_for_tmp(out, ".tmp-c"); /* a is writing its first run */
    pid_t b = spawn_batch(prompts, out, "0/1", "300");
    int ra = wait_exit(a), rb = wait_exit(b);
    cr_assert(ra == 0 && rb == 0, "exit codes %d and %d", ra, rb);
    for (int i = 0; i < 8; i++) {
        char id[8];
        snprintf(id, sizeof id, "c%d", i);
        int done, failed;
        count_records(out, id, &done, &failed);
        cr_assert(done == 1 && failed == 0, "%s: %d done and %d failed records (computed twice?)", id, done, failed);
        char *rj = fmt("%s/runs/%s/run.json", out, id);
        cr_assert(ecc_file_exists(rj), "%s missing", rj);
        free(rj);
    }
    assert_no_temporaries(out);
    free(dir), free(out), free(prompts);
}

/* Before: the stale-temporary cleanup of id X removed every .tmp-X-*, among
 * them another shard's live .tmp-X-2-<pid>, whose run then failed. */
Test(batch_safety, a_shard_never_removes_another_shards_live_temporary, .timeout = 240)
{
    char x[8] = "", x2[16];
    for (char c = 'a'; c <= 'z' && !x[0]; c++) { /* two ids, one the prefix of the other, in different shards */
        char id[8] = {c, 0}, id2[16];
        snprintf(id2, sizeof id2, "%s-2", id);
        if (ecc_batch_shard_of(id, 2) != ecc_batch_shard_of(id2, 2))
            memcpy(x, id, 2), memcpy(x2, id2, strlen(id2) + 1);
    }
    cr_assert(x[0]);
    char *dir = test_tmpdir("batchprefix"), *out = ecc_path_join(dir, "out");
    char *text = fmt("{\"id\": \"%s\", \"prompt\": \"Hello world\"}\n{\"id\": \"%s\", \"prompt\": \"Hello there\"}\n",
                     x, x2);
    char *prompts = write_prompts(dir, text, strlen(text));
    char sh2[8], sh1[8], *tmp_prefix = fmt(".tmp-%s-", x2), *err;
    snprintf(sh2, sizeof sh2, "%d/2", ecc_batch_shard_of(x2, 2));
    snprintf(sh1, sizeof sh1, "%d/2", ecc_batch_shard_of(x, 2));
    pid_t slow = spawn_batch(prompts, out, sh2, "3000");
    wait_for_tmp(out, tmp_prefix); /* the shard of x-2 is writing it, for 3 s */
    char *m = fixture_path("tiny-gpt2");
    int rc = run_cli(NULL, &err, ARGS("batch", "--model", m, "--prompts", prompts, "--out", out, "--shard", sh1,
                                      "--max-new-tokens", "3", "--quiet"));
    cr_assert_eq(rc, 0, "shard of %s: %s", x, err);
    int rs = wait_exit(slow);
    cr_assert_eq(rs, 0, "the shard of %s exited with %d: its temporary was removed under it", x2, rs);
    int done, failed;
    count_records(out, x2, &done, &failed);
    cr_assert(done == 1 && failed == 0, "%s: %d done, %d failed", x2, done, failed);
    count_records(out, x, &done, &failed);
    cr_assert(done == 1 && failed == 0, "%s: %d done, %d failed", x, done, failed);
    assert_no_temporaries(out);
    free(m), free(err), free(tmp_prefix), free(text), free(dir), free(out), free(prompts);
}

/* The lock itself, without timing: while this process holds the lock of p1,
 * a batch leaves p1 (and the temporary of a dead writer of p1) alone; once
 * released, the next run does p1 and removes that temporary. */
Test(batch_safety, an_id_locked_by_a_live_process_is_left_to_it, .timeout = 120)
{
    char *dir = test_tmpdir("batchlocked"), *out = ecc_path_join(dir, "out"), *err, *log;
    const char *text = "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n{\"id\": \"p2\", \"prompt\": \"The quick\"}\n";
    char *prompts = write_prompts(dir, text, strlen(text));
    pid_t dead = fork(); /* a pid that no longer runs */
    cr_assert(dead >= 0);
    if (dead == 0)
        _exit(0);
    wait_exit(dead);
    char *tmp = fmt("%s/runs/.tmp-p1-%ld", out, (long)dead), *tmp2 = fmt("%s/runs/.tmp-p2-%ld", out, (long)dead);
    cr_assert_eq(ecc_mkdirs(tmp), ECC_OK);
    cr_assert_eq(ecc_mkdirs(tmp2), ECC_OK);
    ecc_batch_locks l;
    cr_assert_eq(ecc_batch_locks_open(&l, out), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_batch_lock(&l, "p1"), 1);
    char *m = fixture_path("tiny-gpt2");
    int rc = run_cli(NULL, &log, ARGS("batch", "--model", m, "--prompts", prompts, "--out", out, "--max-new-tokens",
                                      "3", "--activations", "--batch-size", "2"));
    cr_assert_eq(rc, 0, "%s", log);
    cr_assert(strstr(log, "1 left to another process"), "%s", log);
    int done, failed;
    count_records(out, "p1", &done, &failed);
    cr_assert(done == 0 && failed == 0, "p1, locked by this test, has %d done and %d failed records", done, failed);
    count_records(out, "p2", &done, &failed);
    cr_assert(done == 1, "p2: %d done", done);
    cr_assert(ecc_dir_exists(tmp), "the temporary of p1 was removed while p1 was locked");
    cr_assert(!ecc_dir_exists(tmp2), "the temporary of p2 (dead writer, free lock) is still there");
    ecc_batch_unlock(&l, "p1");
    cr_assert_eq(batch(&err, prompts, out, NULL, NULL), 0, "%s", err);
    count_records(out, "p1", &done, &failed);
    cr_assert(done == 1 && failed == 0, "p1: %d done, %d failed", done, failed);
    assert_no_temporaries(out);
    ecc_batch_locks_close(&l);
    free(m), free(log), free(err), free(tmp), free(tmp2), free(dir), free(out), free(prompts);
}

/* Before: the next record was glued onto the torn line, and its id was lost. */
Test(batch_safety, a_torn_last_manifest_line_is_cut_before_the_next_record, .timeout = 120)
{
    char *dir, *out, *prompts, *err;
    batch_of_p1("batchtorn", &dir, &out, &prompts);
    char *man = ecc_path_join(out, "manifest.jsonl");
    FILE *f = fopen(man, "a");
    cr_assert(f);
    fputs("{\"id\":\"p2\",\"status\":\"do", f); /* killed in the middle of an append */
    fclose(f);
    const char *three = "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n{\"id\": \"p2\", \"prompt\": \"The quick\"}\n"
                        "{\"id\": \"p3\", \"prompt\": \"brown fox\"}\n";
    free(prompts);
    prompts = write_prompts(dir, three, strlen(three));
    cr_assert_eq(batch(&err, prompts, out, NULL, NULL), 0, "%s", err);
    static const char *ids[] = {"p1", "p2", "p3"};
    for (int i = 0; i < 3; i++) {
        int done, failed;
        count_records(out, ids[i], &done, &failed); /* also: every line is a JSON object */
        cr_assert(done == 1 && failed == 0, "%s: %d done, %d failed records", ids[i], done, failed);
    }
    char **done_ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&done_ids, &n, out), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(n, 3, "%d ids done", n);
    for (int i = 0; i < n; i++)
        free(done_ids[i]);
    free(done_ids), free(man), free(err), free(dir), free(out), free(prompts);
}

/* Before: a short write left half a record (the error was reported, but the
 * torn line stayed). RLIMIT_FSIZE makes the append fail as a full disk would:
 * the manifest is first padded (with a report line, which changes no state)
 * past the size of any run file, so that p2's run is written and its record
 * is what fails. */
Test(batch_safety, a_failed_append_is_an_error_and_leaves_no_partial_record, .timeout = 120)
{
    char *dir, *out, *prompts, *err;
    batch_of_p1("batchfsize", &dir, &out, &prompts);
    char *man = ecc_path_join(out, "manifest.jsonl");
    FILE *f = fopen(man, "a");
    cr_assert(f);
    fputs("{\"id\":\"pad\",\"status\":\"failed\",\"invalid\":true,\"error\":\"", f);
    for (int i = 0; i < (1 << 18); i++)
        fputc('x', f);
    fputs("\"}\n", f);
    fclose(f);
    struct stat before;
    cr_assert_eq(stat(man, &before), 0);
    const char *two = "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n{\"id\": \"p2\", \"prompt\": \"The quick\"}\n";
    free(prompts);
    prompts = write_prompts(dir, two, strlen(two));
    char *m = fixture_path("tiny-gpt2"), *log = ecc_path_join(dir, "stderr.txt");
    const char *bin = getenv("ECCOLO_BIN");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) { /* no file may grow past 40 bytes more than the manifest has */
        struct rlimit rl = {(rlim_t)before.st_size + 40, (rlim_t)before.st_size + 40};
        signal(SIGXFSZ, SIG_IGN);
        setrlimit(RLIMIT_FSIZE, &rl);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execl(bin, bin, "batch", "--model", m, "--prompts", prompts, "--out", out, "--max-new-tokens", "3",
              "--activations", "--batch-size", "2", "--quiet", (char *)NULL);
        _exit(127);
    }
    int rc = wait_exit(pid);
    char *msg = slurp(log);
    cr_assert_eq(rc, 2, "exit code %d: %s", rc, msg);
    cr_assert(strstr(msg, "manifest.jsonl") && strstr(msg, "cannot append"), "%s", msg);
    struct stat after;
    cr_assert_eq(stat(man, &after), 0);
    cr_assert_eq(after.st_size, before.st_size, "the manifest grew from %lld to %lld bytes: a partial record",
                 (long long)before.st_size, (long long)after.st_size);
    /* the run of p2 is in place but not recorded: the next run redoes it, and every line is whole */
    cr_assert_eq(batch(&err, prompts, out, NULL, NULL), 0, "%s", err);
    int done, failed;
    count_records(out, "p2", &done, &failed);
    cr_assert(done == 1 && failed == 0, "p2: %d done, %d failed", done, failed);
    assert_no_temporaries(out);
    free(err), free(msg), free(log), free(m), free(man), free(dir), free(out), free(prompts);
}

static void assert_prompt_of(const char *out, const char *id, const char *prompt)
{
    char *rj = fmt("%s/runs/%s/run.json", out, id);
    cJSON *j = slurp_json(rj);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    cr_assert(cJSON_IsString(p) && !strcmp(p->valuestring, prompt), "%s: prompt %s, not %s", rj,
              cJSON_IsString(p) ? p->valuestring : "?", prompt);
    cJSON_Delete(j);
    free(rj);
}

/* Before: a resumed batch skipped a done id whatever had changed. */
Test(batch_safety, a_resumed_batch_refuses_changed_work_unless_told_to_redo_it, .timeout = 120)
{
    char *dir = test_tmpdir("batchchanged"), *out = ecc_path_join(dir, "out"), *err;
    const char *v1 = "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n{\"id\": \"p2\", \"prompt\": \"The quick\"}\n";
    const char *v2 = "{\"id\": \"p1\", \"prompt\": \"Hello world\"}\n{\"id\": \"p2\", \"prompt\": \"The slow\"}\n";
    char *prompts = write_prompts(dir, v1, strlen(v1)), *man = ecc_path_join(out, "manifest.jsonl");
    cr_assert_eq(batch(&err, prompts, out, NULL, NULL), 0, "%s", err);
    free(err);
    char *before = slurp(man);
    /* the same command: nothing to do */
    cr_assert_eq(batch(&err, prompts, out, NULL, NULL), 0, "%s", err);
    free(err);
    /* another prompt for p2 */
    write_file(prompts, v2, strlen(v2));
    int rc = batch(&err, prompts, out, NULL, NULL);
    cr_assert_eq(rc, 2, "exit code %d: %s", rc, err);
    cr_assert(strstr(err, "\"p2\"") && strstr(err, "prompt") && strstr(err, "--redo-changed"), "%s", err);
    free(err);
    /* other generate options for both (the first changed one is named) */
    write_file(prompts, v1, strlen(v1));
    rc = batch(&err, prompts, out, "--attribution", "gradient");
    cr_assert_eq(rc, 2, "exit code %d: %s", rc, err);
    cr_assert(strstr(err, "\"p1\"") && strstr(err, "options") && strstr(err, "1 more id"), "%s", err);
    free(err);
    char *now = slurp(man);
    cr_assert_str_eq(now, before, "a refused batch wrote to the manifest");
    assert_prompt_of(out, "p2", "The quick");
    /* --redo-changed redoes p2 alone, and replaces its run */
    write_file(prompts, v2, strlen(v2));
    cr_assert_eq(batch(&err, prompts, out, "--redo-changed", NULL), 0, "%s", err);
    assert_prompt_of(out, "p2", "The slow");
    int done, failed;
    count_records(out, "p1", &done, &failed);
    cr_assert_eq(done, 1, "p1 was redone (%d records) though it did not change", done);
    count_records(out, "p2", &done, &failed);
    cr_assert_eq(done, 2, "p2: %d done records", done);
    char **ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_OK, "%s", ecc_last_error());
    cr_assert(n == 2 && !strcmp(ids[0], "p1") && !strcmp(ids[1], "p2"), "%d done ids", n);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    assert_no_temporaries(out);
    free(ids), free(now), free(before), free(err), free(man), free(dir), free(out), free(prompts);
}

/* Before: eccolo nmf followed the id "../../x" out of the batch directory. */
Test(batch_safety, manifest_ids_are_checked_before_they_name_paths, .timeout = 120)
{
    char *dir, *out, *prompts, *err;
    batch_of_p1("batchescape", &dir, &out, &prompts);
    char *run = fmt("%s/runs/p1", out), *x = ecc_path_join(dir, "x"), *man = ecc_path_join(out, "manifest.jsonl");
    copy_dir(run, x); /* a valid run at OUT/runs/../../x */
    const char *bad = "{\"id\":\"../../x\",\"status\":\"done\"}\n";
    write_file(man, bad, strlen(bad));
    int rc = run_cli(NULL, &err, ARGS("nmf", out, "--components", "2"));
    cr_assert_eq(rc, 2, "eccolo nmf exited with %d: %s", rc, err);
    cr_assert(strstr(err, "manifest.jsonl line 1") && strstr(err, "cannot name a run directory"), "%s", err);
    free(err);
    char **ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_ERR_FORMAT);
    cr_assert(!ids && n == 0);
    rc = batch(&err, prompts, out, NULL, NULL); /* nor does a resumed batch trust it */
    cr_assert_eq(rc, 2, "exit code %d: %s", rc, err);
    free(err), free(run), free(x), free(man), free(dir), free(out), free(prompts);
}

/* Before: the bad line 1 was called "line-1", so the real id "line-1" on line
 * 2 failed as a duplicate. */
Test(batch_safety, fallback_ids_of_bad_lines_never_collide_with_real_ids, .timeout = 120)
{
    char *dir = test_tmpdir("batchfallback"), *out = ecc_path_join(dir, "out"), *err;
    const char *text = "this is not json\n{\"id\": \"line-1\", \"prompt\": \"Hello world\"}\n"
                       "{\"id\": \"line-3\", \"prompt\": \"Hello\"}\n";
    char *prompts = write_prompts(dir, text, strlen(text));
    int rc = batch(&err, prompts, out, NULL, NULL);
    cr_assert_eq(rc, 1, "exit code %d (1: some line failed): %s", rc, err);
    int done, failed;
    count_records(out, "line-1", &done, &failed);
    cr_assert(done == 1 && failed == 0, "line-1: %d done, %d failed", done, failed);
    count_records(out, "line:1", &done, &failed);
    cr_assert(done == 0 && failed == 1, "line:1 (the bad line): %d done, %d failed", done, failed);
    char **ids;
    int n;
    cr_assert_eq(ecc_batch_done_ids(&ids, &n, out), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(n, 2);
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids), free(err), free(dir), free(out), free(prompts);
}

/* Before: "Hello\u0000 world" ran as "Hello", and the id "ab\u0000cd" became "ab". */
Test(batch_safety, a_nul_in_a_prompt_fails_its_line, .timeout = 120)
{
    char *dir = test_tmpdir("batchnul"), *out = ecc_path_join(dir, "out"), *err;
    const char text[] = "{\"id\": \"n1\", \"prompt\": \"Hello\\u0000 world\"}\n"
                        "{\"id\": \"ab\\u0000cd\", \"prompt\": \"Hello\"}\n"
                        "{\"id\": \"ab\", \"prompt\": \"Hello there\"}\n"
                        "{\"id\": \"n2\", \"prompt\": \"Hi\", \"continuation\": \" there\\u0000\"}\n"
                        "{\"id\": \"n3\", \"prompt\": \"raw \0 byte\"}\n"
                        "{\"id\": \"ok\", \"prompt\": \"not a NUL: \\\\u0000\"}\n";
    char *prompts = write_prompts(dir, text, sizeof text - 1);
    int rc = batch(&err, prompts, out, NULL, NULL);
    cr_assert_eq(rc, 1, "exit code %d (1: some line failed): %s", rc, err);
    static const char *failing[] = {"n1", "line:2", "n2", "n3"}, *passing[] = {"ab", "ok"};
    int done, failed;
    for (int i = 0; i < 4; i++) {
        count_records(out, failing[i], &done, &failed);
        cr_assert(done == 0 && failed == 1, "%s: %d done, %d failed", failing[i], done, failed);
    }
    for (int i = 0; i < 2; i++) {
        count_records(out, passing[i], &done, &failed);
        cr_assert(done == 1 && failed == 0, "%s: %d done, %d failed", passing[i], done, failed);
    }
    char *man = ecc_path_join(out, "manifest.jsonl"), *data = slurp(man);
    cr_assert(strstr(data, "the prompt contains a NUL character"), "%s", data);
    cr_assert(strstr(data, "the continuation contains a NUL character"), "%s", data);
    cr_assert(strstr(data, "the id contains a NUL character"), "%s", data);
    assert_prompt_of(out, "ok", "not a NUL: \\u0000");
    free(data), free(man), free(err), free(dir), free(out), free(prompts);
}
