/* A failed write is never a success (issue 14): generate, nmf, report,
 * batch and submit writing into a small tmpfs that is full. Each must exit non-zero with
 * one line that names the file and says "disk full", leave no temporary
 * behind, and leave the directory holding the old complete result (or nothing
 * new): never a new run.json over old tensors, never "wrote" over nothing.
 *
 * Each test mounts its own tmpfs in a private mount namespace of its test
 * process (Criterion runs each test in a process of its own; the CLI it starts
 * inherits the namespace), so nothing is left mounted when a test ends, even
 * by a failed assertion. As root, unshare(CLONE_NEWNS) is enough; otherwise a
 * user namespace is tried (unshare -rm); when neither is allowed the tests
 * are skipped, saying why. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/run_reader.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define PROMPT_A "The old result"
#define PROMPT_B "A newer result, written over it and longer"

static int write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Enter a private mount namespace (as root, or as root of a new user
 * namespace) and mount a tmpfs of `kib` KiB on a fresh directory. NULL, with
 * the reason in why, when this process may do neither. */
static char *small_fs(const char *tag, int kib, char *why, size_t why_len)
{
    char *dir = test_tmpdir(tag);
    if (unshare(CLONE_NEWNS) != 0) {
        int e1 = errno;
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
            snprintf(why, why_len, "cannot mount a tmpfs: unshare(CLONE_NEWNS): %s; as a user namespace: %s",
                     strerror(e1), strerror(errno));
            free(dir);
            return NULL;
        }
        char map[64];
        write_text("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        write_text("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        write_text("/proc/self/gid_map", map);
    }
    char opt[64];
    snprintf(opt, sizeof opt, "size=%dk,mode=0755", kib);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 || mount("tmpfs", dir, "tmpfs", 0, opt) != 0) {
        snprintf(why, why_len, "cannot mount a tmpfs on %s: %s", dir, strerror(errno));
        free(dir);
        return NULL;
    }
    return dir;
}

static char *mount_or_skip(const char *tag)
{
    char why[512];
    char *fs = small_fs(tag, 2048, why, sizeof why);
    if (!fs) {
        cr_log_warn("%s", why);
        cr_skip_test("%s", why);
    }
    return fs;
}

/* Fill the file system of FS with FS/filler so that `leave` bytes (rounded
 * up to whole blocks) stay free. */
static void fill(const char *fs, uint64_t leave)
{
    char *path = ecc_path_join(fs, "filler");
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
    static char buf[65536];
    memset(buf, 'x', sizeof buf);
    uint64_t size = 0;
    for (;;) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n <= 0) {
            cr_assert(n < 0 && errno == ENOSPC, "filling %s: %s", fs, strerror(errno));
            break;
        }
        size += (uint64_t)n;
    }
    struct statvfs sv;
    cr_assert_eq(fstatvfs(fd, &sv), 0);
    uint64_t bs = sv.f_frsize, blocks = (leave + bs - 1) / bs;
    cr_assert_geq(size, blocks * bs, "the file system is too small to leave %llu bytes", (unsigned long long)leave);
    size = size / bs * bs; /* whole blocks, then give back `blocks` of them */
    cr_assert_eq(ftruncate(fd, (off_t)(size - blocks * bs)), 0);
    cr_assert_eq(fsync(fd), 0);
    close(fd);
    cr_assert_eq(statvfs(fs, &sv), 0);
    cr_assert_eq((uint64_t)sv.f_bavail, blocks, "%s: %llu blocks free, wanted %llu", fs,
                 (unsigned long long)sv.f_bavail, (unsigned long long)blocks);
    free(path);
}

static void unfill(const char *fs)
{
    char *path = ecc_path_join(fs, "filler");
    unlink(path);
    free(path);
}

/* Entries of DIR whose name holds ".tmp" (the writers' temporaries: NAME.tmp.<pid>, runs/.tmp-<id>-<pid>). */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp") != NULL;
    if (d)
        closedir(d);
    return n;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d)
        closedir(d);
    return n;
}

/* The error is one line that names `file` and says "disk full". */
static void check_disk_full(int rc, const char *err, const char *file)
{
    cr_assert(rc != 0, "exit status 0 on a full disk (stderr: %s)", err);
    cr_assert(strstr(err, "disk full"), "the error does not say 'disk full': %s", err);
    cr_assert(strstr(err, file), "the error does not name %s: %s", file, err);
    cr_assert(!strstr(err, "wrote"), "a failed write printed 'wrote': %s", err);
    size_t n = strlen(err);
    cr_assert(n > 0 && err[n - 1] == '\n' && !memchr(err, '\n', n - 1), "not one line: %s", err);
}

static const char *const *generate_args(const char *model, const char *dir, const char *prompt)
{
    static const char *a[32];
    const char *fixed[] = {"generate", "--model", model, "--out", dir, "--prompt", prompt, "--max-new-tokens", "8",
                           "--activations", "--attention", "--hidden-states", "--device", "cpu", "--threads", "1",
                           "--quiet"};
    size_t n = sizeof fixed / sizeof *fixed;
    for (size_t i = 0; i < n; i++)
        a[i] = fixed[i];
    a[n] = NULL;
    return a;
}

/* The directory holds a complete pair that verifies, written for `prompt`. */
static void check_pair(const char *dir, const char *prompt)
{
    ecc_run_dir *r = NULL;
    cr_assert_eq(ecc_run_dir_open(&r, dir), ECC_OK, "%s: the old pair is gone: %s", dir, ecc_last_error());
    const char *p = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "prompt"));
    cr_assert(p && !strcmp(p, prompt), "%s: run.json holds prompt '%s', not the old '%s'", dir, p ? p : "(none)",
              prompt);
    ecc_run_dir_close(r);
}

static uint64_t file_size(const char *dir, const char *name)
{
    char *p = ecc_path_join(dir, name);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0, "%s: %s", p, strerror(errno));
    free(p);
    return (uint64_t)st.st_size;
}

Test(diskfull, generate_leaves_the_old_pair, .timeout = 300)
{
    char *fs = mount_or_skip("diskfull-gen"), *model = fixture_path("tiny-gpt2");
    char *dir = ecc_path_join(fs, "run"), *err = NULL;
    cr_assert_eq(run_cli(NULL, &err, generate_args(model, dir, PROMPT_A)), 0, "%s", err);
    free(err);
    check_pair(dir, PROMPT_A);

    /* no space at all: the tensors file cannot be written */
    fill(fs, 0);
    int rc = run_cli(NULL, &err, generate_args(model, dir, PROMPT_B));
    check_disk_full(rc, err, "run/tensors.safetensors");
    free(err);
    cr_assert_eq(count_tmp(dir), 0, "a temporary is left in %s", dir);
    check_pair(dir, PROMPT_A);

    /* room for the new tensors file but not for run.json: still the old pair, not new tensors under it */
    char *probe = test_tmpdir("diskfull-probe"), *pdir = ecc_path_join(probe, "run");
    cr_assert_eq(run_cli(NULL, &err, generate_args(model, pdir, PROMPT_B)), 0, "%s", err);
    free(err);
    uint64_t tensors_b = file_size(pdir, "tensors.safetensors");
    fill(fs, tensors_b);
    rc = run_cli(NULL, &err, generate_args(model, dir, PROMPT_B));
    check_disk_full(rc, err, "run/run.json");
    free(err);
    cr_assert_eq(count_tmp(dir), 0, "a temporary is left in %s", dir);
    check_pair(dir, PROMPT_A);

    /* a new directory on a full disk: nothing in it */
    char *fresh = ecc_path_join(fs, "fresh");
    fill(fs, 0);
    rc = run_cli(NULL, &err, generate_args(model, fresh, PROMPT_B));
    check_disk_full(rc, err, "fresh/tensors.safetensors");
    free(err);
    cr_assert_eq(count_entries(fresh), 0, "%s holds files after a failed write", fresh);

    /* with space again, the same command succeeds */
    unfill(fs);
    cr_assert_eq(run_cli(NULL, &err, generate_args(model, dir, PROMPT_B)), 0, "%s", err);
    free(err);
    check_pair(dir, PROMPT_B);
    free(fresh), free(probe), free(pdir), free(dir), free(model), free(fs);
}

static const char *const *nmf_args(const char *dir, const char *k)
{
    static const char *a[16];
    const char *fixed[] = {"nmf", dir, "--components", k, "--max-iter", "50", "--device", "cpu", "--threads", "1"};
    size_t n = sizeof fixed / sizeof *fixed;
    for (size_t i = 0; i < n; i++)
        a[i] = fixed[i];
    a[n] = NULL;
    return a;
}

static const char *nmf_k(const char *dir, ecc_st_file **f)
{
    char *p = ecc_path_join(dir, "nmf.safetensors");
    cr_assert_eq(ecc_st_open(f, p), ECC_OK, "%s", ecc_last_error());
    free(p);
    const char *k = ecc_st_meta(*f, "n_components");
    cr_assert(k);
    return k;
}

Test(diskfull, nmf_leaves_the_old_file, .timeout = 300)
{
    char *fs = mount_or_skip("diskfull-nmf"), *model = fixture_path("tiny-gpt2");
    char *dir = ecc_path_join(fs, "run"), *err = NULL, *out = NULL;
    cr_assert_eq(run_cli(NULL, &err, generate_args(model, dir, PROMPT_A)), 0, "%s", err);
    free(err);
    cr_assert_eq(run_cli(NULL, &err, nmf_args(dir, "3")), 0, "%s", err);
    free(err);
    fill(fs, 0);
    int rc = run_cli(&out, &err, nmf_args(dir, "2"));
    check_disk_full(rc, err, "run/nmf.safetensors");
    cr_assert(!strstr(out, "wrote"), "a failed write printed: %s", out);
    free(err), free(out);
    cr_assert_eq(count_tmp(dir), 0, "a temporary is left in %s", dir);
    ecc_st_file *f;
    cr_assert_str_eq(nmf_k(dir, &f), "3", "the old NMF file was replaced");
    ecc_st_close(f);
    check_pair(dir, PROMPT_A);
    free(dir), free(model), free(fs);
}

Test(diskfull, report_leaves_the_old_page, .timeout = 300)
{
    char *fs = mount_or_skip("diskfull-report"), *model = fixture_path("tiny-gpt2");
    char *dir = ecc_path_join(fs, "run"), *err = NULL, *page = ecc_path_join(dir, "report.html");
    cr_assert_eq(run_cli(NULL, &err, generate_args(model, dir, PROMPT_A)), 0, "%s", err);
    free(err);
    cr_assert_eq(run_cli(NULL, &err, ARGS("report", dir)), 0, "%s", err);
    free(err);
    char *old = slurp(page);
    fill(fs, 0);
    int rc = run_cli(NULL, &err, ARGS("report", dir));
    check_disk_full(rc, err, "run/report.html");
    free(err);
    cr_assert_eq(count_tmp(dir), 0, "a temporary is left in %s", dir);
    char *now = slurp(page);
    cr_assert_str_eq(now, old, "the old page changed");
    free(now);
    /* room for all but the last block of the page: the writes pass, the flush at the end fails */
    uint64_t size = file_size(dir, "report.html"), bs = 4096;
    fill(fs, ((size + bs - 1) / bs - 1) * bs);
    rc = run_cli(NULL, &err, ARGS("report", dir));
    check_disk_full(rc, err, "run/report.html");
    free(err);
    cr_assert_eq(count_tmp(dir), 0, "a temporary is left in %s", dir);
    now = slurp(page);
    cr_assert_str_eq(now, old, "the old page changed");
    fill(fs, 0);
    /* --out elsewhere on the full disk: no file at all */
    char *other = ecc_path_join(fs, "other.html");
    rc = run_cli(NULL, &err, ARGS("report", dir, "--out", other));
    check_disk_full(rc, err, "other.html");
    free(err);
    cr_assert(!ecc_file_exists(other));
    cr_assert_eq(count_tmp(fs), 0, "a temporary is left in %s", fs);
    free(other), free(old), free(now), free(page), free(dir), free(model), free(fs);
}

Test(diskfull, batch_stops_without_temporaries, .timeout = 300)
{
    char *fs = mount_or_skip("diskfull-batch"), *model = fixture_path("tiny-gpt2");
    char *tmp = test_tmpdir("diskfull-prompts"), *prompts = ecc_path_join(tmp, "p.jsonl");
    const char *lines = "{\"id\": \"a\", \"prompt\": \"" PROMPT_A "\"}\n{\"id\": \"b\", \"prompt\": \"" PROMPT_B "\"}\n";
    write_file(prompts, lines, strlen(lines));
    char *out = ecc_path_join(fs, "batch"), *runs = ecc_path_join(out, "runs"), *err = NULL;
    cr_assert_eq(ecc_mkdirs(runs), ECC_OK);
    fill(fs, 0);
    int rc = run_cli(NULL, &err,
                     ARGS("batch", "--model", model, "--prompts", prompts, "--out", out, "--max-new-tokens", "8",
                          "--activations", "--device", "cpu", "--threads", "1", "--quiet"));
    check_disk_full(rc, err, "tensors.safetensors");
    free(err);
    cr_assert_eq(count_entries(runs), 0, "%s holds a run or a temporary after a failed write", runs);
    char *manifest = ecc_path_join(out, "manifest.jsonl");
    if (ecc_file_exists(manifest)) {
        char *m = slurp(manifest);
        cr_assert(!strstr(m, "\"done\""), "the manifest records a run as done: %s", m);
        free(m);
    }
    /* with space again, the batch completes both */
    unfill(fs);
    rc = run_cli(NULL, &err,
                 ARGS("batch", "--model", model, "--prompts", prompts, "--out", out, "--max-new-tokens", "8",
                      "--activations", "--device", "cpu", "--threads", "1", "--quiet"));
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    char *ra = ecc_path_join(runs, "a"), *rb = ecc_path_join(runs, "b");
    check_pair(ra, PROMPT_A);
    check_pair(rb, PROMPT_B);
    free(ra), free(rb), free(manifest), free(runs), free(out), free(prompts), free(tmp), free(model), free(fs);
}

Test(diskfull, submit_leaves_the_old_script, .timeout = 120)
{
    char *fs = mount_or_skip("diskfull-submit"), *model = fixture_path("tiny-gpt2");
    char *tmp = test_tmpdir("diskfull-prompts"), *prompts = ecc_path_join(tmp, "p.jsonl");
    const char *line = "{\"id\": \"a\", \"prompt\": \"" PROMPT_A "\"}\n";
    write_file(prompts, line, strlen(line));
    char *out = ecc_path_join(fs, "batch"), *err = NULL, *so = NULL;
    char *script = fmt("%s/slurm/batch.sbatch", out), *slurm = fmt("%s/slurm", out);
    int rc = run_cli(NULL, &err, ARGS("submit", "--shards", "2", "--dry-run", "--", "--model", model, "--prompts",
                                      prompts, "--out", out));
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    char *old = slurp(script);
    fill(fs, 0);
    rc = run_cli(&so, &err, ARGS("submit", "--shards", "3", "--dry-run", "--", "--model", model, "--prompts",
                                 prompts, "--out", out));
    check_disk_full(rc, err, "slurm/batch.sbatch");
    cr_assert(!strstr(so, "#SBATCH"), "a script that was not written was printed: %s", so);
    free(err), free(so);
    char *now = slurp(script);
    cr_assert_str_eq(now, old, "the old script changed");
    cr_assert_eq(count_tmp(slurm), 0, "a temporary is left in %s", slurm);
    free(now), free(old), free(slurm), free(script), free(out), free(prompts), free(tmp), free(model), free(fs);
}

/* The message itself, for the errors a tmpfs cannot produce. */
Test(diskfull, messages)
{
    ecc_fail_write("d/x.json", ENOSPC);
    cr_assert(strstr(ecc_last_error(), "d/x.json: disk full"), "%s", ecc_last_error());
    ecc_fail_write("d/x.json", EDQUOT);
    cr_assert(strstr(ecc_last_error(), "d/x.json: disk full (disk quota exceeded)"), "%s", ecc_last_error());
    ecc_fail_write("d/x.json", EIO);
    cr_assert(strstr(ecc_last_error(), "d/x.json: cannot write it: Input/output error"), "%s", ecc_last_error());
    cr_assert(!strstr(ecc_last_error(), "disk full"));
}

/* Standard output is output too: `eccolo generate > FILE` on a full disk fails (/dev/full). */
Test(diskfull, stdout_on_a_full_disk)
{
    char *model = fixture_path("tiny-gpt2");
    const char *bin = getenv("ECCOLO_BIN");
    cr_assert(bin);
    char *cmd = fmt("'%s' generate --model '%s' --prompt hello --max-new-tokens 2 --device cpu --quiet >/dev/full "
                    "2>/dev/null", bin, model);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "exit %d on a full stdout", WEXITSTATUS(st));
    free(cmd), free(model);
}
