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
#include "engine/options_parse.h"
#include "util.h"

int cli_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n')
            *p = ' ';
    fprintf(stderr, "eccolo: error: %s\n", msg);
    return ECC_EXIT_ERROR;
}

int cli_lib_error(void) { return cli_error("%s", ecc_last_error()); }

int cli_opt(cli_args *a, const char *name, const char **value)
{
    const char *arg = a->argv[a->i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (a->i + 1 >= a->argc) {
        cli_error("%s needs a value (see eccolo %s --help)", name, a->cmd);
        return -1;
    }
    *value = a->argv[++a->i];
    return 1;
}

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
    char *o = buf[next++ & 3];
    size_t k = 0;
    o[k++] = '\'';
    for (const char *p = tok; *p && k < sizeof buf[0] - 6; p++) {
        if (*p == '\n') {
            o[k++] = '\\';
            o[k++] = 'n';
        } else if (*p == '\t') {
            o[k++] = '\\';
            o[k++] = 't';
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
            "  batch      generate and explain thousands of prompts from a JSONL file, resumably\n"
            "  nmf        factorise the activations of runs (NMF), as Ecco groups neurons\n"
            "  report     write the interactive HTML views of a run (saliency, NMF, rankings, ...)\n"
            "  submit     run a batch as a Slurm array job, one task per shard; resubmit failed shards\n"
            "  status     the state of each shard of a submitted batch (Slurm and manifest)\n"
            "  info       build options, BLAS, CUDA devices, the default model\n"
            "\n"
            "  eccolo <command> --help   options of a command\n"
            "  eccolo --version          version\n",
            ECCOLO_VERSION);
}

static int cmd_info(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: eccolo info\n\nPrints the build options, the BLAS library, the CUDA devices found and the "
               "default model.\n");
        return 0;
    }
    if (argc > 1)
        return cli_error("info takes no arguments (got '%s')", argv[1]);
    printf("eccolo %s\n", ECCOLO_VERSION);
    printf("build: %s\n", ecc_build_info());
    printf("blas: %s\n", openblas_get_config());
    printf("cpu threads: %d (OpenMP; --threads or OMP_NUM_THREADS to change)\n", omp_get_max_threads());
    char why[256] = "";
    int n = ecc_gpu_count(why, sizeof why);
    printf("cuda devices: %d%s%s%s\n", n, n ? "" : " (", n ? "" : why, n ? "" : ")");
    for (int i = 0; i < n; i++) {
        char d[256];
        ecc_gpu_describe(i, d, sizeof d);
        printf("  %s\n", d);
    }
    const char *dm = ecc_default_model();
    printf("default model: %s%s\n", dm ? dm : "(none)", dm && !ecc_dir_exists(dm) ? " (missing!)" : "");
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
    if (!strcmp(cmd, "batch"))
        return cmd_batch(argc - 1, argv + 1);
    if (!strcmp(cmd, "nmf"))
        return cmd_nmf(argc - 1, argv + 1);
    if (!strcmp(cmd, "report"))
        return cmd_report(argc - 1, argv + 1);
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
