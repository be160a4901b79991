/* Nothing lost (issue 9): `eccolo generate --out DIR` and `eccolo nmf DIR`
 * killed with SIGKILL at random moments, many times, leave DIR holding the
 * old complete result or the new one: both files parse and the run.json /
 * tensors.safetensors pair verifies (run.json records the tensors file's
 * size and header hash). The one other state is a kill between the two
 * renames (new tensors, old run.json), which the reader must refuse with its
 * one-line "from different runs" error; it is provoked on purpose through
 * ECCOLO_TEST_SLOW_WRITE (run_writer.c), which widens that window. Never a
 * torn file, and temporaries (NAME.tmp.<pid>) never under a result's name;
 * the next write removes those of dead processes. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/run_reader.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define PROMPT_A "The old result"
#define PROMPT_B "A newer result, written over it"

static double now(void) { return ecc_now(); }

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Start the CLI with extra environment (NAME=VALUE, NULL-terminated, may be NULL). */
static pid_t spawn(const char *const *env, const char *const *args)
{
    const char *bin = getenv("ECCOLO_BIN");
    cr_assert(bin, "ECCOLO_BIN is not set: run the tests through ctest");
    int n = 0;
    while (args[n])
        n++;
    char **argv = calloc((size_t)n + 2, sizeof(char *));
    argv[0] = (char *)bin;
    for (int i = 0; i < n; i++)
        argv[i + 1] = (char *)args[i];
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(bin, argv);
        _exit(127);
    }
    free(argv);
    return pid;
}

/* Wait; returns the exit code, or 128 + signal. */
static int reap(pid_t pid)
{
    int status = 0;
    cr_assert(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Every entry of DIR is one of the results, or a temporary NAME.tmp.<pid>. */
static void check_entries(const char *dir, const char *const *results)
{
    DIR *d = opendir(dir);
    cr_assert(d, "%s: cannot list", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int ok = 0;
        for (int i = 0; results[i] && !ok; i++) {
            size_t n = strlen(results[i]);
            if (!strcmp(e->d_name, results[i]))
                ok = 1;
            else if (!strncmp(e->d_name, results[i], n) && !strncmp(e->d_name + n, ".tmp.", 5)) {
                const char *p = e->d_name + n + 5;
                ok = *p && strspn(p, "0123456789") == strlen(p);
            }
        }
        cr_assert(ok, "%s: unexpected entry '%s'", dir, e->d_name);
    }
    closedir(d);
}

static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* The state of a run directory: 'A' or 'B' (a complete pair that verifies,
 * written for PROMPT_A or PROMPT_B), 'M' (new tensors beside an old run.json,
 * refused by the reader). Anything else fails the test. */
static char run_state(const char *dir)
{
    ecc_run_dir *r = NULL;
    ecc_status s = ecc_run_dir_open(&r, dir);
    if (s != ECC_OK) {
        const char *want = "run.json and tensors.safetensors are from different runs (an interrupted write, or a "
                           "file copied from another run): rerun eccolo generate --out";
        cr_assert(strstr(ecc_last_error(), want), "%s: neither the old run nor the new one: %s", dir,
                  ecc_last_error());
        cr_assert(!strchr(ecc_last_error(), '\n'));
        return 'M';
    }
    const char *prompt = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "prompt"));
    cr_assert(prompt, "%s: run.json has no prompt", dir);
    char st = !strcmp(prompt, PROMPT_A) ? 'A' : !strcmp(prompt, PROMPT_B) ? 'B' : '?';
    cr_assert(st != '?', "%s: prompt '%s'", dir, prompt);
    /* every tensor readable: the pair is whole */
    for (int i = 0; i < r->st->n; i++)
        cr_assert(r->st->tensors[i].data + r->st->tensors[i].nbytes <= (const uint8_t *)r->st->map + r->st->map_len);
    ecc_run_dir_close(r);
    return st;
}

static const char *const *generate_args(const char *model, const char *dir, const char *prompt)
{
    static const char *a[32];
    int n = 0;
    const char *fixed[] = {"generate", "--model", model, "--out", dir, "--prompt", prompt, "--max-new-tokens", "40",
                           "--attention", "--activations", "--hidden-states", "--device", "cpu", "--threads", "1",
                           "--quiet"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        a[n++] = fixed[i];
    a[n] = NULL;
    return a;
}

/* Start a generate that sleeps between its renames (ECCOLO_TEST_SLOW_WRITE)
 * and kill it once its new tensors file is in place: new tensors beside the
 * old run.json. Returns the killed pid; *st is the new tensors file's stat. */
static pid_t kill_between_renames(const char *const *args, const char *tpath, struct stat *st)
{
    struct stat before;
    cr_assert(stat(tpath, &before) == 0);
    static const char *const slower[] = {"ECCOLO_TEST_SLOW_WRITE=5000", NULL};
    pid_t pid = spawn(slower, args);
    for (double t = now(); now() - t < 60;) { /* until the new tensors file is renamed into place */
        if (stat(tpath, st) == 0 && st->st_ino != before.st_ino)
            break;
        sleep_s(0.005);
    }
    cr_assert(st->st_ino != before.st_ino, "the new tensors file never appeared");
    kill(pid, SIGKILL);
    cr_assert_eq(reap(pid), 128 + SIGKILL);
    return pid;
}

Test(atomic, generate_killed_at_random_moments, .timeout = 600)
{
    char *model = fixture_path("tiny-gpt2"), *root = test_tmpdir("atomic-gen"), *dir = ecc_path_join(root, "run");
    /* the old complete result, and how long a write takes */
    double t0 = now();
    cr_assert_eq(reap(spawn(NULL, generate_args(model, dir, PROMPT_A))), 0, "generate failed");
    double dur = now() - t0;
    cr_assert_eq(run_state(dir), 'A');

    srand(20240909);
    static const char *const slow[] = {"ECCOLO_TEST_SLOW_WRITE=50", NULL};
    int seen[128] = {0}, killed = 0;
    const int N = 30;
    for (int i = 0; i < N; i++) {
        const char *prompt = i % 2 ? PROMPT_A : PROMPT_B;
        pid_t pid = spawn(slow, generate_args(model, dir, prompt));
        sleep_s((dur + 0.05) * (double)rand() / RAND_MAX * 1.1);
        kill(pid, SIGKILL);
        int rc = reap(pid);
        killed += rc == 128 + SIGKILL;
        cr_assert(rc == 0 || rc == 128 + SIGKILL, "generate exited with %d", rc);
        static const char *const results[] = {"run.json", "tensors.safetensors", NULL};
        check_entries(dir, results);
        seen[(int)run_state(dir)]++;
    }
    cr_log_info("generate: %d of %d killed; states: A %d, B %d, mismatch %d", killed, N, seen['A'], seen['B'],
                seen['M']);
    cr_assert(killed > 0, "no run was killed: the delays are too long");

    /* a kill inside the window between the renames, on purpose: new tensors, old run.json */
    char *tpath = ecc_path_join(dir, "tensors.safetensors");
    cr_assert_eq(reap(spawn(NULL, generate_args(model, dir, PROMPT_A))), 0);
    struct stat st;
    pid_t pid = kill_between_renames(generate_args(model, dir, PROMPT_B), tpath, &st);
    cr_assert_eq(run_state(dir), 'M', "a kill between the renames went undetected");
    /* a temporary the killed writer could have left (it was killed before opening its own) */
    char stale[64];
    snprintf(stale, sizeof stale, "run.json.tmp.%ld", (long)pid);
    char *sp = ecc_path_join(dir, stale);
    write_file(sp, "{\"torn", 6);
    free(sp);

    /* the next complete write replaces the pair and removes the dead temporaries */
    cr_assert_eq(reap(spawn(NULL, generate_args(model, dir, PROMPT_B))), 0);
    cr_assert_eq(run_state(dir), 'B');
    cr_assert_eq(count_tmp(dir), 0, "temporaries of killed writers are left in %s", dir);
    free(tpath), free(model), free(root), free(dir);
}

/* nmf.safetensors: absent, or a file that opens with K components (2 or 3). */
static int nmf_state(const char *dir)
{
    static const char *const results[] = {"run.json", "tensors.safetensors", "nmf.safetensors", NULL};
    check_entries(dir, results);
    char *p = ecc_path_join(dir, "nmf.safetensors");
    int k = 0;
    if (ecc_file_exists(p)) {
        ecc_st_file *f = NULL;
        cr_assert_eq(ecc_st_open(&f, p), ECC_OK, "a torn NMF file: %s", ecc_last_error());
        const char *v = ecc_st_meta(f, "n_components");
        cr_assert(v && (!strcmp(v, "2") || !strcmp(v, "3")), "n_components %s", v ? v : "(none)");
        k = atoi(v);
        const ecc_st_tensor *W = ecc_st_find(f, "factors");
        cr_assert(W && W->shape[0] == k);
        ecc_st_close(f);
    }
    free(p);
    return k;
}

Test(atomic, nmf_killed_at_random_moments, .timeout = 600)
{
    char *model = fixture_path("tiny-gpt2"), *root = test_tmpdir("atomic-nmf"), *dir = ecc_path_join(root, "run");
    cr_assert_eq(reap(spawn(NULL, generate_args(model, dir, PROMPT_A))), 0, "generate failed");
    const char *args3[] = {"nmf", dir, "--components", "3", "--max-iter", "400", "--tol", "0", "--device", "cpu",
                           "--threads", "1", NULL};
    double t0 = now();
    cr_assert_eq(reap(spawn(NULL, args3)), 0, "nmf failed");
    double dur = now() - t0;
    cr_assert_eq(nmf_state(dir), 3);
    srand(7);
    int killed = 0, seen[4] = {0};
    const int N = 20;
    for (int i = 0; i < N; i++) {
        const char *args[] = {"nmf", dir, "--components", i % 2 ? "3" : "2", "--max-iter", "400", "--tol", "0",
                              "--device", "cpu", "--threads", "1", NULL};
        pid_t pid = spawn(NULL, args);
        sleep_s(dur * (double)rand() / RAND_MAX * 1.5);
        kill(pid, SIGKILL);
        int rc = reap(pid);
        killed += rc == 128 + SIGKILL;
        cr_assert(rc == 0 || rc == 128 + SIGKILL, "nmf exited with %d", rc);
        seen[nmf_state(dir)]++;
        cr_assert_eq(run_state(dir), 'A', "nmf changed the run");
    }
    cr_log_info("nmf: %d of %d killed; K=2 %d, K=3 %d", killed, N, seen[2], seen[3]);
    cr_assert(killed > 0, "no nmf was killed: the delays are too long");
    /* and a write that completes replaces the file */
    const char *args2[] = {"nmf", dir, "--components", "2", "--max-iter", "20", "--device", "cpu", "--threads", "1",
                           NULL};
    cr_assert_eq(reap(spawn(NULL, args2)), 0);
    cr_assert_eq(nmf_state(dir), 2);
    free(model), free(root), free(dir);
}

/* A kill between the two renames when the old and the new run have the same
 * shapes (3 prompt ids, 4 forced): same size, same header but for the run id.
 * Before run ids, this pair passed as whole (issue 14). */
Test(atomic, kill_between_renames_with_the_same_shapes, .timeout = 120)
{
    char *model = fixture_path("tiny-gpt2"), *root = test_tmpdir("atomic-same"), *dir = ecc_path_join(root, "run");
    char *tpath = ecc_path_join(dir, "tensors.safetensors");
    const char *a_args[] = {"generate", "--model", model, "--out", dir, "--prompt-ids", "10,20,30",
                            "--continuation-ids", "40,50,60,70", "--activations", "--device", "cpu", "--threads",
                            "1", "--quiet", NULL};
    const char *b_args[] = {"generate", "--model", model, "--out", dir, "--prompt-ids", "11,21,31",
                            "--continuation-ids", "41,51,61,71", "--activations", "--device", "cpu", "--threads",
                            "1", "--quiet", NULL};
    cr_assert_eq(reap(spawn(NULL, a_args)), 0, "generate failed");
    struct stat before, st;
    cr_assert(stat(tpath, &before) == 0);
    kill_between_renames(b_args, tpath, &st);
    cr_assert_eq(st.st_size, before.st_size, "the two runs should have the same shapes (and file size)");
    ecc_run_dir *r = NULL;
    ecc_status s = ecc_run_dir_open(&r, dir);
    ecc_run_dir_close(r);
    cr_assert_neq(s, ECC_OK, "a kill between the renames went undetected");
    cr_assert(strstr(ecc_last_error(), "are from different runs"), "%s", ecc_last_error());
    free(tpath), free(model), free(root), free(dir);
}
