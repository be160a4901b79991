#define _GNU_SOURCE
#include "testutil.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "util.h"

char *fixture_path(const char *rel)
{
    const char *root = getenv("ECCOLO_FIXTURES");
    cr_assert(root, "ECCOLO_FIXTURES is not set: run the tests through ctest");
    return ecc_path_join(root, rel);
}

char *test_tmpdir(const char *tag)
{
    const char *root = getenv("ECCOLO_TMP");
    if (!root)
        root = "/tmp";
    cr_assert(ecc_mkdirs(root) == ECC_OK, "%s", ecc_last_error());
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/%s-XXXXXX", root, tag);
    cr_assert(mkdtemp(tmpl), "mkdtemp %s failed", tmpl);
    return ecc_strdup(tmpl);
}

cJSON *fixture_json(const char *rel)
{
    char *path = fixture_path(rel), *data;
    size_t len;
    cr_assert(ecc_read_file(path, 64u << 20, &data, &len) == ECC_OK, "%s", ecc_last_error());
    cJSON *j = cJSON_ParseWithLength(data, len);
    cr_assert(j, "%s: invalid JSON", path);
    free(data);
    free(path);
    return j;
}

void *fixture_tensor(const char *rel, const char *name, int dtype, int64_t shape[4], size_t *numel)
{
    char *path = fixture_path(rel);
    ecc_st_file *f;
    cr_assert_eq(ecc_st_open(&f, path), ECC_OK, "%s", ecc_last_error());
    const ecc_st_tensor *t = ecc_st_find(f, name);
    cr_assert(t, "%s: no tensor %s", path, name);
    cr_assert_eq((int)t->dtype, dtype, "%s: %s is %s", path, name, ecc_dtype_name(t->dtype));
    for (int i = 0; shape && i < 4; i++)
        shape[i] = i < t->ndim ? t->shape[i] : 1;
    if (numel)
        *numel = t->numel;
    void *p = malloc(t->nbytes ? t->nbytes : 1);
    memcpy(p, t->data, t->nbytes);
    ecc_st_close(f);
    free(path);
    return p;
}

int32_t *json_int_array(const cJSON *arr, int *n)
{
    cr_assert(cJSON_IsArray(arr));
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(*n > 0 ? *n : 1));
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) v[i++] = (int32_t)e->valuedouble;
    return v;
}

static char *slurp_fd(int fd)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    return buf;
}

int run_cli(char **out, char **err, const char *const *args) { return run_cli_env(out, err, NULL, args); }

int run_cli_env(char **out, char **err, const char *const *env_assignments, const char *const *args)
{
    return run_cli_timeout(out, err, env_assignments, args, 0);
}

/* Wait for pid; after timeout_s seconds (0 = never) kill it. The wait status. */
static int wait_or_kill(pid_t pid, double timeout_s)
{
    int status = 0;
    if (timeout_s <= 0) {
        waitpid(pid, &status, 0);
        return status;
    }
    double t0 = ecc_now();
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (ecc_now() - t0 > timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        usleep(10000);
    }
}

int run_cli_timeout(char **out, char **err, const char *const *env_assignments, const char *const *args,
                    double timeout_s)
{
    const char *bin = getenv("ECCOLO_BIN");
    cr_assert(bin, "ECCOLO_BIN is not set: run the tests through ctest");
    char outname[] = "/tmp/ecc-out-XXXXXX", errname[] = "/tmp/ecc-err-XXXXXX";
    int ofd = mkstemp(outname), efd = mkstemp(errname);
    cr_assert(ofd >= 0 && efd >= 0);
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
        dup2(ofd, 1);
        dup2(efd, 2);
        for (int i = 0; env_assignments && env_assignments[i]; i++)
            putenv((char *)env_assignments[i]);
        execv(bin, argv);
        _exit(127);
    }
    int status = wait_or_kill(pid, timeout_s);
    free(argv);
    lseek(ofd, 0, SEEK_SET);
    lseek(efd, 0, SEEK_SET);
    char *o = slurp_fd(ofd), *e = slurp_fd(efd);
    close(ofd);
    close(efd);
    unlink(outname);
    unlink(errname);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

void assert_one_line_error(int rc, const char *err, const char *needle)
{
    cr_assert_eq(rc, 2, "expected exit 2, got %d (stderr: %s)", rc, err);
    cr_assert(!strncmp(err, "eccolo: error: ", 15), "not an eccolo error: %s", err);
    const char *nl = strchr(err, '\n');
    cr_assert(nl && nl[1] == '\0', "error is not one line: %s", err);
    cr_assert(strstr(err, needle), "error '%s' does not mention '%s'", err, needle);
}

double rel_err(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) > 0 ? sqrt(den) : 1);
}

double rel_err_f(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (sqrt(den) > 0 ? sqrt(den) : 1);
}

char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    cr_assert(vasprintf(&s, f, ap) >= 0);
    va_end(ap);
    return s;
}

char *slurp(const char *path)
{
    char *data;
    size_t len;
    cr_assert_eq(ecc_read_file(path, 1u << 30, &data, &len), ECC_OK, "%s", ecc_last_error());
    return data;
}

cJSON *slurp_json(const char *path)
{
    char *t = slurp(path);
    cJSON *j = cJSON_Parse(t);
    cr_assert(j, "%s: not JSON:\n%s", path, t);
    free(t);
    return j;
}

void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert(fwrite(data, 1, len, f) == len);
    fclose(f);
}

void copy_dir(const char *src, const char *dst)
{
    cr_assert(ecc_mkdirs(dst) == ECC_OK, "%s", ecc_last_error());
    DIR *d = opendir(src);
    cr_assert(d, "cannot open %s", src);
    struct dirent *e;
    while ((e = readdir(d))) {
        char *s = ecc_path_join(src, e->d_name);
        if (ecc_file_exists(s)) {
            char *t = ecc_path_join(dst, e->d_name), *data;
            size_t len;
            cr_assert(ecc_read_file(s, 1u << 30, &data, &len) == ECC_OK);
            write_file(t, data, len);
            free(data);
            free(t);
        }
        free(s);
    }
    closedir(d);
}

double test_uniform(uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (double)(*state >> 11) / 9007199254740992.0;
}

char *expect_cli_error(const char *const *env_assignments, const char *const *args, double timeout_s,
                       const char *want1, const char *want2)
{
    char *out, *err;
    int rc = run_cli_timeout(&out, &err, env_assignments, args, timeout_s);
    cr_assert_neq(rc, 128 + 9, "eccolo %s ran past %.0f s and was killed (hung?); stderr:\n%s", args[0], timeout_s,
                  err);
    cr_assert_lt(rc, 128, "eccolo crashed (signal %d); stderr:\n%s", rc - 128, err);
    cr_assert_eq(rc, 2, "exit code %d, expected 2; stderr:\n%s", rc, err);
    int lines = 0;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    cr_assert(strncmp(err, "eccolo: error: ", 15) == 0 && lines == 1 && err[strlen(err) - 1] == '\n',
              "stderr must be one line 'eccolo: error: ...':\n%s", err);
    cr_assert(strstr(err, want1), "stderr lacks '%s':\n%s", want1, err);
    if (want2)
        cr_assert(strstr(err, want2), "stderr lacks '%s':\n%s", want2, err);
    cr_assert_str_empty(out, "stdout should be empty on an error, got:\n%s", out);
    free(out);
    return err;
}

char *fixture_copy(const char *fixture, const char *tag)
{
    char *dir = test_tmpdir(tag), *m = ecc_path_join(dir, "model"), *src = fixture_path(fixture);
    copy_dir(src, m);
    free(src);
    free(dir);
    return m;
}

void config_set(const char *model_dir, const char *key, cJSON *value)
{
    char *p = ecc_path_join(model_dir, "config.json"), *text = slurp(p);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s: not JSON", p);
    cJSON_ReplaceItemInObjectCaseSensitive(j, key, value);
    char *out = cJSON_Print(j);
    write_file(p, out, strlen(out));
    free(out), cJSON_Delete(j), free(text), free(p);
}
