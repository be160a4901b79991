/* eccolo: the command line. main() dispatches to a subcommand; the helpers
 * here parse arguments and report errors on one line with exit code 2. */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "model/model.h"
#include "engine/options_parse.h"
#include "util.h"

int cli_error(const char *fmt, ...)
{
    char raw[1024], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    ecc_escape_text(msg, sizeof msg, raw, strlen(raw)); /* one line, no control sequences */
    fprintf(stderr, "eccolo: error: %s\n", msg);
    return ECC_EXIT_ERROR;
}

void cli_notice(int quiet, const char *fmt, ...)
{
    if (quiet)
        return;
    char raw[1024], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    ecc_escape_text(msg, sizeof msg, raw, strlen(raw));
    fprintf(stderr, "eccolo: %s\n", msg);
}

int cli_lib_error(void) { return cli_error("%s", ecc_last_error()); }

static int opt_value(cli_args *a, const char *name, const char **value, int allow_empty)
{
    const char *arg = a->argv[a->i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
    } else if (arg[n] != '\0') {
        return 0;
    } else if (a->i + 1 >= a->argc) {
        cli_error("%s needs a value (see eccolo %s --help)", name, a->cmd);
        return -1;
    } else {
        *value = a->argv[++a->i];
    }
    /* no option takes an empty value: `--model ""` would mean the default
     * model and `--out ""` the current directory, silently */
    if (!**value && !allow_empty) {
        cli_error("%s is empty: give a value (see eccolo %s --help)", name, a->cmd);
        return -1;
    }
    return 1;
}

int cli_opt(cli_args *a, const char *name, const char **value) { return opt_value(a, name, value, 0); }
int cli_opt_text(cli_args *a, const char *name, const char **value) { return opt_value(a, name, value, 1); }

int cli_flag(cli_args *a, const char *name) { return strcmp(a->argv[a->i], name) == 0; }

int cli_int(const char *opt, const char *s, long lo, long hi, int *out)
{
    return ecc_parse_int(opt, s, lo, hi, out) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

int cli_float(const char *opt, const char *s, double lo, double hi, float *out)
{
    return ecc_parse_float(opt, s, lo, hi, out) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

int cli_u64(const char *opt, const char *s, uint64_t *out)
{
    return ecc_parse_u64(opt, s, out) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

int cli_ids(const char *opt, const char *s, int32_t **ids, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    const char *p = s;
    while (v && *p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            cli_error("%s: expected comma-separated non-negative token ids like 464,2068,7586 (at '%.20s')", opt, p);
            return -1;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, sizeof(int32_t) * (size_t)(cap *= 2));
            if (!nv)
                free(v);
            v = nv;
            if (!v)
                break;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!v) {
        cli_error("out of memory reading %s", opt);
        return -1;
    }
    *ids = v;
    *n = k;
    return 0;
}

char *cli_unescape(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p; p++) {
        if (*p != '\\' || !p[1]) {
            *o++ = *p;
            continue;
        }
        switch (*++p) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case '\\': *o++ = '\\'; break;
        case '"': *o++ = '"'; break;
        case '\'': *o++ = '\''; break;
        default: /* not an escape we know: keep it as written */
            *o++ = '\\';
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

int cli_methods(const char *s, unsigned *bits)
{
    return ecc_parse_methods(s, bits) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

int cli_target(const char *s, ecc_target *t)
{
    return ecc_parse_target(s, t) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

int cli_layers(const char *s, int *from, int *to)
{
    return ecc_parse_layers(s, from, to) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

int cli_size(const char *opt, const char *s, size_t *out)
{
    return ecc_parse_size(opt, s, out) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

const char *cli_quote_token(const char *tok)
{
    static _Thread_local char buf[4][96];
    static _Thread_local int next;
    char esc[88];
    ecc_escape_text(esc, sizeof esc, tok, strlen(tok)); /* controls and partial UTF-8 as \xNN */
    char *o = buf[next++ & 3];
    size_t k = 0;
    o[k++] = '\'';
    for (const char *p = esc; *p; p++) { /* the common two as \n and \t */
        if (!strncmp(p, "\\x0a", 4) || !strncmp(p, "\\x09", 4)) {
            o[k++] = '\\';
            o[k++] = p[3] == 'a' ? 'n' : 't';
            p += 3;
        } else {
            o[k++] = *p;
        }
    }
    o[k++] = '\'';
    o[k] = '\0';
    return o;
}

int cli_device(const char *s, ecc_device *d)
{
    return ecc_parse_device(s, d) == ECC_OK ? 0 : (cli_lib_error(), -1);
}

/* ---- subcommands ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "eccolo %s — explain transformer language models the way Ecco does, in C and CUDA\n"
            "\n"
            "usage: eccolo <command> [options]\n"
            "\n"
            "commands:\n"
            "  generate   generate (or force) a continuation and explain it; writes run.json +\n"
            "             tensors.safetensors with --out\n"
            "  tokenize   the token ids and pieces the model sees for a text (as Hugging Face)\n"
            "  batch      generate and explain thousands of prompts from a JSONL file, resumably\n"
            "  nmf        factorise the activations of runs (NMF), as Ecco groups neurons\n"
            "  report     write the interactive HTML views of a run (saliency, NMF, rankings, ...)\n"
            "  compare    compare the layers of two runs or batches (CCA, SVCCA, PWCCA, CKA)\n"
            "  submit     run a batch as a Slurm array job, one task per shard; resubmit failed shards\n"
            "  status     the state of each shard of a submitted batch (Slurm and manifest)\n"
            "  info       build options, BLAS, CUDA devices, the default model\n"
            "\n"
            "  eccolo <command> --help   options of a command\n"
            "  eccolo --version          version\n",
            ECCOLO_VERSION);
}

/* A model's sizes and vocabulary from config.json and its tokenizer (no weights read). */
static void info_model(const ecc_config *c, const char *dir)
{
    printf("model: %s: %s, %d layers, %d heads, n_embd %d, n_inner %d, context %d\n", dir, c->model_type, c->n_layer,
           c->n_head, c->n_embd, c->n_inner, c->n_positions);
    if (c->n_tokens < c->vocab_size)
        printf("vocabulary: %d rows, %d tokens, %d padding (rows past the tokenizer: never generated, sampled or "
               "ranked)\n", c->vocab_size, c->n_tokens, c->vocab_size - c->n_tokens);
    else
        printf("vocabulary: %d tokens\n", c->n_tokens);
}

static int cmd_info(int argc, char **argv)
{
    const char *model = NULL;
    cli_args a = {argc, 1, argv, "info"};
    for (; a.i < argc; a.i++) {
        int r;
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            printf("usage: eccolo info [--model M]\n\nPrints the build options, the BLAS library, the CUDA devices "
                   "found and the default model;\nwith --model, that model's sizes and vocabulary (padding rows "
                   "included).\n");
            return 0;
        }
        if ((r = cli_opt(&a, "--model", &model)) < 0)
            return ECC_EXIT_ERROR;
        if (!r)
            return cli_error("info takes no arguments but --model M (got '%s')", argv[a.i]);
    }
    ecc_config cfg;
    char *dir = NULL;
    if (model && ecc_model_peek(&cfg, &dir, model) != ECC_OK)
        return cli_lib_error();
    printf("eccolo %s\n", ECCOLO_VERSION);
    printf("build: %s\n", ecc_build_info());
    printf("blas: %s\n", openblas_get_config());
    printf("cpu threads: %d (OpenMP; --threads or OMP_NUM_THREADS to change)\n", omp_get_max_threads());
    char why[256] = "";
    int absent;
    int n = ecc_gpu_probe(why, sizeof why, &absent);
    if (n)
        printf("cuda devices: %d\n", n);
    else
        printf("cuda devices: 0 (%s: %s)\n", absent ? "no GPU" : "a GPU is present but not usable", why);
    for (int i = 0; i < n; i++) {
        char d[256];
        ecc_gpu_describe(i, d, sizeof d);
        printf("  %s\n", d);
    }
    const char *dm = ecc_default_model();
    printf("default model: %s%s\n", dm ? dm : "(none)", dm && !ecc_dir_exists(dm) ? " (missing!)" : "");
    if (model)
        info_model(&cfg, dir);
    free(dir);
    return 0;
}

static int dispatch(int argc, char **argv)
{
    if (argc < 2)
        return cli_error("no command given (try eccolo --help)");
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("eccolo %s\n", ECCOLO_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "generate"))
        return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize"))
        return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "batch"))
        return cmd_batch(argc - 1, argv + 1);
    if (!strcmp(cmd, "nmf"))
        return cmd_nmf(argc - 1, argv + 1);
    if (!strcmp(cmd, "report"))
        return cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "compare"))
        return cmd_compare(argc - 1, argv + 1);
    if (!strcmp(cmd, "submit"))
        return cmd_submit(argc - 1, argv + 1);
    if (!strcmp(cmd, "status"))
        return cmd_status(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 1, argv + 1);
    return cli_error("unknown command '%s' (see eccolo --help)", cmd);
}

int main(int argc, char **argv)
{
    int rc = dispatch(argc, argv);
    /* what was printed on stdout (a generated text, a script) is output too: a
     * failed write of it (a full disk under a redirection) is an error; after
     * another error, that one was the message */
    errno = 0;
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout))) {
        int e = errno ? errno : EIO;
        const char *why = e == ENOSPC ? "disk full" : e == EDQUOT ? "disk full (disk quota exceeded)" : strerror(e);
        return cli_error("standard output: %s: what was printed is incomplete", why);
    }
    return rc;
}
