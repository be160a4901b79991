/* eccolo submit and eccolo status without a Slurm cluster: the sbatch script
 * that --dry-run writes (array range, --chdir, --output, resources, the shard
 * argument, quoting: the script is also run by bash, task by task, to prove
 * that its quoting holds), the error cases (one line, exit 2), and, with fake
 * sbatch/squeue/scontrol/sacct scripts on PATH, what jobs.json records, how
 * the shard states are read and inferred, and which shards are resubmitted.
 * The tests with a real one-node Slurm are in test_slurm.c. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define PREFIX "eccolo: error: "

/* ---- helpers ----------------------------------------------------------------- */

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static void write_exec(const char *path, const char *text)
{
    write_text(path, text);
    cr_assert_eq(chmod(path, 0755), 0);
}

/* Exactly one line on stderr, "eccolo: error: ...", containing want; exit 2. */
static void expect_error(int rc, const char *err, const char *want)
{
    cr_expect_eq(rc, 2, "exit %d, stderr: %s", rc, err);
    cr_expect(!strncmp(err, PREFIX, strlen(PREFIX)), "stderr: %s", err);
    const char *nl = strchr(err, '\n');
    cr_expect(nl && nl[1] == '\0', "not one line: %s", err);
    cr_expect(strstr(err, want), "expected '%s' in: %s", want, err);
}

static char *tiny(void) { return fixture_path("tiny-gpt2"); }

/* n prompts p00.. with a few tokens each. */
static void write_prompts(const char *path, int n)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    for (int i = 0; i < n; i++)
        fprintf(f, "{\"id\": \"p%02d\", \"prompt\": \"The number %d is\", \"max_new_tokens\": %d}\n", i, i,
                1 + i % 3);
    fclose(f);
}

/* Run a program (not eccolo) with extra environment; the exit code. */
static int run_prog(char **out, const char *const *env, const char *const *argv)
{
    char name[] = "/tmp/ecc-prog-XXXXXX";
    int fd = mkstemp(name);
    cr_assert(fd >= 0);
    unlink(name);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    lseek(fd, 0, SEEK_SET);
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    if (out)
        *out = strdup(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *bin_realpath(void)
{
    char buf[PATH_MAX];
    cr_assert(realpath(getenv("ECCOLO_BIN"), buf));
    return strdup(buf);
}

/* The line of text that starts with prefix (malloc'd), or NULL. */
static char *line_with(const char *text, const char *prefix)
{
    for (const char *l = text; l && *l;) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        if (!strncmp(l, prefix, strlen(prefix)))
            return strndup(l, n);
        l = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* Manifest: how many "done" lines each id has; checks every id of 0..n-1 once. */
static void expect_all_done_once(const char *out_dir, int n)
{
    char *mpath = fmt("%s/manifest.jsonl", out_dir), *m = slurp(mpath);
    for (int i = 0; i < n; i++) {
        char *needle = fmt("{\"id\":\"p%02d\",\"status\":\"done\"", i);
        int count = 0;
        for (const char *p = m; (p = strstr(p, needle)); p++)
            count++;
        cr_expect_eq(count, 1, "p%02d is done %d times in %s", i, count, mpath);
        free(needle);
    }
    free(m);
    free(mpath);
}

/* ---- --dry-run: the script ---------------------------------------------------- */

Test(submit, dry_run_writes_the_script)
{
    char *dir = test_tmpdir("submit-dry"), *model = tiny();
    /* a prompts file whose name needs quoting: a space, a quote, a $ */
    char *prompts = fmt("%s/it's a $x file.jsonl", dir), *out = fmt("%s/out", dir);
    write_prompts(prompts, 7);
    char *so = NULL, *se = NULL;
    int rc = run_cli(&so, &se,
                     ARGS("submit", "--scheduler", "slurm", "--shards", "4", "--dry-run", "--partition", "gpu",
                          "--time", "01:30:00", "--gpus-per-task", "1", "--cpus-per-task", "2", "--mem", "16G",
                          "--account", "proj-1", "--", "--model", model, "--prompts", prompts, "--out", out,
                          "--max-new-tokens", "3", "--batch-size", "2", "--quiet"));
    cr_assert_eq(rc, 0, "stderr: %s", se);
    char *spath = fmt("%s/slurm/batch.sbatch", out), *script = slurp(spath);
    char cwd[PATH_MAX];
    cr_assert(getcwd(cwd, sizeof cwd));
    cr_expect(!strncmp(script, "#!/bin/bash\n", 12), "%s", script);
    char *want[] = {"#SBATCH --array=0-3\n", NULL, NULL, "#SBATCH --partition=gpu\n", "#SBATCH --time=01:30:00\n",
                    "#SBATCH --gpus-per-task=1\n", "#SBATCH --cpus-per-task=2\n", "#SBATCH --mem=16G\n",
                    "#SBATCH --account=proj-1\n", "#SBATCH --job-name=eccolo-out\n", "export OMP_NUM_THREADS=2\n"};
    want[1] = fmt("#SBATCH --chdir=%s\n", cwd);
    want[2] = fmt("#SBATCH --output=%s/slurm/shard-%%a.out\n", out);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        cr_expect(strstr(script, want[i]), "no line '%s' in:\n%s", want[i], script);
    /* every #SBATCH line before the first command */
    const char *first_cmd = strstr(script, "\nset -eu\n"), *last_sbatch = NULL;
    for (const char *p = script; (p = strstr(p, "#SBATCH")); p++)
        last_sbatch = p;
    cr_expect(first_cmd && last_sbatch && last_sbatch < first_cmd, "#SBATCH after a command:\n%s", script);
    /* the command: this eccolo by absolute path, the arguments quoted, the shard */
    char *self = bin_realpath(), *exec_line = line_with(script, "exec ");
    cr_assert(exec_line, "no exec line in:\n%s", script);
    char *want_exec = fmt("exec %s batch --model %s --prompts '%s/it'\\''s a $x file.jsonl' --out %s "
                          "--max-new-tokens 3 --batch-size 2 --quiet --shard \"${SLURM_ARRAY_TASK_ID}/4\"",
                          self, model, dir, out);
    cr_expect_str_eq(exec_line, want_exec);
    /* printed: the script, and the command it would run */
    cr_expect(strstr(so, script), "stdout has not the script:\n%s", so);
    char *would = fmt("would run: sbatch --parsable %s\n", spath);
    cr_expect(strstr(so, would), "stdout: %s", so);
    /* nothing submitted, nothing recorded */
    char *jobs = fmt("%s/slurm/jobs.json", out);
    cr_expect(!ecc_file_exists(jobs), "a dry run wrote %s", jobs);

    /* The script runs as Slurm would run it, task by task: every prompt once. */
    for (int t = 0; t < 4; t++) {
        char *task = fmt("SLURM_ARRAY_TASK_ID=%d", t), *log = NULL;
        int r = run_prog(&log, (const char *const[]){task, "SLURM_ARRAY_JOB_ID=77", NULL},
                         ARGS("bash", spath));
        cr_expect_eq(r, 0, "task %d: exit %d:\n%s", t, r, log);
        char *head = fmt("== eccolo shard %d/4: job 77_%d on ", t, t);
        cr_expect(strstr(log, head), "task %d printed:\n%s", t, log);
        free(head), free(task), free(log);
    }
    expect_all_done_once(out, 7);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (i == 1 || i == 2)
            free(want[i]);
    free(dir), free(model), free(prompts), free(out), free(so), free(se), free(spath), free(script), free(self);
    free(exec_line), free(want_exec), free(would), free(jobs);
}

Test(submit, dry_run_minimal_and_wait)
{
    char *dir = test_tmpdir("submit-min"), *prompts = fmt("%s/p.jsonl", dir);
    write_prompts(prompts, 2);
    char *so = NULL, *se = NULL;
    /* relative --out and --prompts: absolute --output, the arguments as given (run in --chdir) */
    char *rel_out = fmt("%s/rel out", dir);
    int rc = run_cli(&so, &se, ARGS("submit", "--shards=1", "--dry-run", "--wait", "--job-name", "my.job", "--",
                                    "--prompts", prompts, "--out=" "x", "--out", rel_out));
    cr_assert_eq(rc, 0, "stderr: %s", se);
    char *spath = fmt("%s/slurm/batch.sbatch", rel_out), *script = slurp(spath);
    cr_expect(strstr(script, "#SBATCH --array=0\n"), "%s", script);
    cr_expect(strstr(script, "#SBATCH --job-name=my.job\n"), "%s", script);
    char *outl = fmt("#SBATCH --output=\"%s/slurm/shard-%%a.out\"\n", rel_out); /* a blank: in double quotes */
    cr_expect(strstr(script, outl), "no '%s' in:\n%s", outl, script);
    cr_expect(!strstr(script, "--partition") && !strstr(script, "--time") && !strstr(script, "OMP_NUM_THREADS"),
              "%s", script);
    char *q = fmt("--out=x --out '%s'", rel_out);
    cr_expect(strstr(script, q), "no \"%s\" in:\n%s", q, script);
    char *would = fmt("would run: sbatch --parsable --wait '%s'\n", spath); /* quoted: a blank */
    cr_expect(strstr(so, would), "stdout: %s", so);
    free(dir), free(prompts), free(so), free(se), free(rel_out), free(spath), free(script), free(outl), free(q);
    free(would);
}

/* ---- errors -------------------------------------------------------------------------- */

Test(submit, errors_are_one_line_exit_2)
{
    char *dir = test_tmpdir("submit-err"), *prompts = fmt("%s/p.jsonl", dir), *out = fmt("%s/out", dir);
    write_prompts(prompts, 2);
    char *empty_bin = fmt("%s/emptybin", dir);
    cr_assert_eq(ecc_mkdirs(empty_bin), ECC_OK);
    char *path_env = fmt("PATH=%s", empty_bin);
    struct {
        const char *const *args;
        const char *want;
        int no_slurm;
    } cases[] = {
        {ARGS("submit", "--shards", "2", "--prompts", prompts), "unknown option '--prompts'", 0},
        {ARGS("submit", "--shards", "2"), "submit needs the batch arguments after --", 0},
        {ARGS("submit", "--", "--prompts", prompts, "--out", out), "submit needs --shards N", 0},
        {ARGS("submit", "--shards", "0", "--", "--prompts", prompts, "--out", out), "--shards must be an integer", 0},
        {ARGS("submit", "--shards", "two", "--", "--prompts", prompts, "--out", out), "--shards must be an integer",
         0},
        {ARGS("submit", "--shards"), "--shards needs a value", 0},
        {ARGS("submit", "--shards", "2", "--", "--prompts", prompts), "the batch arguments have no --out DIR", 0},
        {ARGS("submit", "--shards", "2", "--", "--out", out), "the batch arguments have no --prompts", 0},
        {ARGS("submit", "--shards", "2", "--", "--prompts", prompts, "--out", out, "--shard", "0/2"),
         "submit sets it for each task", 0},
        {ARGS("submit", "--shards", "2", "--", "--prompts", prompts, "--out", out, "--shard=1/2"),
         "submit sets it for each task", 0},
        {ARGS("submit", "--shards", "2", "--", "--prompts", "/nonexistent/p.jsonl", "--out", out),
         "--prompts /nonexistent/p.jsonl: no such file", 0},
        {ARGS("submit", "--scheduler", "pbs", "--shards", "2", "--", "--prompts", prompts, "--out", out),
         "'pbs' is not supported", 0},
        {ARGS("submit", "--shards", "2", "--time", "1h", "--", "--prompts", prompts, "--out", out),
         "--time: '1h' is not a Slurm time limit", 0},
        {ARGS("submit", "--shards", "2", "--mem", "lots", "--", "--prompts", prompts, "--out", out),
         "--mem: 'lots'", 0},
        {ARGS("submit", "--shards", "2", "--cpus-per-task", "0", "--", "--prompts", prompts, "--out", out),
         "--cpus-per-task must be an integer", 0},
        {ARGS("submit", "--shards", "2", "--partition", "a b", "--", "--prompts", prompts, "--out", out),
         "--partition: 'a b'", 0},
        {ARGS("submit", "--shards", "2", "--gpus-per-task", "a100:", "--", "--prompts", prompts, "--out", out),
         "--gpus-per-task", 0},
        {ARGS("submit", "--shards", "2", "--eccolo", "relative/eccolo", "--", "--prompts", prompts, "--out", out),
         "--eccolo", 0},
        {ARGS("submit", "--shards", "2", "--", "--prompts", prompts, "--out", out),
         "sbatch not found: is Slurm installed? use --dry-run to write the script only", 1},
        {ARGS("submit", "--resubmit-failed", out), "jobs.json not found", 0},
        {ARGS("submit", "--resubmit-failed", "/nonexistent/dir"), "/nonexistent/dir: no such directory", 0},
        {ARGS("submit", "--resubmit-failed", out, "--", "--prompts", prompts), "takes no batch arguments", 0},
        {ARGS("submit", "--resubmit-failed", out, "--shards", "3"), "drop --shards", 0},
        {ARGS("status"), "status needs the batch directory", 0},
        {ARGS("status", out), "jobs.json not found", 0},
        {ARGS("status", out, out), "status takes one directory", 0},
        {ARGS("status", "--jsn", out), "unknown option '--jsn'", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *se = NULL;
        int rc = run_cli_env(NULL, &se, cases[i].no_slurm ? (const char *const[]){path_env, NULL} : NULL,
                             cases[i].args);
        expect_error(rc, se, cases[i].want);
        free(se);
    }
    /* the sbatch-missing case wrote the script all the same */
    char *spath = fmt("%s/slurm/batch.sbatch", out);
    cr_expect(ecc_file_exists(spath));
    free(spath), free(dir), free(prompts), free(out), free(empty_bin), free(path_env);
}

Test(submit, help)
{
    char *so = NULL;
    cr_expect_eq(run_cli(&so, NULL, ARGS("submit", "--help")), 0);
    cr_expect(strstr(so, "--resubmit-failed DIR"), "%s", so);
    free(so);
    cr_expect_eq(run_cli(&so, NULL, ARGS("status", "--help")), 0);
    cr_expect(strstr(so, "usage: eccolo status DIR [--json]"), "%s", so);
    free(so);
    cr_expect_eq(run_cli(&so, NULL, ARGS("--help")), 0);
    cr_expect(strstr(so, "submit") && strstr(so, "status"), "%s", so);
    free(so);
}

/* ---- with fake Slurm commands --------------------------------------------------------- */

/* sbatch: records its arguments, prints "4242;cluster" (FAKE_JOB), exits FAKE_SBATCH_RC.
 * squeue/scontrol/sacct: print $FAKE/<name>.out and exit with $FAKE/<name>.rc (0 by default),
 * $FAKE/<name>.err on stderr. */
static char *fake_slurm(const char *dir)
{
    char *bin = fmt("%s/fakebin", dir);
    cr_assert_eq(ecc_mkdirs(bin), ECC_OK);
    char *p = fmt("%s/sbatch", bin);
    write_exec(p, "#!/bin/bash\n"
                  "echo \"$*\" >> \"$FAKE/sbatch.args\"\n"
                  "echo \"${FAKE_JOB:-4242};testcluster\"\n"
                  "exit \"${FAKE_SBATCH_RC:-0}\"\n");
    free(p);
    const char *tools[] = {"squeue", "scontrol", "sacct"};
    for (int i = 0; i < 3; i++) {
        p = fmt("%s/%s", bin, tools[i]);
        char *body = fmt("#!/bin/bash\n"
                         "echo \"$*\" >> \"$FAKE/%s.args\"\n"
                         "[[ -e \"$FAKE/%s.out\" ]] && cat \"$FAKE/%s.out\"\n"
                         "[[ -e \"$FAKE/%s.err\" ]] && cat \"$FAKE/%s.err\" >&2\n"
                         "exit $(cat \"$FAKE/%s.rc\" 2>/dev/null || echo 0)\n",
                         tools[i], tools[i], tools[i], tools[i], tools[i], tools[i]);
        write_exec(p, body);
        free(body);
        free(p);
    }
    return bin;
}

static void fake_set(const char *dir, const char *name, const char *text)
{
    char *p = fmt("%s/%s", dir, name);
    if (text)
        write_text(p, text);
    else
        unlink(p);
    free(p);
}

static const cJSON *shard_of_status(const cJSON *st, int i)
{
    const cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "shards"), i);
    cr_assert(sh, "no shard %d", i);
    return sh;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsString(v), "no string %s", k);
    return v->valuestring;
}

static int jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v) || cJSON_IsBool(v), "no number %s", k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : v->valueint;
}

static cJSON *status_json(const char *const *env, const char *out)
{
    char *so = NULL, *se = NULL;
    int rc = run_cli_env(&so, &se, env, ARGS("status", out, "--json"));
    cr_assert_eq(rc, 0, "status: %s", se);
    cJSON *j = cJSON_Parse(so);
    cr_assert(j, "status --json printed:\n%s", so);
    free(so), free(se);
    return j;
}

Test(submit, fake_slurm_records_reads_states_and_resubmits)
{
    char *dir = test_tmpdir("submit-fake"), *prompts = fmt("%s/p.jsonl", dir), *out = fmt("%s/out", dir),
         *model = tiny();
    write_prompts(prompts, 9);
    char *bin = fake_slurm(dir);
    char *env_path = fmt("PATH=%s:/usr/bin:/bin", bin), *env_fake = fmt("FAKE=%s", dir);
    const char *const env[] = {env_path, env_fake, NULL};
    char *so = NULL, *se = NULL;

    /* submit: the job id is recorded with what was submitted */
    int rc = run_cli_env(&so, &se, env,
                         ARGS("submit", "--shards", "3", "--time", "00:05:00", "--", "--model", model, "--prompts",
                              prompts, "--out", out, "--max-new-tokens", "2", "--quiet"));
    cr_assert_eq(rc, 0, "stderr: %s", se);
    cr_expect(strstr(so, "submitted job 4242: array 0-2 of 3 shards"), "stdout: %s", so);
    free(so), free(se);
    char *sargs_path = fmt("%s/sbatch.args", dir), *sargs = slurp(sargs_path);
    char *want_args = fmt("--parsable %s/slurm/batch.sbatch\n", out);
    cr_expect_str_eq(sargs, want_args);
    free(sargs), free(want_args);
    char *jobs_path = fmt("%s/slurm/jobs.json", out);
    cJSON *jobs = slurp_json(jobs_path);
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(jobs, "submissions");
    cr_assert_eq(cJSON_GetArraySize(subs), 1);
    const cJSON *s0 = cJSON_GetArrayItem(subs, 0);
    cr_expect_str_eq(jstr(s0, "job_id"), "4242");
    cr_expect_eq(jint(s0, "n_shards"), 3);
    cr_expect_str_eq(jstr(s0, "array_spec"), "0-2");
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(s0, "array")), 3);
    cr_expect_eq(jint(s0, "resubmit"), 0);
    const char *when = jstr(s0, "submitted_at");
    cr_expect(strlen(when) == 20 && when[4] == '-' && when[10] == 'T' && when[19] == 'Z', "%s", when);
    const cJSON *ba = cJSON_GetObjectItemCaseSensitive(s0, "batch_args");
    cr_expect_eq(cJSON_GetArraySize(ba), 9);
    cr_expect_str_eq(cJSON_GetArrayItem(ba, 3)->valuestring, prompts);
    char *self = bin_realpath();
    cr_expect_str_eq(jstr(s0, "eccolo"), self);
    cr_expect_str_eq(jstr(cJSON_GetObjectItemCaseSensitive(s0, "resources"), "time"), "00:05:00");
    cJSON_Delete(jobs);

    /* shard 0 ran to the end; shard 1 is running; shard 2 was cancelled */
    char *s0arg = NULL;
    rc = run_cli(NULL, &se, ARGS("batch", "--model", model, "--prompts", prompts, "--out", out, "--max-new-tokens",
                                 "2", "--quiet", "--shard", "0/3"));
    cr_assert_eq(rc, 0, "%s", se);
    free(se);
    int per_shard[3] = {0};
    for (int i = 0; i < 9; i++) {
        char id[8];
        snprintf(id, sizeof id, "p%02d", i);
        per_shard[ecc_batch_shard_of(id, 3)]++;
    }
    cr_assert(per_shard[0] && per_shard[1] && per_shard[2], "the 9 ids should fill the 3 shards");
    fake_set(dir, "squeue.out", "4242_1 R\n");
    fake_set(dir, "scontrol.out",
             "JobId=4243 ArrayJobId=4242 ArrayTaskId=0 JobName=x JobState=COMPLETED Reason=None ExitCode=0:0\n"
             "JobId=4245 ArrayJobId=4242 ArrayTaskId=2 JobName=x JobState=CANCELLED Reason=None ExitCode=0:15\n");
    cJSON *st = status_json(env, out);
    cr_expect_eq(jint(st, "n_shards"), 3);
    cr_expect_eq(jint(st, "prompts"), 9);
    cr_expect_eq(jint(st, "done"), per_shard[0]);
    cr_expect_eq(jint(st, "left"), 9 - per_shard[0]);
    const char *want_state[] = {"completed", "running", "failed"}, *want_src[] = {"scontrol", "squeue", "scontrol"};
    for (int i = 0; i < 3; i++) {
        const cJSON *sh = shard_of_status(st, i);
        cr_expect_str_eq(jstr(sh, "state"), want_state[i], "shard %d", i);
        cr_expect_str_eq(jstr(sh, "source"), want_src[i], "shard %d", i);
        cr_expect_eq(jint(sh, "prompts"), per_shard[i]);
        cr_expect_eq(jint(sh, "finished"), i == 0, "shard %d", i);
        cr_expect_eq(jint(sh, "resubmit"), i == 2, "shard %d", i);
        char task[32];
        snprintf(task, sizeof task, "4242_%d", i);
        cr_expect_str_eq(jstr(sh, "task"), task);
    }
    cr_expect_str_eq(jstr(shard_of_status(st, 2), "slurm_state"), "CANCELLED");
    cr_expect_eq(jint(cJSON_GetObjectItemCaseSensitive(st, "states"), "running"), 1);
    cJSON_Delete(st);
    char *sq_args = fmt("%s/squeue.args", dir), *sq = slurp(sq_args);
    cr_expect(strstr(sq, "-h -r -j 4242 -o %i %t"), "squeue was called as: %s", sq);
    free(sq), free(sq_args);

    /* the text form */
    rc = run_cli_env(&so, &se, env, ARGS("status", out));
    cr_expect_eq(rc, 0, "%s", se);
    cr_expect(strstr(so, "summary: 3 shards: 1 completed, 1 running, 0 pending, 1 failed, 0 unknown; 1 finished"),
              "%s", so);
    cr_expect(strstr(so, "eccolo submit --resubmit-failed"), "%s", so);
    free(so), free(se);

    /* resubmit: only shard 2 (shard 1 is still running) */
    rc = run_cli_env(&so, &se, env, ARGS("submit", "--resubmit-failed", out, "--dry-run", "--time", "00:09:00"));
    cr_assert_eq(rc, 0, "%s", se);
    cr_expect(strstr(so, "#SBATCH --array=2\n"), "%s", so);
    cr_expect(strstr(so, "#SBATCH --time=00:09:00\n"), "%s", so);
    cr_expect(strstr(so, "--shard \"${SLURM_ARRAY_TASK_ID}/3\""), "%s", so);
    free(so), free(se);
    rc = run_cli_env(&so, &se, (const char *const[]){env_path, env_fake, "FAKE_JOB=4250", NULL},
                     ARGS("submit", "--resubmit-failed", out));
    cr_assert_eq(rc, 0, "%s", se);
    cr_expect(strstr(so, "submitted job 4250: array 2 of 3 shards"), "%s", so);
    free(so), free(se);
    jobs = slurp_json(jobs_path);
    subs = cJSON_GetObjectItemCaseSensitive(jobs, "submissions");
    cr_assert_eq(cJSON_GetArraySize(subs), 2);
    const cJSON *s1 = cJSON_GetArrayItem(subs, 1);
    cr_expect_str_eq(jstr(s1, "job_id"), "4250");
    cr_expect_str_eq(jstr(s1, "array_spec"), "2");
    cr_expect_eq(jint(s1, "resubmit"), 1);
    cr_expect_str_eq(jstr(cJSON_GetObjectItemCaseSensitive(s1, "resources"), "time"), "00:05:00"); /* recorded */
    cr_expect(strstr(jstr(s1, "script"), "/slurm/resubmit-1.sbatch"), "%s", jstr(s1, "script"));
    cJSON_Delete(jobs);

    /* shard 2 is now the task 4250_2 (pending) */
    fake_set(dir, "squeue.out", "4242_1 R\n4250_2 PD\n");
    /* a fresh submission over running shards is refused */
    rc = run_cli_env(NULL, &se, env,
                     ARGS("submit", "--shards", "3", "--", "--model", model, "--prompts", prompts, "--out", out));
    expect_error(rc, se, "has 2 shards still pending or running in Slurm");
    free(se);
    st = status_json(env, out);
    cr_expect_str_eq(jstr(shard_of_status(st, 2), "state"), "pending");
    cr_expect_str_eq(jstr(shard_of_status(st, 2), "task"), "4250_2");
    cJSON_Delete(st);
    rc = run_cli_env(&so, &se, env, ARGS("submit", "--resubmit-failed", out));
    cr_expect_eq(rc, 0, "%s", se);
    cr_expect(strstr(so, "nothing to resubmit: 2 shards are still pending or running"), "%s", so);
    free(so), free(se);

    /* Slurm forgot both jobs: states inferred from the manifest */
    fake_set(dir, "squeue.out", NULL);
    fake_set(dir, "squeue.rc", "1\n");
    fake_set(dir, "squeue.err", "slurm_load_jobs error: Invalid job id specified\n");
    fake_set(dir, "scontrol.out", NULL);
    fake_set(dir, "scontrol.rc", "1\n");
    fake_set(dir, "sacct.rc", "1\n");
    st = status_json(env, out);
    for (int i = 0; i < 3; i++) {
        const cJSON *sh = shard_of_status(st, i);
        cr_expect_str_eq(jstr(sh, "state"), i == 0 ? "completed" : "failed", "shard %d", i);
        cr_expect_str_eq(jstr(sh, "source"), "manifest", "shard %d", i);
    }
    cJSON_Delete(st);
    /* ... or from sacct, when it answers */
    fake_set(dir, "sacct.rc", NULL);
    fake_set(dir, "sacct.out", "4242_1|TIMEOUT\n4250_2|CANCELLED by 0\n");
    st = status_json(env, out);
    cr_expect_str_eq(jstr(shard_of_status(st, 1), "slurm_state"), "TIMEOUT");
    cr_expect_str_eq(jstr(shard_of_status(st, 2), "slurm_state"), "CANCELLED");
    cr_expect_str_eq(jstr(shard_of_status(st, 2), "source"), "sacct");
    cr_expect_str_eq(jstr(shard_of_status(st, 2), "state"), "failed");
    cJSON_Delete(st);

    /* the controller is down: status says so, resubmission refuses to guess */
    fake_set(dir, "squeue.err", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n");
    rc = run_cli_env(&so, &se, env, ARGS("status", out));
    cr_expect_eq(rc, 0, "%s", se);
    cr_expect(strstr(so, "note: squeue failed (exit 1): slurm_load_jobs error: Unable to contact"), "%s", so);
    cr_expect(strstr(so, "0 completed, 0 running, 0 pending, 0 failed, 3 unknown"), "%s", so);
    free(so), free(se);
    rc = run_cli_env(NULL, &se, env, ARGS("submit", "--resubmit-failed", out));
    expect_error(rc, se, "cannot tell which shards");
    free(se);

    /* sbatch --wait: its exit code (a task failed) comes back as 1, the job recorded */
    fake_set(dir, "squeue.rc", NULL);
    fake_set(dir, "squeue.err", NULL);
    rc = run_cli_env(&so, &se, (const char *const[]){env_path, env_fake, "FAKE_JOB=4260", "FAKE_SBATCH_RC=3", NULL},
                     ARGS("submit", "--resubmit-failed", out, "--wait"));
    cr_expect_eq(rc, 1, "%s", se);
    cr_expect(strstr(se, "job 4260 ended with exit code 3"), "%s", se);
    free(so), free(se);
    jobs = slurp_json(jobs_path);
    subs = cJSON_GetObjectItemCaseSensitive(jobs, "submissions");
    cr_expect_eq(cJSON_GetArraySize(subs), 3);
    cr_expect_str_eq(jstr(cJSON_GetArrayItem(subs, 2), "array_spec"), "1-2");
    cJSON_Delete(jobs);
    sargs = slurp(sargs_path);
    cr_expect(strstr(sargs, "--parsable --wait "), "%s", sargs);
    free(sargs);

    /* sbatch refuses the job: one line, its reason */
    fake_set(dir, "squeue.out", NULL);
    char *sbatch_path = fmt("%s/sbatch", bin);
    write_exec(sbatch_path, "#!/bin/bash\necho 'sbatch: error: Batch job submission failed: "
                            "Invalid partition name specified' >&2\nexit 1\n");
    free(sbatch_path);
    rc = run_cli_env(NULL, &se, env, ARGS("submit", "--resubmit-failed", out));
    expect_error(rc, se, "sbatch did not submit the job (exit 1): sbatch: error: Batch job submission failed: "
                         "Invalid partition name specified");
    free(se);

    /* all done: nothing to resubmit */
    for (int i = 1; i < 3; i++) {
        char shard[8];
        snprintf(shard, sizeof shard, "%d/3", i);
        rc = run_cli(NULL, &se, ARGS("batch", "--model", model, "--prompts", prompts, "--out", out,
                                     "--max-new-tokens", "2", "--quiet", "--shard", shard));
        cr_assert_eq(rc, 0, "%s", se);
        free(se);
    }
    rc = run_cli_env(&so, &se, env, ARGS("submit", "--resubmit-failed", out));
    cr_expect_eq(rc, 0, "%s", se);
    cr_expect(strstr(so, "nothing to resubmit: every prompt of the 3 shards is done"), "%s", so);
    free(so), free(se);
    expect_all_done_once(out, 9);
    free(s0arg);
    free(dir), free(prompts), free(out), free(model), free(bin), free(env_path), free(env_fake), free(sargs_path);
    free(jobs_path), free(self);
}
