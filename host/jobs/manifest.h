/* DIR/manifest.jsonl of a batch: one JSON line per prompt handled, appended
 * (under an exclusive flock, checked and synced) by every process that works
 * on DIR, read under a shared flock.
 *
 * A line is a run record {"id", "status": "done"|"failed", "input_fingerprint",
 * "options_fingerprint", ...} or, for a prompts line that could not run (bad
 * JSON, a duplicate id, ...), an invalid-line record with "invalid": true. The
 * state of an id is its last run record; invalid-line records are reports and
 * never change it. Ids of run records are checked before anyone uses them as
 * paths: one that cannot name a directory is an error (the file was edited or
 * damaged), not a path to follow. */
#ifndef ECC_MANIFEST_H
#define ECC_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "eccolo.h"

typedef struct ecc_manifest_entry {
    char *id;
    int done;            /* the last run record says "done" */
    char input_fp[17];   /* its fingerprints (16 hex digits), "" when it has none (an older eccolo) */
    char options_fp[17];
} ecc_manifest_entry;

typedef struct ecc_manifest {
    char *path;                  /* DIR/manifest.jsonl */
    ecc_manifest_entry *e;       /* one per id, in the order of their first record */
    int n, cap;
    int *slots;                  /* hash table over e: index + 1, 0 = empty */
    int n_slots;                 /* a power of two, at least 2 n */
    int64_t offset;              /* bytes read: to the end of the last complete line */
    int64_t lines;               /* complete lines read */
} ecc_manifest;

/* Read DIR/manifest.jsonl (no file: an empty manifest). A line that does not
 * parse (a torn line) is skipped. */
ecc_status ecc_manifest_open(ecc_manifest *m, const char *dir);
/* Read the complete lines appended since the last read (by any process). */
ecc_status ecc_manifest_refresh(ecc_manifest *m);
/* The state of an id, or NULL when it has no run record. */
const ecc_manifest_entry *ecc_manifest_find(const ecc_manifest *m, const char *id);
void ecc_manifest_free(ecc_manifest *m);

/* Append one line (text without its newline) to the manifest at path: under
 * an exclusive flock, after cutting a torn last line left by a process killed
 * while appending (so the new record is never glued onto it), in one checked
 * write, then fsync. A failed append removes what it wrote and is an error. */
ecc_status ecc_manifest_append(const char *path, const char *text, size_t len);

/* The id given to a prompts line that has no usable id: "line:N", which no
 * real id can equal (':' is not allowed in ids) and which never names a path. */
void ecc_manifest_line_id(char *buf, size_t size, int line);
/* Is id such a line id? */
int ecc_manifest_is_line_id(const char *id);

#endif
