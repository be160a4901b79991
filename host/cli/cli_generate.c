/* eccolo generate: parse options, open the model, tokenize, call
 * ecc_generate, then print the text or write DIR/run.json +
 * DIR/tensors.safetensors. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/model.h"
#include "nmf/nmf_runs.h"
#include "engine/run.h"
#include "report/report.h"
#include "util.h"

static const char *k_usage =
    "usage: eccolo generate [--model M] (--prompt TEXT | --prompt-file FILE | --prompt-ids 1,2,3) [options]\n"
    "\n"
    "input:\n"
    "  --prompt TEXT           prompt text; \\n \\t \\\\ \\\" escapes are interpreted (see --raw)\n"
    "  --prompt-file FILE      read the prompt from a file (taken as is)\n"
    "  --prompt-ids IDS        prompt as comma-separated token ids, taken exactly as given\n"
    "  --no-special            special tokens written in the text (<s>, <|im_start|>) are plain text\n"
    "  --continuation TEXT     force this continuation (teacher forcing) instead of generating,\n"
    "                          so a given text can be explained\n"
    "  --continuation-ids IDS  the same, as token ids\n"
    "A text prompt is tokenized as the model's Hugging Face tokenizer does with its default\n"
    "special tokens: Llama, Mistral and Gemma get their BOS first (see eccolo tokenize).\n"
    "\n"
    "output:\n"
    "  --out DIR               write DIR/run.json and DIR/tensors.safetensors\n"
    "  --nmf K                 also factorise the activations into K groups (DIR/nmf.safetensors;\n"
    "                          needs --activations and --out)\n"
    "  --html                  also write DIR/report.html, the interactive views (needs --out)\n"
    "  --print-saliency N      print, for the first N generated tokens, their three most salient\n"
    "                          input tokens (needs --attribution)\n"
    "\n";

static const char *k_tail =
    "\n"
    "Without --out the prompt and its continuation are printed on stdout.\n"
    "Errors are one line on stderr, with exit code 2.\n";

typedef struct gen_args {
    cli_gen gen;
    const char *prompt, *prompt_file, *prompt_ids, *cont, *cont_ids, *out;
    int nmf_k, html, print_saliency, no_special;
    int added_front, added_back; /* prompt tokens the template added */
} gen_args;

static int parse(gen_args *g, int argc, char **argv)
{
    cli_args a = {argc, 1, argv, "generate"};
    cli_gen_init(&g->gen);
    for (; a.i < argc; a.i++) {
        const char *v = NULL;
        int r;
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_usage, stdout);
            fputs(cli_gen_help, stdout);
            fputs(k_tail, stdout);
            return 1;
        }
        if ((r = cli_gen_option(&a, &g->gen)) != 0) {
            if (r < 0)
                return -1;
            continue;
        }
        const char **slot = NULL;
        if ((r = cli_opt(&a, "--prompt", &v)))
            slot = &g->prompt;
        else if ((r = cli_opt(&a, "--prompt-file", &v)))
            slot = &g->prompt_file;
        else if ((r = cli_opt(&a, "--prompt-ids", &v)))
            slot = &g->prompt_ids;
        else if ((r = cli_opt(&a, "--continuation", &v)))
            slot = &g->cont;
        else if ((r = cli_opt(&a, "--continuation-ids", &v)))
            slot = &g->cont_ids;
        else if ((r = cli_opt(&a, "--out", &v)))
            slot = &g->out;
        else if ((r = cli_opt(&a, "--nmf", &v))) {
            if (r < 0 || cli_int("--nmf", v, 1, 1 << 20, &g->nmf_k))
                return -1;
            continue;
        } else if ((r = cli_opt(&a, "--print-saliency", &v))) {
            if (r < 0 || cli_int("--print-saliency", v, 1, 1 << 20, &g->print_saliency))
                return -1;
            continue;
        } else if (cli_flag(&a, "--html")) {
            g->html = 1;
            continue;
        } else if (cli_flag(&a, "--no-special")) {
            g->no_special = 1;
            continue;
        } else {
            cli_error("generate: unknown option '%s' (see eccolo generate --help)", argv[a.i]);
            return -1;
        }
        if (r < 0)
            return -1;
        *slot = v;
    }
    int n_prompts = !!g->prompt + !!g->prompt_file + !!g->prompt_ids;
    if (n_prompts != 1)
        return cli_error(n_prompts ? "give only one of --prompt, --prompt-file, --prompt-ids"
                                   : "no prompt: give --prompt TEXT, --prompt-file FILE or --prompt-ids IDS"),
               -1;
    if (g->cont && g->cont_ids)
        return cli_error("give only one of --continuation and --continuation-ids"), -1;
    if ((g->cont || g->cont_ids) && g->gen.o.sample)
        return cli_error("--continuation forces the tokens, so --sample has nothing to choose"), -1;
    if ((g->nmf_k || g->html) && !g->out)
        return cli_error("--nmf and --html write next to the run: add --out DIR"), -1;
    if (g->print_saliency && !g->gen.o.attribution)
        return cli_error("--print-saliency shows attributions: add --attribution"), -1;
    if (g->nmf_k && !g->gen.o.activations)
        return cli_error("--nmf factorises the activations: add --activations"), -1;
    return cli_gen_check(&g->gen) ? -1 : 0;
}

/* Text of --prompt or --continuation -> token ids; *used (when not NULL)
 * gets the text after escapes, as tokenized. */
static int text_ids(ecc_model *m, const char *opt, const char *text, int raw, unsigned flags, int32_t **ids, int *n,
                    char **used, int *n_front, int *n_back)
{
    char *t = raw ? strdup(text) : cli_unescape(text);
    if (!t)
        return cli_error("out of memory");
    ecc_status s = ecc_tokenize_ex(m, t, strlen(t), flags, ids, n, n_front, n_back);
    if (used)
        *used = t;
    else
        free(t);
    if (s != ECC_OK)
        return cli_error("%s: %s", opt, ecc_last_error());
    return 0;
}

/* The text of --prompt-file. A NUL byte is refused: the prompt travels as a
 * C string (run.json, the printed text), which would silently end there. */
static int read_prompt_file(const char *path, char **text, size_t *len)
{
    if (ecc_read_file(path, 64u << 20, text, len) != ECC_OK)
        return cli_error("--prompt-file: %s", ecc_last_error());
    const char *nul = memchr(*text, '\0', *len);
    if (nul)
        return cli_error("--prompt-file %s: byte %zu is a NUL byte; a prompt is text (remove it, or give token ids "
                         "with --prompt-ids)", path, (size_t)(nul - *text));
    return 0;
}

static int prompt_ids(gen_args *g, ecc_model *m, int32_t **ids, int *n, char **text)
{
    unsigned flags = ECC_TOKENIZE_ADD_SPECIAL | (g->no_special ? ECC_TOKENIZE_SPECIAL_AS_TEXT : 0);
    *text = NULL;
    if (g->prompt_ids) /* ids are the user's: nothing is added */
        return cli_ids("--prompt-ids", g->prompt_ids, ids, n) ? ECC_EXIT_ERROR : 0;
    if (g->prompt_file) {
        size_t len;
        int rc = read_prompt_file(g->prompt_file, text, &len);
        if (rc)
            return rc;
        if (ecc_tokenize_ex(m, *text, len, flags, ids, n, &g->added_front, &g->added_back) != ECC_OK)
            return cli_error("%s: %s", g->prompt_file, ecc_last_error());
        return 0;
    }
    return text_ids(m, "--prompt", g->prompt, g->gen.raw, flags, ids, n, text, &g->added_front, &g->added_back);
}

/* The three most salient input tokens of the first n generated tokens, by
 * the first attribution method computed. */
static void print_saliency(const ecc_run *r, ecc_model *m, int n)
{
    static const char *names[] = {"attribution.grad_x_input", "attribution.gradient",
                                  "attribution.integrated_gradients"};
    const ecc_run_tensor *t = NULL;
    for (int i = 0; i < 3 && !t; i++)
        t = ecc_run_tensor_get(r, names[i]);
    char **disp;
    uint8_t *partial;
    if (!t || ecc_tokenizer_display(m->tok, r->ids, r->T, &disp, &partial) != ECC_OK)
        return;
    const float *s = t->data;
    int G = r->T - r->n_input;
    printf("most salient input tokens (%s):\n", t->name + strlen("attribution."));
    for (int g = 0; g < G && g < n; g++) {
        const float *row = s + (size_t)g * r->T;
        int best[3] = {-1, -1, -1}, t_g = r->n_input + g;
        for (int i = 0; i < t_g; i++)
            for (int k = 0; k < 3; k++)
                if (best[k] < 0 || row[i] > row[best[k]]) {
                    for (int q = 2; q > k; q--)
                        best[q] = best[q - 1];
                    best[k] = i;
                    break;
                }
        printf("  %-16s <-", cli_quote_token(disp[t_g]));
        for (int k = 0; k < 3 && best[k] >= 0; k++)
            printf("  %s %.0f%%", cli_quote_token(disp[best[k]]), 100.0 * row[best[k]]);
        printf("\n");
    }
    ecc_tokenizer_display_free(disp, r->T);
    free(partial);
}

/* --nmf K factorises a matrix of (tokens) x (captured layers x neurons): K
 * larger than either cannot be computed, which is known before generating
 * from the prompt and the number of new (or forced) tokens. */
static int check_nmf_k(const gen_args *g, const ecc_model *m, int n_prompt, int n_cont)
{
    const ecc_options *o = &g->gen.o;
    int forced = g->cont || g->cont_ids, n_new = forced ? n_cont : o->max_new_tokens;
    int64_t T_max = (int64_t)n_prompt + n_new;
    int64_t layers = (o->layer_to ? o->layer_to : m->cfg.n_layer) - o->layer_from;
    int64_t cols = layers * m->cfg.n_inner;
    if (g->nmf_k > T_max)
        return cli_error("--nmf %d: the run will have at most %lld tokens (%d of the prompt and %d %s), and NMF needs "
                         "no more components than tokens: use --nmf %lld or less%s", g->nmf_k, (long long)T_max,
                         n_prompt, n_new, forced ? "forced" : "new", (long long)T_max,
                         forced ? "" : ", or a larger --max-new-tokens");
    if (g->nmf_k > cols)
        return cli_error("--nmf %d: the activations captured have %lld columns (%lld layers x %d neurons), and NMF "
                         "needs no more components than columns: use --nmf %lld or less", g->nmf_k, (long long)cols,
                         (long long)layers, m->cfg.n_inner, (long long)cols);
    return 0;
}

/* --nmf and --html after the run (of T tokens) is written. */
static int after_run(gen_args *g, int T)
{
    char *nmf_path = NULL;
    if (g->nmf_k > T) /* the run stopped early, at the end-of-text token */
        return cli_error("--nmf %d: the run stopped at the end-of-text token after %d tokens, fewer than the components "
                         "asked for (the run is written): use eccolo nmf %s --components %d or less", g->nmf_k, T,
                         g->out, T);
    if (g->nmf_k) {
        const char *dirs[1] = {g->out};
        ecc_nmf_job job;
        memset(&job, 0, sizeof job);
        ecc_nmf_options_default(&job.nmf);
        job.nmf.k = g->nmf_k;
        job.dirs = dirs;
        job.n_dirs = 1;
        job.layer_from = job.layer_to = -1;
        job.device = g->gen.o.device;
        job.threads = g->gen.o.threads;
        ecc_nmf_result res;
        if (ecc_nmf_runs(&job, &res, &nmf_path) != ECC_OK)
            return cli_lib_error();
        if (!g->gen.quiet)
            fprintf(stderr, "eccolo: nmf: %d components, relative error %.4f after %d iterations; wrote %s\n",
                    g->nmf_k, res.rel_error, res.iterations, nmf_path);
        ecc_nmf_result_free(&res);
    }
    int rc = 0;
    if (g->html) {
        char *html = ecc_path_join(g->out, "report.html");
        if (ecc_report_write(g->out, nmf_path, html) != ECC_OK)
            rc = cli_lib_error();
        else if (!g->gen.quiet)
            fprintf(stderr, "eccolo: wrote %s\n", html);
        free(html);
    }
    free(nmf_path);
    return rc;
}

static int run(gen_args *g)
{
    double t0 = ecc_now();
    ecc_model *m = NULL;
    if (ecc_model_open(&m, g->gen.model) != ECC_OK)
        return cli_lib_error();
    double t_load = ecc_now() - t0;
    int32_t *ids = NULL, *cont = NULL;
    int n = 0, n_cont = 0, rc;
    char *text = NULL;
    ecc_run *r = NULL;
    ecc_options *o = &g->gen.o;
    if ((rc = prompt_ids(g, m, &ids, &n, &text)) || (rc = cli_gen_resolve(&g->gen, m)))
        goto done;
    if (g->cont_ids && cli_ids("--continuation-ids", g->cont_ids, &cont, &n_cont)) {
        rc = ECC_EXIT_ERROR;
        goto done;
    }
    if (g->cont && (rc = text_ids(m, "--continuation", g->cont, g->gen.raw, g->no_special ? ECC_TOKENIZE_SPECIAL_AS_TEXT : 0,
                                  &cont, &n_cont, NULL, NULL, NULL)))
        goto done;
    if (g->cont || g->cont_ids) {
        o->continuation_ids = cont;
        o->n_continuation = n_cont;
    }
    if (g->nmf_k && (rc = check_nmf_k(g, m, n, n_cont)))
        goto done;
    cli_gen_progress(&g->gen);
    if (ecc_generate(&r, m, ids, n, o) != ECC_OK) {
        rc = cli_lib_error();
        goto done;
    }
    ecc_run_add_timing(r, "load", t_load);
    ecc_run_mark_added(r, g->added_front, g->added_back);
    if (*ecc_run_notice(r) && !g->gen.quiet)
        fprintf(stderr, "eccolo: %s\n", ecc_run_notice(r));
    char *out_text = NULL;
    /* what the user typed and what followed: without the tokens the template put first */
    if (ecc_detokenize(m, ecc_run_token_ids(r) + g->added_front, ecc_run_n_tokens(r) - g->added_front, &out_text) !=
        ECC_OK) {
        rc = cli_lib_error();
        goto done;
    }
    printf("%s\n", out_text);
    free(out_text);
    if (g->print_saliency)
        print_saliency(r, m, g->print_saliency);
    fflush(stdout);
    if (g->out) {
        /* ecc_run_write removes what was computed from a previous run in the directory */
        static const char *const derived[] = {"nmf.safetensors", "report.html"};
        int had[2] = {ecc_file_exists_in(g->out, derived[0]), ecc_file_exists_in(g->out, derived[1])};
        if (ecc_run_write(r, m, text, g->out) != ECC_OK) {
            rc = cli_lib_error();
            goto done;
        }
        if (!g->gen.quiet)
            fprintf(stderr, "eccolo: wrote %s/run.json and %s/tensors.safetensors\n", g->out, g->out);
        for (int i = 0; i < 2; i++)
            if (had[i] && !ecc_file_exists_in(g->out, derived[i]) && !g->gen.quiet)
                fprintf(stderr, "eccolo: removed %s/%s: it was computed from the previous run\n", g->out, derived[i]);
        if ((rc = after_run(g, ecc_run_n_tokens(r))))
            goto done;
    }
    rc = 0;
done:
    ecc_run_free(r);
    free(ids);
    free(cont);
    free(text);
    cli_gen_free(&g->gen);
    ecc_model_close(m);
    return rc;
}

int cmd_generate(int argc, char **argv)
{
    gen_args g;
    memset(&g, 0, sizeof g);
    int p = parse(&g, argc, argv);
    if (p)
        return p > 0 ? 0 : ECC_EXIT_ERROR;
    return run(&g);
}
