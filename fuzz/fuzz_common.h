/* Shared by the fuzz harnesses (fuzz/fuzz_<target>.c), header-only.
 *
 * Each harness defines LLVMFuzzerTestOneInput. Built with clang
 * -fsanitize=fuzzer it is a libFuzzer target (tools/fuzz.sh); built with
 * -DECC_FUZZ_STANDALONE it gets the main() below, which runs the harness
 * once on every file named on the command line or found in the directories
 * named there (the committed corpus and regressions: ctest -L fuzz).
 *
 * Helpers: a private scratch directory for the inputs that must be files
 * (on /dev/shm when there is one: every execution writes there), splitting
 * an input into parts at a separator line, and the fixture directory. */
#ifndef ECC_FUZZ_COMMON_H
#define ECC_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parts of a multi-file input are separated by this line (in a seed: the
 * bytes below, i.e. "\n" FUZZ_SEP "\n"); fuzz/eccolo.dict holds it too. */
#define FUZZ_SEP "\n=====ECCOLO-FUZZ-PART=====\n"

/* A property of the code under test does not hold: report and abort, which
 * libFuzzer records as a crash and ctest as a failure. */
#define FUZZ_CHECK(cond, ...)                                                         \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: property violated: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            abort();                                                                  \
        }                                                                             \
    } while (0)

static char fuzz_dir_[512];

static inline void fuzz_rm_tree_(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[4096];
            int k = snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            if (k > 0 && (size_t)k < sizeof sub)
                fuzz_rm_tree_(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void fuzz_cleanup_(void)
{
    if (fuzz_dir_[0])
        fuzz_rm_tree_(fuzz_dir_);
}

/* This process's scratch directory (created on first use, removed at exit). */
static inline const char *fuzz_tmpdir(void)
{
    if (!fuzz_dir_[0]) {
        const char *root = getenv("ECCOLO_FUZZ_TMP");
        struct stat st;
        if (!root || !*root)
            root = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                                        : "/tmp";
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/eccolo-fuzz-XXXXXX", root);
        if (!mkdtemp(fuzz_dir_)) {
            perror(fuzz_dir_);
            abort();
        }
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

/* Write data to NAME (a relative path; its directory must exist) in the scratch
 * directory; returns the full path in a static buffer of the caller's choice. */
static inline const char *fuzz_write(char *path, size_t cap, const char *name, const void *data, size_t len)
{
    snprintf(path, cap, "%s/%s", fuzz_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* A subdirectory of the scratch directory, emptied. */
static inline const char *fuzz_subdir(char *path, size_t cap, const char *name)
{
    snprintf(path, cap, "%s/%s", fuzz_tmpdir(), name);
    fuzz_rm_tree_(path);
    if (mkdir(path, 0755) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* Split data at FUZZ_SEP into at most max parts (the last takes the rest).
 * Returns the number of parts (at least 1). */
static inline int fuzz_split(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int max)
{
    const size_t sl = sizeof FUZZ_SEP - 1;
    int n = 0;
    size_t at = 0;
    while (n < max - 1) {
        const uint8_t *p = size - at >= sl ? memmem(data + at, size - at, FUZZ_SEP, sl) : NULL;
        if (!p)
            break;
        part[n] = data + at;
        len[n] = (size_t)(p - (data + at));
        n++;
        at = (size_t)(p - data) + sl;
    }
    part[n] = data + at;
    len[n] = size - at;
    return n + 1;
}

/* A malloc'd, NUL-terminated copy (some APIs take C strings). */
static inline char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    if (len)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

/* tests/fixtures: $ECCOLO_FIXTURES, else the path compiled in. */
static inline const char *fuzz_fixtures(void)
{
    const char *v = getenv("ECCOLO_FIXTURES");
#ifdef ECC_FUZZ_FIXTURES
    if (!v || !*v)
        v = ECC_FUZZ_FIXTURES;
#endif
    if (!v || !*v) {
        fprintf(stderr, "set ECCOLO_FIXTURES to eccolo's tests/fixtures\n");
        abort();
    }
    return v;
}

#ifdef ECC_FUZZ_STANDALONE
/* ---- the regression runner: the harness over files and directories ---- */

static inline int fuzz_name_cmp_(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline int fuzz_run_file_(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf)
        abort();
    /* an exact-size heap copy, so that reading past the input is an ASan error */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact)
        abort();
    memcpy(exact, buf, n);
    free(buf);
    if (getenv("ECCOLO_FUZZ_VERBOSE"))
        fprintf(stderr, "running %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static inline int fuzz_run_path_(const char *path, int *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return fuzz_run_file_(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap && !(names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names)))
            abort();
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, fuzz_name_cmp_);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char sub[4096];
        int k = snprintf(sub, sizeof sub, "%s/%s", path, names[i]);
        if (k > 0 && (size_t)k < sizeof sub && stat(sub, &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            rc |= fuzz_run_file_(sub);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    int count = 0, rc = 0;
    for (int i = 1; i < argc; i++)
        rc |= fuzz_run_path_(argv[i], &count);
    if (rc)
        return 1;
    /* a harness that aborts never gets here; every input ran to completion */
    printf("%s: %d inputs\n%d passed, 0 failed\n", argv[0], count, count);
    return 0;
}
#endif

#endif
