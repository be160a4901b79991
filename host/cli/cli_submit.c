/* eccolo submit: an `eccolo batch` as a Slurm array job, one task per shard;
 * eccolo status: where each shard stands; eccolo submit --resubmit-failed:
 * the shards that stopped, again (see host/jobs/submit.h). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "jobs/submit.h"
#include "util.h"

static const char *k_submit_usage =
    "usage: eccolo submit --scheduler slurm --shards N [Slurm options] [--dry-run] [--wait] -- BATCH ARGUMENTS\n"
    "       eccolo submit --resubmit-failed DIR [Slurm options] [--dry-run] [--wait]\n"
    "\n"
    "Runs `eccolo batch BATCH ARGUMENTS` as a Slurm array job of N tasks: task I runs the\n"
    "prompts whose id hashes to I (--shard I/N). The batch arguments must hold --out DIR and\n"
    "--prompts FILE.jsonl (and --model, generation and explanation options, as for eccolo\n"
    "batch). Writes the script DIR/slurm/batch.sbatch, submits it with sbatch, records the job\n"
    "in DIR/slurm/jobs.json; the tasks' output goes to DIR/slurm/shard-I.out. Follow it with\n"
    "eccolo status DIR.\n"
    "\n"
    "  --scheduler slurm       the scheduler (only Slurm; the default)\n"
    "  --shards N              array tasks, one per shard (1 to 100000)\n"
    "  --partition P           sbatch --partition\n"
    "  --time HH:MM:SS         sbatch --time: the limit per task\n"
    "  --gpus-per-task G       sbatch --gpus-per-task ([type:]count)\n"
    "  --cpus-per-task C       sbatch --cpus-per-task (and OMP_NUM_THREADS=C in the task)\n"
    "  --mem M                 sbatch --mem, e.g. 16G\n"
    "  --account A             sbatch --account\n"
    "  --job-name NAME         sbatch --job-name (default eccolo-<name of DIR>)\n"
    "  --eccolo PATH           the eccolo the tasks run (default: this one, by absolute path)\n"
    "  --dry-run               write and print the script and the sbatch command; submit nothing\n"
    "  --quiet                 print nothing on success but the --dry-run script\n"
    "  --wait                  wait for the job to end (sbatch --wait); exit 0 when every task\n"
    "                          succeeded, 1 when some did not\n"
    "  --resubmit-failed DIR   submit again the shards of DIR that did not finish (prompts not\n"
    "                          done, and not pending or running in Slurm), with the recorded\n"
    "                          batch arguments; the options above given here override the\n"
    "                          recorded ones\n"
    "\n"
    "Exit codes: 0 submitted (or, with --wait, every task succeeded), 1 with --wait when some\n"
    "task failed, 2 for errors (arguments, sbatch missing or refusing the job).\n";

static const char *k_status_usage =
    "usage: eccolo status DIR [--json]\n"
    "\n"
    "For each shard of a batch submitted with eccolo submit: its prompts (from the prompts\n"
    "file), how many are done and failed (from DIR/manifest.jsonl), and the state of its\n"
    "latest Slurm task: pending, running, completed, failed (also cancelled, timed out,\n"
    "killed) or unknown. The state comes from squeue, then scontrol for tasks that left the\n"
    "queue, then sacct; when Slurm has forgotten a task, from the manifest (completed when\n"
    "all its prompts are done, else failed). A shard is finished when all its prompts are done.\n"
    "\n"
    "  --json                  machine-readable output\n"
    "  --quiet                 the table only: no note, no resubmission hint\n";

/* ---- helpers ------------------------------------------------------------------------- */

/* An absolute version of path (relative to cwd), without resolving links. */
static char *absolute(const char *cwd, const char *path)
{
    char *p = path[0] == '/' ? ecc_strdup(path) : ecc_path_join(cwd, path);
    for (size_t n = p ? strlen(p) : 0; n > 1 && p[n - 1] == '/'; n--) /* "out/" names out */
        p[n - 1] = '\0';
    return p;
}

static char *self_exe(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return NULL;
    buf[n] = '\0';
    return ecc_strdup(buf);
}

static void iso_time(char *buf, size_t cap, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *k_res_names[] = {"partition", "time", "gpus_per_task", "cpus_per_task", "mem", "account",
                                    "job_name"};

static const char **res_field(ecc_slurm_resources *r, int i)
{
    const char **f[] = {&r->partition, &r->time, &r->gpus_per_task, &r->cpus_per_task, &r->mem, &r->account,
                        &r->job_name};
    return f[i];
}

/* ---- submitting ------------------------------------------------------------------------- */

/* --quiet of submit and status: the informational lines (job submitted,
 * resubmitting, notes) are left out. Set once, by the option parser. */
static int g_quiet;

typedef struct submit_ctx {
    const char *dir_abs;
    cJSON *sub;
    int recorded, n_shards;
    ecc_status rec_status;
    char job[64];
    const char *spec;
} submit_ctx;

/* Record the submission once sbatch --parsable has printed "JOBID[;cluster]\n". */
static void record_job(submit_ctx *c, const char *out, size_t len, int eof)
{
    if (c->recorded)
        return;
    const char *nl = memchr(out, '\n', len);
    if (!nl && !eof)
        return;
    size_t n = strspn(out, "0123456789");
    if (n == 0 || n >= sizeof c->job || (n < len && out[n] != ';' && out[n] != '\n' && out[n] != '\r'))
        return;
    c->recorded = 1;
    memcpy(c->job, out, n);
    c->job[n] = '\0';
    time_t now = time(NULL);
    char when[32];
    iso_time(when, sizeof when, now);
    cJSON_AddStringToObject(c->sub, "job_id", c->job);
    cJSON_AddStringToObject(c->sub, "submitted_at", when);
    cJSON_AddNumberToObject(c->sub, "submitted_unix", (double)now);
    c->rec_status = ecc_jobs_append(c->dir_abs, c->dir_abs, c->sub);
    if (!g_quiet)
        printf("submitted job %s: array %s of %d shards; follow it with: eccolo status %s\n", c->job, c->spec,
               c->n_shards, c->dir_abs);
    fflush(stdout);
}

static void on_sbatch_out(void *ctx, const char *out, size_t len) { record_job(ctx, out, len, 0); }

/* Write the script, then print it (dry run) or submit it and record the job. */
static int submit_plan(const ecc_submit_plan *plan, const char *dir_abs, const char *script_name, int dry_run,
                       int wait, int resubmit)
{
    char *script = ecc_sbatch_script(plan);
    if (!script)
        return cli_lib_error();
    char *path = ecc_path_join(plan->slurm_dir, script_name), *spec = ecc_array_spec(plan->array, plan->n_array);
    if (!path || !spec) {
        free(script), free(path), free(spec);
        return cli_error("out of memory");
    }
    if (ecc_write_file_atomic(path, script, strlen(script)) != ECC_OK) {
        free(script), free(path), free(spec);
        return cli_lib_error();
    }
    if (chmod(path, 0755) != 0) {
        int e = errno;
        int rc = cli_error("%s: cannot make the script executable: %s", path, strerror(e));
        free(script), free(path), free(spec);
        return rc;
    }
    int rc = 0;
    if (dry_run) {
        char *q = ecc_shell_quote(path);
        fputs(script, stdout);
        printf("\nwould run: sbatch --parsable%s %s\n", wait ? " --wait" : "", q ? q : path);
        free(q);
        free(script), free(path), free(spec);
        return 0;
    }
    char *sbatch = ecc_which("sbatch");
    if (!sbatch) {
        free(script), free(path), free(spec);
        return cli_error("sbatch not found: is Slurm installed? use --dry-run to write the script only");
    }
    cJSON *sub = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *args = cJSON_CreateArray(),
          *res = cJSON_CreateObject();
    cJSON_AddStringToObject(sub, "scheduler", "slurm");
    cJSON_AddNumberToObject(sub, "n_shards", plan->n_shards);
    for (int i = 0; i < plan->n_array; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateNumber(plan->array[i]));
    cJSON_AddItemToObject(sub, "array", arr);
    cJSON_AddStringToObject(sub, "array_spec", spec);
    cJSON_AddBoolToObject(sub, "resubmit", resubmit);
    for (int i = 0; i < plan->n_args; i++)
        cJSON_AddItemToArray(args, cJSON_CreateString(plan->args[i]));
    cJSON_AddItemToObject(sub, "batch_args", args);
    cJSON_AddStringToObject(sub, "chdir", plan->chdir);
    cJSON_AddStringToObject(sub, "eccolo", plan->eccolo);
    cJSON_AddStringToObject(sub, "script", path);
    ecc_slurm_resources r = plan->res;
    for (int i = 0; i < 7; i++)
        if (*res_field(&r, i))
            cJSON_AddStringToObject(res, k_res_names[i], *res_field(&r, i));
    cJSON_AddItemToObject(sub, "resources", res);

    submit_ctx c = {.dir_abs = dir_abs, .sub = sub, .n_shards = plan->n_shards, .spec = spec};
    char *argv[] = {sbatch, "--parsable", wait ? "--wait" : path, wait ? path : NULL, NULL};
    ecc_proc p;
    if (ecc_proc_run(&p, argv, on_sbatch_out, &c) != ECC_OK) {
        rc = cli_lib_error();
    } else {
        record_job(&c, p.out, strlen(p.out), 1);
        char line[400];
        snprintf(line, sizeof line, "%s", p.err);
        for (char *q = line; *q; q++) /* the last line sbatch wrote, usually its reason */
            if (*q == '\n' && q[1])
                memmove(line, q + 1, strlen(q + 1) + 1), q = line - 1;
        line[strcspn(line, "\n")] = '\0';
        if (!c.recorded)
            rc = cli_error("sbatch did not submit the job (exit %d)%s%s", p.rc, line[0] ? ": " : "", line);
        else if (c.rec_status != ECC_OK)
            rc = cli_error("job %s was submitted, but it could not be recorded: %s", c.job, ecc_last_error());
        else if (wait && p.rc != 0) {
            fprintf(stderr,
                    "eccolo submit: job %s ended with exit code %d: some shard did not finish; see eccolo status %s "
                    "and %s/shard-I.out\n",
                    c.job, p.rc, dir_abs, plan->slurm_dir);
            rc = 1;
        } else if (wait && !g_quiet) {
            printf("job %s ended: every task succeeded\n", c.job);
        }
        ecc_proc_free(&p);
    }
    cJSON_Delete(sub);
    free(sbatch), free(script), free(path), free(spec);
    return rc;
}

/* "eccolo-<last part of DIR>" with what a job name may hold. */
static void default_job_name(char *buf, size_t cap, const char *dir_abs)
{
    const char *base = strrchr(dir_abs, '/');
    base = base && base[1] ? base + 1 : dir_abs;
    snprintf(buf, cap, "eccolo-%.100s", base);
    for (char *p = buf; *p; p++)
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            *p = '_';
}

static int resubmit(const char *dir, ecc_slurm_resources *given, const char *eccolo, int dry_run, int wait)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return cli_error("cannot read the current directory: %s", strerror(errno));
    char *dir_abs = absolute(cwd, dir);
    ecc_batch_status st;
    if (!dir_abs || ecc_batch_status_get(&st, dir_abs) != ECC_OK) {
        free(dir_abs);
        return cli_lib_error();
    }
    if (!st.slurm_ok) {
        int rc = cli_error("cannot tell which shards of %s are still pending or running: %s", dir, st.note);
        ecc_batch_status_free(&st);
        free(dir_abs);
        return rc;
    }
    int *idx = ecc_calloc((size_t)st.n_shards, sizeof *idx, "the shards"), n = 0, busy = 0;
    for (int i = 0; idx && i < st.n_shards; i++) {
        const ecc_shard_status *sh = &st.shards[i];
        if (sh->state == ECC_SLURM_PENDING || sh->state == ECC_SLURM_RUNNING)
            busy++;
        else if (sh->retry > 0)
            idx[n++] = i;
    }
    int rc = 0;
    if (!idx) {
        rc = cli_lib_error();
    } else if (n == 0) {
        if (busy && !g_quiet)
            printf("nothing to resubmit: %d shard%s still pending or running (eccolo status %s)\n", busy,
                   busy == 1 ? " is" : "s are", dir);
        else if (!g_quiet)
            printf("nothing to resubmit: every prompt of the %d shards is done%s\n", st.n_shards,
                   st.failed ? " (some lines of the prompts file are invalid: see the manifest)" : "");
    } else {
        cJSON *jobs = NULL;
        ecc_status s = ecc_jobs_read(&jobs, dir_abs);
        const cJSON *subs = s == ECC_OK ? cJSON_GetObjectItemCaseSensitive(jobs, "submissions") : NULL;
        const cJSON *last = subs ? cJSON_GetArrayItem(subs, cJSON_GetArraySize(subs) - 1) : NULL;
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(last, "batch_args"),
                    *res = cJSON_GetObjectItemCaseSensitive(last, "resources");
        int n_args = cJSON_GetArraySize(args);
        char **argv = ecc_calloc((size_t)n_args + 1, sizeof *argv, "the arguments");
        for (int i = 0; argv && i < n_args; i++) {
            const cJSON *a = cJSON_GetArrayItem(args, i);
            argv[i] = cJSON_IsString(a) ? a->valuestring : "";
        }
        ecc_slurm_resources r = {0};
        for (int i = 0; i < 7; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, k_res_names[i]);
            *res_field(&r, i) = *res_field(given, i) ? *res_field(given, i) : cJSON_IsString(v) ? v->valuestring : NULL;
        }
        char name[160], script[64], *self = eccolo ? NULL : self_exe(), *sd = ecc_path_join(dir_abs, "slurm");
        default_job_name(name, sizeof name, dir_abs);
        if (!r.job_name)
            r.job_name = name;
        snprintf(script, sizeof script, "resubmit-%d.sbatch", cJSON_GetArraySize(subs));
        const char *chdir_ = last ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(last, "chdir")) : NULL;
        if (s != ECC_OK)
            rc = cli_lib_error();
        else if (!argv || !sd)
            rc = cli_error("out of memory");
        else if (!eccolo && !self)
            rc = cli_error("cannot find the path of this eccolo (/proc/self/exe): use --eccolo PATH");
        else if (!chdir_)
            rc = cli_error("%s/slurm/jobs.json: the last submission has no working directory", dir);
        else if (ecc_slurm_check_resources(&r) != ECC_OK)
            rc = cli_lib_error();
        else {
            ecc_submit_plan plan = {.eccolo = eccolo ? eccolo : self, .chdir = chdir_, .slurm_dir = sd,
                                    .job_name = r.job_name, .n_shards = st.n_shards, .array = idx, .n_array = n,
                                    .n_args = n_args, .args = argv, .res = r};
            if (!dry_run && !g_quiet)
                printf("resubmitting %d of %d shards of %s\n", n, st.n_shards, dir);
            rc = submit_plan(&plan, dir_abs, script, dry_run, wait, 1);
        }
        free(self), free(sd), free(argv);
        cJSON_Delete(jobs);
    }
    free(idx);
    ecc_batch_status_free(&st);
    free(dir_abs);
    return rc;
}

int cmd_submit(int argc, char **argv)
{
    ecc_slurm_resources res = {0};
    const char *scheduler = "slurm", *shards_s = NULL, *resubmit_dir = NULL, *eccolo = NULL;
    int dry_run = 0, wait = 0, n_shards = 0, sep = -1;
    cli_args a = {argc, 1, argv, "submit"};
    for (; a.i < argc; a.i++) {
        const char *v = NULL;
        int r = 0;
        if (!strcmp(argv[a.i], "--")) {
            sep = a.i;
            break;
        }
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_submit_usage, stdout);
            return 0;
        }
        if (cli_flag(&a, "--dry-run")) {
            dry_run = 1;
            continue;
        }
        if (cli_flag(&a, "--wait")) {
            wait = 1;
            continue;
        }
        if (cli_flag(&a, "--quiet") || cli_flag(&a, "-q")) {
            g_quiet = 1;
            continue;
        }
        const char *names[] = {"--partition", "--time", "--gpus-per-task", "--cpus-per-task", "--mem", "--account",
                               "--job-name"};
        int matched = 0;
        for (int i = 0; i < 7 && !matched; i++)
            if ((r = cli_opt(&a, names[i], &v))) {
                if (r < 0)
                    return ECC_EXIT_ERROR;
                *res_field(&res, i) = v;
                matched = 1;
            }
        if (matched)
            continue;
        if ((r = cli_opt(&a, "--scheduler", &v))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
            scheduler = v;
        } else if ((r = cli_opt(&a, "--shards", &v))) {
            if (r < 0 || cli_int("--shards", v, 1, 100000, &n_shards))
                return ECC_EXIT_ERROR;
            shards_s = v;
        } else if ((r = cli_opt(&a, "--resubmit-failed", &v))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
            resubmit_dir = v;
        } else if ((r = cli_opt(&a, "--eccolo", &v))) {
            if (r < 0)
                return ECC_EXIT_ERROR;
            eccolo = v;
        } else {
            return cli_error("submit: unknown option '%s' (the batch arguments go after --; see eccolo submit "
                             "--help)", argv[a.i]);
        }
    }
    if (strcmp(scheduler, "slurm"))
        return cli_error("--scheduler: '%s' is not supported (only slurm)", scheduler);
    if (ecc_slurm_check_resources(&res) != ECC_OK)
        return cli_lib_error();
    if (eccolo && (eccolo[0] != '/' || access(eccolo, X_OK) != 0))
        return cli_error("--eccolo: '%s' is not an executable given by absolute path", eccolo);
    if (resubmit_dir) {
        if (sep >= 0)
            return cli_error("--resubmit-failed takes no batch arguments: it reuses the recorded ones");
        if (shards_s)
            return cli_error("--resubmit-failed keeps the recorded number of shards: drop --shards");
        return resubmit(resubmit_dir, &res, eccolo, dry_run, wait);
    }
    if (sep < 0)
        return cli_error("submit needs the batch arguments after --, e.g. eccolo submit --shards 4 -- --model M "
                         "--prompts P.jsonl --out DIR");
    if (!shards_s)
        return cli_error("submit needs --shards N (the number of array tasks)");
    int n_args = argc - sep - 1;
    char **args = argv + sep + 1;
    const char *out = ecc_arg_value(n_args, args, "--out"), *prompts = ecc_arg_value(n_args, args, "--prompts");
    if (!out || !*out)
        return cli_error(out ? "the batch arguments' --out is empty: give a directory"
                             : "the batch arguments have no --out DIR (after --)");
    if (!prompts)
        return cli_error("the batch arguments have no --prompts FILE.jsonl (after --)");
    for (int i = 0; i < n_args; i++) {
        if (!strncmp(args[i], "--shard", 7) && (args[i][7] == '\0' || args[i][7] == '='))
            return cli_error("the batch arguments have --shard: submit sets it for each task (use --shards N)");
        if (!strcmp(args[i], "--help") || !strcmp(args[i], "-h"))
            return cli_error("the batch arguments have %s: see eccolo batch --help", args[i]);
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return cli_error("cannot read the current directory: %s", strerror(errno));
    char *prompts_abs = absolute(cwd, prompts);
    if (!prompts_abs || !ecc_file_exists(prompts_abs)) {
        free(prompts_abs);
        return cli_error("--prompts %s: no such file", prompts);
    }
    free(prompts_abs);
    char *out_abs = absolute(cwd, out), *sd = out_abs ? ecc_path_join(out_abs, "slurm") : NULL;
    if (!sd || ecc_mkdirs(sd) != ECC_OK) {
        free(out_abs), free(sd);
        return cli_lib_error();
    }
    /* a second job on the same shards would run prompts twice at once (and record them twice) */
    char *jobs_file = ecc_path_join(sd, "jobs.json");
    if (!dry_run && jobs_file && ecc_file_exists(jobs_file)) {
        ecc_batch_status st;
        if (ecc_batch_status_get(&st, out_abs) == ECC_OK) {
            int busy = st.by_state[ECC_SLURM_PENDING] + st.by_state[ECC_SLURM_RUNNING];
            ecc_batch_status_free(&st);
            if (busy) {
                free(out_abs), free(sd), free(jobs_file);
                return cli_error("%s has %d shard%s still pending or running in Slurm: wait for them (eccolo status %s) "
                                 "or scancel them before submitting again", out, busy, busy == 1 ? "" : "s", out);
            }
        }
    }
    free(jobs_file);
    char *self = eccolo ? NULL : self_exe();
    if (!eccolo && !self) {
        free(out_abs), free(sd);
        return cli_error("cannot find the path of this eccolo (/proc/self/exe): use --eccolo PATH");
    }
    int *idx = ecc_calloc((size_t)n_shards, sizeof *idx, "the shards");
    for (int i = 0; idx && i < n_shards; i++)
        idx[i] = i;
    char name[160];
    default_job_name(name, sizeof name, out_abs);
    if (!res.job_name)
        res.job_name = name;
    int rc;
    if (!idx) {
        rc = cli_lib_error();
    } else {
        ecc_submit_plan plan = {.eccolo = eccolo ? eccolo : self, .chdir = cwd, .slurm_dir = sd,
                                .job_name = res.job_name, .n_shards = n_shards, .array = idx, .n_array = n_shards,
                                .n_args = n_args, .args = args, .res = res};
        rc = submit_plan(&plan, out_abs, "batch.sbatch", dry_run, wait, 0);
    }
    free(idx), free(self), free(sd), free(out_abs);
    return rc;
}

/* ---- status ------------------------------------------------------------------------------- */

static void print_json(const ecc_batch_status *st)
{
    cJSON *j = cJSON_CreateObject(), *states = cJSON_CreateObject(), *shards = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "dir", st->dir);
    cJSON_AddStringToObject(j, "prompts_file", st->prompts);
    cJSON_AddNumberToObject(j, "n_shards", st->n_shards);
    cJSON_AddNumberToObject(j, "submissions", st->n_submissions);
    cJSON_AddNumberToObject(j, "prompts", st->prompts_total);
    cJSON_AddNumberToObject(j, "done", st->done);
    cJSON_AddNumberToObject(j, "failed", st->failed);
    cJSON_AddNumberToObject(j, "left", st->left);
    int finished = 0, to_resubmit = 0;
    for (int i = 0; i < st->n_shards; i++) {
        const ecc_shard_status *sh = &st->shards[i];
        int resub = sh->retry > 0 && sh->state != ECC_SLURM_PENDING && sh->state != ECC_SLURM_RUNNING;
        finished += sh->finished;
        to_resubmit += resub;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "shard", sh->shard);
        cJSON_AddNumberToObject(o, "prompts", sh->prompts);
        cJSON_AddNumberToObject(o, "done", sh->done);
        cJSON_AddNumberToObject(o, "failed", sh->failed);
        cJSON_AddNumberToObject(o, "invalid", sh->invalid);
        cJSON_AddNumberToObject(o, "left", sh->left);
        cJSON_AddStringToObject(o, "state", ecc_slurm_state_name(sh->state));
        cJSON_AddStringToObject(o, "slurm_state", sh->slurm_state);
        cJSON_AddStringToObject(o, "task", sh->task);
        cJSON_AddStringToObject(o, "source", sh->source);
        cJSON_AddBoolToObject(o, "finished", sh->finished);
        cJSON_AddBoolToObject(o, "resubmit", resub);
        cJSON_AddItemToArray(shards, o);
    }
    cJSON_AddNumberToObject(j, "finished_shards", finished);
    cJSON_AddNumberToObject(j, "shards_to_resubmit", to_resubmit);
    for (int s = 0; s < 5; s++)
        cJSON_AddNumberToObject(states, ecc_slurm_state_name((ecc_slurm_state)s), st->by_state[s]);
    cJSON_AddItemToObject(j, "states", states);
    cJSON_AddBoolToObject(j, "slurm_ok", st->slurm_ok);
    cJSON_AddStringToObject(j, "note", st->note);
    cJSON_AddItemToObject(j, "shards", shards);
    char *text = cJSON_Print(j);
    if (text)
        puts(text);
    free(text);
    cJSON_Delete(j);
}

static void print_text(const ecc_batch_status *st)
{
    printf("batch %s: %d prompts in %s, %d shards, %d submission%s\n", st->dir, st->prompts_total, st->prompts,
           st->n_shards, st->n_submissions, st->n_submissions == 1 ? "" : "s");
    printf("%5s %8s %8s %8s %8s  %-10s %-12s %-8s %s\n", "shard", "prompts", "done", "failed", "left", "slurm",
           "task", "finished", "(state from)");
    int finished = 0, to_resubmit = 0;
    for (int i = 0; i < st->n_shards; i++) {
        const ecc_shard_status *sh = &st->shards[i];
        finished += sh->finished;
        to_resubmit += sh->retry > 0 && sh->state != ECC_SLURM_PENDING && sh->state != ECC_SLURM_RUNNING;
        char state[64];
        snprintf(state, sizeof state, "%s", ecc_slurm_state_name(sh->state));
        printf("%5d %8d %8d %8d %8d  %-10s %-12s %-8s %s%s%s\n", sh->shard, sh->prompts, sh->done, sh->failed,
               sh->left, state, sh->task[0] ? sh->task : "-", sh->finished ? "yes" : "no", sh->source,
               sh->slurm_state[0] ? " " : "", sh->slurm_state);
    }
    printf("summary: %d shards: %d completed, %d running, %d pending, %d failed, %d unknown; %d finished; "
           "%d prompts: %d done, %d failed, %d left\n",
           st->n_shards, st->by_state[ECC_SLURM_COMPLETED], st->by_state[ECC_SLURM_RUNNING],
           st->by_state[ECC_SLURM_PENDING], st->by_state[ECC_SLURM_FAILED], st->by_state[ECC_SLURM_UNKNOWN], finished,
           st->prompts_total, st->done, st->failed, st->left);
    if (st->note[0] && !g_quiet)
        printf("note: %s\n", st->note);
    if (to_resubmit && !g_quiet)
        printf("%d shard%s stopped before finishing: eccolo submit --resubmit-failed %s\n", to_resubmit,
               to_resubmit == 1 ? "" : "s", st->dir);
}

int cmd_status(int argc, char **argv)
{
    const char *dir = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(k_status_usage, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
            g_quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1])
            return cli_error("status: unknown option '%s' (see eccolo status --help)", argv[i]);
        else if (dir)
            return cli_error("status takes one directory (got '%s' and '%s')", dir, argv[i]);
        else
            dir = argv[i];
    }
    if (!dir)
        return cli_error("status needs the batch directory: eccolo status DIR");
    ecc_batch_status st;
    if (ecc_batch_status_get(&st, dir) != ECC_OK)
        return cli_lib_error();
    if (json)
        print_json(&st);
    else
        print_text(&st);
    ecc_batch_status_free(&st);
    return 0;
}
