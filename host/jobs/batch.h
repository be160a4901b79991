/* Large-batch runs: prompts from a JSONL file, several sequences per forward
 * and backward, every finished prompt written as OUT/runs/<id>/ (run.json +
 * tensors.safetensors, renamed into place whole) and recorded in
 * OUT/manifest.jsonl (jobs/manifest.h), so that a killed run resumes where it
 * stopped. Several processes may work on one OUT at once (the shards of a
 * Slurm array, or the same command twice): each id is taken under a lock
 * (jobs/batch_dir.h) and computed once.
 *
 * Input lines: {"id": "unique-name", "prompt": "...", "continuation": "...",
 * "max_new_tokens": 32} (continuation and max_new_tokens optional). */
#ifndef ECC_BATCH_H
#define ECC_BATCH_H

#include <stdint.h>
#include <stdio.h>

#include "eccolo.h"

typedef struct ecc_batch_item {
    char *id;
    char *prompt;
    char *continuation;   /* or NULL */
    int max_new_tokens;   /* -1: the options' */
    int line;             /* 1-based line in the prompts file */
    char *error;          /* why the line cannot run (bad JSON, duplicate id, ...), or NULL */
} ecc_batch_item;

typedef struct ecc_batch_items {
    int n;
    ecc_batch_item *items;
} ecc_batch_items;

/* Parse one JSONL line into *item (all fields malloc'd). A line that is not a
 * valid request still gives an item, with ->error set and ->id "line:N" when
 * it has no usable id (no real id can equal that); so does a line longer than
 * 64 MiB (not parsed). A NUL character (\u0000) in the id, the prompt or the
 * continuation is an error of the line, not a string cut short. Returns 0
 * for a blank line (no item). */
int ecc_batch_parse_line(ecc_batch_item *item, const char *text, size_t len, int line);
/* Read a whole prompts file (duplicate ids are marked as errors). */
ecc_status ecc_batch_read(ecc_batch_items *out, const char *path);
void ecc_batch_items_free(ecc_batch_items *b);

/* FNV-1a 64 of the bytes of an id. */
uint64_t ecc_batch_id_hash(const char *id);
/* The shard (0 .. n-1) of an id: its hash modulo n. */
int ecc_batch_shard_of(const char *id, int n);
/* An id that can name a directory: 1-200 bytes of [A-Za-z0-9._-], not starting with '.'. */
int ecc_batch_id_ok(const char *id);

typedef struct ecc_batch_job {
    const char *prompts;  /* FILE.jsonl */
    const char *out;      /* DIR */
    int batch_size;       /* sequences per forward/backward, default 8 */
    int shard, n_shards;  /* this process takes ids with shard_of(id) == shard; n_shards 1 = all */
    ecc_options opt;      /* generation and explanation options, shared by every prompt */
    int redo_changed;     /* redo the done ids whose fingerprints differ (else the job is refused) */
    int quiet;
} ecc_batch_job;

typedef struct ecc_batch_stats {
    int total, skipped, done, failed; /* in this shard: items, already done before, done now, failed now */
    int busy;                         /* left to another live process that held them */
    int redone;                       /* of done: ids done before from other inputs or options */
    int64_t tokens;                   /* generated this time */
    double seconds;
} ecc_batch_stats;

/* Run a batch job on an open model. ECC_OK means the job ran (some items
 * may have failed: see stats->failed); other statuses are job-level errors,
 * among them a done id whose fingerprints (of its prompt and continuation, and
 * of the model and the generate options) differ from this job's, unless
 * job->redo_changed: the error names the id. */
ecc_status ecc_batch_run(ecc_batch_stats *stats, ecc_model *m, const ecc_batch_job *job);

/* The ids whose last run record in DIR/manifest.jsonl says done, once each, in
 * the order of their first record (malloc'd array of malloc'd strings), for
 * readers of a batch's results. Every id is checked (it can name a directory). */
ecc_status ecc_batch_done_ids(char ***ids, int *n, const char *dir);

#endif
