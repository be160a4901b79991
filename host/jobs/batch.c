/* Running a batch (host/jobs/batch.h): several processes may share one output
 * directory (jobs/batch_dir.h says how they split the ids), every record is
 * appended to the manifest (jobs/manifest.h) by a checked append, and a
 * resumed batch compares each done id's fingerprints with today's work. */
#define _GNU_SOURCE
#include "jobs/batch.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/run.h"
#include "jobs/batch_dir.h"
#include "jobs/manifest.h"
#include "model/model.h"
#include "util.h"

/* ---- readers of a batch's results --------------------------------------------------------- */

ecc_status ecc_batch_done_ids(char ***ids, int *n, const char *dir)
{
    *ids = NULL;
    *n = 0;
    ecc_manifest man;
    ecc_status s = ecc_manifest_open(&man, dir);
    char **v = s == ECC_OK ? ecc_calloc((size_t)man.n + 1, sizeof *v, "the done ids") : NULL;
    if (s == ECC_OK && !v)
        s = ECC_ERR_NOMEM;
    int k = 0;
    for (int i = 0; s == ECC_OK && i < man.n; i++)
        if (man.e[i].done) {
            v[k++] = man.e[i].id; /* taken over from the manifest */
            man.e[i].id = NULL;
        }
    ecc_manifest_free(&man);
    if (s == ECC_OK) {
        *ids = v;
        *n = k;
    } else {
        free(v);
    }
    return s;
}

/* ---- fingerprints ----------------------------------------------------------------------------- */

static uint64_t fnv_add(uint64_t h, const void *data, size_t n)
{
    for (const unsigned char *p = data; n--; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

typedef struct fingerprint {
    char input[17];   /* the prompt and the continuation */
    char options[17]; /* the model and every option that changes the results of the item */
} fingerprint;

/* What an item's results are made from. Not in it: the device, threads, batch
 * size and memory budget, which change nothing beyond rounding. */
static void fingerprint_of(fingerprint *fp, const ecc_batch_item *it, const ecc_model *m, const ecc_options *o)
{
    uint64_t h = fnv_add(FNV_INIT, it->prompt, strlen(it->prompt) + 1); /* with its NUL: "ab"+"c" != "a"+"bc" */
    h = fnv_add(h, it->continuation ? "c" : "-", 1);
    if (it->continuation)
        h = fnv_add(h, it->continuation, strlen(it->continuation));
    snprintf(fp->input, sizeof fp->input, "%016llx", (unsigned long long)h);

    char buf[512];
    size_t n = 0;
#define ADD(...) n += (size_t)snprintf(buf + n, n < sizeof buf ? sizeof buf - n : 0, __VA_ARGS__)
    ADD("dtype=%s;precision=%d;", m->dtype, (int)o->precision);
    if (!it->continuation) {
        ADD("max_new_tokens=%d;stop_at_eos=%d;sample=%d;", it->max_new_tokens >= 0 ? it->max_new_tokens
                                                                                   : o->max_new_tokens,
            o->stop_at_eos, o->sample);
        if (o->sample)
            ADD("temperature=%.9g;top_k=%d;top_p=%.9g;seed=%llu;", (double)o->temperature, o->top_k,
                (double)o->top_p, (unsigned long long)o->seed);
    }
    ADD("attribution=%u;target=%d;", o->attribution, (int)o->target);
    if (o->attribution & ECC_ATTR_INTEGRATED_GRADIENTS)
        ADD("ig_steps=%d;", o->ig_steps);
    if (o->activations)
        ADD("layers=%d:%d;", o->layer_from, o->layer_to ? o->layer_to : m->cfg.n_layer);
    ADD("hidden_states=%d;attention=%d;rankings=%d;", o->hidden_states, o->attention, o->rankings);
    if (o->rankings)
        ADD("lens=%d;top_k_layers=%d;watch=%d;", (int)o->lens, o->top_k_layers, o->n_watch);
#undef ADD
    const char *model = m->id ? m->id : "";
    h = fnv_add(FNV_INIT, model, strlen(model) + 1);
    h = fnv_add(h, buf, ECC_MIN(n, sizeof buf - 1));
    if (o->rankings && o->n_watch > 0)
        h = fnv_add(h, o->watch_ids, sizeof(int32_t) * (size_t)o->n_watch);
    snprintf(fp->options, sizeof fp->options, "%016llx", (unsigned long long)h);
}

/* ---- running ---------------------------------------------------------------------------------- */

typedef struct batch_ctx {
    const ecc_batch_job *job;
    ecc_model *m;
    char *runs_dir;
    ecc_manifest man;
    ecc_batch_locks locks;
    const ecc_batch_item *items; /* all items of the prompts file */
    fingerprint *fp;             /* [items]: of the items that can run */
    ecc_batch_stats *st;
    double t0;
} batch_ctx;

static const fingerprint *fp_of(const batch_ctx *b, const ecc_batch_item *it) { return &b->fp[it - b->items]; }

static ecc_status record(batch_ctx *b, const ecc_batch_item *it, const ecc_run *r, const char *error, double secs)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", it->id);
    cJSON_AddStringToObject(j, "status", error ? "failed" : "done");
    cJSON_AddNumberToObject(j, "line", it->line);
    cJSON_AddNumberToObject(j, "shard", b->job->shard);
    if (it->error) { /* the line could not run: a report, which leaves the state of its id as it was */
        cJSON_AddBoolToObject(j, "invalid", 1);
    } else {
        cJSON_AddStringToObject(j, "input_fingerprint", fp_of(b, it)->input);
        cJSON_AddStringToObject(j, "options_fingerprint", fp_of(b, it)->options);
    }
    if (r) {
        int G = ecc_run_n_tokens(r) - ecc_run_n_input(r);
        cJSON_AddNumberToObject(j, "n_input", ecc_run_n_input(r));
        cJSON_AddNumberToObject(j, "n_tokens", ecc_run_n_tokens(r));
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "tokens_per_second", secs > 0 ? G / secs : 0);
    }
    if (error)
        cJSON_AddStringToObject(j, "error", error);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    ecc_status s = text ? ecc_manifest_append(b->man.path, text, strlen(text))
                        : ecc_fail(ECC_ERR_NOMEM, "out of memory writing %s", b->man.path);
    free(text);
    if (s == ECC_OK && error)
        b->st->failed++;
    else if (s == ECC_OK)
        b->st->done++;
    return s;
}

/* OUT/runs/.tmp-<id>-<pid> written whole, then renamed to OUT/runs/<id>
 * (replacing an older run of the id). The caller holds the lock of the id. */
static ecc_status write_run(batch_ctx *b, const ecc_batch_item *it, const ecc_run *r)
{
    char tmp_name[300];
    snprintf(tmp_name, sizeof tmp_name, ".tmp-%s-%ld", it->id, (long)getpid());
    char *tmp = ecc_path_join(b->runs_dir, tmp_name);
    if (!tmp)
        return ECC_ERR_NOMEM;
    ecc_batch_remove_dir(tmp); /* left by a dead process that had our pid */
    ecc_status s = ecc_run_write(r, b->m, it->prompt, tmp);
    if (s == ECC_OK)
        s = ecc_batch_put_run(b->runs_dir, it->id, tmp);
    if (s == ECC_OK) { /* durable before the manifest says done */
        char *dst = ecc_path_join(b->runs_dir, it->id);
        s = dst ? ecc_sync_dir_of(dst) : ECC_ERR_NOMEM;
        free(dst);
    }
    if (s != ECC_OK)
        ecc_batch_remove_dir(tmp);
    free(tmp);
    return s;
}

static void progress(const batch_ctx *b)
{
    if (b->job->quiet || !isatty(2))
        return;
    const ecc_batch_stats *st = b->st;
    double dt = ecc_now() - b->t0;
    int left = st->total - st->skipped - st->done - st->failed - st->busy, now = st->done + st->failed;
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
        } else if (w == ECC_ERR_IO) { /* the output cannot be written (a full disk): stop, the rest would fail too */
            s = w;
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

/* ---- what is done, what changed ------------------------------------------------------------- */

enum { ITEM_TODO, ITEM_DONE, ITEM_CHANGED };

/* An item against the manifest: done (same fingerprints, and its run is in
 * place), changed (done from other inputs or options, or by an eccolo that
 * recorded no fingerprint), or to do (never done, failed, or its run is gone). */
static int item_state(const batch_ctx *b, const ecc_batch_item *it)
{
    const ecc_manifest_entry *e = ecc_manifest_find(&b->man, it->id);
    if (!e || !e->done)
        return ITEM_TODO;
    const fingerprint *fp = fp_of(b, it);
    if (strcmp(e->input_fp, fp->input) != 0 || strcmp(e->options_fp, fp->options) != 0)
        return ITEM_CHANGED;
    char *dir = ecc_path_join(b->runs_dir, it->id);
    int in_place = dir && ecc_file_exists_in(dir, "run.json");
    free(dir);
    return in_place ? ITEM_DONE : ITEM_TODO;
}

static ecc_status changed_error(const batch_ctx *b, const ecc_batch_item *it, int n_more, const char *who)
{
    const ecc_manifest_entry *e = ecc_manifest_find(&b->man, it->id);
    const char *what = "with other generate options (or another --model) than this command's";
    if (!e->input_fp[0])
        what = "by an older eccolo that recorded no fingerprint of its inputs";
    else if (strcmp(e->input_fp, fp_of(b, it)->input) != 0)
        what = "from another prompt or continuation than it has now";
    char more[64] = "";
    if (n_more > 0)
        snprintf(more, sizeof more, " (and %d more id%s)", n_more, n_more > 1 ? "s" : "");
    return ecc_fail(ECC_ERR_INPUT, "batch: id \"%s\" (line %d) was done%s %s%s: rerun with --redo-changed to redo "
                    "%s, or write to another --out", it->id, it->line, who, what, more, n_more > 0 ? "them" : "it");
}

/* Take (lock) up to batch_size items of todo from *next on; the lock of an id
 * held by another live process leaves that id to it. Then, with the locks
 * held, the manifest is read again: what another process finished meanwhile
 * is not done twice. */
static ecc_status take_batch(batch_ctx *b, ecc_batch_item **todo, int n_todo, int *next, ecc_batch_item **taken,
                             int *n_taken)
{
    *n_taken = 0;
    while (*next < n_todo && *n_taken < b->job->batch_size) {
        ecc_batch_item *it = todo[(*next)++];
        int r = ecc_batch_lock(&b->locks, it->id);
        if (r < 0)
            return ECC_ERR_IO;
        if (r == 0)
            b->st->busy++;
        else
            taken[(*n_taken)++] = it;
    }
    ecc_status s = ecc_manifest_refresh(&b->man);
    int k = 0;
    for (int i = 0; i < *n_taken; i++) {
        int state = s == ECC_OK ? item_state(b, taken[i]) : ITEM_TODO;
        if (s == ECC_OK && state == ITEM_CHANGED && !b->job->redo_changed) /* not at the start: done meanwhile */
            s = changed_error(b, taken[i], 0, " by another process");
        if (s != ECC_OK || state == ITEM_DONE) {
            if (s == ECC_OK)
                b->st->skipped++;
            ecc_batch_unlock(&b->locks, taken[i]->id);
            continue;
        }
        taken[k++] = taken[i];
    }
    *n_taken = k;
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
    batch_ctx b = {.job = job, .m = m, .st = st, .t0 = ecc_now(), .items = items.items, .locks = {.fd = -1}};
    b.runs_dir = ecc_path_join(job->out, "runs");
    b.fp = ecc_calloc((size_t)items.n + 1, sizeof *b.fp, "the fingerprints");
    ecc_batch_item **todo = ecc_malloc(sizeof *todo * (size_t)(items.n + 1), "the batch");
    ecc_batch_item **taken = ecc_malloc(sizeof *taken * (size_t)job->batch_size, "the batch");
    ecc_status s = b.runs_dir && b.fp && todo && taken ? ecc_mkdirs(b.runs_dir) : ECC_ERR_NOMEM;
    if (s == ECC_OK)
        s = ecc_batch_locks_open(&b.locks, job->out);
    if (s == ECC_OK)
        s = ecc_manifest_open(&b.man, job->out);
    if (s == ECC_OK)
        ecc_batch_sweep(&b.locks, b.runs_dir);
    /* what is done, what changed since it was done, what is left */
    int n_todo = 0, n_changed = 0;
    const ecc_batch_item *first_changed = NULL;
    for (int i = 0; s == ECC_OK && i < items.n; i++) {
        ecc_batch_item *it = &items.items[i];
        if (ecc_batch_shard_of(it->id, job->n_shards) != job->shard)
            continue;
        st->total++;
        if (it->error)
            continue;
        fingerprint_of(&b.fp[i], it, m, &job->opt);
        int state = item_state(&b, it);
        if (state == ITEM_DONE) {
            st->skipped++;
            continue;
        }
        if (state == ITEM_CHANGED) {
            first_changed = first_changed ? first_changed : it;
            n_changed++;
            st->redone++;
        }
        todo[n_todo++] = it;
    }
    if (s == ECC_OK && n_changed && !job->redo_changed) /* refused before anything is written */
        s = changed_error(&b, first_changed, n_changed - 1, "");
    /* the lines that cannot run are recorded (again, unless their id is done) and the rest go on */
    for (int i = 0; s == ECC_OK && i < items.n; i++) {
        ecc_batch_item *it = &items.items[i];
        const ecc_manifest_entry *e = ecc_manifest_find(&b.man, it->id);
        if (it->error && ecc_batch_shard_of(it->id, job->n_shards) == job->shard && !(e && e->done))
            s = record(&b, it, NULL, it->error, 0);
    }
    for (int next = 0, n = 0; s == ECC_OK && next < n_todo;) {
        s = take_batch(&b, todo, n_todo, &next, taken, &n);
        if (s == ECC_OK && n > 0)
            s = run_batch(&b, taken, n);
        for (int i = 0; i < n; i++) /* recorded: another process may take the id now */
            ecc_batch_unlock(&b.locks, taken[i]->id);
    }
    st->seconds = ecc_now() - b.t0;
    if (!job->quiet && isatty(2))
        fputc('\n', stderr);
    ecc_manifest_free(&b.man);
    ecc_batch_locks_close(&b.locks);
    free(todo);
    free(taken);
    free(b.fp);
    free(b.runs_dir);
    ecc_batch_items_free(&items);
    return s;
}
