#define _GNU_SOURCE
#include "jobs/manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "util.h"

#define MAX_MANIFEST ((int64_t)1 << 32) /* 4 GiB of JSONL, as the prompts file */

/* ---- line ids -------------------------------------------------------------------------- */

void ecc_manifest_line_id(char *buf, size_t size, int line) { snprintf(buf, size, "line:%d", line); }

int ecc_manifest_is_line_id(const char *id)
{
    if (strncmp(id, "line:", 5) != 0 || !id[5])
        return 0;
    for (const char *p = id + 5; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    return 1;
}

/* ---- the index: id -> entry ------------------------------------------------------------ */

/* The slot of id: where it is, or the empty slot where it would go. */
static int *slot_of(const ecc_manifest *m, const char *id)
{
    size_t mask = (size_t)m->n_slots - 1;
    for (size_t i = ecc_batch_id_hash(id) & mask;; i = (i + 1) & mask)
        if (!m->slots[i] || !strcmp(m->e[m->slots[i] - 1].id, id))
            return &m->slots[i];
}

static ecc_status grow(ecc_manifest *m)
{
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 256;
        ecc_manifest_entry *e = realloc(m->e, sizeof *e * (size_t)cap);
        if (!e)
            return ecc_fail(ECC_ERR_NOMEM, "out of memory reading %s", m->path);
        m->e = e;
        m->cap = cap;
    }
    if (2 * (m->n + 1) > m->n_slots) { /* load at most 1/2 */
        int n_slots = m->n_slots ? 2 * m->n_slots : 512;
        int *slots = ecc_calloc((size_t)n_slots, sizeof *slots, "the manifest index");
        if (!slots)
            return ECC_ERR_NOMEM;
        free(m->slots);
        m->slots = slots;
        m->n_slots = n_slots;
        for (int i = 0; i < m->n; i++)
            *slot_of(m, m->e[i].id) = i + 1;
    }
    return ECC_OK;
}

const ecc_manifest_entry *ecc_manifest_find(const ecc_manifest *m, const char *id)
{
    if (!m->n_slots)
        return NULL;
    int k = *slot_of(m, id);
    return k ? &m->e[k - 1] : NULL;
}

static void copy_fp(char dst[17], const cJSON *v)
{
    dst[0] = '\0';
    if (cJSON_IsString(v) && strlen(v->valuestring) == 16)
        memcpy(dst, v->valuestring, 17);
}

/* One complete line (line_no: 1-based). */
static ecc_status add_line(ecc_manifest *m, const char *text, size_t len, int64_t line_no)
{
    cJSON *j = cJSON_ParseWithLength(text, len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id"), *st = cJSON_GetObjectItemCaseSensitive(j, "status");
    ecc_status s = ECC_OK;
    if (!cJSON_IsString(id) || !cJSON_IsString(st) || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "invalid")) ||
        ecc_manifest_is_line_id(id->valuestring)) {
        cJSON_Delete(j); /* not a run record: a torn line, or a report of a line that could not run */
        return ECC_OK;
    }
    if (!ecc_batch_id_ok(id->valuestring)) {
        s = ecc_fail(ECC_ERR_FORMAT, "%s line %lld: the id \"%.60s\" cannot name a run directory (the manifest was "
                     "edited or damaged): remove that line", m->path, (long long)line_no, id->valuestring);
        cJSON_Delete(j);
        return s;
    }
    ecc_manifest_entry *e = (ecc_manifest_entry *)ecc_manifest_find(m, id->valuestring);
    if (!e) {
        if ((s = grow(m)) != ECC_OK || !(m->e[m->n].id = ecc_strdup(id->valuestring))) {
            cJSON_Delete(j);
            return s != ECC_OK ? s : ECC_ERR_NOMEM;
        }
        e = &m->e[m->n++];
        *slot_of(m, e->id) = m->n;
    }
    e->done = !strcmp(st->valuestring, "done");
    copy_fp(e->input_fp, cJSON_GetObjectItemCaseSensitive(j, "input_fingerprint"));
    copy_fp(e->options_fp, cJSON_GetObjectItemCaseSensitive(j, "options_fingerprint"));
    cJSON_Delete(j);
    return ECC_OK;
}

/* ---- reading ---------------------------------------------------------------------------- */

/* Something other than a regular file at PATH (a FIFO, a device) is refused
 * before it is opened: opening a device can have effects. */
static ecc_status refuse_special(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && !S_ISREG(sb.st_mode) ? ecc_fail_not_regular(path, sb.st_mode) : ECC_OK;
}

static ecc_status read_from(ecc_manifest *m)
{
    ECC_TRY(refuse_special(m->path));
    int fd = open(m->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? ECC_OK : ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", m->path, strerror(errno));
    /* shared: never while a record is half appended (a reader that cannot lock still skips a torn last line) */
    while (flock(fd, LOCK_SH) != 0 && errno == EINTR)
        ;
    struct stat sb;
    ecc_status s = ECC_OK;
    if (fstat(fd, &sb) != 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot stat: %s", m->path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        s = ecc_fail_not_regular(m->path, sb.st_mode);
    else if ((int64_t)sb.st_size > MAX_MANIFEST)
        s = ecc_fail(ECC_ERR_INPUT, "%s has %lld bytes, more than the 4 GiB allowed", m->path,
                     (long long)sb.st_size);
    else if ((int64_t)sb.st_size < m->offset)
        s = ecc_fail(ECC_ERR_FORMAT, "%s became shorter while the batch read it: another program rewrote it",
                     m->path);
    size_t len = s == ECC_OK ? (size_t)((int64_t)sb.st_size - m->offset) : 0, got = 0;
    char *data = len ? ecc_malloc(len, "the manifest") : NULL;
    if (len && !data)
        s = ECC_ERR_NOMEM;
    while (s == ECC_OK && got < len) {
        ssize_t r = pread(fd, data + got, len - got, (off_t)(m->offset + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            s = r < 0 ? ecc_fail(ECC_ERR_IO, "%s: cannot read: %s", m->path, strerror(errno)) : ECC_OK;
            len = got; /* shorter than fstat said: read what is there */
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    /* complete lines only: a torn tail waits until it is repaired (cut) by the next append */
    for (size_t at = 0; s == ECC_OK && at < len;) {
        const char *nl = memchr(data + at, '\n', len - at);
        if (!nl)
            break;
        size_t l = (size_t)(nl - (data + at));
        s = add_line(m, data + at, l, ++m->lines);
        at += l + 1;
        if (s == ECC_OK)
            m->offset += (int64_t)l + 1;
    }
    free(data);
    return s;
}

ecc_status ecc_manifest_open(ecc_manifest *m, const char *dir)
{
    memset(m, 0, sizeof *m);
    if (!(m->path = ecc_path_join(dir, "manifest.jsonl")))
        return ECC_ERR_NOMEM;
    return read_from(m);
}

ecc_status ecc_manifest_refresh(ecc_manifest *m) { return read_from(m); }

void ecc_manifest_free(ecc_manifest *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->e[i].id);
    free(m->e);
    free(m->slots);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* ---- appending -------------------------------------------------------------------------- */

static const char *io_reason(int err)
{
    return err == ENOSPC || err == EDQUOT ? "disk full" : strerror(err);
}

/* A last line without its newline was torn by a kill (or a full disk) during
 * an append: cut it, so that the next record starts a line of its own. Called
 * under the exclusive lock, so no append is in progress. */
static ecc_status cut_torn_tail(int fd, const char *path)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return ecc_fail(ECC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    off_t end = sb.st_size, at = end;
    char buf[4096];
    while (at > 0) { /* back to the last newline */
        size_t n = (size_t)ECC_MIN((off_t)sizeof buf, at);
        ssize_t r = pread(fd, buf, n, at - (off_t)n);
        if (r != (ssize_t)n)
            return ecc_fail(ECC_ERR_IO, "%s: cannot read: %s", path, r < 0 ? strerror(errno) : "short read");
        const char *nl = memrchr(buf, '\n', n);
        if (nl) {
            at = at - (off_t)n + (nl - buf) + 1;
            break;
        }
        at -= (off_t)n;
    }
    if (at == end)
        return ECC_OK;
    if (ftruncate(fd, at) != 0 || fsync(fd) != 0)
        return ecc_fail(ECC_ERR_IO, "%s: cannot cut the torn last line: %s", path, io_reason(errno));
    return ECC_OK;
}

ecc_status ecc_manifest_append(const char *path, const char *text, size_t len)
{
    ECC_TRY(refuse_special(path));
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0644); /* read: the torn tail */
    if (fd < 0)
        return ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    ecc_status s = ECC_OK;
    int rc;
    while ((rc = flock(fd, LOCK_EX)) != 0 && errno == EINTR)
        ;
    if (rc != 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot lock: %s (the file system of the batch directory must support flock)",
                     path, strerror(errno));
    else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        s = ecc_fail_not_regular(path, sb.st_mode);
    if (s == ECC_OK)
        s = cut_torn_tail(fd, path);
    char *line = s == ECC_OK ? ecc_malloc(len + 1, "a manifest line") : NULL;
    if (s == ECC_OK && !line)
        s = ECC_ERR_NOMEM;
    off_t start = s == ECC_OK ? lseek(fd, 0, SEEK_END) : -1;
    if (s == ECC_OK && start < 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
    if (s == ECC_OK) {
        memcpy(line, text, len);
        line[len] = '\n';
        size_t done = 0;
        while (done < len + 1) { /* one write, unless the system splits it */
            ssize_t w = write(fd, line + done, len + 1 - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int err = w < 0 ? errno : ENOSPC;
                int cut = ftruncate(fd, start); /* leave no partial record (else the next append cuts it) */
                (void)cut;
                s = ecc_fail(ECC_ERR_IO, "%s: cannot append a record: %s", path, io_reason(err));
                break;
            }
            done += (size_t)w;
        }
    }
    if (s == ECC_OK && fsync(fd) != 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot sync an appended record: %s", path, io_reason(errno));
    free(line);
    if (close(fd) != 0 && s == ECC_OK) /* closing also drops the lock */
        s = ecc_fail(ECC_ERR_IO, "%s: cannot close: %s", path, io_reason(errno));
    return s;
}
