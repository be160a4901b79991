/* ecc_options by name (include/eccolo.h, "options by name"): one table maps
 * each command-line name to its field and parser, so that a binding sets
 * options without knowing the struct's layout, with the command line's
 * checks and messages. The parsers are shared with the command line. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "engine/options_parse.h"
#include "util.h"

/* ---- parsers ---------------------------------------------------------------- */

ecc_status ecc_parse_int(const char *opt, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return ecc_fail(ECC_ERR_INPUT, "%s must be an integer from %ld to %ld (got '%s')", opt, lo, hi, s);
    *out = (int)v;
    return ECC_OK;
}

ecc_status ecc_parse_float(const char *opt, const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return ecc_fail(ECC_ERR_INPUT, "%s must be a number from %g to %g (got '%s')", opt, lo, hi, s);
    *out = (float)v;
    return ECC_OK;
}

ecc_status ecc_parse_u64(const char *opt, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return ecc_fail(ECC_ERR_INPUT, "%s: '%s' is not a non-negative integer", opt, s);
    *out = v;
    return ECC_OK;
}

ecc_status ecc_parse_methods(const char *s, unsigned *bits)
{
    unsigned b = 0;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, ",");
        if (n == 12 && !strncmp(p, "grad_x_input", n))
            b |= ECC_ATTR_GRAD_X_INPUT;
        else if ((n == 8 && !strncmp(p, "gradient", n)) || (n == 8 && !strncmp(p, "saliency", n)))
            b |= ECC_ATTR_GRADIENT;
        else if ((n == 20 && !strncmp(p, "integrated_gradients", n)) || (n == 2 && !strncmp(p, "ig", n)))
            b |= ECC_ATTR_INTEGRATED_GRADIENTS;
        else if (n)
            return ecc_fail(ECC_ERR_INPUT, "--attribution: unknown method '%.*s' (use grad_x_input, gradient or "
                            "saliency, integrated_gradients or ig)", (int)ECC_MIN(n, 64), p);
        p += n + (p[n] == ',');
    }
    if (!b)
        return ecc_fail(ECC_ERR_INPUT, "--attribution: no method given");
    *bits = b;
    return ECC_OK;
}

ecc_status ecc_parse_target(const char *s, ecc_target *t)
{
    if (!strcmp(s, "prob"))
        *t = ECC_TARGET_PROB;
    else if (!strcmp(s, "logit"))
        *t = ECC_TARGET_LOGIT;
    else if (!strcmp(s, "logprob"))
        *t = ECC_TARGET_LOGPROB;
    else
        return ecc_fail(ECC_ERR_INPUT, "--target must be prob, logit or logprob (got '%s')", s);
    return ECC_OK;
}

ecc_status ecc_parse_layers(const char *s, int *from, int *to)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != ':' || a < 0 || a > 100000)
        return ecc_fail(ECC_ERR_INPUT, "--layers expects a:b, the layers [a, b) (got '%s')", s);
    const char *q = end + 1;
    long b = strtol(q, &end, 10);
    if (end == q || *end || b <= a || b > 100000)
        return ecc_fail(ECC_ERR_INPUT, "--layers expects a:b with a < b, the layers [a, b) (got '%s')", s);
    *from = (int)a;
    *to = (int)b;
    return ECC_OK;
}

ecc_status ecc_parse_size(const char *opt, const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (errno || end == s || *end || !(v > 0) || v * mult > 1e15)
        return ecc_fail(ECC_ERR_INPUT, "%s expects a size such as 512M or 8G (got '%s')", opt, s);
    *out = (size_t)(v * mult);
    return ECC_OK;
}

ecc_status ecc_parse_device(const char *s, ecc_device *d)
{
    if (!strcmp(s, "auto"))
        *d = ECC_DEVICE_AUTO;
    else if (!strcmp(s, "cpu"))
        *d = ECC_DEVICE_CPU;
    else if (!strcmp(s, "cuda") || !strcmp(s, "gpu"))
        *d = ECC_DEVICE_CUDA;
    else
        return ecc_fail(ECC_ERR_INPUT, "--device: '%s' is not one of auto, cpu, cuda", s);
    return ECC_OK;
}

ecc_status ecc_parse_precision(const char *s, ecc_precision *p)
{
    if (!strcmp(s, "fp32"))
        *p = ECC_PRECISION_FP32;
    else if (!strcmp(s, "tf32"))
        *p = ECC_PRECISION_TF32;
    else if (!strcmp(s, "bf16"))
        *p = ECC_PRECISION_BF16;
    else
        return ecc_fail(ECC_ERR_INPUT, "--precision must be fp32, tf32 or bf16 (got '%s')", s);
    return ECC_OK;
}

ecc_status ecc_parse_lens(const char *s, ecc_lens *l)
{
    if (strcmp(s, "standard") && strcmp(s, "raw"))
        return ecc_fail(ECC_ERR_INPUT, "--lens must be standard or raw (got '%s')", s);
    *l = strcmp(s, "raw") ? ECC_LENS_STANDARD : ECC_LENS_RAW;
    return ECC_OK;
}

/* ---- options by name ---------------------------------------------------------- */

typedef enum kind { K_INT, K_FLOAT, K_U64, K_BOOL, K_NOT, K_SIZE, K_METHODS, K_TARGET, K_LAYERS, K_DEVICE,
                    K_PRECISION, K_LENS } kind;

/* name (the command line's, without "--"), field, parser, range */
static const struct option_spec {
    const char *name;
    size_t off;
    kind k;
    double lo, hi; /* numbers */
} k_specs[] = {
    {"max-new-tokens", offsetof(ecc_options, max_new_tokens), K_INT, 0, 1 << 20},
    {"sample", offsetof(ecc_options, sample), K_BOOL, 0, 0},
    {"greedy", offsetof(ecc_options, sample), K_NOT, 0, 0},
    {"temperature", offsetof(ecc_options, temperature), K_FLOAT, 1e-6, 1e6}, /* > 0 */
    {"top-k", offsetof(ecc_options, top_k), K_INT, 0, 1 << 24},
    {"top-p", offsetof(ecc_options, top_p), K_FLOAT, 1e-6, 1.0},
    {"seed", offsetof(ecc_options, seed), K_U64, 0, 0},
    {"stop-at-eos", offsetof(ecc_options, stop_at_eos), K_BOOL, 0, 0},
    {"no-stop", offsetof(ecc_options, stop_at_eos), K_NOT, 0, 0},
    {"device", offsetof(ecc_options, device), K_DEVICE, 0, 0},
    {"precision", offsetof(ecc_options, precision), K_PRECISION, 0, 0},
    {"threads", offsetof(ecc_options, threads), K_INT, 0, 1024},
    {"attribution", offsetof(ecc_options, attribution), K_METHODS, 0, 0},
    {"target", offsetof(ecc_options, target), K_TARGET, 0, 0},
    {"ig-steps", offsetof(ecc_options, ig_steps), K_INT, 1, 1000},
    {"activations", offsetof(ecc_options, activations), K_BOOL, 0, 0},
    {"layers", offsetof(ecc_options, layer_from), K_LAYERS, 0, 0},
    {"hidden-states", offsetof(ecc_options, hidden_states), K_BOOL, 0, 0},
    {"attention", offsetof(ecc_options, attention), K_BOOL, 0, 0},
    {"rankings", offsetof(ecc_options, rankings), K_BOOL, 0, 0},
    {"top-k-layers", offsetof(ecc_options, top_k_layers), K_INT, 1, 1 << 24},
    {"lens", offsetof(ecc_options, lens), K_LENS, 0, 0},
    {"mem-budget", offsetof(ecc_options, mem_budget), K_SIZE, 0, 0},
    {"chunk-targets", offsetof(ecc_options, max_chunk_targets), K_INT, 0, 1 << 20},
};

ecc_options *ecc_options_new(void)
{
    ecc_options *o = ecc_malloc(sizeof *o, "options");
    if (o)
        ecc_options_default(o);
    return o;
}

void ecc_options_free(ecc_options *o) { free(o); }

static ecc_status parse_bool(const char *name, const char *v, int *out)
{
    if (!strcmp(v, "1") || !strcmp(v, "true"))
        *out = 1;
    else if (!strcmp(v, "0") || !strcmp(v, "false"))
        *out = 0;
    else
        return ecc_fail(ECC_ERR_INPUT, "option '%s' is on or off: give 1 or 0 (got '%s')", name, v);
    return ECC_OK;
}

ecc_status ecc_options_set(ecc_options *o, const char *name, const char *value)
{
    if (!o || !name || !value)
        return ecc_fail(ECC_ERR_INPUT, "ecc_options_set: options, name and value must not be NULL");
    const struct option_spec *sp = NULL;
    for (size_t i = 0; i < sizeof k_specs / sizeof *k_specs && !sp; i++)
        if (!strcmp(k_specs[i].name, name))
            sp = &k_specs[i];
    if (!sp)
        return ecc_fail(ECC_ERR_INPUT, "unknown option '%s' (the names are eccolo generate's options without "
                        "\"--\", e.g. max-new-tokens, attribution, activations)", name);
    char opt[40];
    snprintf(opt, sizeof opt, "--%s", name);
    void *f = (char *)o + sp->off;
    int b = 0;
    switch (sp->k) {
    case K_INT: return ecc_parse_int(opt, value, (long)sp->lo, (long)sp->hi, f);
    case K_FLOAT: return ecc_parse_float(opt, value, sp->lo, sp->hi, f);
    case K_U64: return ecc_parse_u64(opt, value, f);
    case K_BOOL:
    case K_NOT:
        ECC_TRY(parse_bool(name, value, &b));
        *(int *)f = sp->k == K_NOT ? !b : b;
        return ECC_OK;
    case K_SIZE: return ecc_parse_size(opt, value, f);
    case K_METHODS:
        if (!*value) { /* "" = none */
            o->attribution = 0;
            return ECC_OK;
        }
        return ecc_parse_methods(value, f);
    case K_TARGET: return ecc_parse_target(value, f);
    case K_LAYERS:
        if (!*value) { /* "" = every layer */
            o->layer_from = o->layer_to = 0;
            return ECC_OK;
        }
        return ecc_parse_layers(value, &o->layer_from, &o->layer_to);
    case K_DEVICE: return ecc_parse_device(value, f);
    case K_PRECISION: return ecc_parse_precision(value, f);
    case K_LENS: return ecc_parse_lens(value, f);
    }
    return ECC_ERR_INPUT;
}

ecc_status ecc_options_set_ids(ecc_options *o, const char *which, const int32_t *ids, int n)
{
    if (!o || !which || n < 0 || (n > 0 && !ids))
        return ecc_fail(ECC_ERR_INPUT, "ecc_options_set_ids: give options, \"continuation\" or \"watch\", and n >= 0 ids");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0)
            return ecc_fail(ECC_ERR_INPUT, "%s ids must be non-negative (id %d is %d)", which, i, ids[i]);
    if (!strcmp(which, "continuation")) {
        o->continuation_ids = n ? ids : NULL;
        o->n_continuation = n;
    } else if (!strcmp(which, "watch")) {
        o->watch_ids = n ? ids : NULL;
        o->n_watch = n;
    } else
        return ecc_fail(ECC_ERR_INPUT, "ecc_options_set_ids: '%s' is not \"continuation\" or \"watch\"", which);
    return ECC_OK;
}
