/* Slurm array jobs of `eccolo batch`: scripts, jobs.json, shard states (see submit.h). */
#define _GNU_SOURCE
#include "jobs/submit.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs/batch.h"
#include "jobs/manifest.h"
#include "util.h"

/* ---- a growable string ---------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) ECC_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

/* The string (malloc'd), or NULL with ECC_ERR_NOMEM recorded. */
static char *sb_take(sbuf *b)
{
    if (b->oom || !b->s) {
        free(b->s);
        if (b->oom)
            ecc_fail(ECC_ERR_NOMEM, "out of memory");
        return b->oom ? NULL : ecc_strdup("");
    }
    return b->s;
}

/* ---- quoting, checks ---------------------------------------------------------------------- */

static int shell_safe(int c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/' || c == ':' || c == ',' || c == '+' ||
           c == '=' || c == '@' || c == '%';
}

char *ecc_shell_quote(const char *s)
{
    int safe = *s != '\0';
    for (const char *p = s; *p && safe; p++)
        safe = shell_safe((unsigned char)*p);
    if (safe && s[0] != '=' && s[0] != '%') /* '=' first could read as an assignment in odd shells */
        return ecc_strdup(s);
    sbuf b = {0};
    sb_puts(&b, "'");
    for (const char *p = s; *p; p++) {
        if (*p == '\'')
            sb_puts(&b, "'\\''");
        else
            sb_add(&b, p, 1);
    }
    sb_puts(&b, "'");
    return sb_take(&b);
}

/* Every byte of s in the set of characters (plus alphanumerics). */
static int only(const char *s, const char *extra)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(extra, *p))
            return 0;
    return 1;
}

/* Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED/INFINITE. */
static int time_ok(const char *s)
{
    if (!strcasecmp(s, "unlimited") || !strcasecmp(s, "infinite"))
        return 1;
    int colons = 0, dashes = 0, digits = 0;
    for (const char *p = s; *p; p++) {
        if (isdigit((unsigned char)*p)) {
            digits++;
            continue;
        }
        if (!digits || (*p != ':' && *p != '-'))
            return 0;
        if (*p == '-' && (dashes++ || colons))
            return 0;
        if (*p == ':' && ++colons > 2)
            return 0;
        digits = 0;
    }
    return digits > 0;
}

ecc_status ecc_slurm_check_resources(const ecc_slurm_resources *r)
{
    if (r->partition && !only(r->partition, "_.,-"))
        return ecc_fail(ECC_ERR_INPUT, "--partition: '%s' is not a partition name (letters, digits, _ . - ,)",
                        r->partition);
    if (r->account && !only(r->account, "_.-"))
        return ecc_fail(ECC_ERR_INPUT, "--account: '%s' is not an account name (letters, digits, _ . -)", r->account);
    if (r->time && !time_ok(r->time))
        return ecc_fail(ECC_ERR_INPUT,
                        "--time: '%s' is not a Slurm time limit (HH:MM:SS, MM, D-HH:MM:SS, UNLIMITED)", r->time);
    if (r->mem) {
        size_t n = strlen(r->mem), d = strspn(r->mem, "0123456789");
        if (!d || (d < n && (d + 1 != n || !strchr("KMGTkmgt", r->mem[d]))))
            return ecc_fail(ECC_ERR_INPUT, "--mem: '%s' is not a Slurm memory size (e.g. 16G, 4000M, 4000)", r->mem);
    }
    if (r->cpus_per_task) {
        char *end;
        long v = strtol(r->cpus_per_task, &end, 10);
        if (end == r->cpus_per_task || *end || v < 1 || v > 4096)
            return ecc_fail(ECC_ERR_INPUT, "--cpus-per-task must be an integer from 1 to 4096 (got '%s')",
                            r->cpus_per_task);
    }
    if (r->gpus_per_task && (!only(r->gpus_per_task, "_.:-") || !isdigit((unsigned char)r->gpus_per_task
                                                                           [strlen(r->gpus_per_task) - 1])))
        return ecc_fail(ECC_ERR_INPUT, "--gpus-per-task: '%s' is not a GPU count ([type:]count, e.g. 1 or a100:2)",
                        r->gpus_per_task);
    if (r->job_name && (!only(r->job_name, "_.+-") || strlen(r->job_name) > 200))
        return ecc_fail(ECC_ERR_INPUT, "--job-name: '%s': use letters, digits, _ . + - (at most 200)", r->job_name);
    return ECC_OK;
}

char *ecc_array_spec(const int *idx, int n)
{
    sbuf b = {0};
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && idx[j + 1] == idx[j] + 1)
            j++;
        if (i)
            sb_puts(&b, ",");
        if (j == i)
            sb_printf(&b, "%d", idx[i]);
        else
            sb_printf(&b, "%d-%d", idx[i], idx[j]);
        i = j + 1;
    }
    return sb_take(&b);
}

const char *ecc_arg_value(int n, char *const *args, const char *name)
{
    size_t l = strlen(name);
    const char *v = NULL;
    for (int i = 0; i < n; i++) {
        if (!strcmp(args[i], name) && i + 1 < n)
            v = args[++i];
        else if (!strncmp(args[i], name, l) && args[i][l] == '=')
            v = args[i] + l + 1;
    }
    return v; /* the last one, as a parser that overwrites would take */
}

/* A path in an #SBATCH line: sbatch splits its options on blanks but honours
 * double quotes. */
static ecc_status sbatch_path(sbuf *b, const char *opt, const char *path)
{
    if (strpbrk(path, "\"\\\n\r"))
        return ecc_fail(ECC_ERR_INPUT, "%s: the path '%s' has a character an #SBATCH line cannot hold (\" \\ or "
                                       "a line break)", opt, path);
    int plain = 1;
    for (const char *p = path; *p; p++)
        if (!shell_safe((unsigned char)*p))
            plain = 0;
    sb_printf(b, plain ? "#SBATCH %s=%s\n" : "#SBATCH %s=\"%s\"\n", opt, path);
    return ECC_OK;
}

char *ecc_sbatch_script(const ecc_submit_plan *p)
{
    if (strchr(p->slurm_dir, '%')) {
        ecc_fail(ECC_ERR_INPUT, "the output directory '%s' has a '%%', which Slurm reads as a file name pattern",
                 p->slurm_dir);
        return NULL;
    }
    char *spec = ecc_array_spec(p->array, p->n_array);
    if (!spec)
        return NULL;
    sbuf b = {0};
    sb_puts(&b, "#!/bin/bash\n");
    sb_printf(&b, "#SBATCH --job-name=%s\n", p->job_name);
    sb_printf(&b, "#SBATCH --array=%s\n", spec);
    free(spec);
    char *out_pat = ecc_path_join(p->slurm_dir, "shard-%a.out");
    ecc_status s = out_pat ? sbatch_path(&b, "--chdir", p->chdir) : ECC_ERR_NOMEM;
    if (s == ECC_OK)
        s = sbatch_path(&b, "--output", out_pat);
    free(out_pat);
    if (s != ECC_OK) {
        free(b.s);
        return NULL;
    }
    sb_puts(&b, "#SBATCH --open-mode=append\n");
    const ecc_slurm_resources *r = &p->res;
    if (r->partition)
        sb_printf(&b, "#SBATCH --partition=%s\n", r->partition);
    if (r->account)
        sb_printf(&b, "#SBATCH --account=%s\n", r->account);
    if (r->time)
        sb_printf(&b, "#SBATCH --time=%s\n", r->time);
    if (r->cpus_per_task)
        sb_printf(&b, "#SBATCH --cpus-per-task=%s\n", r->cpus_per_task);
    if (r->mem)
        sb_printf(&b, "#SBATCH --mem=%s\n", r->mem);
    if (r->gpus_per_task)
        sb_printf(&b, "#SBATCH --gpus-per-task=%s\n", r->gpus_per_task);
    sb_printf(&b,
              "#\n"
              "# Written by `eccolo submit`: array task I runs `eccolo batch ... --shard I/%d`, the prompts\n"
              "# whose id hashes to I. A re-run skips the prompts already done (see manifest.jsonl), so a\n"
              "# task that stopped can be run again: eccolo submit --resubmit-failed DIR.\n"
              "set -eu\n"
              "echo \"== eccolo shard ${SLURM_ARRAY_TASK_ID}/%d: job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} "
              "on $(hostname) at $(date -u +%%Y-%%m-%%dT%%H:%%M:%%SZ)\" >&2\n",
              p->n_shards, p->n_shards);
    if (r->cpus_per_task)
        sb_printf(&b, "export OMP_NUM_THREADS=%s\n", r->cpus_per_task);
    char *q = ecc_shell_quote(p->eccolo);
    sb_printf(&b, "exec %s batch", q ? q : "");
    free(q);
    for (int i = 0; i < p->n_args; i++) {
        q = ecc_shell_quote(p->args[i]);
        sb_printf(&b, " %s", q ? q : "");
        if (!q)
            b.oom = 1;
        free(q);
    }
    sb_printf(&b, " --shard \"${SLURM_ARRAY_TASK_ID}/%d\"\n", p->n_shards);
    return sb_take(&b);
}

/* ---- jobs.json -------------------------------------------------------------------------- */

static char *jobs_path(const char *dir)
{
    char *sd = ecc_path_join(dir, "slurm"), *p = sd ? ecc_path_join(sd, "jobs.json") : NULL;
    free(sd);
    return p;
}

ecc_status ecc_jobs_read(cJSON **jobs, const char *dir)
{
    *jobs = NULL;
    char *path = jobs_path(dir), *data = NULL;
    size_t len;
    if (!path)
        return ECC_ERR_NOMEM;
    if (!ecc_file_exists(path)) {
        ecc_status s = ecc_dir_exists(dir)
                           ? ecc_fail(ECC_ERR_IO, "%s not found: was %s submitted with eccolo submit?", path, dir)
                           : ecc_fail(ECC_ERR_IO, "%s: no such directory", dir);
        free(path);
        return s;
    }
    ecc_status s = ecc_read_file(path, 256u << 20, &data, &len);
    if (s == ECC_OK) {
        cJSON *j = cJSON_ParseWithLength(data, len);
        const cJSON *subs = cJSON_GetObjectItemCaseSensitive(j, "submissions");
        if (!cJSON_IsArray(subs)) {
            cJSON_Delete(j);
            s = ecc_fail(ECC_ERR_FORMAT, "%s: not a jobs file of eccolo submit (no \"submissions\" list)", path);
        } else {
            *jobs = j;
        }
    }
    free(data);
    free(path);
    return s;
}

ecc_status ecc_jobs_append(const char *dir, const char *out_abs, cJSON *submission)
{
    char *sd = ecc_path_join(dir, "slurm"), *lock = sd ? ecc_path_join(sd, ".jobs.lock") : NULL,
         *path = jobs_path(dir);
    ecc_status s = sd && lock && path ? ecc_mkdirs(sd) : ECC_ERR_NOMEM;
    int fd = -1;
    if (s == ECC_OK && (fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", lock, strerror(errno));
    if (fd >= 0)
        flock(fd, LOCK_EX);
    cJSON *jobs = NULL;
    if (s == ECC_OK && ecc_file_exists(path))
        s = ecc_jobs_read(&jobs, dir);
    if (s == ECC_OK && !jobs) {
        jobs = cJSON_CreateObject();
        cJSON_AddStringToObject(jobs, "format", "eccolo-jobs");
        cJSON_AddNumberToObject(jobs, "version", 1);
        cJSON_AddStringToObject(jobs, "out", out_abs);
        cJSON_AddArrayToObject(jobs, "submissions");
    }
    if (s == ECC_OK) {
        cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(jobs, "submissions"),
                             cJSON_Duplicate(submission, 1));
        char *text = cJSON_Print(jobs);
        if (!text)
            s = ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", path);
        else
            s = ecc_write_file_atomic(path, text, strlen(text));
        free(text);
    }
    cJSON_Delete(jobs);
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
    free(sd);
    free(lock);
    free(path);
    return s;
}

/* ---- processes ------------------------------------------------------------------------- */

char *ecc_which(const char *name)
{
    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? ecc_strdup(name) : NULL;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        char dir[4096];
        if (n > 0 && n < sizeof dir) {
            memcpy(dir, path, n);
            dir[n] = '\0';
            char *p = ecc_path_join(dir, name);
            struct stat sb;
            if (p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && access(p, X_OK) == 0)
                return p;
            free(p);
        }
        path += n + (end ? 1 : 0);
    }
    return NULL;
}

void ecc_proc_free(ecc_proc *p)
{
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

ecc_status ecc_proc_run(ecc_proc *p, char *const argv[], void (*on_out)(void *ctx, const char *out, size_t len),
                        void *ctx)
{
    memset(p, 0, sizeof *p);
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
        int e = errno;
        for (int i = 0; i < 2; i++) {
            if (po[i] >= 0)
                close(po[i]);
            if (pe[i] >= 0)
                close(pe[i]);
        }
        return ecc_fail(ECC_ERR_IO, "cannot run %s: pipe: %s", argv[0], strerror(e));
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(po[0]), close(po[1]), close(pe[0]), close(pe[1]);
        return ecc_fail(ECC_ERR_IO, "cannot run %s: fork: %s", argv[0], strerror(e));
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(po[1], 1);
        dup2(pe[1], 2);
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    sbuf out = {0}, err = {0};
    struct pollfd fds[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[4096];
            ssize_t r = read(fds[i].fd, buf, sizeof buf);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
                continue;
            }
            sb_add(i ? &err : &out, buf, (size_t)r);
            if (!i && on_out && out.s)
                on_out(ctx, out.s, out.len);
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    p->rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    p->out = sb_take(&out);
    p->err = sb_take(&err);
    if (!p->out || !p->err) {
        ecc_proc_free(p);
        return ECC_ERR_NOMEM;
    }
    return ECC_OK;
}

/* ---- the state of the shards ---------------------------------------------------------- */

const char *ecc_slurm_state_name(ecc_slurm_state s)
{
    static const char *names[] = {"unknown", "pending", "running", "completed", "failed"};
    return (unsigned)s < 5 ? names[s] : "unknown";
}

/* squeue's compact codes and scontrol/sacct's words. */
static ecc_slurm_state state_of_code(const char *c)
{
    static const char *pending[] = {"PD", "PENDING", "RQ", "REQUEUED", "RH", "REQUEUE_HOLD", "RF", "REQUEUE_FED",
                                    "RS", "RESIZING", NULL};
    static const char *running[] = {"R", "RUNNING", "CG", "COMPLETING", "CF", "CONFIGURING", "S", "SUSPENDED",
                                    "ST", "STOPPED", "SI", "SIGNALING", "SO", "STAGE_OUT", "RD", "RESV_DEL_HOLD",
                                    NULL};
    static const char *completed[] = {"CD", "COMPLETED", NULL};
    static const char *failed[] = {"F", "FAILED", "CA", "CANCELLED", "TO", "TIMEOUT", "NF", "NODE_FAIL", "OOM",
                                   "OUT_OF_MEMORY", "BF", "BOOT_FAIL", "DL", "DEADLINE", "PR", "PREEMPTED",
                                   "RV", "REVOKED", "SE", "SPECIAL_EXIT", NULL};
    const char **lists[] = {pending, running, completed, failed};
    ecc_slurm_state states[] = {ECC_SLURM_PENDING, ECC_SLURM_RUNNING, ECC_SLURM_COMPLETED, ECC_SLURM_FAILED};
    for (int l = 0; l < 4; l++)
        for (const char **w = lists[l]; *w; w++)
            if (!strcmp(c, *w))
                return states[l];
    return ECC_SLURM_UNKNOWN;
}

/* The latest known Slurm state of each array task of one job. */
typedef struct task_state {
    int index;
    ecc_slurm_state state;
    char word[32];
    const char *source;
} task_state;

typedef struct job_states {
    char job[32];
    task_state *t;
    int n, cap;
    int queue_ok;             /* squeue answered for this job (in the queue or not) */
    int asked_scontrol, asked_sacct;
} job_states;

static task_state *job_task(job_states *j, int index)
{
    for (int i = 0; i < j->n; i++)
        if (j->t[i].index == index)
            return &j->t[i];
    return NULL;
}

static void job_set(job_states *j, int index, const char *word, const char *source)
{
    task_state *t = job_task(j, index);
    if (!t) {
        if (j->n == j->cap) {
            int cap = j->cap ? 2 * j->cap : 16;
            task_state *p = realloc(j->t, sizeof *p * (size_t)cap);
            if (!p)
                return;
            j->t = p;
            j->cap = cap;
        }
        t = &j->t[j->n++];
        t->index = index;
    }
    snprintf(t->word, sizeof t->word, "%s", word);
    t->state = state_of_code(word);
    t->source = source;
}

/* "3", "0-2", "1,3,5-7", "[1-3]", "0-9%2" (a throttle): call set for each index. */
static void each_index(job_states *j, const char *spec, const char *word, const char *source)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec[0] == '[' ? spec + 1 : spec);
    buf[strcspn(buf, "]%")] = '\0';
    for (char *save = NULL, *part = strtok_r(buf, ",", &save); part; part = strtok_r(NULL, ",", &save)) {
        char *end;
        long a = strtol(part, &end, 10), b = a;
        if (end == part)
            continue;
        if (*end == '-')
            b = strtol(end + 1, &end, 10);
        for (long i = a; i <= b && i - a < 100000; i++)
            job_set(j, (int)i, word, source);
    }
}

/* "1_2 R" lines; only the tasks of job j. */
static void parse_squeue(job_states *j, const char *out)
{
    size_t jl = strlen(j->job);
    for (const char *line = out; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char id[128], st[32];
        char buf[256];
        snprintf(buf, sizeof buf, "%.*s", (int)(n < 255 ? n : 255), line);
        if (sscanf(buf, "%127s %31s", id, st) == 2 && !strncmp(id, j->job, jl) && id[jl] == '_')
            each_index(j, id + jl + 1, st, "squeue");
        line += n + (nl ? 1 : 0);
    }
}

/* "Key=value" of one line of `scontrol -o show job`. */
static int kv(const char *line, const char *key, char *val, size_t cap)
{
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)); p += kl) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t n = strcspn(v, " \n");
            snprintf(val, cap, "%.*s", (int)(n < cap ? n : cap - 1), v);
            return 1;
        }
    }
    return 0;
}

static void parse_scontrol(job_states *j, const char *out)
{
    for (const char *line = out; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char *l = strndup(line, n), ajob[64], idx[256], st[64];
        if (l && kv(l, "ArrayJobId", ajob, sizeof ajob) && !strcmp(ajob, j->job) &&
            kv(l, "ArrayTaskId", idx, sizeof idx) && kv(l, "JobState", st, sizeof st))
            each_index(j, idx, st, "scontrol");
        free(l);
        line += n + (nl ? 1 : 0);
    }
}

/* sacct -n -P -X -j JOB -o JobID,State: "12_1|CANCELLED by 0". */
static void parse_sacct(job_states *j, const char *out)
{
    size_t jl = strlen(j->job);
    for (const char *line = out; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        char buf[256], st[32];
        snprintf(buf, sizeof buf, "%.*s", (int)(n < 255 ? n : 255), line);
        char *bar = strchr(buf, '|');
        if (bar && !strncmp(buf, j->job, jl) && buf[jl] == '_' && sscanf(bar + 1, "%31s", st) == 1) {
            *bar = '\0';
            each_index(j, buf + jl + 1, st, "sacct");
        }
        line += n + (nl ? 1 : 0);
    }
}

/* One line of a tool's stderr, for notes. */
static void first_line(char *dst, size_t cap, const char *s)
{
    while (*s == '\n' || *s == ' ')
        s++;
    size_t n = strcspn(s, "\n");
    snprintf(dst, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
}

typedef struct slurm_tools {
    char *squeue, *scontrol, *sacct;
} slurm_tools;

/* Ask squeue about job j (every task in the queue). 0 when squeue answered. */
static int ask_squeue(job_states *j, const slurm_tools *t, char *note, size_t note_cap)
{
    char *argv[] = {t->squeue, "-h", "-r", "-j", j->job, "-o", "%i %t", NULL};
    ecc_proc p;
    if (ecc_proc_run(&p, argv, NULL, NULL) != ECC_OK)
        return -1;
    int ok = 0;
    if (p.rc == 0) {
        parse_squeue(j, p.out);
        ok = 1;
    } else if (strstr(p.err, "Invalid job id")) {
        ok = 1; /* no longer in the queue */
    } else if (!note[0]) {
        char l[300];
        first_line(l, sizeof l, p.err);
        snprintf(note, note_cap, "squeue failed (exit %d): %s", p.rc, l);
    }
    ecc_proc_free(&p);
    j->queue_ok = ok;
    return ok ? 0 : -1;
}

/* A task no longer in the queue: scontrol (until MinJobAge), then sacct. */
static void ask_finished(job_states *j, const slurm_tools *t)
{
    ecc_proc p;
    if (!j->asked_scontrol && t->scontrol) {
        j->asked_scontrol = 1;
        char *argv[] = {t->scontrol, "-o", "show", "job", j->job, NULL};
        if (ecc_proc_run(&p, argv, NULL, NULL) == ECC_OK) {
            if (p.rc == 0)
                parse_scontrol(j, p.out);
            ecc_proc_free(&p);
        }
    }
}

static void ask_sacct(job_states *j, const slurm_tools *t)
{
    if (j->asked_sacct || !t->sacct)
        return;
    j->asked_sacct = 1;
    ecc_proc p;
    char *argv[] = {t->sacct, "-n", "-P", "-X", "-j", j->job, "-o", "JobID,State", NULL};
    if (ecc_proc_run(&p, argv, NULL, NULL) == ECC_OK) {
        if (p.rc == 0)
            parse_sacct(j, p.out);
        ecc_proc_free(&p);
    }
}

static const char *str_item(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void ecc_batch_status_free(ecc_batch_status *st)
{
    free(st->dir);
    free(st->prompts);
    free(st->shards);
    memset(st, 0, sizeof *st);
}

ecc_status ecc_batch_status_get(ecc_batch_status *st, const char *dir)
{
    memset(st, 0, sizeof *st);
    cJSON *jobs;
    ECC_TRY(ecc_jobs_read(&jobs, dir));
    const cJSON *subs = cJSON_GetObjectItemCaseSensitive(jobs, "submissions");
    int n_subs = cJSON_GetArraySize(subs);
    const cJSON *last = n_subs ? cJSON_GetArrayItem(subs, n_subs - 1) : NULL;
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(last, "n_shards"),
                *args = cJSON_GetObjectItemCaseSensitive(last, "batch_args");
    const char *chdir_ = str_item(last, "chdir");
    if (!last || !cJSON_IsNumber(ns) || ns->valueint < 1 || !cJSON_IsArray(args) || !chdir_) {
        cJSON_Delete(jobs);
        return ecc_fail(ECC_ERR_FORMAT, "%s/slurm/jobs.json: no complete submission recorded", dir);
    }
    int N = ns->valueint, n_args = cJSON_GetArraySize(args);
    char **argv = ecc_calloc((size_t)n_args + 1, sizeof *argv, "the batch arguments");
    if (!argv) {
        cJSON_Delete(jobs);
        return ECC_ERR_NOMEM;
    }
    for (int i = 0; i < n_args; i++) {
        const cJSON *a = cJSON_GetArrayItem(args, i);
        argv[i] = cJSON_IsString(a) ? a->valuestring : "";
    }
    const char *prompts = ecc_arg_value(n_args, argv, "--prompts");
    ecc_status s = ECC_OK;
    if (!prompts)
        s = ecc_fail(ECC_ERR_FORMAT, "%s/slurm/jobs.json: the batch arguments have no --prompts", dir);
    st->dir = ecc_strdup(dir);
    st->n_shards = N;
    st->n_submissions = n_subs;
    if (s == ECC_OK)
        st->prompts = prompts[0] == '/' ? ecc_strdup(prompts) : ecc_path_join(chdir_, prompts);
    free(argv);
    st->shards = ecc_calloc((size_t)N, sizeof *st->shards, "the shards");
    if (s == ECC_OK && (!st->dir || !st->prompts || !st->shards))
        s = ECC_ERR_NOMEM;

    /* prompts and manifest */
    ecc_batch_items items = {0};
    ecc_manifest man = {0};
    if (s == ECC_OK && (s = ecc_batch_read(&items, st->prompts)) != ECC_OK)
        ecc_fail_prefix(s, "cannot read the prompts of the batch: ");
    if (s == ECC_OK)
        s = ecc_manifest_open(&man, dir); /* the state of an id: its last run record */
    for (int i = 0; s == ECC_OK && i < N; i++) {
        st->shards[i].shard = i;
        st->shards[i].source = "none";
    }
    for (int i = 0; s == ECC_OK && i < items.n; i++) {
        const ecc_batch_item *it = &items.items[i];
        ecc_shard_status *sh = &st->shards[ecc_batch_shard_of(it->id, N)];
        const ecc_manifest_entry *m = ecc_manifest_find(&man, it->id);
        sh->prompts++;
        if (it->error) {
            sh->invalid++;
            sh->failed++;
        } else if (m && m->done) {
            sh->done++;
        } else {
            sh->retry++;
            if (m) /* ran, and its last record says failed */
                sh->failed++;
            else
                sh->left++;
        }
    }

    /* Slurm: for each shard, the latest submission (with N shards) that had it */
    slurm_tools tools = {ecc_which("squeue"), ecc_which("scontrol"), ecc_which("sacct")};
    job_states *js = ecc_calloc((size_t)(n_subs ? n_subs : 1), sizeof *js, "the jobs");
    int n_js = 0;
    if (!js && s == ECC_OK)
        s = ECC_ERR_NOMEM;
    if (s == ECC_OK && !tools.squeue)
        snprintf(st->note, sizeof st->note, "squeue not found: the Slurm states are inferred from the manifest");
    st->slurm_ok = tools.squeue != NULL;
    for (int i = 0; s == ECC_OK && i < N; i++) {
        ecc_shard_status *sh = &st->shards[i];
        sh->finished = sh->retry == 0;
        const char *job = NULL;
        for (int k = n_subs - 1; k >= 0 && !job; k--) {
            const cJSON *sub = cJSON_GetArrayItem(subs, k), *arr = cJSON_GetObjectItemCaseSensitive(sub, "array"),
                        *sn = cJSON_GetObjectItemCaseSensitive(sub, "n_shards"), *e;
            if (!cJSON_IsNumber(sn) || sn->valueint != N || !str_item(sub, "job_id"))
                continue;
            cJSON_ArrayForEach(e, arr) if (cJSON_IsNumber(e) && e->valueint == i) job = str_item(sub, "job_id");
        }
        sh->state = ECC_SLURM_UNKNOWN;
        if (job) {
            snprintf(sh->task, sizeof sh->task, "%s_%d", job, i);
            job_states *j = NULL;
            for (int k = 0; k < n_js && !j; k++)
                if (!strcmp(js[k].job, job))
                    j = &js[k];
            if (!j) {
                j = &js[n_js++];
                snprintf(j->job, sizeof j->job, "%s", job);
                if (tools.squeue && ask_squeue(j, &tools, st->note, sizeof st->note) != 0)
                    st->slurm_ok = 0;
            }
            const task_state *t = job_task(j, i);
            if (!t && j->queue_ok) { /* finished: how? */
                ask_finished(j, &tools);
                t = job_task(j, i);
                if (!t) {
                    ask_sacct(j, &tools);
                    t = job_task(j, i);
                }
            }
            if (t && t->state != ECC_SLURM_UNKNOWN) {
                sh->state = t->state;
                snprintf(sh->slurm_state, sizeof sh->slurm_state, "%s", t->word);
                sh->source = t->source;
            } else if (j->queue_ok) { /* not in the queue, forgotten by scontrol: it ended */
                sh->state = sh->finished ? ECC_SLURM_COMPLETED : ECC_SLURM_FAILED;
                sh->source = "manifest";
            }
        }
        if (sh->state == ECC_SLURM_UNKNOWN && !tools.squeue && sh->finished) {
            sh->state = ECC_SLURM_COMPLETED; /* no Slurm here: the manifest says it is all done */
            sh->source = "manifest";
        }
        st->by_state[sh->state]++;
        st->prompts_total += sh->prompts;
        st->done += sh->done;
        st->failed += sh->failed;
        st->left += sh->left;
    }
    for (int k = 0; js && k < n_js; k++)
        free(js[k].t);
    free(js);
    free(tools.squeue);
    free(tools.scontrol);
    free(tools.sacct);
    ecc_manifest_free(&man);
    ecc_batch_items_free(&items);
    cJSON_Delete(jobs);
    if (s != ECC_OK)
        ecc_batch_status_free(st);
    return s;
}
