/* Small helpers shared by every host file: errors, checked allocation and
 * arithmetic, whole-file reads, timing. */
#ifndef ECC_UTIL_H
#define ECC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eccolo.h"

#if defined(__GNUC__)
#define ECC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ECC_PRINTF(a, b)
#endif

/* Record a one-line error for ecc_last_error() and return its code, so that
 * callers can write `return ecc_fail(ECC_ERR_FORMAT, "...", ...);`. */
ecc_status ecc_fail(ecc_status code, const char *fmt, ...) ECC_PRINTF(2, 3);
/* Prefix the current error message with context ("config.json: ..."). */
ecc_status ecc_fail_prefix(ecc_status code, const char *fmt, ...) ECC_PRINTF(2, 3);
void ecc_clear_error(void);

/* Allocation that records ECC_ERR_NOMEM (with the size and what it was for)
 * on failure. Returns NULL then; callers propagate ECC_ERR_NOMEM. */
void *ecc_malloc(size_t bytes, const char *what);
void *ecc_calloc(size_t n, size_t size, const char *what);
char *ecc_strdup(const char *s);

/* Overflow-checked size arithmetic: return 0 and set *out, or 1 on overflow. */
int ecc_mul_overflow(uint64_t a, uint64_t b, uint64_t *out);
int ecc_add_overflow(uint64_t a, uint64_t b, uint64_t *out);

/* Open a file for reading, refusing without blocking anything that is not a
 * regular file (a FIFO, a socket, a device, a directory): stat, then open with
 * O_NONBLOCK and fstat again. Every reader of a file goes through it (or
 * ecc_read_file), so that no input can hang eccolo. *fd is blocking again;
 * *size is the file's size. */
ecc_status ecc_open_input(const char *path, int *fd, uint64_t *size);
/* The one message for PATH whose st_mode MODE is not a regular file (it names
 * what it is: a FIFO, a socket, a device, a directory). */
ecc_status ecc_fail_not_regular(const char *path, unsigned mode);
/* Read a whole file into a NUL-terminated buffer (at most max_bytes), through
 * ecc_open_input. */
ecc_status ecc_read_file(const char *path, size_t max_bytes, char **data, size_t *len);
/* One line for a failed write of PATH (errno err), naming PATH: "disk full"
 * for ENOSPC, "disk full (quota exceeded)" for EDQUOT, strerror otherwise,
 * and that the previous file (if any) was left as it was. */
ecc_status ecc_fail_write(const char *path, int err);

/* Write a file atomically: write PATH.tmp.<pid>, fsync, rename over PATH,
 * fsync the directory, so a reader sees the old file or the new one, never a
 * torn one. Any failed write, flush, sync or close is an error (PATH is then
 * left as it was and the temporary removed). */
ecc_status ecc_write_file_atomic(const char *path, const void *data, size_t len);

/* The same for streamed writes:
 *   ecc_atomic_open     creates PATH.tmp.<pid>
 *   ecc_atomic_write    writes through it; the first failure (its errno) is
 *                       recorded and later writes are skipped; returns 1 while
 *                       every write so far succeeded
 *   ecc_atomic_commit   = ecc_atomic_finish, then ecc_atomic_rename
 *   ecc_atomic_finish   checks every write, flushes, fsyncs and closes the
 *                       temporary: it then holds the whole file, durably
 *   ecc_atomic_rename   renames it over PATH and fsyncs the directory
 *   ecc_atomic_abort    removes the temporary (the caller failed for its own
 *                       reasons, or a later file of a set failed); always safe
 * Every failing step removes the temporary and releases af, and fails with
 * ecc_fail_write's message; after a successful ecc_atomic_finish, the caller
 * must call ecc_atomic_rename or ecc_atomic_abort. Files that belong together
 * (a run's tensors and run.json) are each finished before either is renamed,
 * so a full disk leaves the old set whole. */
typedef struct ecc_atomic_file {
    FILE *f;           /* NULL once finished */
    char *path, *tmp;
    int err;           /* errno of the first failed write (0: none) */
    uint64_t bytes;    /* bytes written */
} ecc_atomic_file;
ecc_status ecc_atomic_open(ecc_atomic_file *af, const char *path);
int ecc_atomic_write(ecc_atomic_file *af, const void *data, size_t len);
ecc_status ecc_atomic_finish(ecc_atomic_file *af);
ecc_status ecc_atomic_rename(ecc_atomic_file *af);
ecc_status ecc_atomic_commit(ecc_atomic_file *af);
void ecc_atomic_abort(ecc_atomic_file *af);
/* fsync the directory holding PATH, so that a rename into it is durable (a
 * file system that cannot sync directories, EINVAL, has nothing to do). */
ecc_status ecc_sync_dir_of(const char *path);
/* 16 random bytes (getrandom) as 32 lowercase hex digits and a NUL. */
ecc_status ecc_random_id(char out[33]);
/* Is there something other than a directory at PATH? (A FIFO or a device
 * counts: the reader then refuses it with a message that says what it is.) */
int ecc_file_exists(const char *path);
int ecc_dir_exists(const char *path);
/* ecc_file_exists(DIR/NAME) */
int ecc_file_exists_in(const char *dir, const char *name);
/* mkdir -p */
ecc_status ecc_mkdirs(const char *path);
/* Join two path parts into a malloc'd string. */
char *ecc_path_join(const char *a, const char *b);

/* The host's available memory (MemAvailable of /proc/meminfo), or SIZE_MAX
 * when it cannot be read; for checking a memory plan before allocating. */
size_t ecc_mem_available(void);

/* Monotonic wall clock in seconds. */
double ecc_now(void);

/* UTF-8 validity of a byte string (1 = valid). */
int ecc_utf8_valid(const char *s, size_t len);
/* Text for the terminal: in[0..len) with C0 controls (newline and tab
 * included), DEL and bytes that are not valid UTF-8 written as \xNN, so that
 * bytes from a file cannot move the cursor, ring the bell or change colours,
 * and a message stays on one line. Valid UTF-8 (accents, CJK) is kept.
 * Writes at most cap - 1 bytes and a NUL (cut before an escape or a
 * character, never inside one); returns the length written. ecc_fail applies
 * it to every message. */
size_t ecc_escape_text(char *out, size_t cap, const char *in, size_t len);

#define ECC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ECC_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Propagate a failed status. */
#define ECC_TRY(expr)                     \
    do {                                  \
        ecc_status ecc_try_s_ = (expr);   \
        if (ecc_try_s_ != ECC_OK)         \
            return ecc_try_s_;            \
    } while (0)

#endif
