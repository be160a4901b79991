/* eccolo generate: parse options, open the model, tokenize, call
 * ecc_generate, then print the text or write DIR/run.json +
 * DIR/tensors.safetensors. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static const char *k_help =
    "usage: eccolo generate [--model M] (--prompt TEXT | --prompt-file FILE | --prompt-ids 1,2,3) [options]\n"
    "\n"
    "model and input:\n"
    "  --model M               Hugging Face model directory, or a hub id in the local cache\n"
    "                          (distilgpt2, openai-community/gpt2); default: the embedded model\n"
    "  --prompt TEXT           prompt text; \\n \\t \\\\ \\\" escapes are interpreted (see --raw)\n"
    "  --prompt-file FILE      read the prompt from a file (taken as is)\n"
    "  --prompt-ids IDS        prompt as comma-separated token ids\n"
    "  --raw                   take --prompt / --continuation literally, without escapes\n"
    "\n"
    "generation:\n"
    "  --max-new-tokens N      tokens to generate (default 20)\n"
    "  --greedy                arg-max decoding (the default)\n"
    "  --sample                sample instead, with:\n"
    "    --temperature T       (default 1)\n"
    "    --top-k K             keep the K most likely tokens (default 0 = off)\n"
    "    --top-p P             keep the smallest set with probability >= P (default 1 = off)\n"
    "    --seed S              seed of the counter-based RNG (default 0); same seed, same tokens\n"
    "  --no-stop               do not stop at <|endoftext|>\n"
    "  --continuation TEXT     force this continuation (teacher forcing) instead of generating,\n"
    "                          so a given text can be explained\n"
    "  --continuation-ids IDS  the same, as token ids\n"
    "\n"
    "explanations (computed over the final sequence, for every generated token):\n"
    "  --attribution LIST      input saliency by grad_x_input, gradient (alias saliency),\n"
    "                          integrated_gradients (alias ig), comma-separated\n"
    "  --target prob|logit|logprob   the scalar explained (default prob, as Ecco 0.1; logit\n"
    "                          reproduces the original Ecco article)\n"
    "  --ig-steps N            integrated-gradients steps (default 50, Gauss-Legendre)\n"
    "  --activations           post-GELU MLP activations [L, T, F]\n"
    "  --layers a:b            capture activations of layers [a, b) only\n"
    "  --hidden-states         hidden states [L+1, T, C] (Hugging Face convention)\n"
    "  --attention             attention probabilities [L, NH, T, T]\n"
    "  --rankings              logit lens: rank of each generated token at every layer, and\n"
    "                          the top tokens per layer\n"
    "  --top-k-layers K        top tokens kept per layer and position (default 10)\n"
    "  --lens standard|raw     standard applies ln_f to every layer (default); raw is Ecco's\n"
    "  --watch-ids IDS         also rank these token ids at every layer and position\n"
    "  --watch LIST            the same from comma-separated single-token texts\n"
    "  --mem-budget SIZE       memory for explanation buffers, e.g. 512M, 8G (default 4G)\n"
    "\n"
    "execution and output:\n"
    "  --device auto|cpu|cuda  where to run (default auto: the GPU when usable)\n"
    "  --threads N             CPU threads (default: OMP_NUM_THREADS or all cores)\n"
    "  --out DIR               write DIR/run.json and DIR/tensors.safetensors\n"
    "  --quiet                 no progress on stderr\n"
    "\n"
    "Without --out the prompt and its continuation are printed on stdout.\n"
    "Errors are one line on stderr, with exit code 2.\n";

typedef struct gen_args {
    const char *model, *prompt, *prompt_file, *prompt_ids, *cont, *cont_ids, *out, *watch, *watch_ids;
    int raw, quiet, greedy_flag, sampling_opt_seen;
    ecc_options o;
} gen_args;

static int parse(gen_args *g, int argc, char **argv)
{
    cli_args a = {argc, 1, argv, "generate"};
    ecc_options_default(&g->o);
    for (; a.i < argc; a.i++) {
        const char *v = NULL;
        int r;
#define OPT(name) ((r = cli_opt(&a, name, &v)) < 0 ? -1 : r)
        if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
            fputs(k_help, stdout);
            return 1;
        } else if ((r = OPT("--model"))) {
            if (r < 0) return -1;
            g->model = v;
        } else if ((r = OPT("--prompt"))) {
            if (r < 0) return -1;
            g->prompt = v;
        } else if ((r = OPT("--prompt-file"))) {
            if (r < 0) return -1;
            g->prompt_file = v;
        } else if ((r = OPT("--prompt-ids"))) {
            if (r < 0) return -1;
            g->prompt_ids = v;
        } else if ((r = OPT("--continuation"))) {
            if (r < 0) return -1;
            g->cont = v;
        } else if ((r = OPT("--continuation-ids"))) {
            if (r < 0) return -1;
            g->cont_ids = v;
        } else if ((r = OPT("--max-new-tokens"))) {
            if (r < 0 || cli_int("--max-new-tokens", v, 0, 1 << 20, &g->o.max_new_tokens)) return -1;
        } else if ((r = OPT("--temperature"))) {
            if (r < 0 || cli_float("--temperature", v, 1e-6, 1e6, &g->o.temperature)) return -1; /* > 0 */
            g->sampling_opt_seen = 1;
        } else if ((r = OPT("--top-k"))) {
            if (r < 0 || cli_int("--top-k", v, 0, 1 << 24, &g->o.top_k)) return -1;
            g->sampling_opt_seen = 1;
        } else if ((r = OPT("--top-p"))) {
            if (r < 0 || cli_float("--top-p", v, 1e-6, 1.0, &g->o.top_p)) return -1;
            g->sampling_opt_seen = 1;
        } else if ((r = OPT("--seed"))) {
            if (r < 0 || cli_u64("--seed", v, &g->o.seed)) return -1;
            g->sampling_opt_seen = 1;
        } else if ((r = OPT("--device"))) {
            if (r < 0 || cli_device(v, &g->o.device)) return -1;
        } else if ((r = OPT("--threads"))) {
            if (r < 0 || cli_int("--threads", v, 1, 1024, &g->o.threads)) return -1;
        } else if ((r = OPT("--out"))) {
            if (r < 0) return -1;
            g->out = v;
        } else if ((r = OPT("--attribution"))) {
            if (r < 0 || cli_methods(v, &g->o.attribution)) return -1;
        } else if ((r = OPT("--target"))) {
            if (r < 0 || cli_target(v, &g->o.target)) return -1;
        } else if ((r = OPT("--ig-steps"))) {
            if (r < 0 || cli_int("--ig-steps", v, 1, 1000, &g->o.ig_steps)) return -1;
        } else if ((r = OPT("--layers"))) {
            if (r < 0 || cli_layers(v, &g->o.layer_from, &g->o.layer_to)) return -1;
        } else if ((r = OPT("--top-k-layers"))) {
            if (r < 0 || cli_int("--top-k-layers", v, 1, 1 << 24, &g->o.top_k_layers)) return -1;
        } else if ((r = OPT("--lens"))) {
            if (r < 0) return -1;
            if (!strcmp(v, "standard") || !strcmp(v, "raw")) {
                g->o.lens = strcmp(v, "raw") ? ECC_LENS_STANDARD : ECC_LENS_RAW;
            } else {
                cli_error("--lens must be standard or raw (got '%s')", v);
                return -1;
            }
        } else if ((r = OPT("--watch-ids"))) {
            if (r < 0) return -1;
            g->watch_ids = v;
        } else if ((r = OPT("--watch"))) {
            if (r < 0) return -1;
            g->watch = v;
        } else if ((r = OPT("--mem-budget"))) {
            if (r < 0 || cli_size("--mem-budget", v, &g->o.mem_budget)) return -1;
        } else if ((r = OPT("--chunk-targets"))) { /* for tests: cap targets per backward chunk */
            if (r < 0 || cli_int("--chunk-targets", v, 1, 1 << 20, &g->o.max_chunk_targets)) return -1;
        } else if (cli_flag(&a, "--activations")) {
            g->o.activations = 1;
        } else if (cli_flag(&a, "--hidden-states")) {
            g->o.hidden_states = 1;
        } else if (cli_flag(&a, "--attention")) {
            g->o.attention = 1;
        } else if (cli_flag(&a, "--rankings")) {
            g->o.rankings = 1;
        } else if (cli_flag(&a, "--greedy")) {
            g->greedy_flag = 1;
        } else if (cli_flag(&a, "--sample")) {
            g->o.sample = 1;
        } else if (cli_flag(&a, "--no-stop")) {
            g->o.stop_at_eos = 0;
        } else if (cli_flag(&a, "--raw")) {
            g->raw = 1;
        } else if (cli_flag(&a, "--quiet") || cli_flag(&a, "-q")) {
            g->quiet = 1;
        } else {
            cli_error("generate: unknown option '%s' (see eccolo generate --help)", argv[a.i]);
            return -1;
        }
#undef OPT
    }
    int n_prompts = !!g->prompt + !!g->prompt_file + !!g->prompt_ids;
    if (n_prompts != 1) {
        cli_error(n_prompts ? "give only one of --prompt, --prompt-file, --prompt-ids"
                            : "no prompt: give --prompt TEXT, --prompt-file FILE or --prompt-ids IDS");
        return -1;
    }
    if (g->cont && g->cont_ids) {
        cli_error("give only one of --continuation and --continuation-ids");
        return -1;
    }
    if (g->greedy_flag && g->o.sample) {
        cli_error("--greedy and --sample contradict each other");
        return -1;
    }
    if (g->sampling_opt_seen && !g->o.sample) {
        cli_error("--temperature, --top-k, --top-p and --seed apply to sampling: add --sample");
        return -1;
    }
    if (g->o.layer_to && !g->o.activations) {
        cli_error("--layers selects the layers of --activations: add --activations");
        return -1;
    }
    if (g->watch && g->watch_ids) {
        cli_error("give only one of --watch and --watch-ids");
        return -1;
    }
    if ((g->watch || g->watch_ids) && !g->o.rankings) {
        cli_error("--watch and --watch-ids rank tokens in the logit lens: add --rankings");
        return -1;
    }
    if ((g->cont || g->cont_ids) && g->o.sample) {
        cli_error("--continuation forces the tokens, so --sample has nothing to choose");
        return -1;
    }
    return 0;
}

/* Text of --prompt or --continuation -> token ids; *used (when not NULL)
 * gets the text after escapes, as tokenized. */
static int text_ids(ecc_model *m, const char *opt, const char *text, int raw, int32_t **ids, int *n, char **used)
{
    char *t = raw ? strdup(text) : cli_unescape(text);
    if (!t)
        return cli_error("out of memory");
    ecc_status s = ecc_tokenize(m, t, strlen(t), ids, n);
    if (used)
        *used = t;
    else
        free(t);
    if (s != ECC_OK)
        return cli_error("%s: %s", opt, ecc_last_error());
    return 0;
}

static int prompt_ids(gen_args *g, ecc_model *m, int32_t **ids, int *n, char **text)
{
    *text = NULL;
    if (g->prompt_ids)
        return cli_ids("--prompt-ids", g->prompt_ids, ids, n) ? ECC_EXIT_ERROR : 0;
    if (g->prompt_file) {
        size_t len;
        if (ecc_read_file(g->prompt_file, 64u << 20, text, &len) != ECC_OK)
            return cli_error("--prompt-file: %s", ecc_last_error());
        if (ecc_tokenize(m, *text, len, ids, n) != ECC_OK)
            return cli_error("%s: %s", g->prompt_file, ecc_last_error());
        return 0;
    }
    return text_ids(m, "--prompt", g->prompt, g->raw, ids, n, text);
}

/* --watch " is, are": each comma-separated text must be one token. */
static int watch_texts(ecc_model *m, const char *list, int raw, int32_t **ids, int *n)
{
    char *all = raw ? strdup(list) : cli_unescape(list);
    int32_t *out = malloc(sizeof(int32_t) * (strlen(list) + 1));
    if (!all || !out) {
        free(all);
        free(out);
        return cli_error("out of memory");
    }
    int k = 0, rc = 0;
    for (char *save = NULL, *tok = strtok_r(all, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int32_t *t;
        int nt;
        if (ecc_tokenize(m, tok, strlen(tok), &t, &nt) != ECC_OK) {
            rc = cli_error("--watch: %s", ecc_last_error());
            break;
        }
        if (nt != 1)
            rc = cli_error("--watch: '%s' is %d tokens; watch single tokens (or give ids with --watch-ids)", tok, nt);
        else
            out[k++] = t[0];
        free(t);
    }
    free(all);
    if (rc || k == 0) {
        free(out);
        return rc ? rc : cli_error("--watch: no tokens given");
    }
    *ids = out;
    *n = k;
    return 0;
}

static void progress(void *user, const char *phase, int done, int total)
{
    fprintf(stderr, "\r\033[Keccolo: %s %d/%d", phase, done, total);
    if (done == total)
        fputc('\n', stderr);
}

static int run(gen_args *g)
{
    double t0 = ecc_now();
    ecc_model *m = NULL;
    if (ecc_model_open(&m, g->model) != ECC_OK)
        return cli_lib_error();
    double t_load = ecc_now() - t0;
    int32_t *ids = NULL, *cont = NULL, *watch = NULL;
    int n = 0, n_cont = 0, n_watch = 0, rc;
    char *text = NULL;
    ecc_run *r = NULL;
    if ((rc = prompt_ids(g, m, &ids, &n, &text)))
        goto done;
    if (g->cont_ids && cli_ids("--continuation-ids", g->cont_ids, &cont, &n_cont)) {
        rc = ECC_EXIT_ERROR;
        goto done;
    }
    if (g->cont && (rc = text_ids(m, "--continuation", g->cont, g->raw, &cont, &n_cont, NULL)))
        goto done;
    if (g->cont || g->cont_ids) {
        g->o.continuation_ids = cont;
        g->o.n_continuation = n_cont;
    }
    if (g->watch_ids && cli_ids("--watch-ids", g->watch_ids, &watch, &n_watch)) {
        rc = ECC_EXIT_ERROR;
        goto done;
    }
    if (g->watch && (rc = watch_texts(m, g->watch, g->raw, &watch, &n_watch)))
        goto done;
    g->o.watch_ids = watch;
    g->o.n_watch = n_watch;
    if (!g->quiet && isatty(2)) {
        g->o.progress = progress;
        g->o.progress_user = g;
    }
    if (ecc_generate(&r, m, ids, n, &g->o) != ECC_OK) {
        rc = cli_lib_error();
        goto done;
    }
    ecc_run_add_timing(r, "load", t_load);
    if (*ecc_run_notice(r) && !g->quiet)
        fprintf(stderr, "eccolo: %s\n", ecc_run_notice(r));
    char *out_text = NULL;
    if (ecc_detokenize(m, ecc_run_token_ids(r), ecc_run_n_tokens(r), &out_text) != ECC_OK) {
        rc = cli_lib_error();
        goto done;
    }
    printf("%s\n", out_text);
    fflush(stdout);
    free(out_text);
    if (g->out) {
        if (ecc_run_write(r, m, text, g->out) != ECC_OK) {
            rc = cli_lib_error();
            goto done;
        }
        if (!g->quiet)
            fprintf(stderr, "eccolo: wrote %s/run.json and %s/tensors.safetensors\n", g->out, g->out);
    }
    rc = 0;
done:
    ecc_run_free(r);
    free(ids);
    free(cont);
    free(watch);
    free(text);
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
