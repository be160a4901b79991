#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_err[1024];

const char *ecc_last_error(void) { return g_err; }
void ecc_clear_error(void) { g_err[0] = '\0'; }

ecc_status ecc_fail(ecc_status code, const char *fmt, ...)
{
    char raw[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* messages quote file names, dtypes, merges lines, tensor names: bytes
     * from files, which must not reach the terminal as control sequences */
    ecc_escape_text(g_err, sizeof g_err, raw, strlen(raw));
    return code;
}

ecc_status ecc_fail_prefix(ecc_status code, const char *fmt, ...)
{
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    return ecc_fail(code, "%s%s", prefix, old);
}

void *ecc_malloc(size_t bytes, const char *what)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        ecc_fail(ECC_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *ecc_calloc(size_t n, size_t size, const char *what)
{
    uint64_t total;
    if (ecc_mul_overflow(n, size, &total)) {
        ecc_fail(ECC_ERR_NOMEM, "size of %s overflows (%zu x %zu)", what, n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        ecc_fail(ECC_ERR_NOMEM, "out of memory allocating %llu bytes for %s",
                 (unsigned long long)total, what);
    return p;
}

char *ecc_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ecc_malloc(n, "a string");
    if (p)
        memcpy(p, s, n);
    return p;
}

int ecc_mul_overflow(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_mul_overflow(a, b, out); }
int ecc_add_overflow(uint64_t a, uint64_t b, uint64_t *out) { return __builtin_add_overflow(a, b, out); }

/* What a path that is not a regular file is, for messages. */
static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a FIFO (named pipe)"
           : S_ISSOCK(m) ? "a socket"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
                         : "not a regular file";
}

ecc_status ecc_fail_not_regular(const char *path, unsigned mode)
{
    return ecc_fail(ECC_ERR_IO, "%s: is %s, not a regular file; eccolo reads only regular files", path,
                    file_kind((mode_t)mode));
}

ecc_status ecc_open_input(const char *path, int *fd_out, uint64_t *size)
{
    *fd_out = -1;
    *size = 0;
    struct stat st;
    /* stat first: opening a device can have effects (a tape rewinds, a
     * terminal becomes the controlling one), so only regular files are opened */
    if (stat(path, &st) != 0)
        return ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ecc_fail_not_regular(path, st.st_mode);
    /* O_NONBLOCK: if the path became a FIFO since the stat, the open returns
     * at once instead of waiting for a writer */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ecc_status s = ecc_fail_not_regular(path, st.st_mode);
        close(fd);
        return s;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        ecc_status s = ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return ECC_OK;
}

ecc_status ecc_read_file(const char *path, size_t max_bytes, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd;
    uint64_t size;
    ECC_TRY(ecc_open_input(path, &fd, &size));
    if (size > max_bytes) {
        close(fd);
        return ecc_fail(ECC_ERR_FORMAT, "%s: %llu bytes is more than the %zu bytes allowed for this file", path,
                        (unsigned long long)size, max_bytes);
    }
    size_t n = (size_t)size;
    char *buf = ecc_malloc(n + 1, path);
    if (!buf) {
        close(fd);
        return ECC_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ecc_status s = r < 0 ? ecc_fail(ECC_ERR_IO, "%s: read failed: %s", path, strerror(errno))
                                 : ecc_fail(ECC_ERR_IO, "%s: the file shrank while it was read (%zu of %zu bytes)",
                                            path, got, n);
            free(buf);
            close(fd);
            return s;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return ECC_OK;
}

ecc_status ecc_fail_write(const char *path, int err)
{
    if (err == ENOSPC || err == EDQUOT)
        return ecc_fail(ECC_ERR_IO, "%s: disk full%s while writing it; the previous file (if any) is unchanged: free "
                        "some space and run again", path, err == EDQUOT ? " (disk quota exceeded)" : "");
    return ecc_fail(ECC_ERR_IO, "%s: cannot write it: %s; the previous file (if any) is unchanged", path,
                    strerror(err ? err : EIO));
}

static void atomic_release(ecc_atomic_file *af)
{
    free(af->tmp);
    free(af->path);
    af->tmp = af->path = NULL;
    af->f = NULL;
}

ecc_status ecc_atomic_open(ecc_atomic_file *af, const char *path)
{
    memset(af, 0, sizeof *af);
    af->path = ecc_strdup(path);
    size_t n = strlen(path) + 32;
    af->tmp = ecc_malloc(n, "a file name");
    if (!af->path || !af->tmp) {
        atomic_release(af);
        return ECC_ERR_NOMEM;
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        int err = errno;
        ecc_status s = err == ENOSPC || err == EDQUOT
                           ? ecc_fail_write(path, err)
                           : ecc_fail(ECC_ERR_IO, "%s: cannot create: %s", af->tmp, strerror(err));
        atomic_release(af);
        return s;
    }
    return ECC_OK;
}

int ecc_atomic_write(ecc_atomic_file *af, const void *data, size_t len)
{
    if (af->err || !af->f)
        return 0;
    errno = 0;
    if (len && fwrite(data, 1, len, af->f) != len) {
        af->err = errno ? errno : EIO;
        return 0;
    }
    af->bytes += len;
    return 1;
}

ecc_status ecc_atomic_finish(ecc_atomic_file *af)
{
    if (!af->f)
        return ecc_fail(ECC_ERR_IO, "%s: not open for writing (finished twice?)", af->path ? af->path : "a file");
    int err = af->err;
    errno = 0;
    if (!err && (ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0))
        err = errno ? errno : EIO;
    if (fclose(af->f) != 0 && !err)
        err = errno ? errno : EIO;
    af->f = NULL;
    if (!err)
        return ECC_OK;
    unlink(af->tmp);
    ecc_status s = ecc_fail_write(af->path, err);
    atomic_release(af);
    return s;
}

ecc_status ecc_sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path); /* "/x" -> "/", "x" -> "." */
    char *dir = ecc_malloc(n + 2, "a directory name");
    if (!dir)
        return ECC_ERR_NOMEM;
    memcpy(dir, n ? path : ".", n ? n : 1);
    dir[n ? n : 1] = '\0';
    ecc_status s = ECC_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        s = ecc_fail(ECC_ERR_IO, "%s: cannot sync the directory after renaming %s into it: %s", dir, path,
                     strerror(errno));
    if (fd >= 0)
        close(fd);
    free(dir);
    return s;
}

ecc_status ecc_atomic_rename(ecc_atomic_file *af)
{
    ecc_status s = ECC_OK;
    if (rename(af->tmp, af->path) != 0) {
        s = ecc_fail(ECC_ERR_IO, "%s: cannot rename %s into place: %s", af->path, af->tmp, strerror(errno));
        unlink(af->tmp);
    } else {
        s = ecc_sync_dir_of(af->path);
    }
    atomic_release(af);
    return s;
}

ecc_status ecc_atomic_commit(ecc_atomic_file *af)
{
    ECC_TRY(ecc_atomic_finish(af));
    return ecc_atomic_rename(af);
}

void ecc_atomic_abort(ecc_atomic_file *af)
{
    if (af->f)
        fclose(af->f);
    if (af->tmp)
        unlink(af->tmp);
    atomic_release(af);
}

ecc_status ecc_write_file_atomic(const char *path, const void *data, size_t len)
{
    ecc_atomic_file af;
    ECC_TRY(ecc_atomic_open(&af, path));
    ecc_atomic_write(&af, data, len);
    return ecc_atomic_commit(&af);
}

ecc_status ecc_random_id(char out[33])
{
    uint8_t b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t n = getrandom(b + got, sizeof b - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return ecc_fail(ECC_ERR_IO, "getrandom failed: %s", strerror(errno));
        got += (size_t)n;
    }
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return ECC_OK;
}

int ecc_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

int ecc_file_exists_in(const char *dir, const char *name)
{
    char *p = ecc_path_join(dir, name);
    int yes = p && ecc_file_exists(p);
    free(p);
    return yes;
}

int ecc_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

ecc_status ecc_mkdirs(const char *path)
{
    if (!*path)
        return ecc_fail(ECC_ERR_INPUT, "an empty directory name: give a path");
    char *p = ecc_strdup(path);
    if (!p)
        return ECC_ERR_NOMEM;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == '\0') {
            char c = *q;
            *q = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                ecc_status s = ecc_fail(ECC_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
                free(p);
                return s;
            }
            *q = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    if (!ecc_dir_exists(path))
        return ecc_fail(ECC_ERR_IO, "%s: exists and is not a directory", path);
    return ECC_OK;
}

char *ecc_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = ecc_malloc(la + lb + 2, "a path");
    if (!p)
        return NULL;
    memcpy(p, a, la);
    size_t o = la;
    if (la && a[la - 1] != '/')
        p[o++] = '/';
    memcpy(p + o, b, lb + 1);
    return p;
}

size_t ecc_mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb && kb < SIZE_MAX / 1024 ? (size_t)kb * 1024 : SIZE_MAX;
}

double ecc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Length of the valid UTF-8 sequence at s[0..n) (1 to 4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        k = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
        k = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
        k = 4, cp = c & 0x07;
    else
        return 0;
    if (k > n)
        return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* overlong forms, surrogates and code points past U+10FFFF */
    if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return k;
}

size_t ecc_escape_text(char *out, size_t cap, const char *in, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (cap == 0)
        return 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        int esc = k == 0 || s[i] < 0x20 || s[i] == 0x7F;
        size_t need = esc ? 4 : k;
        if (o + need >= cap)
            break; /* truncated before an escape or a character, never inside one */
        if (esc) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[s[i] >> 4];
            out[o++] = hex[s[i] & 15];
            i++;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    return o;
}

int ecc_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0, k; i < len; i += k)
        if (!(k = utf8_seq(s + i, len - i)))
            return 0;
    return 1;
}
