#define _GNU_SOURCE /* F_OFD_SETLK */
#include "jobs/batch_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "util.h"

/* ---- locks ------------------------------------------------------------------------------- */

ecc_status ecc_batch_locks_open(ecc_batch_locks *l, const char *dir)
{
    l->fd = -1;
    if (!(l->path = ecc_path_join(dir, ".batch.lock")))
        return ECC_ERR_NOMEM;
    l->fd = open(l->path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
    struct stat sb;
    if (l->fd < 0 || fstat(l->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ecc_status s = l->fd < 0 ? ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", l->path, strerror(errno))
                                 : ecc_fail_not_regular(l->path, sb.st_mode);
        ecc_batch_locks_close(l);
        return s;
    }
    return ECC_OK;
}

void ecc_batch_locks_close(ecc_batch_locks *l)
{
    if (l->fd >= 0)
        close(l->fd); /* drops every lock */
    free(l->path);
    l->fd = -1;
    l->path = NULL;
}

/* The byte of id: FNV-1a 64 of its bytes, in [0, 2^62) (two ids share a byte
 * with probability 2^-62: then one waits for the other's next run). */
static off_t lock_offset(const char *id) { return (off_t)(ecc_batch_id_hash(id) >> 2); }

static int set_lock(int fd, short type, const char *id)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = lock_offset(id), .l_len = 1};
    int rc = fcntl(fd, F_OFD_SETLK, &fl);
    if (rc != 0 && errno == EINVAL) /* a kernel without OFD locks (< 3.15): the process's lock, same effect here */
        rc = fcntl(fd, F_SETLK, &fl);
    return rc;
}

int ecc_batch_lock(ecc_batch_locks *l, const char *id)
{
    if (set_lock(l->fd, F_WRLCK, id) == 0)
        return 1;
    if (errno == EAGAIN || errno == EACCES)
        return 0;
    ecc_fail(ECC_ERR_IO, "%s: cannot lock: %s (the file system of the batch directory must support fcntl locks)",
             l->path, strerror(errno));
    return -1;
}

void ecc_batch_unlock(ecc_batch_locks *l, const char *id) { set_lock(l->fd, F_UNLCK, id); }

/* ---- temporary and replaced runs ------------------------------------------------------------ */

void ecc_batch_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *f;
    while (d && (f = readdir(d))) {
        if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, ".."))
            continue;
        char *p = ecc_path_join(dir, f->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* ".tmp-<id>-<pid>" or ".old-<id>-<pid>": the id and the pid, or 0. */
static int parse_temp_name(char *id, size_t id_size, long *pid, const char *name)
{
    if (strncmp(name, ".tmp-", 5) != 0 && strncmp(name, ".old-", 5) != 0)
        return 0;
    const char *dash = strrchr(name + 5, '-'), *p;
    if (!dash || dash == name + 5 || (size_t)(dash - (name + 5)) >= id_size || !dash[1] || strlen(dash + 1) > 9)
        return 0;
    for (p = dash + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    memcpy(id, name + 5, (size_t)(dash - (name + 5)));
    id[dash - (name + 5)] = '\0';
    *pid = strtol(dash + 1, NULL, 10);
    return *pid > 0 && ecc_batch_id_ok(id);
}

static int pid_alive(long pid) { return pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM); }

void ecc_batch_sweep(ecc_batch_locks *l, const char *runs_dir)
{
    DIR *d = opendir(runs_dir);
    struct dirent *e;
    char id[256];
    long pid;
    while (d && (e = readdir(d))) {
        if (!parse_temp_name(id, sizeof id, &pid, e->d_name) || pid_alive(pid) || ecc_batch_lock(l, id) != 1)
            continue;
        char *p = ecc_path_join(runs_dir, e->d_name);
        if (p)
            ecc_batch_remove_dir(p);
        free(p);
        ecc_batch_unlock(l, id);
    }
    if (d)
        closedir(d);
}

ecc_status ecc_batch_put_run(const char *runs_dir, const char *id, const char *tmp)
{
    char *dst = ecc_path_join(runs_dir, id);
    if (!dst)
        return ECC_ERR_NOMEM;
    ecc_status s = ECC_OK;
    if (rename(tmp, dst) != 0) {
        if (errno != ENOTEMPTY && errno != EEXIST) {
            s = ecc_fail(ECC_ERR_IO, "%s: cannot rename into place: %s", dst, strerror(errno));
            free(dst);
            return s;
        }
        char name[300];
        snprintf(name, sizeof name, ".old-%s-%ld", id, (long)getpid());
        char *old = ecc_path_join(runs_dir, name);
        if (!old)
            s = ECC_ERR_NOMEM;
        else if (rename(dst, old) != 0)
            s = ecc_fail(ECC_ERR_IO, "%s: cannot move the older run aside: %s", dst, strerror(errno));
        else if (rename(tmp, dst) != 0) {
            s = ecc_fail(ECC_ERR_IO, "%s: cannot rename into place: %s", dst, strerror(errno));
            int back = rename(old, dst); /* if that fails too, the next sweep removes the older run */
            (void)back;
        } else {
            ecc_batch_remove_dir(old);
        }
        free(old);
    }
    free(dst);
    return s;
}
