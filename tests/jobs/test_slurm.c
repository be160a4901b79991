/* eccolo submit / status / --resubmit-failed against a real one-node Slurm on
 * loopback (munged, slurmctld and slurmd started by tests/jobs/slurm/start.sh in a
 * temporary directory, on free ports, one cluster per test):
 *   - a 3-shard array job over tests/fixtures/tiny-gpt2 gives, prompt by
 *     prompt, what a local `eccolo batch` of the same file gives;
 *   - a shard cancelled mid-run is reported as not finished, resubmitted
 *     alone, and in the end every prompt is done exactly once.
 * These are the only tests that need Slurm: they fail (not skip) when it is
 * not installed, saying what to install (CI installs slurm-wlm and munge).
 * The daemons are stopped by pid (tests/jobs/slurm/stop.sh) in the fixture's fini,
 * at exit and on SIGTERM/SIGINT; a watchdog started by start.sh stops them
 * when the test process dies any other way. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util.h"

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- helpers ----------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[8192];
    snprintf(buf, sizeof buf, "%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", d, name);
        if (access(p, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* Run a program; stdout+stderr into *out; the exit code. */
static int run_prog(char **out, const char *const *argv)
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
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    lseek(fd, 0, SEEK_SET);
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    if (out)
        *out = strdup(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the cluster ------------------------------------------------------------------------ */

/* Static buffers: the stop runs from a signal handler too (fork, execv,
 * waitpid only). */
static char g_dir[256], g_stop[PATH_MAX];
static pid_t g_owner;

static void stop_cluster(void)
{
    if (!g_dir[0] || getpid() != g_owner)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {g_stop, g_dir, NULL};
        execv(g_stop, argv);
        _exit(127);
    }
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    g_dir[0] = '\0';
}

static void on_signal(int sig)
{
    stop_cluster();
    signal(sig, SIG_DFL);
    raise(sig);
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(path);
}

static char *helper(const char *name)
{
    const char *dir = getenv("ECCOLO_SLURM_HELPERS");
    if (dir)
        return ecc_path_join(dir, name);
    char *rel = fmt("../slurm/%s", name), *p = fixture_path(rel);
    free(rel);
    return p;
}

/* A TCP port nothing listens on, outside the ephemeral range clients use. */
static int free_port(int avoid)
{
    for (int tries = 0; tries < 200; tries++) {
        int port = 20000 + (int)(((unsigned)getpid() * 7919u + (unsigned)tries * 104729u + (unsigned)time(NULL)) %
                                 12000u);
        if (port == avoid)
            continue;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_ANY)};
        int ok = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0;
        if (s >= 0)
            close(s);
        if (ok)
            return port;
    }
    cr_assert_fail("no free TCP port found for slurmctld/slurmd");
    return -1;
}

static void start_cluster(void)
{
    const char *need[] = {"munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel"};
    for (size_t i = 0; i < sizeof need / sizeof *need; i++)
        cr_assert(on_path(need[i]),
                  "%s not found: the Slurm tests need a one-node Slurm: install slurm-wlm and munge "
                  "(apt-get install -y slurm-wlm munge; tools/setup.sh installs them)",
                  need[i]);
    char *start = helper("start.sh"), *stop = helper("stop.sh");
    snprintf(g_stop, sizeof g_stop, "%s", stop);
    /* short: the munge socket path must fit a sockaddr_un */
    snprintf(g_dir, sizeof g_dir, "/tmp/eccolo-slurm-XXXXXX");
    cr_assert(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
    g_owner = getpid();
    atexit(stop_cluster);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGHUP, on_signal);
    int cp = free_port(-1), dp = free_port(cp);
    char cps[16], dps[16], owner[16];
    snprintf(cps, sizeof cps, "%d", cp);
    snprintf(dps, sizeof dps, "%d", dp);
    snprintf(owner, sizeof owner, "%d", (int)getpid());
    char *log = NULL;
    int rc = run_prog(&log, ARGS(start, g_dir, cps, dps, owner));
    cr_assert_eq(rc, 0, "tests/jobs/slurm/start.sh failed (exit %d):\n%s", rc, log);
    char *conf = fmt("%s/slurm.conf", g_dir);
    setenv("SLURM_CONF", conf, 1);
    /* a surrounding Slurm job's variables must not leak into ours */
    unsetenv("SLURM_JOB_ID"), unsetenv("SLURM_JOBID"), unsetenv("SLURM_ARRAY_JOB_ID"),
        unsetenv("SLURM_ARRAY_TASK_ID");
    free(conf), free(log), free(start), free(stop);
}

static void fini_cluster(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s", g_dir);
    stop_cluster();
    if (dir[0] && !getenv("ECCOLO_KEEP_SLURM"))
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(slurm, .init = start_cluster, .fini = fini_cluster, .timeout = 240);

/* ---- comparing outputs ---------------------------------------------------------------------- */

static void compare_runs(const char *a_dir, const char *b_dir, const char *id)
{
    char *ra = fmt("%s/runs/%s/run.json", a_dir, id), *rb = fmt("%s/runs/%s/run.json", b_dir, id);
    cJSON *ja = slurp_json(ra), *jb = slurp_json(rb);
    const cJSON *ta = cJSON_GetObjectItemCaseSensitive(ja, "token_ids"),
                *tb = cJSON_GetObjectItemCaseSensitive(jb, "token_ids");
    cr_assert(cJSON_IsArray(ta) && cJSON_IsArray(tb), "%s: no token_ids", id);
    cr_expect_eq(cJSON_GetArraySize(ta), cJSON_GetArraySize(tb), "%s: token count", id);
    for (int i = 0; i < cJSON_GetArraySize(ta) && i < cJSON_GetArraySize(tb); i++)
        cr_expect_eq(cJSON_GetArrayItem(ta, i)->valueint, cJSON_GetArrayItem(tb, i)->valueint, "%s: token %d", id, i);
    cJSON_Delete(ja), cJSON_Delete(jb);
    free(ra), free(rb);

    char *sa = fmt("%s/runs/%s/tensors.safetensors", a_dir, id), *sb = fmt("%s/runs/%s/tensors.safetensors", b_dir, id);
    ecc_st_file *fa, *fb;
    cr_assert_eq(ecc_st_open(&fa, sa), ECC_OK, "%s", ecc_last_error());
    cr_assert_eq(ecc_st_open(&fb, sb), ECC_OK, "%s", ecc_last_error());
    cr_expect_eq(fa->n, fb->n, "%s: %d tensors locally, %d from Slurm", id, fa->n, fb->n);
    for (int t = 0; t < fa->n; t++) {
        const ecc_st_tensor *x = &fa->tensors[t], *y = ecc_st_find(fb, x->name);
        cr_assert(y, "%s: no tensor %s in the Slurm run", id, x->name);
        cr_assert_eq(x->dtype, y->dtype, "%s/%s: dtype", id, x->name);
        cr_assert_eq(x->numel, y->numel, "%s/%s: %llu vs %llu values", id, x->name, (unsigned long long)x->numel,
                     (unsigned long long)y->numel);
        for (int d = 0; d < x->ndim; d++)
            cr_expect_eq(x->shape[d], y->shape[d], "%s/%s: shape", id, x->name);
        if (x->dtype == ECC_F32) {
            float *va = malloc(x->numel * 4 + 4), *vb = malloc(y->numel * 4 + 4);
            cr_assert_eq(ecc_st_to_f32(va, x), ECC_OK);
            cr_assert_eq(ecc_st_to_f32(vb, y), ECC_OK);
            double worst = 0;
            size_t at = 0;
            for (size_t i = 0; i < x->numel; i++) {
                double d = fabs((double)va[i] - (double)vb[i]) / fmax(1.0, fabs((double)va[i]));
                if (!(d <= worst)) /* NaN too */
                    worst = d, at = i;
            }
            cr_expect(worst <= 1e-5, "%s/%s: differs by %g at %zu (%g vs %g)", id, x->name, worst, at,
                      (double)va[at], (double)vb[at]);
            free(va), free(vb);
        } else {
            cr_expect_eq(x->nbytes, y->nbytes);
            cr_expect(!memcmp(x->data, y->data, x->nbytes), "%s/%s: values differ", id, x->name);
        }
    }
    ecc_st_close(fa), ecc_st_close(fb);
    free(sa), free(sb);
}

/* The manifest's done lines per id; checks each of ids is done exactly once and nothing else is. */
static void expect_done_exactly_once(const char *out, char **ids, int n)
{
    char *mpath = fmt("%s/manifest.jsonl", out), *m = slurp(mpath);
    int *count = calloc((size_t)n, sizeof *count), stray = 0;
    for (char *save = NULL, *l = strtok_r(m, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(l);
        cr_assert(j, "%s: a line is not JSON: %s", mpath, l);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id"), *st = cJSON_GetObjectItemCaseSensitive(j, "status");
        if (cJSON_IsString(st) && !strcmp(st->valuestring, "done")) {
            int k = -1;
            for (int i = 0; i < n && k < 0; i++)
                if (!strcmp(ids[i], id->valuestring))
                    k = i;
            if (k < 0)
                stray++;
            else
                count[k]++;
        }
        cJSON_Delete(j);
    }
    for (int i = 0; i < n; i++)
        cr_expect_eq(count[i], 1, "%s is done %d times in %s", ids[i], count[i], mpath);
    cr_expect_eq(stray, 0, "done lines for ids not in the prompts");
    free(count), free(m), free(mpath);
}

/* runs/: exactly the ids, each complete; leftover temporaries are counted. */
static int expect_runs_dir(const char *out, char **ids, int n)
{
    char *runs = fmt("%s/runs", out);
    DIR *d = opendir(runs);
    cr_assert(d, "no %s", runs);
    int seen = 0, hidden = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            hidden += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
            continue;
        }
        int k = -1;
        for (int i = 0; i < n && k < 0; i++)
            if (!strcmp(ids[i], e->d_name))
                k = i;
        cr_expect(k >= 0, "%s/%s is not one of the prompts", runs, e->d_name);
        char *rj = fmt("%s/%s/run.json", runs, e->d_name), *ts = fmt("%s/%s/tensors.safetensors", runs, e->d_name);
        cr_expect(ecc_file_exists(rj) && ecc_file_exists(ts), "%s/%s is incomplete", runs, e->d_name);
        free(rj), free(ts);
        seen++;
    }
    closedir(d);
    cr_expect_eq(seen, n, "%s holds %d runs, not %d", runs, seen, n);
    free(runs);
    return hidden;
}

static cJSON *status_json(const char *out)
{
    char *so = NULL, *se = NULL;
    int rc = run_cli(&so, &se, ARGS("status", out, "--json"));
    cr_assert_eq(rc, 0, "status: %s", se);
    cJSON *j = cJSON_Parse(so);
    cr_assert(j, "status --json printed:\n%s", so);
    free(so), free(se);
    return j;
}

static int jint(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v) || cJSON_IsBool(v), "no number %s", k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : v->valueint;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsString(v), "no string %s", k);
    return v->valuestring;
}

static char *slurm_logs(void)
{
    char *cmd = fmt("tail -n 15 %s/log/slurmctld.log %s/log/slurmd.log 2>&1", g_dir, g_dir), *out = NULL;
    run_prog(&out, ARGS("sh", "-c", cmd));
    free(cmd);
    return out;
}

/* ---- (a) three shards on Slurm = one local batch ------------------------------------------------- */

Test(slurm, three_shards_match_a_local_batch)
{
    double t0 = ecc_now();
    char *dir = test_tmpdir("slurm-a"), *model = fixture_path("tiny-gpt2"), *prompts = fmt("%s/prompts.jsonl", dir);
    char *local = fmt("%s/local", dir), *out = fmt("%s/slurm out", dir); /* a blank in the path, too */
    enum { N = 12 };
    char *ids[N];
    int per_shard[3] = {0};
    FILE *f = fopen(prompts, "w");
    cr_assert(f);
    const char *texts[] = {"The quick brown fox", "Once upon a time", "It's \\\"quoted\\\" and 'single'", "1 2 3 4",
                           "Hello, world", "a\\nb"};
    for (int i = 0; i < N; i++) {
        ids[i] = fmt("item-%02d", i);
        per_shard[ecc_batch_shard_of(ids[i], 3)]++;
        if (i == 5) /* a forced continuation */
            fprintf(f, "{\"id\": \"%s\", \"prompt\": \"The cat\", \"continuation\": \" sat on the mat\"}\n", ids[i]);
        else
            fprintf(f, "{\"id\": \"%s\", \"prompt\": \"%s %d\", \"max_new_tokens\": %d}\n", ids[i],
                    texts[i % 6], i, 2 + i % 4);
    }
    fclose(f);
    cr_assert(per_shard[0] && per_shard[1] && per_shard[2], "the ids should fill the 3 shards (%d %d %d)",
              per_shard[0], per_shard[1], per_shard[2]);

#define BATCH_OPTS "--model", model, "--prompts", prompts, "--max-new-tokens", "5", "--attribution", \
                   "grad_x_input,integrated_gradients", "--ig-steps", "8", "--activations", "--batch-size", "4"
    char *se = NULL, *so = NULL;
    int rc = run_cli(NULL, &se, ARGS("batch", BATCH_OPTS, "--out", local));
    cr_assert_eq(rc, 0, "local batch: %s", se);
    free(se);
    double t1 = ecc_now();
    rc = run_cli(&so, &se, ARGS("submit", "--scheduler", "slurm", "--shards", "3", "--time", "00:05:00", "--wait",
                                "--", BATCH_OPTS, "--out", out));
    double t2 = ecc_now();
    if (rc != 0) {
        char *logs = slurm_logs();
        cr_assert_fail("submit --wait: exit %d\nstdout: %s\nstderr: %s\nslurm logs:\n%s", rc, so, se, logs);
    }
    cr_expect(strstr(so, "submitted job ") && strstr(so, ": array 0-2 of 3 shards"), "stdout: %s", so);
    free(so), free(se);

    for (int i = 0; i < N; i++)
        compare_runs(local, out, ids[i]);
    expect_done_exactly_once(out, ids, N);
    cr_expect_eq(expect_runs_dir(out, ids, N), 0, "temporaries left in runs/");

    /* the record, the script (with the eccolo under test), the tasks' output */
    char *jobs_path = fmt("%s/slurm/jobs.json", out);
    cJSON *jobs = slurp_json(jobs_path);
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(jobs, "submissions");
    cr_assert_eq(cJSON_GetArraySize(subs), 1);
    const cJSON *s0 = cJSON_GetArrayItem(subs, 0);
    char self[PATH_MAX];
    cr_assert(realpath(getenv("ECCOLO_BIN"), self));
    cr_expect_str_eq(jstr(s0, "eccolo"), self);
    cr_expect_eq(jint(s0, "n_shards"), 3);
    cr_expect_str_eq(jstr(s0, "array_spec"), "0-2");
    char *script = slurp(jstr(s0, "script"));
    cr_expect(strstr(script, self), "the script does not run %s:\n%s", self, script);
    for (int i = 0; i < 3; i++) {
        char *log = fmt("%s/slurm/shard-%d.out", out, i), *text = slurp(log);
        char *want = fmt("eccolo batch: shard %d/3: %d prompts: %d done now", i, per_shard[i], per_shard[i]);
        cr_expect(strstr(text, want), "%s:\n%s", log, text);
        free(log), free(text), free(want);
    }

    cJSON *st = status_json(out);
    cr_expect_eq(jint(st, "prompts"), N);
    cr_expect_eq(jint(st, "done"), N);
    cr_expect_eq(jint(st, "finished_shards"), 3);
    cr_expect_eq(jint(cJSON_GetObjectItemCaseSensitive(st, "states"), "completed"), 3);
    cJSON_Delete(st);
    so = NULL;
    rc = run_cli(&so, NULL, ARGS("submit", "--resubmit-failed", out));
    cr_expect_eq(rc, 0);
    cr_expect(strstr(so, "nothing to resubmit"), "%s", so);
    free(so);
    fprintf(stderr, "slurm (a): local batch %.1f s, submit --wait %.1f s, total %.1f s\n", t1 - t0, t2 - t1,
            ecc_now() - t0);
    cJSON_Delete(jobs);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(dir), free(model), free(prompts), free(local), free(out), free(jobs_path), free(script);
#undef BATCH_OPTS
}

/* ---- (b) a shard killed mid-run, resubmitted: nothing lost, nothing twice ------------------------- */

/* The manifest lines of shard s so far. */
static int manifest_lines_of(const char *out, int s)
{
    char *mpath = fmt("%s/manifest.jsonl", out), *data = NULL;
    size_t len = 0;
    int n = 0;
    if (ecc_file_exists(mpath) && ecc_read_file(mpath, 1u << 30, &data, &len) == ECC_OK) {
        for (char *save = NULL, *l = strtok_r(data, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            cJSON *j = cJSON_Parse(l);
            const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shard");
            n += cJSON_IsNumber(sh) && sh->valueint == s;
            cJSON_Delete(j);
        }
    }
    free(data), free(mpath);
    return n;
}

Test(slurm, killed_shard_is_resubmitted)
{
    double t0 = ecc_now();
    char *dir = test_tmpdir("slurm-b"), *model = fixture_path("tiny-gpt2"), *prompts = fmt("%s/prompts.jsonl", dir);
    char *out = fmt("%s/out", dir);
    /* nine quick prompts; the slow shard T (that of the first) then gets two
     * slow ones (40 tokens, integrated gradients), after its quick ones */
    enum { NQ = 9, NS = 2, N = NQ + NS };
    char *ids[N];
    for (int i = 0; i < NQ; i++)
        ids[i] = fmt("quick-%d", i);
    int T = ecc_batch_shard_of(ids[0], 3), k = 0;
    for (int c = 0; k < NS && c < 1000; c++) {
        char *id = fmt("slow-%d", c);
        if (ecc_batch_shard_of(id, 3) == T)
            ids[NQ + k++] = id;
        else
            free(id);
    }
    cr_assert_eq(k, NS);
    FILE *f = fopen(prompts, "w");
    cr_assert(f);
    for (int i = 0; i < N; i++)
        fprintf(f, "{\"id\": \"%s\", \"prompt\": \"Story %d: once upon a time\", \"max_new_tokens\": %d}\n", ids[i],
                i, i < NQ ? 2 : 40);
    fclose(f);

    char *so = NULL, *se = NULL;
    int rc = run_cli(&so, &se, ARGS("submit", "--shards", "3", "--", "--model", model, "--prompts", prompts, "--out",
                                    out, "--attribution", "integrated_gradients", "--batch-size", "1", "--quiet"));
    cr_assert_eq(rc, 0, "submit: %s", se);
    char job[32] = "";
    cr_assert(sscanf(so, "submitted job %31[0-9]", job) == 1, "stdout: %s", so);
    free(so), free(se);

    /* shard T has written a line: cancel its task, mid-run */
    double deadline = ecc_now() + 90;
    while (manifest_lines_of(out, T) < 1 && ecc_now() < deadline)
        sleep_ms(50);
    if (manifest_lines_of(out, T) < 1) {
        char *logs = slurm_logs();
        cr_assert_fail("shard %d wrote nothing to the manifest in 90 s; slurm logs:\n%s", T, logs);
    }
    char task[64], *log = NULL;
    snprintf(task, sizeof task, "%s_%d", job, T);
    rc = run_prog(&log, ARGS("scancel", task));
    cr_assert_eq(rc, 0, "scancel %s: %s", task, log);
    free(log);
    double t_cancel = ecc_now();

    /* until no task is pending or running */
    cJSON *st = NULL;
    for (deadline = ecc_now() + 90;; sleep_ms(200)) {
        st = status_json(out);
        const cJSON *states = cJSON_GetObjectItemCaseSensitive(st, "states");
        if (jint(states, "pending") + jint(states, "running") == 0 || ecc_now() > deadline)
            break;
        cJSON_Delete(st);
    }
    const cJSON *states = cJSON_GetObjectItemCaseSensitive(st, "states");
    cr_assert_eq(jint(states, "pending") + jint(states, "running"), 0, "tasks still queued after 90 s");
    const cJSON *sh = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "shards"), T);
    cr_assert(jint(sh, "left") > 0,
              "shard %d finished before it was cancelled: nothing to resubmit (make its prompts slower)", T);
    cr_expect_eq(jint(sh, "finished"), 0);
    cr_expect_str_eq(jstr(sh, "state"), "failed", "shard %d (source %s, Slurm %s)", T, jstr(sh, "source"),
                     jstr(sh, "slurm_state"));
    cr_expect_eq(jint(sh, "resubmit"), 1);
    for (int i = 0; i < 3; i++)
        if (i != T) {
            const cJSON *o = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "shards"), i);
            cr_expect_eq(jint(o, "finished"), 1, "shard %d", i);
            cr_expect_str_eq(jstr(o, "state"), "completed", "shard %d", i);
        }
    cr_expect_eq(jint(st, "finished_shards"), 2);
    cJSON_Delete(st);
    rc = run_cli(&so, &se, ARGS("status", out));
    cr_expect_eq(rc, 0, "%s", se);
    char *row = fmt("\n%5d ", T);
    const char *line = strstr(so, row);
    cr_expect(line && strstr(line, " failed ") && strstr(line, " no "), "status:\n%s", so);
    cr_expect(strstr(so, "1 shard stopped before finishing: eccolo submit --resubmit-failed"), "status:\n%s", so);
    free(row), free(so), free(se);

    /* resubmit: only shard T */
    double t_resub = ecc_now();
    rc = run_cli(&so, &se, ARGS("submit", "--resubmit-failed", out, "--wait"));
    if (rc != 0) {
        char *logs = slurm_logs();
        cr_assert_fail("resubmit --wait: exit %d\nstdout: %s\nstderr: %s\nslurm logs:\n%s", rc, so, se, logs);
    }
    char *want = fmt(": array %d of 3 shards", T);
    cr_expect(strstr(so, want), "stdout: %s", so);
    free(want), free(so), free(se);
    double t_end = ecc_now();
    char *jobs_path = fmt("%s/slurm/jobs.json", out);
    cJSON *jobs = slurp_json(jobs_path);
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(jobs, "submissions");
    cr_assert_eq(cJSON_GetArraySize(subs), 2);
    const cJSON *s1 = cJSON_GetArrayItem(subs, 1), *arr = cJSON_GetObjectItemCaseSensitive(s1, "array");
    cr_expect_eq(cJSON_GetArraySize(arr), 1);
    cr_expect_eq(cJSON_GetArrayItem(arr, 0)->valueint, T);
    cr_expect_eq(jint(s1, "resubmit"), 1);
    cJSON_Delete(jobs);

    st = status_json(out);
    cr_expect_eq(jint(st, "done"), N);
    cr_expect_eq(jint(st, "finished_shards"), 3);
    cJSON_Delete(st);
    expect_done_exactly_once(out, ids, N);
    int hidden = expect_runs_dir(out, ids, N);
    /* A task cancelled while it wrote a run leaves runs/.tmp-<id>-<pid> behind: not a
     * result (readers go by the manifest), only reported here (a warning would fail the
     * runner's exit code). */
    rc = run_cli(&so, NULL, ARGS("submit", "--resubmit-failed", out));
    cr_expect_eq(rc, 0);
    cr_expect(strstr(so, "nothing to resubmit"), "%s", so);
    free(so);
    fprintf(stderr,
            "slurm (b): cancelled shard %d after %.1f s, stopped in %.1f s, resubmission ran %.1f s; total %.1f s; "
            "%d temporaries left in runs/\n",
            T, t_cancel - t0, t_resub - t_cancel, t_end - t_resub, ecc_now() - t0, hidden);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(dir), free(model), free(prompts), free(out), free(jobs_path);
}
