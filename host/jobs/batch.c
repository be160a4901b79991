#define _GNU_SOURCE
#include "jobs/batch.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "model/model.h"
#include "engine/run.h"
#include "util.h"

#define MAX_PROMPTS_FILE ((size_t)1 << 32) /* 4 GiB of JSONL */
#define MAX_LINE ((size_t)64 << 20)        /* one request, as --prompt-file allows */

/* ---- reading the prompts ------------------------------------------------------------ */

int ecc_batch_id_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 200 || id[0] == '.')
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

int ecc_batch_shard_of(const char *id, int n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return n > 1 ? (int)(h % (uint64_t)n) : 0;
}

static char *fmt_error(const char *fmt, const char *arg)
{
    char buf[512];
    snprintf(buf, sizeof buf, fmt, arg);
    return strdup(buf);
}

int ecc_batch_parse_line(ecc_batch_item *it, const char *text, size_t len, int line)
{
    memset(it, 0, sizeof *it);
    it->line = line;
    it->max_new_tokens = -1;
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r'))
        i++;
    if (i == len)
        return 0;
    if (len > MAX_LINE) { /* not parsed: cJSON would hold a copy of every string in it */
        char buf[96];
        snprintf(buf, sizeof buf, "line-%d", line);
        it->id = strdup(buf);
        snprintf(buf, sizeof buf, "the line is %zu bytes, more than the %zu allowed", len, MAX_LINE);
        it->error = strdup(buf);
        return 1;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "prompt");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(j, "continuation");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(j, "max_new_tokens");
    if (cJSON_IsString(id) && ecc_batch_id_ok(id->valuestring))
        it->id = strdup(id->valuestring);
    if (!j || !cJSON_IsObject(j))
        it->error = strdup("not a JSON object");
    else if (!cJSON_IsString(id))
        it->error = strdup("no \"id\" string");
    else if (!it->id)
        it->error = fmt_error("id \"%.60s\" cannot name a directory: use 1-200 letters, digits, '.', '-' or '_', "
                              "not starting with '.'", id->valuestring);
    else if (!cJSON_IsString(pr))
        it->error = strdup("no \"prompt\" string");
    else if (co && !cJSON_IsString(co) && !cJSON_IsNull(co))
        it->error = strdup("\"continuation\" must be a string");
    else if (mx && !cJSON_IsNull(mx) &&
             (!cJSON_IsNumber(mx) || mx->valuedouble < 0 || mx->valuedouble > (1 << 20) ||
              mx->valuedouble != (double)(int)mx->valuedouble))
        it->error = strdup("\"max_new_tokens\" must be an integer from 0 to 1048576");
    else {
        it->prompt = strdup(pr->valuestring);
        if (cJSON_IsString(co))
            it->continuation = strdup(co->valuestring);
        if (cJSON_IsNumber(mx))
            it->max_new_tokens = mx->valueint;
    }
    if (!it->id) {
        char buf[32];
        snprintf(buf, sizeof buf, "line-%d", line);
        it->id = strdup(buf);
    }
    cJSON_Delete(j);
    return 1;
}

static int by_id(const void *a, const void *b)
{
    const ecc_batch_item *x = *(ecc_batch_item *const *)a, *y = *(ecc_batch_item *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

ecc_status ecc_batch_read(ecc_batch_items *out, const char *path)
{
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    ECC_TRY(ecc_read_file(path, MAX_PROMPTS_FILE, &data, &len));
    size_t cap = 64;
    out->items = ecc_malloc(cap * sizeof *out->items, "the prompts");
    if (!out->items) {
        free(data);
        return ECC_ERR_NOMEM;
    }
    int line = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(data + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (data + at)) : len - at;
        line++;
        if (out->n == (int)cap) {
            void *p = realloc(out->items, (cap *= 2) * sizeof *out->items);
            if (!p) {
                free(data);
                ecc_batch_items_free(out);
                return ecc_fail(ECC_ERR_NOMEM, "out of memory reading %s", path);
            }
            out->items = p;
        }
        if (ecc_batch_parse_line(&out->items[out->n], data + at, n, line))
            out->n++;
        at += n + 1;
    }
    free(data);
    /* a repeated id: the later lines fail */
    ecc_batch_item **idx = ecc_malloc(sizeof *idx * (size_t)(out->n ? out->n : 1), "the prompts");
    if (!idx) {
        ecc_batch_items_free(out);
        return ECC_ERR_NOMEM;
    }
    for (int i = 0; i < out->n; i++)
        idx[i] = &out->items[i];
    qsort(idx, (size_t)out->n, sizeof *idx, by_id);
    for (int i = 1; i < out->n; i++)
        if (!strcmp(idx[i]->id, idx[i - 1]->id) && !idx[i]->error) {
            int first = i - 1;
            while (first > 0 && !strcmp(idx[first - 1]->id, idx[i]->id))
                first--;
            char buf[96];
            snprintf(buf, sizeof buf, "duplicate id (first on line %d)", idx[first]->line);
            idx[i]->error = strdup(buf);
        }
    free(idx);
    return ECC_OK;
}

void ecc_batch_items_free(ecc_batch_items *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->items[i].id);
        free(b->items[i].prompt);
        free(b->items[i].continuation);
        free(b->items[i].error);
    }
    free(b->items);
    memset(b, 0, sizeof *b);
}

/* ---- the manifest ----------------------------------------------------------------------- */

/* Append one line under an exclusive lock, in a single write, and sync. */
static ecc_status manifest_append(const char *path, cJSON *line)
{
    char *text = cJSON_PrintUnformatted(line);
    if (!text)
        return ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the terminator: written with its length */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    ecc_status s = ECC_OK;
    if (fd < 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    else {
        flock(fd, LOCK_EX);
        if (write(fd, text, n + 1) != (ssize_t)(n + 1) || fsync(fd) != 0)
            s = ecc_fail(ECC_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
        flock(fd, LOCK_UN);
        close(fd);
    }
    free(text);
    return s;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

ecc_status ecc_batch_manifest_each(const char *dir, ecc_manifest_fn fn, void *ctx)
{
    char *path = ecc_path_join(dir, "manifest.jsonl"), *data = NULL;
    size_t len = 0;
    if (!path)
        return ECC_ERR_NOMEM;
    if (!ecc_file_exists(path)) {
        free(path);
        return ECC_OK;
    }
    ecc_status s = ecc_read_file(path, MAX_PROMPTS_FILE, &data, &len);
    free(path);
    for (size_t at = 0; s == ECC_OK && at < len;) {
        const char *nl = memchr(data + at, '\n', len - at);
        size_t l = nl ? (size_t)(nl - (data + at)) : len - at;
        cJSON *j = cJSON_ParseWithLength(data + at, l); /* a torn last line does not parse: ignored */
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id"), *st = cJSON_GetObjectItemCaseSensitive(j, "status");
        if (cJSON_IsString(id) && cJSON_IsString(st))
            s = fn(id->valuestring, !strcmp(st->valuestring, "done"), ctx);
        cJSON_Delete(j);
        at += l + 1;
    }
    free(data);
    return s;
}

typedef struct done_ids {
    char **ids;
    int n, cap;
} done_ids;

static ecc_status add_done(const char *id, int done, void *ctx)
{
    done_ids *d = ctx;
    if (!done)
        return ECC_OK;
    if (d->n == d->cap) {
        char **p = realloc(d->ids, sizeof(char *) * (size_t)(d->cap = d->cap ? 2 * d->cap : 64));
        if (!p)
            return ecc_fail(ECC_ERR_NOMEM, "out of memory reading the manifest");
        d->ids = p;
    }
    if (!(d->ids[d->n] = ecc_strdup(id)))
        return ECC_ERR_NOMEM;
    d->n++;
    return ECC_OK;
}

ecc_status ecc_batch_done_ids(char ***ids, int *n, const char *dir)
{
    done_ids d = {0};
    ecc_status s = ecc_batch_manifest_each(dir, add_done, &d);
    *ids = d.ids;
    *n = d.n;
    return s;
}

/* ---- running --------------------------------------------------------------------------- */

typedef struct batch_ctx {
    const ecc_batch_job *job;
    ecc_model *m;
    char *runs_dir, *manifest;
    char **done; /* sorted */
    int n_done;
    ecc_batch_stats *st;
    double t0;
} batch_ctx;

static int is_done(const batch_ctx *b, const char *id)
{
    return b->n_done && bsearch(&id, b->done, (size_t)b->n_done, sizeof(char *), str_cmp) != NULL;
}

static ecc_status record(batch_ctx *b, const ecc_batch_item *it, const ecc_run *r, const char *error, double secs)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", it->id);
    cJSON_AddStringToObject(j, "status", error ? "failed" : "done");
    cJSON_AddNumberToObject(j, "line", it->line);
    cJSON_AddNumberToObject(j, "shard", b->job->shard);
    if (r) {
        int G = ecc_run_n_tokens(r) - ecc_run_n_input(r);
        cJSON_AddNumberToObject(j, "n_input", ecc_run_n_input(r));
        cJSON_AddNumberToObject(j, "n_tokens", ecc_run_n_tokens(r));
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "tokens_per_second", secs > 0 ? G / secs : 0);
    }
    if (error)
        cJSON_AddStringToObject(j, "error", error);
    ecc_status s = manifest_append(b->manifest, j);
    cJSON_Delete(j);
    if (error)
        b->st->failed++;
    else
        b->st->done++;
    return s;
}

/* Remove OUT/runs/.tmp-<id>-* left by a process killed while writing <id>:
 * only the shard that owns an id ever writes it, so no live writer is hurt. */
static void remove_stale_tmp(const char *runs_dir, const char *id)
{
    char prefix[300];
    snprintf(prefix, sizeof prefix, ".tmp-%s-", id);
    DIR *d = opendir(runs_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char *tmp = ecc_path_join(runs_dir, e->d_name);
        DIR *t = tmp ? opendir(tmp) : NULL;
        struct dirent *f;
        while (t && (f = readdir(t))) {
            if (f->d_name[0] == '.' && (!f->d_name[1] || (f->d_name[1] == '.' && !f->d_name[2])))
                continue;
            char *p = ecc_path_join(tmp, f->d_name);
            if (p)
                unlink(p);
            free(p);
        }
        if (t)
            closedir(t);
        if (tmp)
            rmdir(tmp);
        free(tmp);
    }
    if (d)
        closedir(d);
}

/* OUT/runs/.tmp-<id>-<pid> written whole, then renamed to OUT/runs/<id>. */
static ecc_status write_run(batch_ctx *b, const ecc_batch_item *it, const ecc_run *r)
{
    char tmp_name[300];
    snprintf(tmp_name, sizeof tmp_name, ".tmp-%s-%ld", it->id, (long)getpid());
    char *tmp = ecc_path_join(b->runs_dir, tmp_name), *dst = ecc_path_join(b->runs_dir, it->id);
    ecc_status s = tmp && dst ? ecc_run_write(r, b->m, it->prompt, tmp) : ECC_ERR_NOMEM;
    if (s == ECC_OK && rename(tmp, dst) != 0)
        s = ecc_fail(ECC_ERR_IO, "%s: cannot rename into place: %s", dst, strerror(errno));
    free(tmp);
    free(dst);
    return s;
}

static void progress(const batch_ctx *b)
{
    if (b->job->quiet || !isatty(2))
        return;
    const ecc_batch_stats *st = b->st;
    double dt = ecc_now() - b->t0;
    int left = st->total - st->skipped - st->done - st->failed, now = st->done + st->failed;
    double eta = now > 0 ? dt / now * left : 0;
    fprintf(stderr, "\r\033[Keccolo batch: %d/%d done, %d failed, %.1f tokens/s, ETA %dm%02ds",
            st->skipped + st->done, st->total, st->failed, dt > 0 ? st->tokens / dt : 0, (int)eta / 60,
            (int)eta % 60);
}

/* Tokenize the items of one batch, run them together, write and record each. */
static ecc_status run_batch(batch_ctx *b, ecc_batch_item **items, int n)
{
    ecc_request *req = ecc_calloc((size_t)n, sizeof *req, "the batch");
    int32_t **prompt = ecc_calloc((size_t)n, sizeof *prompt, "the batch"), **cont = ecc_calloc((size_t)n, sizeof *cont,
                                                                                               "the batch");
    char **tok_err = ecc_calloc((size_t)n, sizeof *tok_err, "the batch"), **gen_err = ecc_calloc((size_t)n, sizeof *gen_err,
                                                                                                "the batch");
    ecc_run **runs = ecc_calloc((size_t)n, sizeof *runs, "the batch");
    ecc_status s = req && prompt && cont && tok_err && gen_err && runs ? ECC_OK : ECC_ERR_NOMEM;
    int *sel = s == ECC_OK ? ecc_malloc(sizeof(int) * (size_t)n, "the batch") : NULL;
    int *added = s == ECC_OK ? ecc_calloc(2 * (size_t)n, sizeof(int), "the batch") : NULL; /* [n][front, back] */
    if (!added)
        free(sel), sel = NULL;
    int k = 0;
    for (int i = 0; s == ECC_OK && sel && i < n; i++) {
        ecc_batch_item *it = items[i];
        int np = 0, nc = 0;
        /* a text prompt gets the template's tokens (BOS) as Hugging Face's encode(text) adds them */
        if (ecc_tokenize_ex(b->m, it->prompt, strlen(it->prompt), ECC_TOKENIZE_ADD_SPECIAL, &prompt[i], &np,
                            &added[2 * i], &added[2 * i + 1]) != ECC_OK ||
            (it->continuation && ecc_tokenize(b->m, it->continuation, strlen(it->continuation), &cont[i], &nc) !=
                                     ECC_OK)) {
            tok_err[i] = strdup(ecc_last_error());
            continue;
        }
        req[k] = (ecc_request){.prompt = prompt[i], .n_prompt = np, .continuation = cont[i], .n_continuation = nc,
                               .max_new_tokens = it->max_new_tokens};
        sel[k++] = i;
    }
    double t0 = ecc_now();
    if (s == ECC_OK && !sel)
        s = ECC_ERR_NOMEM;
    if (s == ECC_OK && k > 0)
        s = ecc_generate_batch(runs, gen_err, b->m, req, k, &b->job->opt);
    double secs = ecc_now() - t0;
    for (int i = 0; s == ECC_OK && i < n; i++) /* tokenization failures */
        if (tok_err[i])
            s = record(b, items[i], NULL, tok_err[i], 0);
    for (int j = 0; s == ECC_OK && j < k; j++) {
        ecc_batch_item *it = items[sel[j]];
        if (!runs[j]) {
            s = record(b, it, NULL, gen_err[j] ? gen_err[j] : "generation failed", 0);
            continue;
        }
        ecc_run_add_timing(runs[j], "batch", secs);
        ecc_run_mark_added(runs[j], added[2 * sel[j]], added[2 * sel[j] + 1]);
        ecc_status w = write_run(b, it, runs[j]);
        if (w == ECC_OK) {
            b->st->tokens += ecc_run_n_tokens(runs[j]) - ecc_run_n_input(runs[j]);
            s = record(b, it, runs[j], NULL, secs);
        } else {
            s = record(b, it, NULL, ecc_last_error(), 0);
        }
    }
    for (int i = 0; i < n; i++) {
        if (prompt)
            free(prompt[i]);
        if (cont)
            free(cont[i]);
        if (tok_err)
            free(tok_err[i]);
        if (i < k && runs)
            ecc_run_free(runs[i]);
        if (i < k && gen_err)
            free(gen_err[i]);
    }
    free(req), free(prompt), free(cont), free(tok_err), free(gen_err), free(runs), free(sel), free(added);
    progress(b);
    return s;
}

ecc_status ecc_batch_run(ecc_batch_stats *st, ecc_model *m, const ecc_batch_job *job)
{
    memset(st, 0, sizeof *st);
    if (job->n_shards < 1 || job->shard < 0 || job->shard >= job->n_shards)
        return ecc_fail(ECC_ERR_INPUT, "--shard %d/%d: use I/N with 0 <= I < N", job->shard, job->n_shards);
    if (job->batch_size < 1)
        return ecc_fail(ECC_ERR_INPUT, "--batch-size must be at least 1 (got %d)", job->batch_size);
    ecc_batch_items items;
    ECC_TRY(ecc_batch_read(&items, job->prompts));
    batch_ctx b = {.job = job, .m = m, .st = st, .t0 = ecc_now()};
    b.runs_dir = ecc_path_join(job->out, "runs");
    b.manifest = ecc_path_join(job->out, "manifest.jsonl");
    ecc_status s = b.runs_dir && b.manifest ? ecc_mkdirs(b.runs_dir) : ECC_ERR_NOMEM;
    if (s == ECC_OK)
        s = ecc_batch_done_ids(&b.done, &b.n_done, job->out);
    if (s == ECC_OK && b.n_done > 1) /* b.done is NULL when nothing is done yet: qsort(NULL) is undefined */
        qsort(b.done, (size_t)b.n_done, sizeof(char *), str_cmp);
    ecc_batch_item **todo = ecc_malloc(sizeof *todo * (size_t)(items.n ? items.n : 1), "the batch");
    int n_todo = 0;
    if (!todo && s == ECC_OK)
        s = ECC_ERR_NOMEM;
    for (int i = 0; s == ECC_OK && i < items.n; i++) {
        ecc_batch_item *it = &items.items[i];
        if (ecc_batch_shard_of(it->id, job->n_shards) != job->shard)
            continue;
        st->total++;
        if (it->error) { /* an invalid line is recorded (again) and the rest go on */
            if (!is_done(&b, it->id))
                s = record(&b, it, NULL, it->error, 0);
            continue;
        }
        if (is_done(&b, it->id)) {
            st->skipped++;
            continue;
        }
        char *dir = ecc_path_join(b.runs_dir, it->id), *rj = dir ? ecc_path_join(dir, "run.json") : NULL;
        int written = rj && ecc_file_exists(rj); /* renamed into place, but killed before the manifest line */
        free(dir);
        free(rj);
        if (written) {
            st->skipped++;
            s = record(&b, it, NULL, NULL, 0);
            st->done--; /* counted as skipped, not as done now */
            continue;
        }
        remove_stale_tmp(b.runs_dir, it->id);
        todo[n_todo++] = it;
    }
    for (int i = 0; s == ECC_OK && i < n_todo; i += job->batch_size)
        s = run_batch(&b, todo + i, ECC_MIN(job->batch_size, n_todo - i));
    st->seconds = ecc_now() - b.t0;
    if (!job->quiet && isatty(2))
        fputc('\n', stderr);
    for (int i = 0; i < b.n_done; i++)
        free(b.done[i]);
    free(b.done);
    free(todo);
    free(b.runs_dir);
    free(b.manifest);
    ecc_batch_items_free(&items);
    return s;
}
