/* ecc_generate: the one orchestration. Load the weights onto a backend,
 * run the prompt through the model, then choose (or force) one token at a
 * time with the KV cache. Later phases (capture, batched backward, NMF) hang
 * off the same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "explain/explain.h"
#include "engine/forward.h"
#include "model/model.h"
#include "engine/run.h"
#include "model/config.h"
#include "engine/run_api.h"
#include "util.h"

void ecc_options_default(ecc_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_new_tokens = 20;
    o->temperature = 1.0f;
    o->top_p = 1.0f;
    o->stop_at_eos = 1;
    o->device = ECC_DEVICE_AUTO;
    o->target = ECC_TARGET_PROB;
    o->ig_steps = 50;
    o->top_k_layers = 10;
    o->lens = ECC_LENS_STANDARD;
}

/* ---- the run object -------------------------------------------------------- */

void ecc_run_time(ecc_run *r, const char *name, double seconds)
{
    for (int i = 0; i < r->n_timings; i++)
        if (strcmp(r->timings[i].name, name) == 0) {
            r->timings[i].seconds += seconds;
            return;
        }
    if (r->n_timings < ECC_RUN_MAX_TIMINGS) {
        snprintf(r->timings[r->n_timings].name, sizeof r->timings[0].name, "%s", name);
        r->timings[r->n_timings++].seconds = seconds;
    }
}

double ecc_run_timing(const ecc_run *r, const char *name)
{
    for (int i = 0; i < r->n_timings; i++)
        if (strcmp(r->timings[i].name, name) == 0)
            return r->timings[i].seconds;
    return 0;
}

void *ecc_run_tensor_new(ecc_run *r, const char *name, ecc_dtype dtype, int ndim, const int64_t *shape)
{
    if (r->n_tensors == ECC_RUN_MAX_TENSORS) {
        ecc_fail(ECC_ERR_NOMEM, "internal: more than %d output tensors", ECC_RUN_MAX_TENSORS);
        return NULL;
    }
    uint64_t n = ecc_dtype_size(dtype);
    for (int i = 0; i < ndim; i++)
        if (ecc_mul_overflow(n, (uint64_t)shape[i], &n)) {
            ecc_fail(ECC_ERR_NOMEM, "tensor '%s' is too large", name);
            return NULL;
        }
    void *data = ecc_calloc(1, (size_t)n, name);
    if (!data)
        return NULL;
    ecc_run_tensor *t = &r->tensors[r->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->data = data;
    return data;
}

const ecc_run_tensor *ecc_run_tensor_get(const ecc_run *r, const char *name)
{
    for (int i = 0; i < r->n_tensors; i++)
        if (strcmp(r->tensors[i].name, name) == 0)
            return &r->tensors[i];
    return NULL;
}

void ecc_run_free(ecc_run *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_tensors; i++)
        free(r->tensors[i].data);
    free(r->cont);
    free(r->ids);
    free(r->logprobs);
    ecc_run_extra_free(r->extra);
    free(r);
}

int ecc_run_n_tokens(const ecc_run *r) { return r->T; }
int ecc_run_n_input(const ecc_run *r) { return r->n_input; }
const int32_t *ecc_run_token_ids(const ecc_run *r) { return r->ids; }
const float *ecc_run_token_logprobs(const ecc_run *r) { return r->logprobs; }
const char *ecc_run_device(const ecc_run *r) { return r->device; }
const char *ecc_run_notice(const ecc_run *r) { return r->notice; }
void ecc_run_add_timing(ecc_run *r, const char *name, double seconds) { ecc_run_time(r, name, seconds); }

void ecc_run_mark_added(ecc_run *r, int n_front, int n_back)
{
    r->added_front = n_front >= 0 && n_front <= r->n_input ? n_front : 0;
    r->added_back = n_back >= 0 && n_back <= r->n_input - r->added_front ? n_back : 0;
}

/* ---- validation -------------------------------------------------------------- */

static ecc_status check_request(const ecc_config *c, const int32_t *prompt, int n_prompt, const ecc_options *o,
                                int *n_new)
{
    if (n_prompt < 1)
        return ecc_fail(ECC_ERR_INPUT, "the prompt is empty: give at least one token");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->n_tokens)
            return ecc_fail(ECC_ERR_INPUT, "prompt token %d is id %d, outside the vocabulary [0, %d)%s", i, prompt[i],
                            c->n_tokens, ecc_padding_note(c, prompt[i]));
    if (n_prompt > c->n_positions)
        return ecc_fail(ECC_ERR_INPUT, "the prompt has %d tokens but the model's context holds %d (n_positions)",
                        n_prompt, c->n_positions);
    if (o->continuation_ids) {
        for (int i = 0; i < o->n_continuation; i++)
            if (o->continuation_ids[i] < 0 || o->continuation_ids[i] >= c->n_tokens)
                return ecc_fail(ECC_ERR_INPUT, "continuation token %d is id %d, outside the vocabulary [0, %d)%s", i,
                                o->continuation_ids[i], c->n_tokens, ecc_padding_note(c, o->continuation_ids[i]));
        *n_new = o->n_continuation;
        if (*n_new < 1)
            return ecc_fail(ECC_ERR_INPUT, "the continuation is empty: give at least one token to force");
        if (n_prompt + *n_new > c->n_positions)
            return ecc_fail(ECC_ERR_INPUT, "prompt (%d tokens) and continuation (%d tokens) make %d, more than the "
                            "model's context of %d (n_positions)", n_prompt, *n_new, n_prompt + *n_new,
                            c->n_positions);
        return ECC_OK;
    }
    if (o->max_new_tokens < 0)
        return ecc_fail(ECC_ERR_INPUT, "--max-new-tokens must be 0 or more (got %d)", o->max_new_tokens);
    *n_new = o->max_new_tokens;
    if (n_prompt + *n_new > c->n_positions)
        return ecc_fail(ECC_ERR_INPUT, "the prompt has %d tokens and %d new tokens would make %d, more than the "
                        "model's context of %d (n_positions): use --max-new-tokens %d or less", n_prompt, *n_new,
                        n_prompt + *n_new, c->n_positions, c->n_positions - n_prompt);
    if (o->sample) {
        if (!(o->temperature > 0))
            return ecc_fail(ECC_ERR_INPUT, "--temperature must be greater than 0 (got %g)", (double)o->temperature);
        if (o->top_k < 0)
            return ecc_fail(ECC_ERR_INPUT, "--top-k must be 0 (off) or more (got %d)", o->top_k);
        if (!(o->top_p > 0 && o->top_p <= 1))
            return ecc_fail(ECC_ERR_INPUT, "--top-p must be in (0, 1] (got %g)", (double)o->top_p);
    }
    return ECC_OK;
}

/* ---- generation: several sequences packed into each forward ----------------------------- */

typedef struct gen_state {
    ecc_backend *be;
    ecc_dmodel dm;
    ecc_acts acts;   /* scratch for the packed prompts (the largest forward) */
    ecc_kv *kv;      /* [n] one cache per sequence */
    ecc_seq *seqs;   /* [n] */
    int32_t *h_ids, *h_pos, *h_rows; /* host staging (R_max), (R_max), (n) */
    int32_t *d_ids, *d_pos, *d_rows; /* the same in backend memory */
    int n;
    const int32_t *eos; /* [n_eos] ids that end a sequence (the model's) */
    int n_eos;
} gen_state;

static void gen_free_work(gen_state *g)
{
    if (!g->be)
        return;
    ecc_acts_free(&g->acts, g->be);
    for (int i = 0; g->kv && i < g->n; i++)
        ecc_kv_free(&g->kv[i], g->be);
    free(g->kv), free(g->seqs), free(g->h_ids), free(g->h_pos), free(g->h_rows);
    if (g->d_ids)
        g->be->free(g->be, g->d_ids);
    if (g->d_pos)
        g->be->free(g->be, g->d_pos);
    if (g->d_rows)
        g->be->free(g->be, g->d_rows);
    g->kv = NULL, g->seqs = NULL, g->h_ids = g->h_pos = g->h_rows = NULL, g->d_ids = g->d_pos = g->d_rows = NULL;
}

static void gen_free(gen_state *g)
{
    if (!g->be)
        return;
    gen_free_work(g);
    ecc_dmodel_free(&g->dm);
    g->be->destroy(g->be);
    g->be = NULL;
}

/* Rows of a sequence's first forward: the prompt, or for a forced
 * continuation (teacher forcing) the prompt and every forced token but the
 * last, whose logits all come from this one pass. */
static int prefill_rows(const ecc_run *r) { return r->opt.continuation_ids ? r->T_cap - 1 : r->n_input; }

/* A forced continuation that will be explained needs no generation pass at
 * all: the explanation's forward covers the same tokens and gives the
 * log-probabilities. */
static int skips_generation(const ecc_run *r) { return r->opt.continuation_ids && ecc_explain_wanted(&r->opt); }

/* Logits rows computed at once for a forced continuation. */
#define LOGIT_CHUNK 64

static ecc_status gen_alloc(gen_state *g, ecc_run **runs, int n, const ecc_config *c)
{
    int R = 0;
    for (int i = 0; i < n; i++)
        R += skips_generation(runs[i]) ? 0 : prefill_rows(runs[i]);
    R = ECC_MAX(R, n);
    int n_logits = ECC_MAX(n, LOGIT_CHUNK);
    g->n = n;
    g->kv = ecc_calloc((size_t)n, sizeof *g->kv, "KV caches");
    g->seqs = ecc_calloc((size_t)n, sizeof *g->seqs, "sequences");
    g->h_ids = ecc_malloc(sizeof(int32_t) * (size_t)R, "token ids");
    g->h_pos = ecc_malloc(sizeof(int32_t) * (size_t)R, "positions");
    g->h_rows = ecc_malloc(sizeof(int32_t) * (size_t)n_logits, "rows");
    if (!g->kv || !g->seqs || !g->h_ids || !g->h_pos || !g->h_rows)
        return ECC_ERR_NOMEM;
    ecc_backend *be = g->be;
    if (!(g->d_ids = be->alloc(be, sizeof(int32_t) * (size_t)R, "token ids")) ||
        !(g->d_pos = be->alloc(be, sizeof(int32_t) * (size_t)R, "positions")) ||
        !(g->d_rows = be->alloc(be, sizeof(int32_t) * (size_t)n_logits, "rows")))
        return ECC_ERR_NOMEM;
    for (int i = 0; i < n; i++)
        if (!skips_generation(runs[i]))
            ECC_TRY(ecc_kv_init(&g->kv[i], be, c, runs[i]->T_cap));
    return ecc_acts_scratch(&g->acts, be, c, R, n_logits);
}

/* The memory plan of generation, checked before anything is allocated on the
 * backend: the weights (copied once to a GPU; the CPU backend uses the host
 * copy), one KV cache per sequence (2 L T_cap C floats) and the forward's
 * scratch as gen_alloc and ecc_acts_scratch size it. */
static ecc_status gen_plan(ecc_backend *be, const ecc_model *m, ecc_run **runs, int n)
{
    const ecc_config *c = &m->cfg;
    double L = c->n_layer, C = c->n_embd, F = c->n_inner, V = c->vocab_size, R = 0, kv = 0, T_max = 0;
    for (int i = 0; i < n; i++) {
        if (skips_generation(runs[i]))
            continue;
        R += prefill_rows(runs[i]);
        kv += 2 * L * runs[i]->T_cap * C * 4;
        T_max = ECC_MAX(T_max, runs[i]->T_cap);
    }
    R = ECC_MAX(R, n);
    double n_logits = ECC_MAX(n, LOGIT_CHUNK);
    double weights = strcmp(be->name, "cpu") ? (double)m->n_params * 4 : 0;
    double scratch = (R * (7 * C + 2 * F) + n_logits * (V + C) + 3 * R) * 4;
    double need = weights + kv + scratch, avail = (double)be->available(be), mib = 1048576.0;
    if (need > avail)
        return ecc_fail(ECC_ERR_NOMEM, "generation needs %.0f MiB on the %s backend (weights %.0f MiB, KV cache %.0f "
                        "MiB for %d sequence(s) of up to %.0f tokens, scratch %.0f MiB) but %.0f MiB is available: "
                        "generate fewer tokens (--max-new-tokens), fewer sequences at once (--batch-size) or use a "
                        "smaller model", ceil(need / mib), be->name, weights / mib, kv / mib, n, T_max, scratch / mib,
                        avail / mib);
    return ECC_OK;
}

/* One forward of the sequences in list[0..k): the prefill rows of each
 * (prefill), or its last token. g->seqs[j].row is where sequence j starts. */
static void gen_forward(gen_state *g, ecc_run **runs, const int *list, int k, int prefill)
{
    ecc_backend *be = g->be;
    int R = 0;
    for (int j = 0; j < k; j++) {
        ecc_run *r = runs[list[j]];
        int first = prefill ? 0 : r->T - 1, n = prefill ? prefill_rows(r) : 1;
        g->seqs[j] = (ecc_seq){.row = R, .n = n, .pos0 = first, .k = g->kv[list[j]].k, .v = g->kv[list[j]].v,
                               .n_ctx = g->kv[list[j]].n_ctx};
        for (int t = 0; t < n; t++) {
            g->h_ids[R + t] = r->ids[first + t];
            g->h_pos[R + t] = first + t;
        }
        R += n;
    }
    be->upload(be, g->d_ids, g->h_ids, sizeof(int32_t) * (size_t)R);
    be->upload(be, g->d_pos, g->h_pos, sizeof(int32_t) * (size_t)R);
    ecc_forward_batch(&g->dm, &g->acts, g->seqs, k, g->d_ids, g->d_pos, R, 1.0f);
}

/* a->logits (n, V) from the final hidden states at rows[0..n) */
static void gen_logits(gen_state *g, const int32_t *rows, int n)
{
    memcpy(g->h_rows, rows, sizeof(int32_t) * (size_t)n);
    g->be->upload(g->be, g->d_rows, g->h_rows, sizeof(int32_t) * (size_t)n);
    ecc_logits(&g->dm, &g->acts, g->d_rows, 0, n);
}

/* Choose (or force) the next token of each sequence in list from its row of
 * logits; drop finished sequences from the list. Returns the new length. */
static int gen_pick(gen_state *g, ecc_run **runs, int *list, int k, const ecc_config *c)
{
    int kept = 0;
    for (int j = 0; j < k; j++) {
        ecc_run *r = runs[list[j]];
        const ecc_options *o = &r->opt;
        ecc_pick_params pp = {.greedy = !o->sample, .temperature = o->temperature, .top_k = o->top_k,
                              .top_p = o->top_p, .seed = o->seed, .n_tokens = c->n_tokens};
        int step = r->T - r->n_input, pos = r->T;
        g->be->pick(g->be, &r->ids[pos], &r->logprobs[step], g->acts.logits + (int64_t)j * c->vocab_size,
                    c->vocab_size, -1, &pp, (uint64_t)step);
        r->T = pos + 1;
        int done = r->T == r->T_cap;
        for (int e = 0; o->stop_at_eos && e < g->n_eos; e++)
            if (r->ids[pos] == g->eos[e])
                r->stopped_at_eos = done = 1;
        if (!done) /* the last token is never fed back */
            list[kept++] = list[j];
    }
    return kept;
}

/* A forced continuation after the prefill: the log-probability of every
 * forced token, from the logits of the rows before it, LOGIT_CHUNK at a time. */
static void gen_forced(gen_state *g, ecc_run *r, int row0, const ecc_config *c)
{
    int32_t rows[LOGIT_CHUNK];
    ecc_pick_params pp = {.greedy = 1, .n_tokens = c->n_tokens};
    int G = r->T_cap - r->n_input;
    for (int s0 = 0; s0 < G; s0 += LOGIT_CHUNK) {
        int n = ECC_MIN(LOGIT_CHUNK, G - s0);
        for (int i = 0; i < n; i++) /* token n_input + s0 + i is predicted by the row before it */
            rows[i] = row0 + r->n_input + s0 + i - 1;
        gen_logits(g, rows, n);
        for (int i = 0; i < n; i++) {
            int step = s0 + i, pos = r->n_input + step;
            g->be->pick(g->be, &r->ids[pos], &r->logprobs[step], g->acts.logits + (int64_t)i * c->vocab_size,
                        c->vocab_size, r->opt.continuation_ids[step], &pp, (uint64_t)step);
        }
    }
    r->T = r->T_cap;
}

/* The prompts (and forced continuations) in one packed forward, then one
 * token per generating sequence per step. */
static ecc_status generate_tokens(gen_state *g, ecc_run **runs, int n, const ecc_config *c)
{
    ecc_backend *be = g->be;
    int *list = ecc_malloc(sizeof(int) * (size_t)n, "the batch");
    int32_t *rows = ecc_malloc(sizeof(int32_t) * (size_t)n, "the batch");
    if (!list || !rows) {
        free(list), free(rows);
        return ECC_ERR_NOMEM;
    }
    int k = 0, total = 0, done = 0;
    for (int i = 0; i < n; i++) {
        ecc_run *r = runs[i];
        total += r->T_cap - r->n_input;
        if (r->opt.continuation_ids) /* known: they go through the prefill */
            memcpy(r->ids + r->n_input, r->opt.continuation_ids, sizeof(int32_t) * (size_t)(r->T_cap - r->n_input));
        if (skips_generation(r)) {
            r->T = r->T_cap;
            r->logprobs_pending = 1;
            done += r->T_cap - r->n_input;
            continue;
        }
        if (r->T_cap > r->n_input)
            list[k++] = i;
    }
    const ecc_options *o = &runs[0]->opt;
    double t0 = ecc_now();
    if (k > 0)
        gen_forward(g, runs, list, k, 1);
    /* forced sequences are complete after the prefill; the others pick their first token */
    int kg = 0;
    for (int j = 0; j < k; j++) {
        ecc_run *r = runs[list[j]];
        if (r->opt.continuation_ids) {
            gen_forced(g, r, g->seqs[j].row, c);
            done += r->T_cap - r->n_input;
        } else {
            rows[kg] = g->seqs[j].row + r->n_input - 1;
            list[kg++] = list[j];
        }
    }
    k = kg;
    if (k > 0)
        gen_logits(g, rows, k);
    be->synchronize(be);
    double t1 = ecc_now();
    while (k > 0) {
        int before = k;
        k = gen_pick(g, runs, list, k, c);
        done += before;
        if (o->progress)
            o->progress(o->progress_user, "generate", ECC_MIN(done, total), total);
        if (k > 0) {
            gen_forward(g, runs, list, k, 0);
            for (int j = 0; j < k; j++)
                rows[j] = g->seqs[j].row;
            gen_logits(g, rows, k);
        }
    }
    be->synchronize(be);
    double t2 = ecc_now();
    for (int i = 0; i < n; i++) { /* a batch's runs share its timings */
        ecc_run_time(runs[i], "prefill", t1 - t0);
        ecc_run_time(runs[i], "decode", t2 - t1);
    }
    free(list);
    free(rows);
    return ECC_OK;
}

/* A run for one request: ids and room for what it will generate. */
static ecc_status run_new(ecc_run **out, const ecc_request *q, int n_new, const ecc_options *o)
{
    *out = NULL;
    ecc_run *r = ecc_calloc(1, sizeof *r, "the run");
    if (!r)
        return ECC_ERR_NOMEM;
    r->opt = *o;
    r->opt.continuation_ids = NULL;
    r->opt.n_continuation = 0;
    r->opt.max_new_tokens = n_new;
    r->n_input = r->T = q->n_prompt;
    r->T_cap = q->n_prompt + n_new;
    r->ids = ecc_calloc((size_t)r->T_cap, sizeof(int32_t), "token ids");
    r->logprobs = ecc_calloc((size_t)(n_new ? n_new : 1), sizeof(float), "log-probabilities");
    if (q->continuation) {
        r->cont = ecc_calloc((size_t)(n_new ? n_new : 1), sizeof(int32_t), "the continuation");
        if (r->cont)
            memcpy(r->cont, q->continuation, sizeof(int32_t) * (size_t)n_new);
        r->opt.continuation_ids = r->cont;
        r->opt.n_continuation = n_new;
    }
    if (!r->ids || !r->logprobs || (q->continuation && !r->cont)) {
        ecc_run_free(r);
        return ECC_ERR_NOMEM;
    }
    memcpy(r->ids, q->prompt, sizeof(int32_t) * (size_t)q->n_prompt);
    *out = r;
    return ECC_OK;
}

ecc_status ecc_generate_batch(ecc_run **runs, char **errors, ecc_model *m, const ecc_request *req, int n,
                              const ecc_options *o)
{
    const ecc_config *c = &m->cfg;
    for (int i = 0; i < n; i++) {
        runs[i] = NULL;
        if (errors)
            errors[i] = NULL;
    }
    ECC_TRY(ecc_explain_check(c, o));
    double t_start = ecc_now();
    /* requests that are not valid are reported one by one; the others go on */
    ecc_run **ok = ecc_calloc((size_t)(n ? n : 1), sizeof *ok, "the batch");
    if (!ok)
        return ECC_ERR_NOMEM;
    int n_ok = 0;
    ecc_status s = ECC_OK;
    for (int i = 0; i < n && s == ECC_OK; i++) {
        ecc_options oi = *o;
        oi.continuation_ids = req[i].continuation;
        oi.n_continuation = req[i].n_continuation;
        if (req[i].max_new_tokens >= 0)
            oi.max_new_tokens = req[i].max_new_tokens;
        int n_new = 0;
        ecc_status v = check_request(c, req[i].prompt, req[i].n_prompt, &oi, &n_new);
        if (v != ECC_OK) {
            if (!errors) { /* nowhere to put it: the request's error is the call's */
                s = v;
                break;
            }
            errors[i] = ecc_strdup(ecc_last_error());
            continue;
        }
        if ((s = run_new(&runs[i], &req[i], n_new, &oi)) == ECC_OK)
            ok[n_ok++] = runs[i];
    }
    gen_state g;
    memset(&g, 0, sizeof g);
    g.eos = m->eos_ids, g.n_eos = m->n_eos;
    const char *notice = NULL;
    if (s == ECC_OK && n_ok > 0)
        s = ecc_backend_create(&g.be, o->device, o->threads, o->precision, &notice);
    if (s == ECC_OK && n_ok > 0)
        s = gen_plan(g.be, m, ok, n_ok);
    if (s == ECC_OK && n_ok > 0) {
        s = ecc_dmodel_init(&g.dm, g.be, m);
        if (s == ECC_OK)
            s = gen_alloc(&g, ok, n_ok, c);
        double t_setup = ecc_now() - t_start;
        for (int i = 0; i < n_ok; i++) {
            snprintf(ok[i]->device, sizeof ok[i]->device, "%s", g.be->name);
            snprintf(ok[i]->notice, sizeof ok[i]->notice, "%s", notice ? notice : "");
            ok[i]->threads = g.be->threads;
            ecc_run_time(ok[i], "setup", t_setup);
        }
        if (s == ECC_OK) {
            ecc_nvtx_push("generate");
            s = generate_tokens(&g, ok, n_ok, c);
            ecc_nvtx_pop();
        }
        if (s == ECC_OK)
            s = g.be->status(g.be); /* a failure inside the backend's ops (e.g. a CUDA error) */
        gen_free_work(&g); /* the caches and scratch make room for the explanation */
        if (s == ECC_OK)
            s = ecc_explain_batch(ok, n_ok, &g.dm);
        if (s == ECC_OK)
            s = g.be->status(g.be);
    }
    gen_free(&g);
    free(ok);
    if (s != ECC_OK) {
        for (int i = 0; i < n; i++) {
            ecc_run_free(runs[i]);
            runs[i] = NULL;
        }
        return s;
    }
    double total = ecc_now() - t_start;
    for (int i = 0; i < n; i++)
        if (runs[i])
            ecc_run_time(runs[i], "total", total);
    return ECC_OK;
}

ecc_status ecc_generate(ecc_run **out, ecc_model *m, const int32_t *prompt, int n_prompt, const ecc_options *o)
{
    ecc_request q = {.prompt = prompt, .n_prompt = n_prompt, .continuation = o->continuation_ids,
                     .n_continuation = o->n_continuation, .max_new_tokens = -1};
    return ecc_generate_batch(out, NULL, m, &q, 1, o);
}
