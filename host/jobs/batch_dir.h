/* A batch directory shared by several processes (shards of a Slurm array, or
 * the same command started twice): who works on which id, and the temporary
 * directories of runs being written.
 *
 * An id is worked on only under its lock: a one-byte lock (an open file
 * description lock, fcntl F_OFD_SETLK) at offset hash(id) of DIR/.batch.lock,
 * taken without waiting and held from the moment a process takes the id until
 * its manifest record is appended. The kernel drops the locks of a process
 * that dies, so a killed shard never blocks the ids it held, and one file
 * serves any number of ids (no lock file per id on a cluster file system). */
#ifndef ECC_BATCH_DIR_H
#define ECC_BATCH_DIR_H

#include "eccolo.h"

typedef struct ecc_batch_locks {
    int fd;
    char *path; /* DIR/.batch.lock */
} ecc_batch_locks;

ecc_status ecc_batch_locks_open(ecc_batch_locks *l, const char *dir);
void ecc_batch_locks_close(ecc_batch_locks *l);
/* Take the lock of id without waiting: 1 = taken, 0 = another live process
 * holds it, -1 = error (recorded). */
int ecc_batch_lock(ecc_batch_locks *l, const char *id);
void ecc_batch_unlock(ecc_batch_locks *l, const char *id);

/* Remove RUNS/.tmp-<id>-<pid> and RUNS/.old-<id>-<pid> left by processes that
 * died: each only when <id> parses exactly (never by prefix), no live process
 * on this host has <pid>, and the lock of <id> is free (so no live process on
 * any host sharing the directory is writing it). */
void ecc_batch_sweep(ecc_batch_locks *l, const char *runs_dir);

/* Rename the finished run tmp to RUNS/<id>, replacing an older run of the id
 * (redone because it changed, or never recorded): the old one is moved aside
 * to RUNS/.old-<id>-<pid> and removed. The caller holds the lock of id. */
ecc_status ecc_batch_put_run(const char *runs_dir, const char *id, const char *tmp);
/* Remove a run directory (its files, then itself). */
void ecc_batch_remove_dir(const char *dir);

#endif
