/* Batch jobs on a Slurm cluster: the sbatch script of an array job (one task
 * per shard of `eccolo batch`), the record of submissions in
 * DIR/slurm/jobs.json, and the state of every shard, from the manifest and
 * from Slurm (squeue, then scontrol, then sacct, else inferred from the
 * manifest). The commands are in host/cli/cli_submit.c.
 *
 * DIR/slurm/jobs.json:
 *   {"format": "eccolo-jobs", "version": 1, "out": "/abs/DIR",
 *    "submissions": [{"scheduler": "slurm", "job_id": "12", "submitted_at": "...Z",
 *      "submitted_unix": 1700000000, "n_shards": 3, "array": [0, 1, 2], "array_spec": "0-2",
 *      "resubmit": false, "batch_args": ["--model", ...], "chdir": "/abs", "eccolo": "/abs/eccolo",
 *      "script": "/abs/DIR/slurm/batch.sbatch", "resources": {"partition": "gpu", ...}}, ...]} */
#ifndef ECC_SUBMIT_H
#define ECC_SUBMIT_H

#include <cjson/cJSON.h>

#include "eccolo.h"

/* sbatch options passed through (NULL: not given). */
typedef struct ecc_slurm_resources {
    const char *partition, *time, *gpus_per_task, *cpus_per_task, *mem, *account, *job_name;
} ecc_slurm_resources;

/* Check the values (ECC_ERR_INPUT with a one-line message when one is malformed). */
ecc_status ecc_slurm_check_resources(const ecc_slurm_resources *r);

/* s quoted for a POSIX shell (malloc'd): as is when it is made only of
 * characters no shell interprets, else in single quotes, an embedded ' written
 * as '\''. */
char *ecc_shell_quote(const char *s);

/* Sorted indices as a Slurm array spec: "0-2,5,7-8" (malloc'd). */
char *ecc_array_spec(const int *idx, int n);

/* One array job: what the script is made of. */
typedef struct ecc_submit_plan {
    const char *eccolo;    /* absolute path of the eccolo binary the tasks run */
    const char *chdir;     /* absolute working directory of the tasks */
    const char *slurm_dir; /* absolute DIR/slurm: the script, the tasks' output */
    const char *job_name;
    int n_shards;
    const int *array; /* the task (shard) indices, sorted */
    int n_array;
    int n_args;
    char *const *args; /* the batch arguments (without --shard) */
    ecc_slurm_resources res;
} ecc_submit_plan;

/* The text of the sbatch script (malloc'd), or NULL (error recorded). */
char *ecc_sbatch_script(const ecc_submit_plan *p);

/* The value of option NAME ("--out") in a list of arguments, "--out X" or
 * "--out=X"; NULL when absent. */
const char *ecc_arg_value(int n, char *const *args, const char *name);

/* DIR/slurm/jobs.json: read (ECC_ERR_IO when missing), and append one
 * submission (under a lock; the file is replaced atomically). */
ecc_status ecc_jobs_read(cJSON **jobs, const char *dir);
ecc_status ecc_jobs_append(const char *dir, const char *out_abs, cJSON *submission);

/* A process run to its end, stdout and stderr captured. rc: the exit code,
 * 128 + signal, or 127 when it could not be started. on_out, when given, is
 * called with all of stdout so far whenever more arrives. */
typedef struct ecc_proc {
    int rc;
    char *out, *err;
} ecc_proc;
ecc_status ecc_proc_run(ecc_proc *p, char *const argv[], void (*on_out)(void *ctx, const char *out, size_t len),
                        void *ctx);
void ecc_proc_free(ecc_proc *p);
/* The path of an executable found in $PATH (malloc'd), or NULL. */
char *ecc_which(const char *name);

/* ---- the state of a submitted batch ---- */

typedef enum ecc_slurm_state {
    ECC_SLURM_UNKNOWN,
    ECC_SLURM_PENDING,
    ECC_SLURM_RUNNING,
    ECC_SLURM_COMPLETED,
    ECC_SLURM_FAILED,
} ecc_slurm_state;
const char *ecc_slurm_state_name(ecc_slurm_state s);

typedef struct ecc_shard_status {
    int shard;
    int prompts, done, failed, left; /* left: valid prompts neither done nor failed */
    int invalid;                     /* lines that can never run (bad JSON, duplicate id...), counted in failed */
    int retry;                       /* valid prompts not done (left + failures that a re-run may fix) */
    ecc_slurm_state state;
    char slurm_state[32]; /* Slurm's word: PENDING, RUNNING, COMPLETED, CANCELLED, ... or "" */
    char task[64];        /* JOBID_INDEX of the latest task that ran this shard, or "" */
    const char *source;   /* where the state comes from: squeue, scontrol, sacct, manifest, none */
    int finished;         /* every valid prompt done */
} ecc_shard_status;

typedef struct ecc_batch_status {
    char *dir, *prompts;
    int n_shards, n_submissions;
    ecc_shard_status *shards;
    int prompts_total, done, failed, left;
    int by_state[5]; /* shards per ecc_slurm_state */
    int slurm_ok;    /* squeue answered */
    char note[512];  /* why Slurm could not be asked, or "" */
} ecc_batch_status;

/* The state of DIR's shards (DIR/slurm/jobs.json must exist). */
ecc_status ecc_batch_status_get(ecc_batch_status *st, const char *dir);
void ecc_batch_status_free(ecc_batch_status *st);

#endif
