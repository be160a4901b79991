/* ecc_generate: the one orchestration. Load the weights onto a backend,
 * run the prompt through the model, then choose (or force) one token at a
 * time with the KV cache. Later phases (capture, batched backward, NMF) hang
 * off the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "explain.h"
#include "forward.h"
#include "model.h"
#include "run.h"
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
    free(r);
}

int ecc_run_n_tokens(const ecc_run *r) { return r->T; }
int ecc_run_n_input(const ecc_run *r) { return r->n_input; }
const int32_t *ecc_run_token_ids(const ecc_run *r) { return r->ids; }
const float *ecc_run_token_logprobs(const ecc_run *r) { return r->logprobs; }
const char *ecc_run_device(const ecc_run *r) { return r->device; }
const char *ecc_run_notice(const ecc_run *r) { return r->notice; }
void ecc_run_add_timing(ecc_run *r, const char *name, double seconds) { ecc_run_time(r, name, seconds); }

/* ---- validation -------------------------------------------------------------- */

static ecc_status check_request(const ecc_config *c, const int32_t *prompt, int n_prompt, const ecc_options *o,
                                int *n_new)
{
    if (n_prompt < 1)
        return ecc_fail(ECC_ERR_INPUT, "the prompt is empty: give at least one token");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= c->vocab_size)
            return ecc_fail(ECC_ERR_INPUT, "prompt token %d is id %d, outside the vocabulary [0, %d)", i, prompt[i],
                            c->vocab_size);
    if (n_prompt > c->n_positions)
        return ecc_fail(ECC_ERR_INPUT, "the prompt has %d tokens but the model's context holds %d (n_positions)",
                        n_prompt, c->n_positions);
    if (o->continuation_ids) {
        for (int i = 0; i < o->n_continuation; i++)
            if (o->continuation_ids[i] < 0 || o->continuation_ids[i] >= c->vocab_size)
                return ecc_fail(ECC_ERR_INPUT, "continuation token %d is id %d, outside the vocabulary [0, %d)", i,
                                o->continuation_ids[i], c->vocab_size);
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

/* ---- generation ---------------------------------------------------------------- */

typedef struct gen_state {
    ecc_backend *be;
    ecc_dmodel dm;
    ecc_kv kv;
    ecc_acts acts;
    int32_t *d_ids; /* (T_cap) token ids in backend memory */
} gen_state;

static void gen_free(gen_state *g)
{
    if (!g->be)
        return;
    ecc_acts_free(&g->acts, g->be);
    ecc_kv_free(&g->kv, g->be);
    if (g->d_ids)
        g->be->free(g->be, g->d_ids);
    ecc_dmodel_free(&g->dm);
    g->be->destroy(g->be);
    g->be = NULL;
}

/* Prompt forward, then one token per step. Fills r->ids / r->logprobs. */
static void generate_tokens(ecc_run *r, gen_state *g, const ecc_config *c, int n_new)
{
    ecc_backend *be = g->be;
    const ecc_options *o = &r->opt;
    ecc_pick_params pp = {.greedy = !o->sample, .temperature = o->temperature, .top_k = o->top_k,
                          .top_p = o->top_p, .seed = o->seed};
    double t0 = ecc_now();
    be->upload(be, g->d_ids, r->ids, sizeof(int32_t) * (size_t)r->n_input);
    ecc_forward(&g->dm, &g->acts, &g->kv, g->d_ids, 0, r->n_input, 1);
    be->synchronize(be);
    double t1 = ecc_now();
    ecc_run_time(r, "prefill", t1 - t0);
    for (int step = 0; step < n_new; step++) {
        int pos = r->n_input + step;
        int32_t forced = o->continuation_ids ? o->continuation_ids[step] : -1;
        be->pick(be, &r->ids[pos], &r->logprobs[step], g->acts.logits, c->vocab_size, forced, &pp, (uint64_t)step);
        r->T = pos + 1;
        if (o->progress)
            o->progress(o->progress_user, "generate", step + 1, n_new);
        if (forced < 0 && o->stop_at_eos && r->ids[pos] == c->eos_token_id) {
            r->stopped_at_eos = 1;
            break;
        }
        if (step + 1 < n_new) { /* the last token is never fed back */
            be->upload(be, g->d_ids + pos, &r->ids[pos], sizeof(int32_t));
            ecc_forward(&g->dm, &g->acts, &g->kv, g->d_ids + pos, pos, 1, 1);
        }
    }
    be->synchronize(be);
    ecc_run_time(r, "decode", ecc_now() - t1);
}

ecc_status ecc_generate(ecc_run **out, ecc_model *m, const int32_t *prompt, int n_prompt, const ecc_options *o)
{
    *out = NULL;
    const ecc_config *c = &m->cfg;
    int n_new = 0;
    ECC_TRY(check_request(c, prompt, n_prompt, o, &n_new));
    ECC_TRY(ecc_explain_check(c, o));
    double t_start = ecc_now();

    ecc_run *r = ecc_calloc(1, sizeof *r, "the run");
    if (!r)
        return ECC_ERR_NOMEM;
    r->opt = *o;
    r->n_input = r->T = n_prompt;
    r->T_cap = n_prompt + n_new;
    r->ids = ecc_calloc((size_t)r->T_cap, sizeof(int32_t), "token ids");
    r->logprobs = ecc_calloc((size_t)(n_new ? n_new : 1), sizeof(float), "log-probabilities");
    if (o->continuation_ids) {
        r->cont = ecc_calloc((size_t)(n_new ? n_new : 1), sizeof(int32_t), "the continuation");
        if (r->cont)
            memcpy(r->cont, o->continuation_ids, sizeof(int32_t) * (size_t)n_new);
        r->opt.continuation_ids = r->cont;
    }
    if (!r->ids || !r->logprobs || (o->continuation_ids && !r->cont)) {
        ecc_run_free(r);
        return ECC_ERR_NOMEM;
    }
    memcpy(r->ids, prompt, sizeof(int32_t) * (size_t)n_prompt);

    gen_state g = {0};
    const char *notice = NULL;
    ecc_status s = ecc_backend_create(&g.be, o->device, o->threads, &notice);
    if (s == ECC_OK && notice)
        snprintf(r->notice, sizeof r->notice, "%s", notice);
    if (s == ECC_OK)
        s = ecc_dmodel_init(&g.dm, g.be, m);
    if (s == ECC_OK)
        s = ecc_kv_init(&g.kv, g.be, c, r->T_cap);
    if (s == ECC_OK)
        s = ecc_acts_scratch(&g.acts, g.be, c, n_prompt, 1);
    if (s == ECC_OK && !(g.d_ids = g.be->alloc(g.be, sizeof(int32_t) * (size_t)r->T_cap, "token ids")))
        s = ECC_ERR_NOMEM;
    if (s == ECC_OK) {
        snprintf(r->device, sizeof r->device, "%s", g.be->name);
        r->threads = g.be->threads;
        ecc_run_time(r, "setup", ecc_now() - t_start);
        generate_tokens(r, &g, c, n_new);
        /* the generation's cache and scratch make room for the explanation */
        ecc_acts_free(&g.acts, g.be);
        ecc_kv_free(&g.kv, g.be);
        s = ecc_explain(r, &g.dm);
    }
    gen_free(&g);
    if (s != ECC_OK) {
        ecc_run_free(r);
        return s;
    }
    ecc_run_time(r, "total", ecc_now() - t_start);
    *out = r;
    return ECC_OK;
}
